"""What every typed record of the pipeline's files shares: how it is read and written.

Each stage's files are described by pydantic models next to the code that writes them
(generation/records.py, models/checkpoints.py, training.py, evaluation/records.py,
intrinsic/records.py); the results collector (results/collect.py) reads them with the same models.
A field added to a writer is a field the reader knows, and a file that does not match its model is
a one-line error naming the file, instead of a quietly missing column.

May import: nothing of agorabench.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError


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
    """Every record of a JSONL file; a bad line is a one-line error naming the file and the line."""
    out = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                out.append(model.model_validate_json(line))
            except ValidationError as e:
                raise ValueError(f"{path}: line {n}: {_problem(e)}; re-run {rerun}") from None
    return out
