"""What a whole run would do, computed from params alone: `agora run --dry-run`.

Nothing is called: no model, no endpoint, no DVC. The numbers are the pipeline's fan-out (the same
matrices dvc.yaml expands), the generation estimate of estimate.py per setting, the evaluation
and judge workload that follows from the evaluation section, and the price of every paid call
(costs.py), per stage and in total, against the spending cap.
"""
from __future__ import annotations

from dataclasses import asdict

from agorabench.config import DOMAINS, Params, benchmark_domains
from agorabench.evaluation.benchmarks import judged as needs_judge
from agorabench.generation.estimate import estimate_setting
from agorabench.models.endpoint import spending_cap
from agorabench.pipeline.costs import paid_calls, stage_totals


def _items(params: Params, benchmark: str) -> str:
    ev = params.evaluation
    limit = ev.limits.get(benchmark, ev.limit)
    return "all" if limit is None else str(limit)


def bill(params: Params, generation: list[dict], datasets: int, max_cost: float | None = None) -> dict:
    """Every paid call priced, per stage and in total; `generation`: the per-setting estimates (as dicts),
    `datasets`: how many the intrinsic judge reads. The cap is max_cost, else the run's (spending_cap)."""
    instances = sum(r["num"] for r in generation)
    per_instance = sum(r["output_tokens"] for r in generation) / instances if instances else 0.0
    lines, notes = paid_calls(params, per_instance, datasets)
    gen_lines = [{"what": f"{r['generator']} {r['method']} {r['domain']}", "model": r["generator"],
                  "requests": r["requests"], "input_tokens": r["input_tokens"], "output_tokens": r["output_tokens"],
                  "cost_usd": r["cost_usd"], "worst_cost_usd": r["worst_cost_usd"]} for r in generation]
    stages = {"generation": gen_lines, **lines}
    per_stage = {name: {**stage_totals(rows), "lines": rows} for name, rows in stages.items()}
    total = stage_totals([row for rows in stages.values() for row in rows])
    return {"stages": per_stage, "total": total, "cap_usd": max_cost if max_cost is not None else spending_cap(params),
            "notes": notes}


def plan(params: Params, max_cost: float | None = None) -> dict:
    """The run's stages, requests, tokens and cost, as a JSON-safe dict."""
    gens = params.benchmark_generators or list(params.generators)
    settings = [(m, d) for m in params.methods for d in params.domains]
    ev = params.evaluation
    all_benchmarks = [b for names in ev.benchmarks.values() for b in names] + list(ev.extra)

    # The scaling study: one larger dataset per scaled setting (its first requests are the main
    # dataset's, answered by the store, so this over-counts them), then a student per prefix size.
    sc = params.scaling
    scaled = [(g, m, d) for g in sc.generators for m in sc.methods for d in params.domains]
    jobs = [(g, d, m, None) for g in gens for m, d in settings] + [(g, d, m, max(sc.sizes)) for g, m, d in scaled]
    notes = []
    try:
        generation = [asdict(estimate_setting(params, g, d, m, num=n)) for g, d, m, n in jobs]
    except OSError:  # the tokenizer lives on the Hub and we are offline: count ~4 characters a token
        notes.append(f"token counts approximated (characters / 4): tokenizer {params.generation.tokenizer!r} "
                     f"is not available offline")
        approx = params.model_copy(update={"generation": params.generation.model_copy(update={"tokenizer": "approx"})})
        generation = [asdict(estimate_setting(approx, g, d, m, num=n)) for g, d, m, n in jobs]
    scale_students = len(scaled) * len(sc.sizes)
    notes += sorted({r["basis"] for r in generation})
    students = len(gens) * len(settings)
    # A student is evaluated on its own domain's benchmarks, the anchors and generators on all.
    per_domain = {d: list(ev.benchmarks.get(d, [])) + [b for b in ev.extra if benchmark_domains()[b] == d]
                  for d in DOMAINS}
    # Imports (`agora import`): one setting each, read from a file, so no generation requests.
    imported = list(params.imports.values())
    student_evals = (sum(len(per_domain[d]) for _, d in settings) * len(gens)
                     + sum(len(per_domain[d]) for _, _, d in scaled) * len(sc.sizes)
                     + sum(len(per_domain[i.domain]) for i in imported))
    anchor_evals = 2 * len(all_benchmarks)
    generator_evals = len(ev.generators) * len(all_benchmarks)
    judged = [b for b in all_benchmarks if needs_judge(b)]
    stages = {
        "generate": students, "decontaminate": students, "train": students, "evaluate-student": students,
        "evaluate-anchor": 2, "evaluate-generator": len(ev.generators), "intrinsic": students,
        "scale-generate": len(scaled), "scale-subset": scale_students, "scale-decontaminate": scale_students,
        "scale-train": scale_students, "scale-evaluate": scale_students, "import": len(imported),
        "import-train": len(imported), "import-evaluate": len(imported), "import-intrinsic": len(imported),
        "results": 1, "report": 1,
    }
    stages = {k: v for k, v in stages.items() if v or not k.startswith(("scale-", "import"))}
    return {
        "generators": {g: {"backend": params.generators[g].backend, "model": params.generators[g].model}
                       for g in gens},
        "stages": stages,
        "stages_total": sum(stages.values()),
        "generation": {
            "settings": len(generation),
            "instances": sum(r["num"] for r in generation),
            "input_tokens": sum(r["input_tokens"] for r in generation),
            "output_tokens": sum(r["output_tokens"] for r in generation),
            "cost_usd": round(sum(r["cost_usd"] for r in generation), 4),
            "worst_cost_usd": round(sum(r["worst_cost_usd"] for r in generation), 4),
            "per_setting": generation,
        },
        "training": {
            "students": students + scale_students + len(imported), "base": params.student.base, "epochs": params.training.num_epochs,
            "learning_rate": params.training.learning_rate, "lora": params.training.lora is not None,
            "accelerate_config": params.training.accelerate_config,
        },
        "evaluation": {
            "reference": params.student.reference,
            "benchmark_runs": student_evals + anchor_evals + generator_evals,
            "items_per_benchmark": {b: _items(params, b) for b in all_benchmarks},
            "judge": ev.judge if judged else None,
            "judged_benchmarks": judged,
            "code_execution": ev.allow_code_execution,
        },
        "intrinsic": {"datasets": students + len(imported), "judges": list(params.intrinsic.judges)},
        "scaling": {"generators": list(sc.generators), "methods": list(sc.methods), "sizes": list(sc.sizes),
                    "students": scale_students},
        "costs": bill(params, generation, students + len(imported), max_cost),
        "notes": notes,
    }


def format_plan(p: dict) -> str:
    g, t, e = p["generation"], p["training"], p["evaluation"]
    lines = [
        "Plan (nothing was called):",
        "  generators: " + ", ".join(f"{n} ({v['backend']}: {v['model']})" for n, v in p["generators"].items()),
        f"  DVC stages: {p['stages_total']} (" + ", ".join(f"{k} {v}" for k, v in p["stages"].items()) + ")",
        f"  generation: {g['settings']} settings, {g['instances']:,} instances, ~{g['input_tokens']:,} input and "
        f"~{g['output_tokens']:,} output tokens, ~${g['cost_usd']:,.2f} (worst case ${g['worst_cost_usd']:,.2f})",
        f"  training: {t['students']} students from {t['base']}, {t['epochs']} epochs, lr {t['learning_rate']:g}"
        + (", LoRA" if t["lora"] else ", full fine-tuning")
        + (f", accelerate config {t['accelerate_config']}" if t["accelerate_config"] else ""),
        f"  evaluation: {e['benchmark_runs']} benchmark runs (students on their domain's, base, reference "
        f"{e['reference']} and the generators on all); items: "
        + ", ".join(f"{b} {n}" for b, n in e["items_per_benchmark"].items()),
        f"  judge: {e['judge'] or 'none'}" + (f" ({', '.join(e['judged_benchmarks'])})" if e["judge"] else "")
        + f"; generated code runs: {'yes, in the sandbox' if e['code_execution'] else 'no (opt in to score MBPP/HumanEval)'}",
        f"  intrinsic metrics: {p['intrinsic']['datasets']} datasets, judges {', '.join(p['intrinsic']['judges']) or 'none'}",
        (f"  scaling study: {', '.join(p['scaling']['generators'])} x {', '.join(p['scaling']['methods'])}, "
         f"prefixes of {', '.join(f'{n:,}' for n in p['scaling']['sizes'])}: {p['scaling']['students']} more students"
         if p["scaling"]["students"] else "  scaling study: off (scaling.generators is empty)"),
        *format_bill(p["costs"], indent="  "),
        *(f"  note: {n}" for n in p["notes"]),
    ]
    return "\n".join(lines)


def format_bill(b: dict, indent: str = "") -> list[str]:
    """The cost lines: one per stage, the total, and the cap."""
    out = [f"{indent}cost per stage:"]
    for name, s in b["stages"].items():
        out.append(f"{indent}  {name}: {s['requests']:,} requests, ~{s['input_tokens']:,} input and "
                   f"~{s['output_tokens']:,} output tokens, ~${s['cost_usd']:,.2f} (worst case ${s['worst_cost_usd']:,.2f})")
    t = b["total"]
    out.append(f"{indent}  total: {t['requests']:,} requests, ~${t['cost_usd']:,.2f} (worst case ${t['worst_cost_usd']:,.2f})"
               + (f"; spending cap ${b['cap_usd']:,.2f}" if b["cap_usd"] is not None else "; no spending cap"))
    out += [f"{indent}  note: {n}" for n in b["notes"]]
    return out
