"""A configured generator as an Answerer: an API, an OpenAI-compatible server, or a local model server.

Order matters here. The request store is asked before anything else, so a cached answer never waits
for a concurrency slot, a rate-limit token or the budget. A new answer is written to the store the
moment it arrives, before the caller sees it: a crash after that point loses nothing that was paid.

Two ways to use it. Generation drives it request by request from its own event loop (`prepare`,
`lookup`, `complete`), to keep a budget and report progress per answer. Evaluation and the judges
call `answer_many` from plain synchronous code; the requests then run on an event loop in a
background thread.

Where a `local` generator is served is passed in (`endpoints`: `agora run` starts each local model
once for all its stages and the CLI hands the addresses down); a local generator without one gets a
server of its own, started on the first request the store cannot answer and stopped on close().
A generator whose model is also the student base shares that server with the students (served.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agorabench.config import Params, ParamsError
from agorabench.models.answering import Answerer, Decoding, OnDone, chat_sampling
from agorabench.models.clients import make_chat_api, retry
from agorabench.models.clients.ratelimit import TokenBucket
from agorabench.models.store import Completion, RequestStore

# Where `agora run` says its local model servers are: the environment variable the CLI reads, JSON
# {generator name: {"base_url", "model_id"}} (pipeline/run.py writes it).
SERVERS_ENV = "AGORA_LOCAL_SERVERS"
# The spending cap of a whole `agora run` in USD (its --max-cost): the stages run as DVC subprocesses,
# so the run hands it down in the environment. It overrides params' budget_usd.
MAX_COST_ENV = "AGORA_MAX_COST"


@dataclass(frozen=True)
class Endpoint:
    """A running OpenAI-compatible server for one generator."""

    base_url: str
    model_id: str


class BudgetExceeded(RuntimeError):
    """Sending one more paid request could push the project's recorded spend past its cap."""


def spending_cap(params: Params) -> float | None:
    """The USD cap on the request store's recorded spend: `agora run --max-cost` (MAX_COST_ENV), else
    params' budget_usd; None: no cap. The one definition every paid request is checked against."""
    raw = os.environ.get(MAX_COST_ENV, "").strip()
    if not raw:
        return params.budget_usd
    try:
        cap = float(raw)
    except ValueError:
        cap = -1.0
    if not cap >= 0:
        raise ParamsError(f"{MAX_COST_ENV}={raw!r} is not a USD amount; set a number >= 0 (or unset it)")
    return cap


class RetriesExhausted(RuntimeError):
    """A retryable error persisted past max_retries."""




def estimate_tokens(text: str) -> int:
    # ~4 characters per token for English under BPE tokenizers; only used for limits and estimates.
    return max(1, len(text) // 4)


def with_seed(sampling: dict, key: str, own: dict) -> dict:
    """`sampling` plus a seed taken from the request key, unless the generator's own sampling (`own`)
    names one (`seed: null` there sends none, for an endpoint that refuses the field).

    Servers that honour it (transformers serve, vLLM, llama.cpp; OpenAI on a best-effort basis) then
    sample the same answer for the same request (vLLM on a CPU: in float32; its bfloat16 answers also
    depend on the rest of the batch), so a fresh run writes the same datasets. Retries of one prompt
    differ by sample index, so by key, so by seed. The seed is not part of the key: it follows from it.
    Anthropic's API has no seed; its client leaves it out."""
    return sampling if "seed" in sampling or "seed" in own else {**sampling, "seed": int(key[:8], 16)}


class EndpointAnswerer(Answerer):
    def __init__(self, params: Params, name: str, *, endpoints: dict[str, Endpoint] | None = None,
                 max_cost_usd: float | None = None, warmup: Decoding | None = None, store: RequestStore | None = None):
        """`endpoints`: servers `agora run` already started, by servers.server_key;
        `max_cost_usd`: the spending cap (default: spending_cap(params), the run's);
        `warmup`: the decoding of the run, sent with a local server's start-up request (see servers.py
        on continuous batching)."""
        cfg = params.generator(name)
        cfg.api_key(name)  # a missing key fails now, in one line, not mid-run
        identity = {"backend": cfg.backend, "model": cfg.model}
        if cfg.backend in ("openai", "anthropic") and cfg.base_url:
            identity["base_url"] = cfg.base_url
        # A local model answers differently under llama.cpp, transformers or vLLM, and with other
        # weights: the engine is part of what identifies an answer (decided from the config and this
        # host, before any server starts). A local server's URL changes every run, so it is left out.
        if cfg.backend == "local" and not cfg.base_url:
            from agorabench.models.cpu_weights import effective
            from agorabench.models.servers import local_engine

            identity["engine"] = local_engine(cfg.engine, cfg.model)
            weights = effective(cfg.cpu_weights) if identity["engine"] in ("transformers", "vllm") else None
            if weights is not None:
                identity["cpu_weights"] = weights
        super().__init__(store or RequestStore(params.cache.requests_db), identity)
        self.name, self.cfg = name, cfg
        # A server `agora run` started for this model, engine and weights (a local generator's only).
        self.endpoint = None
        if "engine" in identity:
            from agorabench.models.servers import server_key

            self.endpoint = (endpoints or {}).get(server_key(identity["engine"], cfg.model, cfg.cpu_weights))
        self.max_cost_usd = max_cost_usd if max_cost_usd is not None else spending_cap(params)
        self.warmup = warmup
        self.api = None
        self._api_lock: asyncio.Lock | None = None
        self._slots: asyncio.Semaphore | None = None
        self._rpm = TokenBucket(cfg.requests_per_minute) if cfg.requests_per_minute else None
        self._tpm = TokenBucket(cfg.tokens_per_minute) if cfg.tokens_per_minute else None
        self._server = contextlib.ExitStack()  # a local server this answerer started
        self._loop: asyncio.AbstractEventLoop | None = None  # for answer_many, started on first use
        self._thread: threading.Thread | None = None

    # -- the request key -------------------------------------------------------------------------
    @property
    def gives_logprobs(self) -> bool:
        """Whether a judge may ask this endpoint for token log-probabilities: OpenAI's API and any
        OpenAI-compatible server named by base_url (vLLM's among them), and a local model vLLM serves.
        Not Anthropic's API, which has none, nor `transformers serve` (5.23 refuses the fields) and not
        llama.cpp's server (untested here): those judges are read from their text. A server behind a
        base_url that refuses the fields is told so with `sampling: {logprobs: null, top_logprobs: null}`."""
        if self.cfg.backend == "openai" or (self.cfg.backend == "local" and self.cfg.base_url):
            return True
        return self.identity.get("engine") == "vllm"

    def sampling(self, decoding: Decoding) -> dict:
        return chat_sampling(decoding, self.cfg.sampling)

    # -- request by request (generation) ---------------------------------------------------------
    def prepare(self, messages: list[dict], decoding: Decoding, sample_index: int) -> tuple[str, str]:
        """(request JSON, key) of one call: what the store is asked and written with."""
        return self.request(messages, decoding, sample_index)

    def lookup(self, keys: list[str]) -> dict[str, Completion]:
        return self.store.get_many(keys)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.cfg.price_in_per_mtok + output_tokens * self.cfg.price_out_per_mtok) / 1e6

    def _reserve(self, messages: list[dict], sampling: dict) -> float:
        """Book the worst case (full max_tokens) against the cap before sending: the spend recorded in
        the store (by every process of the run, and every run before) plus what this answerer has in
        flight. The booking is released only once the answer is stored, so nothing is counted nowhere.
        A parallel stage's requests in flight are not seen: each may overshoot by its own in-flight worst."""
        prompt_tokens = sum(estimate_tokens(m["content"]) for m in messages)
        worst = self.cost(prompt_tokens, int(sampling.get("max_tokens") or 0))
        if self.max_cost_usd is not None and worst > 0:  # a free (local) request never stops on the cap
            spent = self.store.spent_usd()
            if spent + self.stats.reserved_usd + worst > self.max_cost_usd:
                raise BudgetExceeded(
                    f"spending cap {self.max_cost_usd:.4f} USD (--max-cost / budget_usd) reached: "
                    f"{spent:.4f} spent (request store), {self.stats.reserved_usd:.4f} in flight, "
                    f"the next {self.name} request could cost up to {worst:.4f}"
                )
        self.stats.reserved_usd += worst
        return worst

    def _concurrency(self) -> int:
        """Requests in flight. A `transformers serve` without continuous batching answers one at a time
        whatever it is sent, and each request's seed resets its global RNG, which would change an answer
        still being sampled: it gets one at a time (an `engine: auto` that found no vLLM lands here)."""
        if self.identity.get("engine") == "transformers" and "--continuous-batching" not in self.cfg.server_args:
            return 1
        return self.cfg.concurrency

    async def complete(self, messages: list[dict], decoding: Decoding, prepared: tuple[str, str],
                       cached: Completion | None) -> tuple[str, Completion]:
        """The answer to one call: `cached` if the store had it (one batch-wide `prepare` + `lookup`
        asks for all of them at once), else from the API, stored before it is returned."""
        request, key = prepared
        if cached is not None:
            self.stats.cached += 1
            return key, cached
        if self._slots is None:  # made in the loop that uses them
            self._slots, self._api_lock = asyncio.Semaphore(self._concurrency()), asyncio.Lock()
        sampling = self.sampling(decoding)
        reserved = self._reserve(messages, sampling)
        try:
            async with self._slots:
                if self._rpm:
                    await self._rpm.acquire(1)
                if self._tpm:
                    await self._tpm.acquire(sum(estimate_tokens(m["content"]) for m in messages)
                                            + int(sampling.get("max_tokens") or 0))
                text, finish, n_in, n_out, logprobs, latency = await self._call_with_retries(
                    key, messages, with_seed(sampling, key, self.cfg.sampling))
            done = Completion(text=text, finish_reason=finish, input_tokens=n_in, output_tokens=n_out,
                              latency_s=latency, cost_usd=self.cost(n_in, n_out),
                              logprobs=logprobs if sampling.get("logprobs") else None)
            # The cost is booked before the write yields to the event loop; an answer the store failed
            # to keep is not counted.
            self.stats.spent_usd += done.cost_usd
            try:
                await self.store.put_async(key, self.identity["backend"], self.identity["model"], request, done)
            except BaseException:
                self.stats.spent_usd -= done.cost_usd
                raise
        finally:  # released once the answer is in the store, where the cap's check counts it
            self.stats.reserved_usd -= reserved
        self.stats.completed += 1
        return key, done

    async def _call_with_retries(self, key: str, messages: list[dict], sampling: dict):
        api = self.api or await self._start_api()
        attempt = 0
        while True:
            self.stats.sent += 1
            started = time.perf_counter()
            try:
                text, finish, n_in, n_out, logprobs = await api.chat(messages, sampling)
                return text, finish, n_in, n_out, logprobs, time.perf_counter() - started
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # classified below: retry transient errors, fail fast otherwise
                kind = str(retry.status_of(exc) or type(exc).__name__)
                self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
                retryable = retry.is_retryable(exc)
                self.store.record_failure(key, self.identity["backend"], self.identity["model"],
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
                wait = retry.backoff_s(attempt, self.cfg.retry_backoff_s, self.cfg.retry_backoff_max_s)
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

    def _open_api(self):
        """The chat API, on first need (a run the store answers completely starts no local server)."""
        endpoint = self.endpoint
        cfg = self.cfg
        if endpoint is None and cfg.backend == "local" and not cfg.base_url:
            from agorabench.models.servers import LocalModelServer

            # With continuous batching, `transformers serve` keeps the sampling settings of its first
            # request for all later ones, so the warm-up request carries the run's settings.
            warmup = {}
            if self.warmup is not None:
                warmup = {k: v for k, v in self.sampling(self.warmup).items() if k in ("temperature", "top_p")}
            server = self._server.enter_context(LocalModelServer(
                cfg.model, engine=cfg.engine, log_path=Path(".agora/logs") / f"server-{self.name}.log",
                extra_args=list(cfg.server_args), warmup_params=warmup, cpu_weights=cfg.cpu_weights))
            endpoint = Endpoint(server.base_url, server.model_id)
        if endpoint is not None:
            return make_chat_api(self.name, cfg, base_url=endpoint.base_url, model=endpoint.model_id)
        return make_chat_api(self.name, cfg)

    async def aclose(self) -> None:
        if self.api is not None:
            await self.api.close()
            self.api = None

    # -- many at once, from synchronous code (evaluation, judges) --------------------------------
    def _run(self, coro):
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name=f"endpoint-{self.name}", daemon=True)
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def answer_many(self, conversations, decoding: Decoding, sample_index: int = 0,
                    on_done: OnDone | None = None) -> list[Completion | None]:
        """One answer per conversation; None where the endpoint kept failing (kept, not dropped)."""
        async def one(messages):
            prepared = self.prepare(messages, decoding, sample_index)
            try:
                _, done = await self.complete(messages, decoding, prepared, self.lookup([prepared[1]]).get(prepared[1]))
            except Exception as exc:  # noqa: BLE001  (a refused or failing request is a None answer)
                if isinstance(exc, BudgetExceeded) or isinstance(exc, retry.FatalAPIError) and "401" in str(exc):
                    raise
                done = None
            if on_done:
                on_done(1)
            return done

        async def all_of_them():
            # Every request let through runs to its end (and into the store) before the cap stops the caller.
            results = await asyncio.gather(*(one(m) for m in conversations), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise next((e for e in errors if isinstance(e, BudgetExceeded)), errors[0])
            return results

        return self._run(all_of_them())

    def close(self) -> None:
        try:
            if self._loop is not None:
                self._run(self.aclose())
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)
        finally:
            self._server.close()
            self.store.close()


def endpoints_from(raw: dict | str | None) -> dict[str, Endpoint]:
    """The servers `agora run` started, from its JSON ({name: {"base_url", "model_id"}}; SERVERS_ENV)."""
    if not raw:
        return {}
    data = json.loads(raw) if isinstance(raw, str) else raw
    return {name: Endpoint(v["base_url"], v["model_id"]) for name, v in data.items()}
