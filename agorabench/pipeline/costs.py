"""What the paid calls after generation cost, before any is sent: the intrinsic judges, the AlpacaEval and
Arena-Hard judges, and the generators' own benchmark runs (`agora estimate`, `agora run --dry-run`).

Priced as generation.estimate prices generation: prompts built from the real templates and items, ~4
characters a token (models.endpoint.estimate_tokens), prices from the generator entries in params. A
reply is assumed a quarter of its max_tokens, next to the worst case where every reply is max_tokens. A
judge reads answers that do not exist yet; each is assumed as long as the reply it stands for (a
generated instance: the generation estimate's output tokens; a model's answer: a quarter of its
benchmark's max_new_tokens), cut to judge_max_answer_chars where that is set.
"""
from __future__ import annotations

from pathlib import Path

from agorabench.config import DOMAINS, Params, ParamsError, benchmark_domains
from agorabench.evaluation.benchmarks import judged as needs_judge
from agorabench.evaluation.run import select_items
from agorabench.intrinsic.judge import judge_messages as intrinsic_messages
from agorabench.models.endpoint import estimate_tokens

# Judge calls per item and evaluated model (Arena-Hard plays each game twice, the answers swapped).
JUDGE_CALLS = {"alpacaeval": 1, "arenahard": 2}
ASSUMED = "assumed: replies of max_tokens/4 (worst case: max_tokens)"


def priced(params: Params, who: str, calls: int, input_tokens: float, output_tokens: float,
           max_tokens: int) -> dict:
    """One line of the bill: `calls` requests to generator `who`, with per-call token counts."""
    cfg = params.generator(who)
    cost = calls * (input_tokens * cfg.price_in_per_mtok + output_tokens * cfg.price_out_per_mtok) / 1e6
    worst = calls * (input_tokens * cfg.price_in_per_mtok + max_tokens * cfg.price_out_per_mtok) / 1e6
    return {"model": who, "requests": calls, "input_tokens": int(calls * input_tokens),
            "output_tokens": int(calls * output_tokens), "cost_usd": cost, "worst_cost_usd": worst}


def _items(params: Params, benchmark: str, notes: list[str]) -> list:
    try:
        return select_items(params, benchmark)
    except (ParamsError, OSError, ConnectionError) as e:  # a set on the Hub, offline: not priced
        notes.append(f"{benchmark}: items not available here, its calls are not priced ({str(e)[:80]})")
        return []


def _mean_tokens(texts) -> float:
    texts = [t for t in texts if isinstance(t, str)]
    return sum(estimate_tokens(t) for t in texts) / len(texts) if texts else 0.0


def _judge_template_tokens(params: Params, benchmark: str) -> int:
    """The judge prompt of one item, less the question and the two answers."""
    if benchmark == "arenahard":
        from agorabench.evaluation.benchmarks.arenahard.task import judge_messages

        return sum(estimate_tokens(m["content"]) for m in
                   judge_messages("", "", "", reasoning=params.evaluation.judge_reasoning))
    folder = Path(__file__).resolve().parents[1] / "evaluation" / "benchmarks" / benchmark
    return sum(estimate_tokens(p.read_text()) for p in sorted(folder.glob("judge_*.txt")))


def evaluated_models(params: Params) -> dict[str, int]:
    """How many models are scored on each benchmark: the students on their domain's, the base, the
    reference and evaluation.generators on all (the fan-out of dry_run.plan)."""
    ev = params.evaluation
    gens = params.benchmark_generators or list(params.generators)
    sc = params.scaling
    per_domain = {d: 0 for d in DOMAINS}
    for d in params.domains:
        per_domain[d] += len(gens) * len(params.methods) + len(sc.generators) * len(sc.methods) * len(sc.sizes)
    for imp in params.imports.values():
        per_domain[imp.domain] += 1
    everyone = 2 + len(ev.generators)
    names = [b for bs in ev.benchmarks.values() for b in bs] + list(ev.extra)
    return {b: per_domain[benchmark_domains()[b]] + everyone for b in names}


def paid_calls(params: Params, generation_output_tokens: float, datasets: int) -> tuple[dict, list[str]]:
    """{stage: [priced lines]} for the calls after generation, and notes on what was assumed.
    `generation_output_tokens`: a generated instance's tokens (the generation estimate's); `datasets`:
    how many datasets the intrinsic judge reads (each of generation.num_instances instances)."""
    ev, notes = params.evaluation, [ASSUMED]
    stages: dict[str, list[dict]] = {"intrinsic judge": [], "benchmark judge": [], "generator benchmarks": []}
    cut = (ev.judge_max_answer_chars or 0) // 4 or None  # the answers' cut, in tokens

    def answer(tokens: float) -> float:
        return min(tokens, cut) if cut else tokens

    # Intrinsic: each judge reads each instance twice (difficulty: the instruction; quality: both).
    in_ = params.intrinsic
    judges = in_.judges
    kinds = [k for k in ("difficulty", "quality") if k in in_.enabled(have_judge=bool(judges))]
    instances = datasets * params.generation.num_instances
    for judge in judges:
        for kind in kinds:
            template = sum(estimate_tokens(m["content"]) for m in intrinsic_messages(kind, "general", "", ""))
            # An instance's tokens are about half instruction, half response.
            read = generation_output_tokens / 2 if kind == "difficulty" else generation_output_tokens
            stages["intrinsic judge"].append({"what": kind, **priced(
                params, judge, instances, template + read, in_.judge_max_tokens / 4, in_.judge_max_tokens)})

    # Benchmarks: the judge per item and evaluated model; the generators answer every item themselves.
    models = evaluated_models(params)
    for benchmark, n_models in models.items():
        items = _items(params, benchmark, notes)
        if not items:
            continue
        domain = benchmark_domains()[benchmark]
        max_new = ev.decoding.new_tokens(domain)
        question = _mean_tokens(it.prompt for it in items)
        if needs_judge(benchmark) and ev.judge:
            baseline = _mean_tokens(it.reference for it in items) or max_new / 4
            prompt = _judge_template_tokens(params, benchmark) + question + answer(baseline) + answer(max_new / 4)
            stages["benchmark judge"].append({"what": benchmark, **priced(
                params, ev.judge, JUDGE_CALLS.get(benchmark, 1) * len(items) * n_models, prompt,
                ev.judge_max_tokens / 4, ev.judge_max_tokens)})
        for g in ev.generators:
            stages["generator benchmarks"].append({"what": f"{g} on {benchmark}", **priced(
                params, g, len(items), question, max_new / 4, max_new)})
    return stages, notes


def stage_totals(lines: list[dict]) -> dict:
    return {k: (round(sum(r[k] for r in lines), 4) if k.endswith("usd") else sum(r[k] for r in lines))
            for k in ("requests", "input_tokens", "output_tokens", "cost_usd", "worst_cost_usd")}
