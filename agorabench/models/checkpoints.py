"""What a student folder is: the weights (or a LoRA adapter) that training wrote, and student.json,
the StudentRecord that says what it was trained on and how. Training writes it (agorabench/training/sft.py);
evaluation, the in-process models and the results collector read it.

A dataset with no valid instance trains nothing: its folder holds only student.json, with
trained: false and why, and the student is its base model.
"""
from __future__ import annotations

from pathlib import Path

from agorabench.records import Record, read_record

STUDENT_FILE = "student.json"


class StudentRecord(Record):
    generator: str
    method: str
    domain: str
    trained: bool
    untrained_reason: str | None = None   # only in an untrained student's file
    base: str                  # student.base as params gave it
    base_path: str             # what was loaded (a packaged model's name, a folder or a hub id)
    lora: bool
    system_prompt: str | None
    dataset: str               # the dataset file it was trained on
    generated_examples: int
    dropped_examples: int = 0  # generated instances left out as contaminated (decontamination.drop)
    seed_examples: int
    examples: int
    examples_sha256: str
    training: dict | None = None          # the training section (trained students)
    versions: dict[str, str] | None = None
    # A launch over several processes: accelerate's distributed type ("FSDP", "MULTI_GPU", ...), the
    # number of processes, and whether the weights were split across them (FSDP2):
    # {"distributed_type": ..., "processes": N, "sharded": bool}.
    parallelism: dict | None = None

    def to_json(self, **kw) -> str:
        # An untrained student's file has no training section or versions, a trained one's no reason;
        # a single-process student's none of parallelism.
        return super().to_json(omit_none=("untrained_reason", "training", "versions", "parallelism"), **kw)


def student_record(checkpoint: str | Path) -> StudentRecord | None:
    """A student folder's record, or None when `checkpoint` is not a student folder."""
    path = Path(checkpoint) / STUDENT_FILE
    return read_record(StudentRecord, path, "`agora train`") if path.is_file() else None


def untrained_reason(checkpoint: str | Path) -> str | None:
    """Why a student folder holds no weights of its own (its dataset was empty), or None."""
    record = student_record(checkpoint)
    return None if record is None or record.trained else (record.untrained_reason or "no training data")
