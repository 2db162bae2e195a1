"""One generator as the engine sees it: store first, then limits, retries, cost.

Order matters here. The request store is asked before anything else, so a cached answer never waits
for a concurrency slot, a rate-limit token or the budget. A new answer is written to the store the
moment it arrives, before the caller sees it: a crash after that point loses nothing that was paid.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from agorabench.models.clients import retry
from agorabench.models.clients.ratelimit import TokenBucket
from agorabench.config import GeneratorConfig
from agorabench.models.store import Completion, RequestStore, canonical_json, request_key


class BudgetExceeded(RuntimeError):
    """Sending one more request could push the run past --max-cost."""


class RetriesExhausted(RuntimeError):
    """A retryable error persisted past max_retries."""


@dataclass
class RunStats:
    """What this process did (not part of any output: a re-run would differ)."""

    sent: int = 0           # HTTP attempts
    completed: int = 0      # new answers stored
    cached: int = 0         # answers served from the store
    retried: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    spent_usd: float = 0.0  # new money spent in this process
    reserved_usd: float = 0.0


def estimate_tokens(text: str) -> int:
    # ~4 characters per token for English under BPE tokenizers; only used for limits and estimates.
    return max(1, len(text) // 4)


def with_seed(sampling: dict, key: str, own: dict) -> dict:
    """`sampling` plus a seed taken from the request key, unless the generator's own sampling (`own`)
    names one (`seed: null` there sends none, for an endpoint that refuses the field).

    Servers that honour it (transformers serve, vLLM, llama.cpp; OpenAI on a best-effort basis) then
    sample the same answer for the same request, so a fresh run of the embedded default writes the
    same datasets. Retries of one prompt differ by sample index, so by key, so by seed. The seed is
    not part of the key: it follows from it. Anthropic's API has no seed; its client leaves it out."""
    return sampling if "seed" in sampling or "seed" in own else {**sampling, "seed": int(key[:8], 16)}


class GeneratorClient:
    def __init__(self, name: str, cfg: GeneratorConfig, store: RequestStore, open_api, *,
                 max_cost_usd: float | None = None):
        """`open_api` makes the chat API on first need (a zero-argument callable, run in a thread):
        a run the store answers completely never starts a local model server."""
        self.name, self.cfg, self.store = name, cfg, store
        self._open_api, self.api = open_api, None
        self._api_lock = asyncio.Lock()
        self.max_cost_usd = max_cost_usd
        self.backoff_s, self.backoff_max_s = cfg.retry_backoff_s, cfg.retry_backoff_max_s
        self.stats = RunStats()
        self._slots = asyncio.Semaphore(cfg.concurrency)
        self._rpm = TokenBucket(cfg.requests_per_minute) if cfg.requests_per_minute else None
        self._tpm = TokenBucket(cfg.tokens_per_minute) if cfg.tokens_per_minute else None
        # A local model answers differently under llama.cpp, transformers or vLLM: the engine is part of
        # what identifies an answer (decided from the config and this host, before any server starts).
        self.engine = None
        if cfg.backend == "local" and not cfg.base_url:
            from agorabench.models.servers import local_engine

            self.engine = local_engine(cfg.engine, cfg.model)
        self.cpu_weights = None
        if self.engine == "transformers":
            from agorabench.models.cpu_weights import effective

            self.cpu_weights = effective(cfg.cpu_weights)

    def key_request(self, messages: list[dict], sampling: dict, sample_index: int) -> dict:
        """What identifies an answer. A local server's URL changes every run, so it is left out."""
        req = {"backend": self.cfg.backend, "model": self.cfg.model, "messages": messages,
               "sampling": sampling, "sample_index": sample_index}
        if self.cfg.backend in ("openai", "anthropic") and self.cfg.base_url:
            req["base_url"] = self.cfg.base_url
        if self.engine is not None:
            req["engine"] = self.engine
        if self.cpu_weights is not None:  # bfloat16 and int8 weights answer differently from float32 ones
            req["cpu_weights"] = self.cpu_weights
        return req

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.cfg.price_in_per_mtok + output_tokens * self.cfg.price_out_per_mtok) / 1e6

    def _reserve(self, messages: list[dict], sampling: dict) -> float:
        """Book the worst case (full max_tokens) against the budget before sending."""
        prompt_tokens = sum(estimate_tokens(m["content"]) for m in messages)
        worst = self.cost(prompt_tokens, int(sampling.get("max_tokens") or 0))
        if self.max_cost_usd is not None:
            if self.stats.spent_usd + self.stats.reserved_usd + worst > self.max_cost_usd:
                raise BudgetExceeded(
                    f"--max-cost {self.max_cost_usd:.4f} USD reached: spent {self.stats.spent_usd:.4f}, "
                    f"the next request could cost up to {worst:.4f}"
                )
        self.stats.reserved_usd += worst
        return worst

    def prepare(self, messages: list[dict], sampling: dict, sample_index: int) -> tuple[str, str]:
        """(request JSON, key) of one call: what the store is asked and written with."""
        request = canonical_json(self.key_request(messages, sampling, sample_index))
        return request, request_key(request)

    def lookup(self, keys: list[str]) -> dict[str, Completion]:
        return self.store.get_many(keys)

    async def complete(self, messages: list[dict], sampling: dict, prepared: tuple[str, str],
                       cached: Completion | None) -> tuple[str, Completion]:
        """The answer to one call: `cached` if the store had it (one batch-wide `prepare` + `lookup`
        asks for all of them at once), else from the API, stored before it is returned."""
        request, key = prepared
        if cached is not None:
            self.stats.cached += 1
            return key, cached

        reserved = self._reserve(messages, sampling)
        try:
            async with self._slots:
                if self._rpm:
                    await self._rpm.acquire(1)
                if self._tpm:
                    await self._tpm.acquire(sum(estimate_tokens(m["content"]) for m in messages)
                                            + int(sampling.get("max_tokens") or 0))
                text, finish, n_in, n_out, latency = await self._call_with_retries(key, messages,
                                                                                   with_seed(sampling, key, self.cfg.sampling))
        finally:
            self.stats.reserved_usd -= reserved
        done = Completion(text=text, finish_reason=finish, input_tokens=n_in, output_tokens=n_out,
                          latency_s=latency, cost_usd=self.cost(n_in, n_out))
        # The cost is booked before the write yields to the event loop, so every other request's
        # budget check sees the same totals as when the write was synchronous; and, as then, an
        # answer the store failed to keep is not counted.
        self.stats.spent_usd += done.cost_usd
        try:
            await self.store.put_async(key, self.cfg.backend, self.cfg.model, request, done)
        except BaseException:
            self.stats.spent_usd -= done.cost_usd
            raise
        self.stats.completed += 1
        return key, done

    async def _call_with_retries(self, key: str, messages: list[dict], sampling: dict):
        api = self.api or await self._start_api()
        attempt = 0
        while True:
            self.stats.sent += 1
            started = time.perf_counter()
            try:
                text, finish, n_in, n_out = await api.chat(messages, sampling)
                return text, finish, n_in, n_out, time.perf_counter() - started
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # classified below: retry transient errors, fail fast otherwise
                kind = str(retry.status_of(exc) or type(exc).__name__)
                self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
                retryable = retry.is_retryable(exc)
                self.store.record_failure(key, self.cfg.backend, self.cfg.model,
                                          f"{kind}: {retry.server_message(exc)}", retryable)
                if not retryable:
                    raise retry.FatalAPIError(
                        f"generator {self.name}: the API refused the request ({kind}): "
                        f"{retry.server_message(exc)}"
                    ) from None
                if attempt >= self.cfg.max_retries:
                    raise RetriesExhausted(
                        f"generator {self.name}: still failing after {attempt + 1} attempts "
                        f"({kind}: {retry.server_message(exc)})"
                    ) from exc
                wait = retry.backoff_s(attempt, self.backoff_s, self.backoff_max_s)
                after = retry.retry_after_s(exc)
                if after is not None:
                    # Never earlier than the server asked; but a broken header must not stall a
                    # run for hours, so the wait is capped at ten minutes.
                    wait = max(wait, min(after, 600.0))
                self.stats.retried += 1
                attempt += 1
                await asyncio.sleep(wait)

    async def _start_api(self):
        async with self._api_lock:  # one start, however many requests arrive at once
            if self.api is None:
                self.api = await asyncio.to_thread(self._open_api)
        return self.api

    async def close(self) -> None:
        if self.api is not None:
            await self.api.close()
