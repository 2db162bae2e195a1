"""Prefect task for the evaluate stage: one model on one benchmark.

Answers are cached per request in the request store (a retry or a re-run regenerates nothing that
finished), so the task itself needs no Prefect cache; DVC decides when the stage re-runs.
"""
from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from agorabench.config import Params, ParamsError
from agorabench.evaluation.run import evaluate, prefetch_answers
from agorabench.files import StorageError


def _retry_unless_config_error(task, task_run, state) -> bool:
    return not isinstance(state.data, (ParamsError, StorageError))


@task(name="evaluate-benchmark", task_run_name="{model_ref} {benchmark}", retries=1, retry_delay_seconds=10,
      retry_condition_fn=_retry_unless_config_error, cache_policy=NO_CACHE, persist_result=False)
def evaluate_benchmark(params: Params, model_ref: str, benchmark: str,
                       allow_code_execution: bool | None = None, endpoints: dict | None = None) -> dict:
    return evaluate(params, model_ref, benchmark, allow_code_execution=allow_code_execution, endpoints=endpoints)


@task(name="answer-all", task_run_name="{model_ref} answers", retries=1, retry_delay_seconds=10,
      retry_condition_fn=_retry_unless_config_error, cache_policy=NO_CACHE, persist_result=False)
def answer_all(params: Params, model_ref: str, benchmarks: list[str],
               allow_code_execution: bool | None = None, endpoints: dict | None = None) -> dict[str, int]:
    return prefetch_answers(params, model_ref, benchmarks, allow_code_execution=allow_code_execution,
                            endpoints=endpoints)
