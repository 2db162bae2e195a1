"""Prefect flow: one generator x one setting -> data/generated/NAME/METHOD/DOMAIN.jsonl."""
from __future__ import annotations

from prefect import flow

from agorabench.config import load_params
from agorabench.engine import generate_setting
from tasks.generation import generate_batch


@flow(name="generate", flow_run_name="generate {generator} {method} {domain}", log_prints=True)
async def generate(generator: str, domain: str, method: str, params_file: str = "params.yaml",
                   num: int | None = None, max_cost: float | None = None) -> dict:
    params = load_params(params_file)
    return await generate_setting(params, generator, domain, method, num=num, max_cost=max_cost,
                                  run_batch=generate_batch)
