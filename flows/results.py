"""Prefect flow of the results stage: every output file -> data/results/*.parquet, the run added to the
history (data/history/), and agora.duckdb."""
from __future__ import annotations

from prefect import flow

from agorabench.config import load_params
from agorabench.results.db import build_results


@flow(name="results", log_prints=True)
def results(params_file: str = "params.yaml", include_requests: bool = False) -> str:
    return str(build_results(load_params(params_file), include_requests=include_requests, say=print))
