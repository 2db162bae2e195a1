"""What every typed record of the pipeline's files shares: how it is read and written.

Each stage's files are described by pydantic models next to the code that writes them
(generation/records.py, models/checkpoints.py, training.py, evaluation/records.py,
intrinsic/records.py); the results collector (results/collect.py) reads them with the same models.
A field added to a writer is a field the reader knows, and a file that does not match its model is
a one-line error naming the file, instead of a quietly missing column.

May import: agorabench.files (the error for a file cut short).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from agorabench.files import cut_short


class Record(BaseModel):
    """A JSON object one stage writes and another reads. Unknown fields are refused: a file that has
    them was written by another version of the writer."""

    model_config = ConfigDict(extra="forbid")

    def to_json(self, *, ensure_ascii: bool = True, omit_none: tuple[str, ...] = ()) -> str:
        """The file's text: indented, keys sorted, a final newline (fields in `omit_none` are left
        out while they are None)."""
        data = self.model_dump()
        for name in omit_none:
            if data.get(name) is None:
                data.pop(name, None)
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=ensure_ascii, default=float) + "\n"

    def to_line(self) -> str:
        """One JSONL line: keys sorted, orjson's fixed float formatting (the same data, the same bytes)."""
        return orjson.dumps(self.model_dump(), option=orjson.OPT_SORT_KEYS).decode() + "\n"


R = TypeVar("R", bound=Record)


def _problem(e: ValidationError) -> str:
    first = e.errors()[0]
    if first["type"] == "json_invalid":
        return f"not valid JSON ({first['msg'].removeprefix('Invalid JSON: ')})"
    where = ".".join(str(p) for p in first["loc"]) or "the record"
    return f"{where}: {first['msg']}"


def read_record(model: type[R], path: Path, rerun: str) -> R:
    """The record in `path`; `rerun` says what writes it again (e.g. "`agora train` for g/m/d")."""
    try:
        return model.model_validate_json(Path(path).read_bytes())
    except ValidationError as e:
        raise ValueError(f"{path}: {_problem(e)}; re-run {rerun}") from None


def read_lines(model: type[R], path: Path, rerun: str) -> list[R]:
    """Every record of a JSONL file; a bad line is a one-line error naming the file and the line, and
    a last line cut short (a write that did not finish) is a StorageError saying so."""
    out = []
    for n, line in _lines(path):
        try:
            out.append(model.model_validate_json(line))
        except ValidationError as e:
            if not line.endswith(b"\n") and e.errors()[0]["type"] == "json_invalid":
                raise cut_short(path, n, rerun) from None
            raise ValueError(f"{path}: line {n}: {_problem(e)}; re-run {rerun}") from None
    return out


def read_json_lines(path: Path, rerun: str) -> list[dict]:
    """Every line of a JSONL file as a plain dict, with read_lines' errors (for readers that take
    rows with fewer fields than a record)."""
    out = []
    for n, line in _lines(path):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            if not line.endswith(b"\n"):
                raise cut_short(path, n, rerun) from None
            raise ValueError(f"{path}: line {n}: not valid JSON ({e}); re-run {rerun}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}: line {n}: not a JSON object; re-run {rerun}")
        out.append(row)
    return out


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of every non-blank line. Each line our writers write ends with a newline,
    so a last line without one that does not parse was cut short."""
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                yield n, line
