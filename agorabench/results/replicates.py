"""Paired bootstrap replicates of every benchmark score: the rows of the score_replicates table.

Replicate r of a benchmark draws n items with replacement from its n items (the sorted ids of every
item any model was evaluated on), with a generator seeded by (analysis.bootstrap_seed, benchmark).
Every model gets the same draws, so the student, the base, the reference and the generators are
resampled together (a paired bootstrap): what they share, the items' difficulty, cancels in their
differences as it does in the point PGR. A model's replicate score is its benchmark's own score on
those draws (agorabench/evaluation/resampling.py). The PGR of each replicate, and the intervals from
them, are the SQL views' (views.py): no PGR is computed here.

The same eval items, replicates and seed give the same numbers on every machine: numpy's PCG64 stream
is fixed by its seed, and the sums avoid BLAS (whose order can depend on the library and threads).
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict

import numpy as np

from agorabench.evaluation.resampling import replicate_scores, task_module


def item_counts(benchmark: str, n_items: int, replicates: int, seed: int) -> np.ndarray:
    """(replicates, n_items): how often replicate r draws item i (each row sums to n_items)."""
    # The benchmark's name goes into the seed, so benchmarks get independent draws whatever their order.
    stream = int.from_bytes(hashlib.sha256(benchmark.encode()).digest()[:8], "little")
    rng = np.random.default_rng([seed, stream])
    draws = rng.integers(0, n_items, size=(replicates, n_items))
    flat = (draws + n_items * np.arange(replicates)[:, None]).ravel()
    return np.bincount(flat, minlength=replicates * n_items).reshape(replicates, n_items)


def score_replicates(eval_items: list[dict], replicates: int, seed: int, source: str = "data/eval",
                     primary: dict[str, str] | None = None) -> list[dict]:
    """One row per (model, benchmark, replicate 1..replicates) of the eval_items rows (collect's table):
    the model's score on that replicate's items, None where it has none. source: where the items files
    are, for the error message. primary: benchmark -> the metric its scores use, where not its PRIMARY."""
    if replicates <= 0 or not eval_items:
        return []
    grouped: dict[str, dict[str, dict[str, list[dict]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    identity: dict[str, dict] = {}
    for r in eval_items:
        grouped[r["benchmark"]][r["model"]][r["item_id"]].append(r)
        identity.setdefault(r["model"], {k: r[k] for k in ("kind", "generator", "method", "student_domain")})
    out = []
    for benchmark in sorted(grouped):
        models = grouped[benchmark]
        universe = sorted({item for items in models.values() for item in items})
        position = {item: i for i, item in enumerate(universe)}
        counts = item_counts(benchmark, len(universe), replicates, seed)
        module = task_module(benchmark)
        for model in sorted(models):
            ids = sorted(models[model])
            items = [[_summary_row(r) for r in sorted(models[model][i], key=lambda r: r["sample_index"])] for i in ids]
            try:
                scores = replicate_scores(module, items, counts[:, [position[i] for i in ids]],
                                          (primary or {}).get(benchmark))
            except (KeyError, TypeError) as e:
                raise ValueError(f"{source}/{model}/{benchmark}.parquet: its rows lack what {benchmark}'s score needs "
                                 f"({type(e).__name__}: {e}); re-run `agora evaluate` for {model}") from None
            base = {"model": model, **identity[model], "benchmark": benchmark}
            out += [{**base, "replicate": k + 1, "score": float(v) if np.isfinite(v) else None}
                    for k, v in enumerate(scores.tolist())]
    return out


def _summary_row(r: dict) -> dict:
    """An eval_items row as the benchmark's score() returned it (what summarize reads): the details JSON
    with the columns the items file keeps apart."""
    row = json.loads(r["details"]) if r.get("details") else {}
    row.update(item_id=r["item_id"], sample_index=r["sample_index"], extracted=r.get("extracted"),
               verdict=r.get("verdict"), correct=r.get("correct"))
    return row
