"""The files of a generated dataset, as typed records: what generation (and the scaling prefixes,
and imports of outside datasets) write and what training, intrinsic metrics and the results
collector read.

    DOMAIN.jsonl           one Instance per line: a valid (instruction, response) and where it came from
    DOMAIN.rejected.jsonl  one Rejection per line: an attempt that failed parsing or validation, and why
    DOMAIN.manifest.json   the DatasetManifest: counts, rejections by reason, cost, prompts, seeds, versions
"""
from __future__ import annotations

from pathlib import Path

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
    subset_of: dict | None = None  # a scaling prefix: the larger dataset it was cut from
    source: dict | None = None     # an imported dataset: where it came from


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
