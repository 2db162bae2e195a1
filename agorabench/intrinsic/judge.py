"""Instruction difficulty and response quality, 1-5, from an LLM judge with per-domain rubrics.

The criteria are the paper's (App. H); the rubric and prompt wording is ours (prompts/). Difficulty is
judged on the instruction alone; quality on the instruction and the response together. The judge is a
JudgeFn (benchmarks/context.py): a synchronous batch function returning one text (or None) per
conversation. It owns concurrency, retries and request caching; this module only builds prompts and
reads scores.

A reply without a readable score is kept, with its raw text and verdict "parse_error"; a judge that
gave up on a request (None) gives verdict "judge_error". Both have score None and are counted, never
silently dropped.
"""
from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Sequence

import yaml

from agorabench.evaluation.context import JudgeFn

PROMPTS = Path(__file__).parent / "prompts"
DOMAIN_NOUNS = {"math": "math problem", "code": "coding problem", "general": "instruction"}
KINDS = ("difficulty", "quality")


@functools.lru_cache(maxsize=None)
def _read(name: str) -> str:
    return (PROMPTS / name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def rubrics() -> dict:
    return yaml.safe_load(_read("rubrics.yaml"))


def prompt_version() -> str:
    """sha256 of every prompt file: part of the cache key, so editing a rubric re-judges."""
    h = hashlib.sha256()
    for name in ("judge_system.txt", "difficulty_user.txt", "quality_user.txt", "rubrics.yaml"):
        h.update(name.encode() + b"\0" + _read(name).encode() + b"\0")
    return h.hexdigest()[:16]


def format_rubric(domain: str, kind: str) -> str:
    if domain not in DOMAIN_NOUNS:
        raise ValueError(f"domain {domain!r} has no judge rubric; choose one of {', '.join(DOMAIN_NOUNS)}")
    if kind not in KINDS:
        raise ValueError(f"judge metric {kind!r} is unknown; choose one of {', '.join(KINDS)}")
    r = rubrics()[domain][kind]
    lines = [f"[{r['criterion']}]"] + [f"Score {k}: {r['levels'][k]}" for k in range(1, 6)]
    return "\n".join(lines)


def _fill(template: str, values: dict[str, str]) -> str:
    # One pass over the template only: braces inside an instruction or response are left alone,
    # and a "{rubric}" written by a generator is never substituted.
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def judge_messages(kind: str, domain: str, instruction: str, response: str | None = None) -> list[dict]:
    """The judge conversation for one item: difficulty of `instruction`, or quality of `response`."""
    rubric = format_rubric(domain, kind)
    noun = DOMAIN_NOUNS[domain]
    values = {"instruction": instruction, "response": response or "", "rubric": rubric,
              "domain_noun": noun, "a_domain_noun": ("an " if noun[0] in "aeiou" else "a ") + noun,
              "domain_title": noun[0].upper() + noun[1:]}
    return [{"role": "system", "content": _read("judge_system.txt").strip()},
            {"role": "user", "content": _fill(_read(f"{kind}_user.txt"), values).rstrip() + "\n"}]


# ---------------------------------------------------------------------------------------------
# Reading a score out of a reply
# ---------------------------------------------------------------------------------------------

# In order of trust. Each pattern takes its LAST match: a feedback often quotes rubric levels
# ("this is more than Score 2: ...") before the final verdict. The lookahead refuses 4.5 and 10,
# but not "4." at the end of a sentence.
_NOT_A_NUMBER_AFTER = r"(?!\d|\.\d)"
_SCORE = r"\(?\s*\**\s*([1-5])" + _NOT_A_NUMBER_AFTER + r"\s*\**\s*\)?"
_PATTERNS = (
    re.compile(r"\[RESULT\]\s*[:=]?\s*" + _SCORE, re.I),
    re.compile(r"\b(?:final\s+)?(?:score|rating|grade)\s*(?:is|of|[:=])\s*" + _SCORE + r"(?:\s*/\s*5)?", re.I),
    re.compile(r"(?<![\d.])([1-5])\s*/\s*5" + _NOT_A_NUMBER_AFTER),
    re.compile(r"(?<![\d.])([1-5])\s+out\s+of\s+5" + _NOT_A_NUMBER_AFTER, re.I),
)


def parse_score(text: str | None) -> int | None:
    """The 1-5 integer score in a judge reply, or None when there is none to be trusted."""
    if not text or not text.strip():
        return None
    for pattern in _PATTERNS:
        found = pattern.findall(text)
        if found:
            return int(found[-1])
    # A bare score as the whole reply (or its last line), e.g. "4" or "4." or "**4**".
    last = text.strip().splitlines()[-1].strip().strip("*").strip()
    m = re.fullmatch(r"([1-5])\.?", last)
    return int(m.group(1)) if m else None


def judge_scores(kind: str, domain: str, pairs: Sequence[tuple[str, str]], judge: JudgeFn,
                 batch_size: int = 256, on_done=None) -> list[dict]:
    """One row per (instruction, response): {"score", "verdict", "raw"} with verdict ok / parse_error /
    judge_error. Sent to the judge `batch_size` conversations at a time."""
    conversations = [judge_messages(kind, domain, i, r) for i, r in pairs]
    rows: list[dict] = []
    for start in range(0, len(conversations), batch_size):
        chunk = conversations[start:start + batch_size]
        replies = list(judge(chunk))
        if len(replies) != len(chunk):
            raise ValueError(f"the judge returned {len(replies)} replies for {len(chunk)} conversations; "
                             f"a JudgeFn must return exactly one (or None) per conversation")
        for reply in replies:
            if not isinstance(reply, str):
                rows.append({"score": None, "verdict": "judge_error", "raw": None})
                continue
            score = parse_score(reply)
            rows.append({"score": score, "verdict": "ok" if score is not None else "parse_error", "raw": reply})
        if on_done:
            on_done(len(chunk))
    return rows


__all__ = ["judge_messages", "judge_scores", "parse_score", "format_rubric", "prompt_version", "rubrics"]
