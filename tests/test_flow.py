"""The generate stage as a real Prefect flow (one shared test harness per session)."""
import asyncio

from agorabench.config import load_params
from agorabench.generation import output_paths


def test_flow_generates_and_retries_a_failed_batch(prefect_harness, params_file, fake_server, monkeypatch):
    from flows.generate import generate
    from tasks import generation as gen_tasks

    # A batch that dies after its answers were stored (say, the worker was preempted) is retried by
    # Prefect, and the retry is served from the request store.
    calls = {"n": 0}
    original = gen_tasks.BatchRunner.run

    async def crash_once(self, attempts):
        outcomes = await original(self, attempts)
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("worker lost after the answers were stored")
        return outcomes

    monkeypatch.setattr(gen_tasks.BatchRunner, "run", crash_once)
    monkeypatch.setattr(gen_tasks.generate_batch, "retry_delay_seconds", [0])
    manifest = asyncio.run(generate(generator="fake", domain="code", method="instance_generation",
                                    params_file=str(params_file), num=6))
    assert manifest["num_valid"] == 6 and calls["n"] == 2
    assert manifest["run"]["answers_cached"] == 6, "the retried batch must be answered from the store"
    assert fake_server.completed_count == 6
    params = load_params(params_file)
    assert output_paths(params, "fake", "code", "instance_generation")["data"].exists()


def test_flow_does_not_retry_a_refused_request(prefect_harness, params_file, fake_server):
    import pytest

    from agorabench.clients.retry import FatalAPIError
    from flows.generate import generate

    fake_server.inject(*["400"] * 50)
    with pytest.raises(FatalAPIError):
        asyncio.run(generate(generator="fake", domain="math", method="response_generation",
                             params_file=str(params_file), num=1))
    assert fake_server.request_count == 1
