"""The tables of the results database: their columns, types and meaning, in one place.

`collect.py` writes each table as data/results/<name>.parquet with exactly these columns in this
order (so the files are byte-identical for the same inputs), `db.py` loads them, and `docs.py`
renders this dict into docs/results-schema.md. A column added here is added everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

# Column types are short names; the two maps below turn them into Arrow and DuckDB types.
ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
               "str[]": pa.list_(pa.string()), "time": pa.timestamp("us")}
SQL_TYPES = {"str": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "str[]": "VARCHAR[]",
             "time": "TIMESTAMP"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a key of ARROW_TYPES
    doc: str


@dataclass(frozen=True)
class Table:
    doc: str
    key: tuple[str, ...]  # rows are sorted by these columns (unique together)
    columns: tuple[Column, ...]
    source: str  # which files it is read from
    deterministic: bool = True

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in self.columns])


def _cols(*specs: tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in specs)


# The three coordinates of a dataset (and of the student trained on it).
SETTING = (("generator", "str", "generator name (params.yaml `generators:` key)"),
           ("method", "str", "instance_generation | response_generation | quality_enhancement"),
           ("domain", "str", "math | code | general"))

TABLES: dict[str, Table] = {
    "generators": Table(
        doc="One row per generator that appears in any result file.",
        key=("generator",),
        source="generation manifests, data/eval/generators/*, prices from params.yaml when given",
        columns=_cols(
            ("generator", "str", "generator name"),
            ("backend", "str", "openai | anthropic | local | vllm, or import (an outside dataset; from a manifest or params)"),
            ("model", "str", "model id sent to the backend"),
            ("price_in_per_mtok", "float", "USD per million input tokens (params.yaml; NULL without params)"),
            ("price_out_per_mtok", "float", "USD per million output tokens (params.yaml; NULL without params)"),
            ("datasets", "int", "generated datasets (manifests) of this generator"),
            ("evaluated_benchmarks", "int", "benchmarks the generator itself was evaluated on (Table 7)"),
        )),
    "datasets": Table(
        doc="One row per generated dataset (a generation manifest).",
        key=("generator", "method", "domain"),
        source="data/generated/GEN/METHOD/DOMAIN.manifest.json (+ the .jsonl for data_sha256)",
        columns=_cols(
            *SETTING,
            ("backend", "str", "generator backend (import: an outside dataset, `agora import`)"),
            ("model", "str", "generator model id"),
            ("num_requested", "int", "instances asked for (generation.num_instances)"),
            ("num_valid", "int", "instances written (valid ones)"),
            ("complete", "bool", "num_valid reached num_requested"),
            ("shortfall_reason", "str", "why fewer were written (NULL when complete)"),
            ("attempts", "int", "generation requests made, rejected ones included (an import: source rows read)"),
            ("rejected", "int", "attempts whose output was rejected"),
            ("input_tokens", "int", "input tokens of all attempts"),
            ("output_tokens", "int", "output tokens of all attempts"),
            ("cost_usd", "float", "API cost of all attempts, rejected ones included (NULL: unknown, an import)"),
            ("latency_s", "float", "seconds the generator took to answer all attempts, summed (answers from the "
                                   "request store at what they took when asked; NULL: unknown, an import, a "
                                   "scaling prefix or a manifest written before it was kept)"),
            ("prompt_format", "str", "text | json"),
            ("prompt_file", "str", "meta-prompt file used"),
            ("prompt_set_sha256", "str", "hash of the prompt set"),
            ("seed", "int", "generation seed"),
            ("seed_source", "str", "offline | hub"),
            ("num_seeds", "int", "seed examples available to the setting"),
            ("seeds_sha256", "str", "hash of the seed set"),
            ("data_sha256", "str", "sha256 of the .jsonl file (NULL if it is missing)"),
            ("sampling", "str", "sampling parameters (JSON)"),
            ("versions", "str", "package versions at generation time (JSON)"),
        )),
    "rejections": Table(
        doc="Rejected generation attempts per dataset and reason (from the manifests' counts).",
        key=("generator", "method", "domain", "reason"),
        source="data/generated/GEN/METHOD/DOMAIN.manifest.json `rejections`",
        columns=_cols(*SETTING, ("reason", "str", "rejection reason (parser/validator code)"),
                      ("count", "int", "attempts rejected for it")),
    ),
    "instances": Table(
        doc="One row per generated instance (the training data).",
        key=("generator", "method", "domain", "idx"),
        source="data/generated/GEN/METHOD/DOMAIN.jsonl",
        columns=_cols(
            *SETTING,
            ("idx", "int", "position in the dataset file (0-based)"),
            ("id", "str", "instance id GEN/METHOD/DOMAIN/NNNNNN"),
            ("instruction", "str", "generated (or seed) instruction"),
            ("response", "str", "generated response"),
            ("config", "str", "generator model id, as in the published datasets"),
            ("attempt", "int", "attempt number that produced it"),
            ("seed_ids", "str[]", "seed examples used as demos or answered/revised"),
            ("theme", "str", "instance generation: theme given in the prompt"),
            ("first_word", "str", "instance generation (general): first word asked for"),
            ("prompt_sha256", "str", "hash of the messages sent"),
            ("request_key", "str", "key in the request store (joins requests.key)"),
            ("input_tokens", "int", "input tokens of the successful request"),
            ("output_tokens", "int", "output tokens of the successful request"),
            ("cost_usd", "float", "API cost of the successful request"),
            ("instruction_chars", "int", "length of instruction in characters"),
            ("response_chars", "int", "length of response in characters"),
        )),
    "contamination_checks": Table(
        doc="One row per checked dataset: what the decontaminate stage checked it against and how much overlaps.",
        key=("generator", "method", "domain"),
        source="data/generated/GEN/METHOD/DOMAIN.contamination.json",
        columns=_cols(
            *SETTING,
            ("ngram", "int", "words per shared n-gram that count as overlap (decontamination.ngram)"),
            ("against", "str[]", "what it was checked against: benchmarks, seeds (decontamination.against)"),
            ("seed_copies_checked", "bool", "copies of a seed counted (instance generation with seeds in against)"),
            ("instances", "int", "instances checked"),
            ("flagged", "int", "instances that overlap a benchmark item or (seed_copies_checked) a seed"),
            ("dropped", "bool", "training left the flagged instances out (decontamination.drop)"),
            ("dataset_sha256", "str", "sha256 of the .jsonl checked (joins datasets.data_sha256)"),
            ("benchmarks", "str", "benchmark -> the exact data its items came from (JSON)"),
            ("seed_source", "str", "offline | hub: the seed set read (NULL when none was)"),
            ("num_seeds", "int", "seeds in that set"),
        )),
    "contamination_matches": Table(
        doc="One row per flagged instance and what it overlaps (a benchmark item's prompt or answer, or a seed).",
        key=("generator", "method", "domain", "idx", "source", "item_id", "item_field", "field"),
        source="data/generated/GEN/METHOD/DOMAIN.contamination.json `flagged`",
        columns=_cols(
            *SETTING,
            ("idx", "int", "instance position in the dataset (joins instances.idx)"),
            ("id", "str", "instance id"),
            ("source", "str", "the benchmark (gsm8k, ..., ifeval), or seeds"),
            ("item_id", "str", "the benchmark item's or the seed's id"),
            ("item_field", "str", "what of it matched: prompt | answer (benchmarks), instruction | response (seeds)"),
            ("field", "str", "which text of the instance: instruction | response"),
            ("kind", "str", "exact (equal normalised texts) | ngram (a shared run of `ngram` words)"),
            ("ngram", "str", "kind ngram: the first shared n-gram, normalised"),
        )),
    "requests": Table(
        doc="Every stored API response (optional; not deterministic: latencies and times differ per run, "
            "so DVC should not track this file).",
        key=("key",),
        source=".agora/requests.sqlite table responses (collect(..., include_requests=True))",
        deterministic=False,
        columns=_cols(
            ("key", "str", "request key (sha256 of the canonical request JSON)"),
            ("backend", "str", "backend"),
            ("model", "str", "model id"),
            ("request", "str", "canonical JSON of the request"),
            ("finish_reason", "str", "stop | length | ..."),
            ("input_tokens", "int", "input tokens"),
            ("output_tokens", "int", "output tokens"),
            ("latency_s", "float", "seconds the request took"),
            ("cost_usd", "float", "API cost"),
            ("created_at", "float", "UNIX time it was stored"),
        )),
    "training_runs": Table(
        doc="One row per trained student: its training data and final metrics.",
        key=("generator", "method", "domain"),
        source="data/checkpoints/G/M/D/student.json and data/train/G/M/D.metrics.json",
        columns=_cols(
            *SETTING,
            ("base", "str", "base model fine-tuned"),
            ("trained", "bool", "false when the dataset had no valid instance: the student is the base model"),
            ("lora", "bool", "LoRA adapter instead of full fine-tuning"),
            ("examples", "int", "training examples (generated + seeds)"),
            ("generated_examples", "int", "examples from the generated dataset"),
            ("dropped_examples", "int", "generated instances left out as contaminated (decontamination.drop)"),
            ("seed_examples", "int", "seed examples added (instance generation)"),
            ("examples_sha256", "str", "hash of the training examples"),
            ("first_loss", "float", "first logged training loss"),
            ("final_loss", "float", "last logged training loss"),
            ("train_loss", "float", "mean training loss reported by the trainer"),
            ("steps", "int", "optimizer steps"),
            ("epochs", "float", "epochs"),
            ("train_tokens", "int", "tokens trained on (dataset tokens x epochs)"),
            ("wall_s", "float", "training wall time in seconds"),
            ("tokens_per_s", "float", "training throughput"),
            ("training_config", "str", "the training: section used (JSON)"),
            ("versions", "str", "torch/transformers/trl versions (JSON)"),
        )),
    "training_loss": Table(
        doc="The loss curves, one row per logged step.",
        key=("generator", "method", "domain", "step"),
        source="data/train/G/M/D.loss.csv",
        columns=_cols(*SETTING, ("step", "int", "optimizer step"), ("epoch", "float", "epoch (fractional)"),
                      ("loss", "float", "training loss"), ("learning_rate", "float", "learning rate")),
    ),
    "scores": Table(
        doc="One row per evaluated model and benchmark: the benchmark's primary score (0-100).",
        key=("model", "benchmark"),
        source="data/eval/<model key>/<benchmark>.scores.json",
        columns=_cols(
            ("model", "str", "model key: base | reference | students/G/M/D | generators/NAME | models/NAME"),
            ("kind", "str", "base | reference | student | generator | model"),
            ("generator", "str", "students: the data's generator; generators: the generator; else NULL"),
            ("method", "str", "students: the data's method; else NULL"),
            ("student_domain", "str", "students: the domain of the training data; else NULL"),
            ("benchmark", "str", "gsm8k | math | mbpp | humaneval | alpacaeval | arenahard | ifeval"),
            ("benchmark_domain", "str", "domain the benchmark belongs to"),
            ("primary_metric", "str", "name of the primary metric (accuracy, pass@1, lc_win_rate, ...)"),
            ("score", "float", "primary metric, percent"),
            ("n_items", "int", "items evaluated"),
            ("samples", "int", "samples per item (code pass@k)"),
            ("fewshot", "int", "few-shot demos in the prompt (the base model: evaluation.base_fewshot)"),
            ("judge", "str", "judge generator for judged benchmarks"),
            ("judge_requests", "int", "judge replies the score was read from (NULL: no judge, or not recorded)"),
            ("judge_input_tokens", "int", "the judge's input tokens (NULL: unknown)"),
            ("judge_output_tokens", "int", "the judge's output tokens (NULL: unknown)"),
            ("judge_cost_usd", "float", "the judge's API cost, USD, cached replies at what they cost when asked "
                                        "(NULL: unknown)"),
            ("judge_latency_s", "float", "seconds the judge took to reply, summed (NULL: unknown)"),
            ("no_answer", "int", "items where the model gave no completion"),
            ("data_version", "str", "version of the benchmark data"),
            ("items_sha256", "str", "hash of the evaluated item ids"),
            ("metrics", "str", "all metrics of the benchmark (JSON)"),
        )),
    "eval_items": Table(
        doc="One row per evaluated item (and code sample): the output and its verdict.",
        key=("model", "benchmark", "item_id", "sample_index"),
        source="data/eval/<model key>/<benchmark>.parquet",
        columns=_cols(
            ("model", "str", "model key (as in scores)"),
            ("kind", "str", "base | reference | student | generator | model"),
            ("generator", "str", "as in scores"),
            ("method", "str", "as in scores"),
            ("student_domain", "str", "as in scores"),
            ("benchmark", "str", "benchmark"),
            ("item_id", "str", "benchmark item id"),
            ("sample_index", "int", "sample number (0 unless code pass@k sampling)"),
            ("prompt", "str", "chat messages sent (JSON)"),
            ("output", "str", "model output"),
            ("extracted", "str", "answer or code taken from the output"),
            ("verdict", "str", "correct | wrong | no_answer | timeout | win | loss | tie | ..."),
            ("correct", "float", "1/0, or 1/0.5/0 for judged wins"),
            ("input_tokens", "int", "prompt tokens"),
            ("output_tokens", "int", "completion tokens"),
            ("latency_s", "float", "seconds"),
            ("details", "str", "benchmark-specific fields (JSON)"),
        )),
    "score_replicates": Table(
        doc="Paired bootstrap replicates of every score in `scores` that has its items: replicate r draws each "
            "benchmark's items with replacement, the same draws for every model (agorabench/results/replicates.py). "
            "The views compute each replicate's PGR as they compute the point PGR, and the 95% intervals from them.",
        key=("model", "benchmark", "replicate"),
        source="data/eval/<model key>/<benchmark>.parquet, analysis.bootstrap_replicates and bootstrap_seed",
        columns=_cols(
            ("model", "str", "model key (as in scores)"),
            ("kind", "str", "as in scores"),
            ("generator", "str", "as in scores"),
            ("method", "str", "as in scores"),
            ("student_domain", "str", "as in scores"),
            ("benchmark", "str", "benchmark"),
            ("replicate", "int", "replicate number, 1..analysis.bootstrap_replicates"),
            ("score", "float", "the benchmark's primary score on the replicate's items, percent (NULL: none)"),
        )),
    "intrinsic": Table(
        doc="Dataset-level intrinsic metrics (means over instances, and the two diversities).",
        key=("generator", "method", "domain"),
        source="data/intrinsic/G/M/D.summary.json (means filled from the .parquet when the summary lacks them)",
        columns=_cols(
            *SETTING,
            ("instances", "int", "instances scored"),
            ("difficulty", "float", "mean instruction difficulty (the first of intrinsic.judges, 1-5; "
                                    "every judge's: intrinsic_judges)"),
            ("quality", "float", "mean response quality (the first of intrinsic.judges, 1-5)"),
            ("reward", "float", "mean reward-model score"),
            ("perplexity", "float", "mean response perplexity under the base student"),
            ("instruction_diversity", "float", "mean pairwise cosine distance of instruction embeddings"),
            ("response_diversity", "float", "mean pairwise cosine distance of response embeddings"),
            ("compute_s", "float", "seconds the model metrics (reward, perplexity, embeddings) took to compute, "
                                   "cached results at what they took (NULL: unknown, or no model metric ran); "
                                   "the judges' time is in intrinsic_judges.latency_s"),
            ("summary", "str", "the whole summary file (JSON), for fields not given a column"),
        )),
    "intrinsic_judges": Table(
        doc="Each judge's dataset-level difficulty and quality (intrinsic.judges), one row per dataset and "
            "judge: with two judges the analysis takes each judge's two means as features of their own.",
        key=("generator", "method", "domain", "judge"),
        source="data/intrinsic/G/M/D.summary.json (its `judges`; an older summary: its one judge)",
        columns=_cols(
            *SETTING,
            ("judge", "str", "judge generator name (params.yaml `generators:` key)"),
            ("position", "int", "the judge's place in intrinsic.judges, from 1 (1: the intrinsic table's columns)"),
            ("model", "str", "model id the judge was asked through"),
            ("difficulty", "float", "mean instruction difficulty by this judge (1-5)"),
            ("quality", "float", "mean response quality by this judge (1-5)"),
            ("failures", "int", "judgements without a usable score (judge_error + parse_error, both metrics)"),
            ("verdicts", "str", "how the scores were read: logprobs | text"),
            ("requests", "int", "judge replies read, both metrics (NULL: not recorded)"),
            ("input_tokens", "int", "the judge's input tokens (NULL: unknown)"),
            ("output_tokens", "int", "the judge's output tokens (NULL: unknown)"),
            ("cost_usd", "float", "the judge's API cost, USD, cached verdicts at what they cost when asked "
                                  "(NULL: unknown)"),
            ("latency_s", "float", "seconds the judge took to reply, summed over its replies (cached ones at "
                                   "what they took when asked; NULL: unknown)"),
        )),
    "intrinsic_instances": Table(
        doc="Per-instance intrinsic metrics.",
        key=("generator", "method", "domain", "idx"),
        source="data/intrinsic/G/M/D.parquet",
        columns=_cols(
            *SETTING,
            ("idx", "int", "instance position in the dataset (joins instances.idx)"),
            ("difficulty", "float", "instruction difficulty by the first judge (1-5; NULL where it failed; "
                                    "the others' are in the .parquet as difficulty@JUDGE)"),
            ("quality", "float", "response quality by the first judge (1-5; NULL where it failed)"),
            ("reward", "float", "reward-model score"),
            ("perplexity", "float", "response perplexity"),
        )),
    "domain_benchmarks": Table(
        doc="Which benchmarks make up each domain's PGR: evaluation.benchmarks of the params the results "
            "were collected with. The PGR views read it.",
        key=("domain", "position"),
        source="params.yaml evaluation.benchmarks",
        columns=_cols(
            ("domain", "str", "math | code | general"),
            ("benchmark", "str", "benchmark name"),
            ("position", "int", "order of the benchmark within its domain"),
        )),
}

# The dataset-level intrinsic metrics (columns of `intrinsic` and of the intrinsic_summary view).
INTRINSIC_METRICS = ("difficulty", "quality", "reward", "perplexity", "instruction_diversity", "response_diversity")
INSTANCE_METRICS = ("difficulty", "quality", "reward", "perplexity")


# ---------------------------------------------------------------------------------------------
# The history (agorabench/results/history.py): every run's tables, one folder per run
# ---------------------------------------------------------------------------------------------

# One row per recorded run, in its folder's runs.parquet. run_id itself is the folder's name
# (run_id=KEY), which DuckDB reads back as a column of every history table.
RUNS = Table(
    doc="One row per recorded run: where its results came from. Its key is the hash of git_rev, "
        "dvc_lock_sha256 and params_sha256: the same revision recorded twice is one run.",
    key=(),
    source="written by `agora results` and `agora run` (agorabench/results/history.py)",
    columns=_cols(
        ("recorded_at", "time", "UTC time the run was first recorded"),
        ("recorded_by", "str", "agora results, or agora run (and the scheduled pipeline flow) after its pipeline"),
        ("git_rev", "str", "git commit of the repository (NULL outside git)"),
        ("git_dirty", "bool", "tracked files differed from git_rev (dvc.lock and params pin what matters)"),
        ("dvc_lock_sha256", "str", "hash of dvc.lock's stages up to results (NULL without dvc.lock)"),
        ("params_sha256", "str", "hash of the validated params"),
        ("results_sha256", "str", "hash of the run's collected Parquet tables"),
    ))

# What the history keeps of each collected table: everything except the texts, which would make
# every run's copy as large as the datasets (they stay in DVC at the run's git_rev), and except the
# tables that are not deterministic (the request store export).
HISTORY_LEFT_OUT: dict[str, tuple[str, ...]] = {
    "instances": ("id", "instruction", "response", "config", "seed_ids", "theme", "first_word",
                  "prompt_sha256", "request_key"),
    "eval_items": ("prompt", "output", "extracted", "details"),
}
HISTORY_TABLES = tuple(name for name, t in TABLES.items() if t.deterministic)


def history_columns(name: str) -> list[str]:
    """The columns a history table keeps, in the collected table's order (run_id comes first in the database)."""
    return [c for c in TABLES[name].names if c not in HISTORY_LEFT_OUT.get(name, ())]
