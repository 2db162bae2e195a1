"""The files of an evaluation, as typed records: what `agora evaluate` writes and the results
collector reads.

    data/eval/MODEL/BENCHMARK.scores.json  BenchmarkScores: the metrics, data version, decoding, judge
    data/eval/MODEL/BENCHMARK.parquet      every item (ITEM_COLUMNS): prompt, output, verdict, tokens
    data/scores/MODEL.json                 every benchmark's score of one model (a DVC metrics file)

MODEL is a model key: base, reference, students/G/M/D (Setting.eval_key), generators/NAME or models/NAME.
"""
from __future__ import annotations

from typing import Any

from agorabench.records import Record

# The items Parquet's columns, in order (evaluation/run.py writes them, results/collect.py reads them).
ITEM_COLUMNS = ("model", "benchmark", "item_id", "sample_index", "prompt", "output", "extracted", "verdict", "correct",
                "input_tokens", "output_tokens", "latency_s", "details")


class BenchmarkScores(Record):
    benchmark: str
    domain: str
    model: str                  # the model key
    kind: str                   # base | reference | student | generator | model
    spec: str                   # what was loaded or called
    primary: str                # the metric PGR uses
    score: float | int | None   # None: no usable verdict (judged benchmarks), see metrics.no_score
    metrics: dict[str, Any]
    n_items: int                # items evaluated (after evaluation.limit and max_prompt_tokens)
    samples: int
    fewshot: int
    seed_source: str            # seeds.source: offline seeds are test items, left out of the evaluation set
    test_items: int             # the benchmark's test set (the version data_version names)
    seed_items_left_out: int    # of those, the items seeds are made of (0 with seeds.source: hub)
    data_version: str           # the data's package or Hub file, version and sha256
    items_sha256: str           # sha256 of the evaluated item ids
    decoding: dict[str, Any]
    judge: str | None
    judge_reasoning: bool | None
    judge_max_answer_chars: int | None
    # How the judge's verdicts were read: "logprobs" (its top log-probabilities at the verdict tag, the
    # text where a reply had none usable) or "text"; None: no judge. judge_fallbacks: with "logprobs",
    # the judgements read from the text instead (Arena-Hard: games, AlpacaEval: items).
    judge_verdicts: str | None = None
    judge_fallbacks: int | None = None
    # What the judge's verdicts cost: requests, input_tokens, output_tokens, cost_usd, latency_s, answers
    # from the request store at what they cost when asked (models/answering.py judge_usage). None: no judge.
    judge_usage: dict[str, Any] | None = None
    isolation: str | None       # the sandbox's isolation level (code benchmarks)
    no_answer: int              # items whose answer the endpoint never gave
    untrained_reason: str | None  # a student whose dataset was empty is the base model
