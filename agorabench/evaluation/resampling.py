"""A benchmark's primary score on bootstrap replicates of its items.

A replicate is a multiset of the items: counts[r, i] says how often item i was drawn into replicate r
(the results collector draws them, the same for every model, so that the bootstrap is paired). Its
score is what the benchmark's own summarize() gives on the rows of those draws, a drawn-twice item
counting as two items. Calling summarize once per replicate is exact but slow (1000 replicates x a
hundred models x thousands of items), so a benchmark's task module may define

    bootstrap_scores(items: list[list[dict]], counts: np.ndarray) -> np.ndarray   # (R,) scores

which computes the same numbers for all replicates at once; items[i] are the rows summarize() sees for
item i (one per sample). A metric other than PRIMARY that `evaluation.primary_metric` may name gets its
own, `bootstrap_<metric>` (the default's AlpacaEval win_rate: summarize() fits the length-controlled GLM,
cross-validated, a thousand times per model only to report the plain win rate beside it).
tests/test_intervals.py checks every such function against summarize() on resampled rows. A metric
without one falls back to summarize() per replicate.
"""
from __future__ import annotations

import importlib
import math

import numpy as np

from agorabench.evaluation.benchmarks import declaration
from agorabench.evaluation.pairwise import NoVerdict


def task_module(benchmark: str):
    """The benchmark's task module (summarize, bootstrap_scores); an unknown name is a one-line error."""
    declaration(benchmark)
    return importlib.import_module(f"agorabench.evaluation.benchmarks.{benchmark}.task")


def replicate_scores(module, items: list[list[dict]], counts: np.ndarray, metric: str | None = None) -> np.ndarray:
    """(R,) primary scores of `module` (a benchmark's task module) on the replicates `counts` (R, len(items));
    NaN where a replicate has no score (nothing drawn, or no usable verdict among the drawn items).
    metric: another of summarize()'s metrics (evaluation.primary_metric): its bootstrap_<metric>, else
    summarize() per replicate."""
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] != len(items):
        raise ValueError(f"replicate counts of shape {counts.shape} do not match {len(items)} items")
    metric = metric or module.PRIMARY
    fast = getattr(module, "bootstrap_scores" if metric == module.PRIMARY else f"bootstrap_{metric}", None)
    if fast is not None:
        return np.asarray(fast(items, counts), dtype=float)
    return np.array([summarize_score(module, resampled_rows(items, row), metric) for row in counts], dtype=float)


def summarize_score(module, rows: list[dict], metric: str | None = None) -> float:
    """The benchmark's own summarize() on `rows`, one metric only (default: its primary; NaN: no score)."""
    if not rows:
        return math.nan
    try:
        value = module.summarize(rows)[metric or module.PRIMARY]
    except NoVerdict:
        return math.nan
    return math.nan if value is None else float(value)


def resampled_rows(items: list[list[dict]], counts_row: np.ndarray) -> list[dict]:
    """The rows of one replicate: item i's rows counts_row[i] times, each copy a distinct item (its
    item_id gets a #copy suffix, so that summaries grouping rows by item keep the copies apart)."""
    out = []
    for rows, k in zip(items, counts_row):
        for copy in range(int(k)):
            out += [{**r, **{f: f"{r[f]}#{copy}" for f in ("item_id", "id") if f in r}} for r in rows]
    return out


def mean_per_replicate(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """sum_i counts[r, i] * values[i] / sum_i counts[r, i]: the mean over each replicate's draws (NaN
    when nothing was drawn). Elementwise products summed along the row, not a matrix product: numpy's
    summation order does not depend on the BLAS library or its threads, so the bytes are the same
    everywhere."""
    counts = np.asarray(counts, dtype=float)
    drawn = counts.sum(axis=1)
    total = (counts * np.asarray(values, dtype=float)[None, :]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(drawn > 0, total / np.where(drawn > 0, drawn, 1.0), np.nan)


def mean_correct(items: list[list[dict]], counts: np.ndarray) -> np.ndarray:
    """100 x the mean of `correct` over the drawn items: the primary score of GSM8K, MATH and IFEval."""
    return 100.0 * mean_per_replicate(np.array([float(rows[0]["correct"]) for rows in items]), counts)
