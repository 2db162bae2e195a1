"""Prefect flow of the decontaminate stage: one dataset against every benchmark's items and its seeds ->
DOMAIN.contamination.json and DOMAIN.drop.json beside it."""
from __future__ import annotations

from prefect import flow

from agorabench.config import load_params
from agorabench.decontamination import decontaminate_setting
from agorabench.setting import Setting


@flow(name="decontaminate", flow_run_name="decontaminate {generator} {method} {domain}", log_prints=True)
def decontaminate(generator: str, domain: str, method: str, size: int | None = None,
                  params_file: str = "params.yaml") -> dict:
    report = decontaminate_setting(load_params(params_file), Setting(generator, method, domain, size))
    return {"instances": report.num_instances, "flagged": report.num_flagged, "ngram": report.ngram,
            "by_source": report.flagged_by_source, "dropped": report.dropped}
