"""Prefect tasks for the generate stage.

A task is one batch of requests, not one request: Prefect costs ~10 ms per task run, while a batch
of a few hundred requests runs for seconds. Retrying a failed batch is cheap because every answer
it had already received is in the request store; only the missing ones are sent again.
"""
from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from agorabench.models.clients.retry import FatalAPIError
from agorabench.config import ParamsError
from agorabench.files import StorageError
from agorabench.generation.loop import BatchRunner
from agorabench.generation.plan import Attempt, Outcome


def _retry_transient(task, task_run, state) -> bool:
    """Retry a batch after transient trouble; a refused request or a bad config will not improve."""
    # A failed task's state carries the exception itself as its data.
    return not isinstance(state.data, (FatalAPIError, ParamsError, StorageError))


# NO_CACHE, no persisted result: the request store is the cache (keyed per request); Prefect result
# caching on top would persist every batch's answers a second time.
@task(name="generate-batch", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_retry_transient,
      cache_policy=NO_CACHE, persist_result=False)
async def generate_batch(runner: BatchRunner, attempts: list[Attempt]) -> list[Outcome]:
    return await runner.run(attempts)
