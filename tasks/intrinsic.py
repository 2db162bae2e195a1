"""Prefect task for the intrinsic stage: every enabled metric of one generated dataset.

Per-instance results live in the intrinsic cache and judge replies in the request store, so a
retried or re-run task recomputes nothing that finished; Prefect needs no cache of its own.
"""
from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from agorabench.config import Params
from agorabench.files import StorageError
from agorabench.intrinsic.run import intrinsic_for_dataset


def _retry_unless_config_error(task, task_run, state) -> bool:
    # ValueError covers ParamsError and every one-line input error: a retry would fail the same way.
    return not isinstance(state.data, (ValueError, StorageError))


@task(name="intrinsic-dataset", task_run_name="{generator} {method} {domain}", retries=1, retry_delay_seconds=10,
      retry_condition_fn=_retry_unless_config_error, cache_policy=NO_CACHE, persist_result=False)
def intrinsic_dataset(params: Params, generator: str, domain: str, method: str, endpoints: dict | None = None) -> dict:
    return intrinsic_for_dataset(params, generator, domain, method, endpoints=endpoints)
