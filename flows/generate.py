"""Prefect flow of the generate stage: one generator x one setting -> data/generated/NAME/METHOD/DOMAIN.jsonl."""
from __future__ import annotations

from prefect import flow
from prefect.utilities.annotations import quote

from agorabench.config import load_params
from agorabench.generation.loop import BatchRunner, generate_setting
from agorabench.generation.plan import Attempt, Outcome
from agorabench.models.endpoint import endpoints_from
from tasks.generation import generate_batch


async def _batch_task(runner: BatchRunner, attempts: list[Attempt]) -> list[Outcome]:
    # quote(): without it Prefect walks every message of every attempt looking for futures to
    # track, which cost ~15% of generation throughput; the task receives the plain values.
    return await generate_batch(quote(runner), quote(attempts))


@flow(name="generate", flow_run_name="generate {generator} {method} {domain}", log_prints=True)
async def generate(generator: str, domain: str, method: str, params_file: str = "params.yaml",
                   num: int | None = None, max_cost: float | None = None, output_dir: str | None = None,
                   endpoints: dict[str, dict] | None = None) -> dict:
    """`endpoints`: the local model servers `agora run` started ({name: {"base_url", "model_id"}})."""
    params = load_params(params_file)
    return await generate_setting(params, generator, domain, method, num=num, max_cost=max_cost,
                                  run_batch=_batch_task, output_dir=output_dir, endpoints=endpoints_from(endpoints))
