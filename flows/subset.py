"""Prefect flow of the scale-subset stage: a scaling dataset's first N instances as the dataset of NAME@N."""
from __future__ import annotations

from prefect import flow

from agorabench.config import load_params
from agorabench.generation.scaling import write_prefix


@flow(name="subset", flow_run_name="subset {generator}@{size} {method} {domain}", log_prints=True)
def subset(generator: str, domain: str, method: str, size: int, params_file: str = "params.yaml") -> dict:
    return write_prefix(load_params(params_file), generator, domain, method, size)
