"""Seed data for the 9 AgoraBench settings (3 domains x 3 methods).

    load_seeds("math", "instance_generation")            # offline, from installed packages
    load_seeds("code", "quality_enhancement", "hub")     # the paper's seed sets from the HF hub

Every list returned is deterministic, free of duplicate instructions, and decontaminated against
the evaluation items of all six benchmarks (plus IFEval; those a run with these seeds evaluates, see
evaluation/benchmarks/__init__.py): a seed is dropped when its normalized
instruction equals an eval prompt or shares a 13-word n-gram with one (``agorabench.evaluation.items``).
``decontamination_report()`` says how many seeds each call dropped and why.

Sources: ``offline.py`` (packaged data, the default; what it uses and why is in its docstring) and
``hub.py`` (``datasets.load_dataset``; needs a network). The modules are imported lazily so that
importing this package stays cheap.

May import: config, evaluation.items.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agorabench.config import DOMAINS, METHODS, check_setting  # noqa: F401  (re-exported)

SOURCES = ("offline", "hub")


@dataclass(frozen=True)
class SeedExample:
    id: str  # stable, e.g. "gsm8k/test/0123", "math/test/algebra/0042", "mbpp/17"
    instruction: str
    response: str  # "" when the setting uses instructions only (response generation)
    source: str  # the `config` tag of the paper's seed files, e.g. "gsm8k", "math", "mbpp", "self_instruct"

    def to_record(self) -> dict:
        """The paper's seed-file row format: {"config", "instruction", "response"}."""
        return {"config": self.source, "instruction": self.instruction, "response": self.response}


def load_seeds(domain: str, method: str, source: str = "offline") -> list[SeedExample]:
    check_setting(domain, method)
    if source == "offline":
        from agorabench.generation.seeds import offline as builder
    elif source == "hub":
        from agorabench.generation.seeds import hub as builder
    else:
        raise ValueError(f"unknown seed source {source!r}; allowed: {', '.join(SOURCES)}")
    return decontaminate(builder.build(domain, method), f"{source}/{domain}/{method}", source=source)


# ---------------------------------------------------------------------------------------------
# Decontamination
# ---------------------------------------------------------------------------------------------

# label -> counts of the last decontaminate() call with that label (per process)
_REPORT: dict[str, dict] = {}


def decontaminate(seeds: Iterable[SeedExample], label: str, limit: int | None = None,
                  source: str = "offline") -> list[SeedExample]:
    """Drop duplicates and seeds whose instruction overlaps an eval item; record why under ``label``.

    ``source`` is where the seeds come from (seeds.source), which decides the evaluation sets: offline
    seeds are test items, checked against the rest of their test sets; hub seeds against whole test sets.

    Order is kept. A duplicate is a repeated id or a repeated normalized instruction (the first
    one wins). Only the instruction is checked, since that is what a student sees as the prompt.
    With ``limit``, ``seeds`` is consumed lazily and checking stops once ``limit`` seeds are kept,
    so that a 10K sample can be drawn from a shuffled stream of millions of rows.
    """
    from agorabench.evaluation.items import find_eval_overlap, normalize_text

    kept: list[SeedExample] = []
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    counts = {"total": 0, "kept": 0, "duplicate": 0, "exact_match": 0, "ngram13": 0}
    dropped: list[tuple[str, str, str]] = []  # (seed id, reason, eval item id; "" for duplicates)
    for seed in seeds:
        if limit is not None and len(kept) >= limit:
            break
        counts["total"] += 1
        norm = normalize_text(seed.instruction)
        if seed.id in seen_ids or norm in seen_text:
            counts["duplicate"] += 1
            dropped.append((seed.id, "duplicate", ""))
            continue
        overlap = find_eval_overlap(seed.instruction, source)
        if overlap is not None:
            reason, eval_id = overlap
            counts[reason] += 1
            dropped.append((seed.id, reason, eval_id))
            continue
        seen_ids.add(seed.id)
        seen_text.add(norm)
        kept.append(seed)
    counts["kept"] = len(kept)
    _REPORT[label] = {**counts, "dropped": dropped}
    return kept


def decontamination_report() -> dict[str, dict]:
    """label -> {"total", "kept", "duplicate", "exact_match", "ngram13", "dropped": [(seed_id, reason, eval_id)]}.

    Labels are "<source>/<domain>/<method>" for load_seeds() and "hub:<loader>" for direct hub loader calls.
    """
    return {label: {**entry, "dropped": list(entry["dropped"])} for label, entry in _REPORT.items()}


__all__ = [
    "DOMAINS",
    "METHODS",
    "SOURCES",
    "SeedExample",
    "check_setting",
    "decontaminate",
    "decontamination_report",
    "load_seeds",
]
