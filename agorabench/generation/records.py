"""The files of a generated dataset, as typed records: what generation (and the scaling prefixes,
and imports of outside datasets) write and what training, intrinsic metrics and the results
collector read.

    DOMAIN.jsonl           one Instance per line: a valid (instruction, response) and where it came from
    DOMAIN.rejected.jsonl  one Rejection per line: an attempt that failed parsing or validation, and why
    DOMAIN.manifest.json   the DatasetManifest: counts, rejections by reason, cost, prompts, seeds, versions

and the two files the decontaminate stage writes beside them (agorabench/decontamination.py), which
training and the results collector read:

    DOMAIN.contamination.json  the ContaminationReport: which instances overlap which benchmark items or seeds
    DOMAIN.drop.json           the DropList: the instances training leaves out (none unless decontamination.drop)
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from agorabench.files import replacing
from agorabench.records import Record, read_lines, read_record


class Instance(Record):
    id: str
    instruction: str
    response: str
    config: str | None            # the generator's model id
    generator: str
    method: str
    domain: str
    attempt: int | None           # the attempt that produced it (attempts are numbered in order)
    seed_ids: list[str]
    theme: str | None
    first_word: str | None
    prompt_sha256: str | None
    request_key: str | None       # the request store's key of its answer
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None        # None: unknown (an imported dataset)


class Rejection(Record):
    attempt: int
    reason: str
    detail: str | None
    raw: str                      # the whole answer
    finish_reason: str | None
    seed_ids: list[str]
    request_key: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None


class DatasetManifest(Record):
    generator: str
    backend: str | None
    model: str | None
    domain: str
    method: str
    num_requested: int
    num_valid: int
    complete: bool
    shortfall_reason: str | None
    attempts: int
    rejections: dict[str, int]
    cost_usd: float | int | None  # every attempt the dataset needed, rejected ones included; None: unknown
    input_tokens: int | None
    output_tokens: int | None
    prompt_format: str | None
    prompt_file: str | None
    prompt_set_sha256: str | None
    sampling: dict | None
    seed: int | None
    seed_source: str | None
    num_seeds: int | None
    seeds_sha256: str | None
    versions: dict[str, str]
    # Seconds the generator took to answer every attempt, summed (answers cached in the request store at
    # what they took when asked, so a resumed or repeated run writes the same). None: unknown (an import, a
    # scaling prefix, a manifest written before it was recorded).
    latency_s: float | None = None
    subset_of: dict | None = None  # a scaling prefix: the larger dataset it was cut from
    source: dict | None = None     # an imported dataset: where it came from


class ContaminationMatch(Record):
    """One text of an instance that overlaps one benchmark item or seed."""
    source: str                   # the benchmark's name, or "seeds"
    item_id: str                  # the benchmark item's or the seed's id
    item_field: str               # what of it matched: prompt | answer (a benchmark item), instruction | response (a seed)
    field: Literal["instruction", "response"]  # which text of the instance
    kind: Literal["exact", "ngram"]  # equal normalised texts, or a shared run of `ngram` words
    ngram: str | None             # kind ngram: the first shared n-gram (normalised words)


class FlaggedInstance(Record):
    idx: int                      # position in DOMAIN.jsonl
    id: str
    matches: list[ContaminationMatch]


class ContaminationReport(Record):
    generator: str                # the dataset's generator key (NAME, or NAME@SIZE for a scaling prefix)
    method: str
    domain: str
    dataset_sha256: str           # the DOMAIN.jsonl it describes
    ngram: int                    # decontamination.ngram
    against: list[str]            # decontamination.against
    benchmarks: dict[str, str]    # benchmark -> the exact data its items came from ({} when not checked)
    seed_source: str | None       # the seed set checked (seeds.source), None when no seed was read
    num_seeds: int | None
    seed_copies_checked: bool     # instance generation with "seeds" in against: copies of a seed count
    num_instances: int
    num_flagged: int
    flagged_by_source: dict[str, int]  # source -> flagged instances (one instance may count under several)
    dropped: bool                 # decontamination.drop: training leaves the flagged instances out
    flagged: list[FlaggedInstance]


class DropList(Record):
    """What training leaves out of one dataset. Its own file, so that a changed report (another n, new
    benchmark data) re-runs training only when the instances dropped change."""
    dataset_sha256: str           # the DOMAIN.jsonl it was made for
    drop: bool                    # decontamination.drop when it was made (false: ids is empty)
    ids: list[str]


def write_dataset(paths: dict[str, Path], instances: list[Instance], rejections: list[Rejection],
                  manifest: DatasetManifest, *, ensure_ascii: bool = False) -> None:
    """The three files of a dataset (Setting.dataset paths), all written before any replaces its
    predecessor (agorabench.files.replacing), the manifest last: its presence says the data beside
    it is complete, and a disk that fills up leaves the previous dataset whole."""
    command = "agora subset" if "@" in manifest.generator else "agora generate"  # NAME@SIZE: a scaling prefix
    rerun = f"`{command}` for {manifest.generator}/{manifest.method}/{manifest.domain}"
    with replacing(paths["data"], paths["rejected"], paths["manifest"], rerun=rerun) as (data, rejected, man):
        data.write_text("".join(r.to_line() for r in instances), encoding="utf-8")
        rejected.write_text("".join(r.to_line() for r in rejections), encoding="utf-8")
        man.write_text(manifest.to_json(ensure_ascii=ensure_ascii, omit_none=("subset_of", "source")),
                       encoding="utf-8")


def read_instances(path: Path, label: str) -> list[Instance]:
    return read_lines(Instance, path, f"`agora generate` for {label}")


def read_rejections(path: Path, label: str) -> list[Rejection]:
    return read_lines(Rejection, path, f"`agora generate` for {label}")


def read_manifest(path: Path, label: str) -> DatasetManifest:
    return read_record(DatasetManifest, path, f"`agora generate` for {label}")


def write_contamination(paths: dict[str, Path], report: ContaminationReport, drop: DropList) -> None:
    """The decontaminate stage's two files (Setting.contamination paths), both written before either
    replaces its predecessor (agorabench.files.replacing): a kill or a full disk never leaves a new
    report beside an old drop list."""
    rerun = f"`agora decontaminate` for {report.generator}/{report.method}/{report.domain}"
    with replacing(paths["report"], paths["drop"], rerun=rerun) as (report_tmp, drop_tmp):
        report_tmp.write_text(report.to_json(ensure_ascii=False), encoding="utf-8")
        drop_tmp.write_text(drop.to_json(), encoding="utf-8")


def read_contamination(path: Path, label: str) -> ContaminationReport:
    return read_record(ContaminationReport, path, f"`agora decontaminate` for {label}")


def read_drop_list(path: Path, label: str) -> DropList:
    return read_record(DropList, path, f"`agora decontaminate` for {label}")
