"""Retry classification, backoff and rate limits (units; the HTTP paths are in test_generation)."""
import asyncio
import random
import time

import httpx2
import openai

from agorabench.clients import retry
from agorabench.clients.ratelimit import TokenBucket


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
