"""Retry classification, backoff, rate limits and the request store's batched writes (units; the
HTTP paths are in test_generation)."""
import asyncio
import random
import sqlite3
import time

import httpx2
import openai
import pytest

from agorabench.models.clients import retry
from agorabench.models.clients.ratelimit import TokenBucket
from agorabench.models.store import Completion, RequestStore


def status_error(status: int, headers: dict | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return openai.APIStatusError("boom", response=response, body={"error": {"message": "server says no"}})


def test_classification():
    assert all(retry.is_retryable(status_error(s)) for s in (408, 429, 500, 502, 503, 529))
    assert not any(retry.is_retryable(status_error(s)) for s in (400, 401, 403, 404, 422))
    assert retry.server_message(status_error(400)) == "server says no"


def test_retry_after_seconds_milliseconds_and_dates():
    assert retry.retry_after_s(status_error(429, {"retry-after": "2"})) == 2.0
    assert retry.retry_after_s(status_error(429, {"retry-after-ms": "250"})) == 0.25
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry.retry_after_s(status_error(429, {"retry-after": http_date})) <= 31
    assert retry.retry_after_s(status_error(429)) is None


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(0)
    waits = [retry.backoff_s(n, 1.0, 60.0, rng) for n in range(8)]
    assert all(0.5 * min(60, 2 ** n) <= w <= min(60, 2 ** n) for n, w in enumerate(waits))
    assert len({round(retry.backoff_s(3, 1.0, 60.0, rng), 6) for _ in range(20)}) > 1  # jittered
    assert max(waits) <= 60.0


def test_token_bucket_limits_the_rate():
    async def go():
        bucket = TokenBucket(rate_per_minute=120)  # 2 per second, bursts up to 120
        started = time.perf_counter()
        for _ in range(120):
            await bucket.acquire()
        burst = time.perf_counter() - started
        for _ in range(2):
            await bucket.acquire()
        return burst, time.perf_counter() - started

    burst, total = asyncio.run(go())
    assert burst < 0.2, "a full bucket serves a burst at once"
    assert total >= 0.9, "beyond the burst, the rate holds (2 more at 2/s take ~1 s)"


def stored_keys(path) -> set[str]:
    con = sqlite3.connect(path)  # another connection: sees committed rows only
    try:
        return {k for (k,) in con.execute("SELECT key FROM responses")}
    finally:
        con.close()


def test_put_async_commits_one_pass_of_answers_together_before_any_caller_returns(tmp_path):
    path = tmp_path / "r.sqlite"
    store = RequestStore(path)
    statements: list[str] = []
    store._file.db.set_trace_callback(statements.append)
    seen_on_return: dict[str, bool] = {}

    async def answer(key: str):
        await store.put_async(key, "openai", "m", {"messages": [key]}, Completion(key, "stop", 1, 2, 0.1, 0.01))
        seen_on_return[key] = key in stored_keys(path)

    async def go():
        await asyncio.gather(*(answer(f"k{i}") for i in range(5)))

    asyncio.run(go())
    assert seen_on_return == {f"k{i}": True for i in range(5)}, "a caller returned before its row was committed"
    assert sum(s == "BEGIN" for s in statements) == 1 and sum(s == "COMMIT" for s in statements) == 1
    store.close()


def test_put_async_failure_reaches_every_caller_and_a_cancelled_callers_row_is_kept(tmp_path):
    path = tmp_path / "r.sqlite"
    store = RequestStore(path)
    answer = Completion("t", "stop", 1, 2, 0.1, 0.01)

    async def cancelled_before_the_commit():
        task = asyncio.create_task(store.put_async("gone", "openai", "m", "{}", answer))
        await asyncio.sleep(0)  # the task has queued its row and waits for the next pass
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled_before_the_commit())
    assert "gone" in stored_keys(path), "an answer paid for is stored even if its caller went away"

    store._file.db.execute("DROP TABLE responses")  # every write fails from here on

    async def failing():
        return await asyncio.gather(*(store.put_async(f"f{i}", "openai", "m", "{}", answer) for i in range(3)),
                                    return_exceptions=True)

    errors = asyncio.run(failing())
    assert all(isinstance(e, sqlite3.OperationalError) for e in errors), errors
    assert not store._file.db.in_transaction, "a failed group is rolled back"
    store.close()


def test_store_keeps_a_judges_logprobs_and_upgrades_an_old_store(tmp_path):
    from agorabench.models.store import LOGPROB_POSITIONS

    # A store written before the logprobs column existed: opened again, it gains the column and its rows.
    old = tmp_path / "old.sqlite"
    con = sqlite3.connect(old)
    con.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, backend TEXT NOT NULL, model TEXT NOT NULL, "
                "request TEXT NOT NULL, text TEXT NOT NULL, finish_reason TEXT, input_tokens INTEGER NOT NULL, "
                "output_tokens INTEGER NOT NULL, latency_s REAL NOT NULL, cost_usd REAL NOT NULL, created_at REAL NOT NULL)")
    con.execute("INSERT INTO responses VALUES ('k0','openai','m','{}','[[A]]','stop',1,2,0.1,0.0,0.0)")
    con.commit()
    con.close()
    store = RequestStore(old)
    assert store.get_many(["k0"])["k0"].logprobs is None  # an old answer has none
    tokens = tuple((f"t{i}", -0.5, (("A", -0.1), ("B", -2.5))) for i in range(LOGPROB_POSITIONS + 10))
    store.put("k1", "openai", "m", "{}", Completion("[[A]]", "stop", 1, 2, 0.1, 0.0, logprobs=tokens))
    got = store.get_many(["k1"])["k1"].logprobs
    assert got == tokens[:LOGPROB_POSITIONS]  # the first positions, exactly as given
    store.put("k2", "openai", "m", "{}", Completion("[[A]]", "stop", 1, 2, 0.1, 0.0))
    assert store.get_many(["k2"])["k2"].logprobs is None  # canary: none given, none returned
    store.close()


def test_asking_for_logprobs_is_part_of_the_request_key():
    from agorabench.models.answering import Decoding, chat_sampling

    plain, asked = Decoding(temperature=0.0), Decoding(temperature=0.0, top_logprobs=20)
    assert chat_sampling(asked) == chat_sampling(plain) | {"logprobs": True, "top_logprobs": 20}
    assert asked.as_dict() == plain.as_dict() | {"top_logprobs": 20}
    # Every request that does not ask keeps the key it always had (no new field at all).
    assert "top_logprobs" not in plain.as_dict() and "logprobs" not in chat_sampling(plain)
