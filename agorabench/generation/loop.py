"""Runs a SettingPlan against a generator: batches of concurrent requests, progress, outputs.

`generate_setting` is plain asyncio so tests and benchmarks can call it without Prefect; the
Prefect flow passes its own `run_batch` (a task with retries) and gets the same behaviour.
"""
from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import Awaitable, Callable

from agorabench.config import Params, ParamsError, check_setting
from agorabench.models.answering import Decoding
from agorabench.models.endpoint import BudgetExceeded, Endpoint, EndpointAnswerer
from agorabench.setting import Setting
from agorabench.generation.plan import (Attempt, Outcome, SettingPlan, load_setting_seeds,
                                   write_outputs)
from agorabench.generation.prompting import load_prompt_set
from agorabench.progress import Progress


class BatchRunner:
    """Sends one batch of attempts concurrently (the answerer bounds concurrency) and reports them."""

    def __init__(self, answerer: EndpointAnswerer, decoding: Decoding, on_done: Callable[[Outcome], None] | None = None):
        self.answerer, self.decoding, self.on_done = answerer, decoding, on_done
        self.budget_hit: str | None = None

    async def _one(self, attempt: Attempt, prepared: tuple[str, str], cached) -> Outcome:
        key, completion = await self.answerer.complete(attempt.messages, self.decoding, prepared, cached)
        outcome = Outcome(attempt, key, completion)
        if self.on_done:
            self.on_done(outcome)
        return outcome

    async def run(self, attempts: list[Attempt]) -> list[Outcome]:
        prepared = [self.answerer.prepare(a.messages, self.decoding, a.sample_index) for a in attempts]
        stored = self.answerer.lookup([key for _, key in prepared])
        results = await asyncio.gather(*(self._one(a, p, stored.get(p[1])) for a, p in zip(attempts, prepared)),
                                       return_exceptions=True)
        done = [r for r in results if isinstance(r, Outcome)]
        errors = [r for r in results if isinstance(r, BaseException)]
        budget = [e for e in errors if isinstance(e, BudgetExceeded)]
        other = [e for e in errors if not isinstance(e, BudgetExceeded)]
        if other:  # every finished answer is already in the store; a retry of the batch is cheap
            raise other[0]
        if budget:
            self.budget_hit = str(budget[0])
            # Keep only an unbroken prefix (gather keeps the attempts' order), so the dataset never
            # depends on which requests happened to fit.
            return list(itertools.takewhile(lambda r: isinstance(r, Outcome), results))
        return done


RunBatch = Callable[[BatchRunner, list[Attempt]], Awaitable[list[Outcome]]]


async def _default_run_batch(runner: BatchRunner, attempts: list[Attempt]) -> list[Outcome]:
    return await runner.run(attempts)


class GenerationProgress(Progress):
    """Valid instances out of the setting's N, with the answers behind them (progress.py)."""

    def __init__(self, label: str, total: int, enabled: bool | None = None):
        super().__init__(label, total, unit="valid", mode="bar" if enabled else enabled)
        self.sent = self.cached = 0

    def answered(self, outcome: Outcome) -> None:
        self.sent += 1
        self.cached += outcome.completion.cached
        self.update(self.done, f"answers {self.sent}, cached {self.cached}")

    def set_valid(self, valid: int) -> None:
        self.update(valid)


async def _run_plan(plan: SettingPlan, runner: BatchRunner, run_batch: RunBatch, bar: GenerationProgress) -> None:
    """Keep one batch queued behind the one in flight, so the generator never waits for us.

    Batch k+1 is built while batch k runs, from the results of batches up to k-1: the pool of
    generated demos lags one batch, and that lag is fixed, so results stay deterministic.
    """
    outstanding: list[tuple[asyncio.Task, int]] = []  # at most two: in flight, and queued
    try:
        while True:
            batch = plan.next_batch()
            if batch:
                outstanding.append((asyncio.ensure_future(run_batch(runner, batch)), len(batch)))
            if not outstanding:
                return
            if len(outstanding) == 2 or not batch:
                task, issued = outstanding.pop(0)
                plan.absorb(await task, issued)
                bar.set_valid(len(plan.accepted))
                if runner.budget_hit:
                    plan.stop_reason = runner.budget_hit
                    return
    finally:
        # A failure (or a budget stop) leaves the other batch running: let it finish or cancel it,
        # never leave it unattended. Whatever it had received is in the request store.
        for task, _ in outstanding:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def generate_setting(params: Params, generator: str, domain: str, method: str, *,
                           num: int | None = None, max_cost: float | None = None,
                           run_batch: RunBatch | None = None, progress: bool | None = None,
                           endpoints: dict[str, Endpoint] | None = None, output_dir: str | None = None) -> dict:
    """Generate, validate and write one setting. Returns the manifest (plus `run` statistics).
    `endpoints`: the servers `agora run` already started for local generators. An import (imports.NAME
    in params) is read from its source instead: no model is called."""
    check_setting(domain, method)
    if generator in params.imports:
        return _import(params, generator, domain, method, output_dir)
    cfg = params.generator(generator)
    g = params.generation
    num = num or g.num_instances
    prompts = load_prompt_set(g.prompt_dir, g.num_fewshot)
    seeds = load_setting_seeds(params, domain, method)
    run_batch = run_batch or _default_run_batch
    plan = SettingPlan(generator=generator, gen_cfg=cfg, domain=domain, method=method, prompts=prompts,
                       seeds=seeds, num=num, params=params)
    bar = GenerationProgress(f"{generator} {method} {domain}", num, progress)
    # At hundreds of answers a second the cyclic GC's full passes over every long-lived object
    # (imported modules, seeds, prompts) cost ~7% of the client's CPU: freeze what exists now and
    # collect the young generation less often while the run lasts (benchmarks/generation_throughput.py).
    gc_threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(gc_threshold[0], 20_000), *gc_threshold[1:])
    answerer = EndpointAnswerer(params, generator, endpoints=endpoints, max_cost_usd=max_cost, warmup=plan.decoding)
    try:
        runner = BatchRunner(answerer, plan.decoding, on_done=bar.answered)
        try:
            await _run_plan(plan, runner, run_batch, bar)
        finally:
            await answerer.aclose()
        if runner.budget_hit and max_cost is None:
            # The run's cap (budget_usd, `agora run --max-cost`): no short dataset that DVC would
            # record as done; the next run resumes from the request store and pays only for the rest.
            raise BudgetExceeded(f"{runner.budget_hit}; left undone: generate {generator}/{method}/{domain} "
                                 f"({min(len(plan.accepted), num)} of {num} instances so far)")
        manifest = write_outputs(plan, Setting(generator, method, domain).dataset(params, output_dir))
    finally:
        gc.set_threshold(*gc_threshold)
        gc.unfreeze()
        bar.close()
        answerer.close()  # the local server it started, if any, and the store
    s = answerer.stats
    manifest["run"] = {"requests_sent": s.sent, "answers_new": s.completed, "answers_cached": s.cached,
                       "retries": s.retried, "errors": s.errors, "new_cost_usd": round(s.spent_usd, 8)}
    return manifest


def _import(params: Params, name: str, domain: str, method: str, output_dir: str | None) -> dict:
    from agorabench.generation.importing import check_import, write_import

    check_import(params, name, method, domain)
    if output_dir is not None:
        raise ParamsError(f"imports.{name} is not in the scaling study; run `agora generate` without --scaling")
    manifest = write_import(params, name).model_dump()
    manifest["run"] = {"requests_sent": 0, "answers_new": 0, "answers_cached": 0, "retries": 0, "errors": 0,
                       "new_cost_usd": 0.0}
    return manifest
