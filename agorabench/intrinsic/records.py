"""The files of a dataset's intrinsic metrics, as typed records: what `agora intrinsic` writes and
the results collector reads.

    data/intrinsic/G/M/D.summary.json  IntrinsicSummary: the dataset's means, failures, models, config
    data/intrinsic/G/M/D.parquet       per instance: id, and one column per metric (INSTANCE_COLUMNS) plus
                                       the judge's verdicts, raw replies and score sources (KIND_source:
                                       logprobs / text) and the diversity distances
"""
from __future__ import annotations

from typing import Any

from agorabench.records import Record

# Per-instance metric columns of the Parquet file (a metric that did not run has no column).
INSTANCE_COLUMNS = ("difficulty", "quality", "reward", "perplexity")


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
    config: dict[str, Any]          # the intrinsic section it ran with
