"""Prefect flow of the report stage: the analysis and the HTML report -> reports/."""
from __future__ import annotations

from prefect import flow

from agorabench.config import load_params
from agorabench.report import build_report


@flow(name="report", log_prints=True)
def report(params_file: str = "params.yaml", single_file: str | None = None) -> dict:
    index, skipped = build_report(load_params(params_file), single_file=single_file)
    return {"index": str(index), "analysis_skipped": skipped}
