"""Prefect flow of the train stage: fine-tune the student on one generated dataset -> data/checkpoints/NAME/METHOD/DOMAIN.

With an accelerate config (multi-GPU, FSDP) the training runs under `accelerate launch`, one process
per GPU, each running `python -m agorabench.training`; this flow is the run's record either way."""
from __future__ import annotations

from prefect import flow

from agorabench.config import load_params
from tasks.training import accelerate_train, sft_train


@flow(name="train", flow_run_name="train {generator} {method} {domain}", log_prints=True)
def train(generator: str, domain: str, method: str, params_file: str = "params.yaml",
          accelerate_config: str | None = None) -> dict:
    params = load_params(params_file)
    accelerate_config = accelerate_config or params.training.accelerate_config
    if accelerate_config:
        return accelerate_train(params, generator, domain, method, params_file, accelerate_config)
    return sft_train(params, generator, domain, method)
