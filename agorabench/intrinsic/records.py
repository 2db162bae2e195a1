"""The files of a dataset's intrinsic metrics, as typed records: what `agora intrinsic` writes and
the results collector reads.

    data/intrinsic/G/M/D.summary.json  IntrinsicSummary: the dataset's means, failures, models, config
    data/intrinsic/G/M/D.parquet       per instance: id, and one column per metric (INSTANCE_COLUMNS) plus
                                       the judge's verdicts, raw replies and score sources (KIND_source:
                                       logprobs / text) and the diversity distances; each further judge's
                                       columns carry its name: difficulty@NAME, quality_verdict@NAME, ...

The first of intrinsic.judges fills difficulty and quality (and judge_verdicts, judge_fallbacks);
`judges` holds every judge's, in the order of intrinsic.judges.
"""
from __future__ import annotations

from typing import Any

from agorabench.records import Record

# Per-instance metric columns of the Parquet file (a metric that did not run has no column).
INSTANCE_COLUMNS = ("difficulty", "quality", "reward", "perplexity")


def judge_column(column: str, judge: str, position: int) -> str:
    """The Parquet column of a judge's per-instance values: the first judge's keep the plain name."""
    return column if position == 0 else f"{column}@{judge}"


class JudgeSummary(Record):
    judge: str                      # generator name (intrinsic.judges)
    model: str                      # the model it sent requests to
    difficulty: float | None        # 1-5, mean over the instances it could read (None: not run)
    quality: float | None
    failures: dict[str, dict[str, int]]   # per metric: judge_error / parse_error counts
    verdicts: str                   # "logprobs" or "text", as judge_verdicts
    fallbacks: dict[str, int] | None = None  # as judge_fallbacks
    # What its verdicts cost: requests, input_tokens, output_tokens, cost_usd, latency_s (models/answering.py
    # judge_usage; a field is None where unknown). None: a summary written before it was recorded.
    usage: dict[str, Any] | None = None


class IntrinsicSummary(Record):
    generator: str
    method: str
    domain: str
    n: int                          # instances
    metrics: list[str]              # what ran
    dataset_sha256: str
    failures: dict[str, Any]        # per metric: counts of verdicts that could not be read, truncations
    models: dict[str, str]          # per metric: the model that computed it
    difficulty: float | None        # judge, 1-5, mean over the instances it could read
    quality: float | None
    reward: float | None
    perplexity: float | None        # mean of per-instance perplexities
    perplexity_token_level: float | None  # exp(total NLL / total response tokens)
    instruction_diversity: float | None
    response_diversity: float | None
    # How the judge's scores were read: "logprobs" (probability-weighted digits) or "text"; None: no judge.
    # judge_fallbacks: with "logprobs", per judge metric the scores read from the text instead.
    judge_verdicts: str | None = None
    judge_fallbacks: dict[str, int] | None = None
    # Every judge's means, in the order of intrinsic.judges (None: written before there were several).
    judges: list[JudgeSummary] | None = None
    # Seconds each model metric (reward, perplexity, diversity) took to compute, each result at what it took
    # when computed (the cache keeps it), so a re-run from the cache writes the same; a value is None where
    # a cached result did not say. The judges' time is in judges[].usage. None: written before it was kept.
    seconds: dict[str, float | None] | None = None
    config: dict[str, Any]          # the intrinsic section it ran with
