"""Prefect task for the train stage: one SFT run.

No Prefect caching or result persistence: DVC owns the checkpoint (it re-runs the stage only when
the dataset, params or code changed). One retry covers a transient failure (e.g. a full disk that
was cleaned); a config error will not improve and is not retried.
"""
from __future__ import annotations

import json

from prefect import task
from prefect.cache_policies import NO_CACHE

from agorabench.config import Params, ParamsError
from agorabench.files import StorageError
from agorabench.setting import Setting
from agorabench.training.sft import launch_command, run_launch, train_student, training_examples


def _retry_unless_config_error(task, task_run, state) -> bool:
    return not isinstance(state.data, (ParamsError, StorageError))


@task(name="sft-train", retries=1, retry_delay_seconds=10, retry_condition_fn=_retry_unless_config_error,
      cache_policy=NO_CACHE, persist_result=False)
def sft_train(params: Params, generator: str, domain: str, method: str) -> dict:
    return train_student(params, generator, domain, method)


# No retries: a multi-GPU launch that failed will most likely fail the same way, and it is expensive.
@task(name="accelerate-train", cache_policy=NO_CACHE, persist_result=False)
def accelerate_train(params: Params, generator: str, domain: str, method: str, params_file: str,
                     config_file: str) -> dict:
    """`accelerate launch` of the training (one process per GPU); an empty dataset trains nothing and
    needs no launch."""
    examples, _ = training_examples(params, generator, domain, method)
    if not examples:
        return train_student(params, generator, domain, method)
    command = launch_command(config_file, generator, domain, method, params_file)
    rc = run_launch(command)
    if rc != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed with exit code {rc}; its output is above")
    return json.loads(Setting(generator, method, domain).train_logs(params)["metrics"].read_text())
