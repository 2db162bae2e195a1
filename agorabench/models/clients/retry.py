"""Which API errors are worth retrying, and how long to wait.

Both SDKs raise the same shapes (APIStatusError with .status_code and .response, APITimeoutError,
APIConnectionError), so one classifier serves openai and anthropic. A 4xx other than 408/409/429
means the request itself is wrong: retrying it only burns time, so it fails fast with the server's
own message.
"""
from __future__ import annotations

import email.utils
import json
import random
import time

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


class FatalAPIError(RuntimeError):
    """A non-retryable API error (bad request, auth, unknown model): fix the request, not the network."""


def status_of(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)


def is_retryable(exc: BaseException) -> bool:
    status = status_of(exc)
    if status is not None:
        return status in RETRYABLE_STATUS or status >= 500
    name = type(exc).__name__
    # Timeouts, dropped connections and bodies that are not valid JSON are transient.
    return name in {"APITimeoutError", "APIConnectionError", "APIResponseValidationError",
                    "JSONDecodeError", "RemoteProtocolError", "ReadError", "ConnectError"} or isinstance(
        exc, (TimeoutError, ConnectionError, json.JSONDecodeError))


def server_message(exc: BaseException) -> str:
    """The server's own error text, for one-line fatal errors."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (Retry-After / retry-after-ms), if it said so."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: a random point in the upper half of base * 2**attempt.

    The jitter keeps many concurrent requests that failed together from retrying together.
    """
    rng = rng or random
    ceiling = min(cap_s, base_s * (2 ** attempt))
    return ceiling * (0.5 + 0.5 * rng.random())
