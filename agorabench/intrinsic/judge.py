"""Instruction difficulty and response quality, 1-5, from an LLM judge with per-domain rubrics.

The criteria are the paper's (App. H); the rubric and prompt wording is ours (prompts/). Difficulty is
judged on the instruction alone; quality on the instruction and the response together. The judge is a
JudgeFn (evaluation/context.py): a synchronous batch function returning one text (or None) per
conversation. It owns concurrency, retries and request caching; this module only builds prompts and
reads scores.

Two prompts (intrinsic.judge_reasoning): with reasoning, a short assessment and then `[RESULT] n`
(the paper's format, *_user.txt); without, the score alone (*_score_user.txt), a few output tokens.

Two readings (intrinsic.judge_top_logprobs): the digit in the reply's text, or, when the judge returns
token log-probabilities, the mean of the digits 1-5 weighted by their probabilities at the token the
text's score was read from (score_from_logprobs), a fraction. A reply whose log-probabilities cannot
give it is read from its text; each row says which reading it got ("source").

A reply without a readable score is kept, with its raw text and verdict "parse_error"; a judge that
gave up on a request (None) gives verdict "judge_error". Both have score None and are counted, never
silently dropped.
"""
from __future__ import annotations

import functools
import hashlib
import math
import re
from pathlib import Path
from typing import Sequence

import yaml

from agorabench.evaluation.context import JudgeFn
from agorabench.models.answering import USAGE_FIELDS

PROMPTS = Path(__file__).parent / "prompts"
DOMAIN_NOUNS = {"math": "math problem", "code": "coding problem", "general": "instruction"}
KINDS = ("difficulty", "quality")


@functools.lru_cache(maxsize=None)
def _read(name: str) -> str:
    return (PROMPTS / name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def rubrics() -> dict:
    return yaml.safe_load(_read("rubrics.yaml"))


def _prompt_files(reasoning: bool) -> dict[str, str]:
    """The system prompt and each metric's user template of one prompt style."""
    if reasoning:
        return {"system": "judge_system.txt", "difficulty": "difficulty_user.txt", "quality": "quality_user.txt"}
    return {"system": "judge_system_score.txt", "difficulty": "difficulty_score_user.txt",
            "quality": "quality_score_user.txt"}


def prompt_version(reasoning: bool = True) -> str:
    """sha256 of the prompt files of one style: part of the cache key, so editing a rubric re-judges.
    Only that style's files, so adding or editing the other style keeps these judgements cached."""
    h = hashlib.sha256()
    for name in (*_prompt_files(reasoning).values(), "rubrics.yaml"):
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


def judge_messages(kind: str, domain: str, instruction: str, response: str | None = None,
                   reasoning: bool = True) -> list[dict]:
    """The judge conversation for one item: difficulty of `instruction`, or quality of `response`.
    reasoning=False: the prompt that asks for the score alone."""
    rubric = format_rubric(domain, kind)
    noun = DOMAIN_NOUNS[domain]
    values = {"instruction": instruction, "response": response or "", "rubric": rubric,
              "domain_noun": noun, "a_domain_noun": ("an " if noun[0] in "aeiou" else "a ") + noun,
              "domain_title": noun[0].upper() + noun[1:]}
    files = _prompt_files(reasoning)
    return [{"role": "system", "content": _read(files["system"]).strip()},
            {"role": "user", "content": _fill(_read(files[kind]), values).rstrip() + "\n"}]


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


def _find_score(text: str | None) -> tuple[int, int] | None:
    """(score, index of its digit in text) of the score parse_score reads, or None."""
    if not text or not text.strip():
        return None
    for pattern in _PATTERNS:
        found = list(pattern.finditer(text))
        if found:
            return int(found[-1].group(1)), found[-1].start(1)
    # A bare score as the whole reply (or its last line), e.g. "4" or "4." or "**4**".
    body = text.rstrip()
    line_start = body.rfind("\n") + 1
    m = re.fullmatch(r"(\s*\**\s*)([1-5])\.?\s*\**", body[line_start:])
    return (int(m.group(2)), line_start + m.start(2)) if m else None


def parse_score(text: str | None) -> int | None:
    """The 1-5 integer score in a judge reply, or None when there is none to be trusted."""
    found = _find_score(text)
    return found[0] if found else None


# A token that is one score digit, with the spacing and markup a tokenizer may glue to it (" 4", "4.", "(4").
_DIGIT_TOKEN = re.compile(r"[\s*\[\]():]*([1-5])[\s*\[\]():./]*")


def score_from_logprobs(text: str | None, logprobs) -> tuple[float, dict[int, float]] | None:
    """(score, P(digit) for 1-5) from the judge's token log-probabilities, or None where they cannot
    give one (the caller then reads the text).

    logprobs: Completion.logprobs, per reply token (token, logprob, ((alternative, logprob), ...)).
    The score's token is the one the text's score is read from (parse_score over the tokens' own text,
    which must give the same digit): so the reading and the text agree on where the verdict is, and a
    quoted rubric level ("Score 2: ...") is never taken for it. The store keeps only the first
    LOGPROB_POSITIONS tokens, so a reply that long may have lost its verdict's: it is read from its text.
    Each digit's probability is summed over its token variants ("4", " 4") among the alternatives
    there, then renormalised over the five digits; the score is their probability-weighted mean."""
    from agorabench.models.store import LOGPROB_POSITIONS, alternatives

    if not logprobs or len(logprobs) >= LOGPROB_POSITIONS:
        return None
    in_text = _find_score(text)
    tokens = [position[0] for position in logprobs]
    in_tokens = _find_score("".join(tokens))
    if in_text is None or in_tokens is None or in_text[0] != in_tokens[0]:
        return None
    end, slot = 0, None
    for i, token in enumerate(tokens):
        end += len(token)
        if end > in_tokens[1]:
            slot = i
            break
    m = _DIGIT_TOKEN.fullmatch(tokens[slot])
    if m is None or int(m.group(1)) != in_tokens[0]:  # the digit glued to other text: no clean slot
        return None
    mass = dict.fromkeys(range(1, 6), 0.0)
    for token, logprob in alternatives(logprobs[slot]):
        m = _DIGIT_TOKEN.fullmatch(token)
        if m is not None:
            mass[int(m.group(1))] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    probs = {d: p / total for d, p in mass.items()}
    return sum(d * p for d, p in probs.items()), probs


def judge_scores(kind: str, domain: str, pairs: Sequence[tuple[str, str]], judge: JudgeFn,
                 batch_size: int = 256, on_done=None, *, reasoning: bool = True, top_logprobs: int = 0) -> list[dict]:
    """One row per (instruction, response): {"score", "verdict", "raw", "source"} with verdict ok /
    parse_error / judge_error and source "logprobs" or "text" (None without a score). Sent to the judge
    `batch_size` conversations at a time; top_logprobs > 0 asks it for log-probabilities (a judge that
    cannot give them answers with text, and every score is then read from the text)."""
    conversations = [judge_messages(kind, domain, i, r, reasoning) for i, r in pairs]
    rows: list[dict] = []
    for start in range(0, len(conversations), batch_size):
        chunk = conversations[start:start + batch_size]
        replies = list(judge(chunk, top_logprobs=top_logprobs) if top_logprobs else judge(chunk))
        if len(replies) != len(chunk):
            raise ValueError(f"the judge returned {len(replies)} replies for {len(chunk)} conversations; "
                             f"a JudgeFn must return exactly one (or None) per conversation")
        for reply in replies:
            # A text, or a Completion with .text, .logprobs (when asked for) and what it cost.
            text = reply if isinstance(reply, str) else getattr(reply, "text", None)
            if not isinstance(text, str):
                rows.append({"score": None, "verdict": "judge_error", "raw": None, "source": None})
                continue
            usage = {name: getattr(reply, name, None) for name in USAGE_FIELDS}
            read = score_from_logprobs(text, getattr(reply, "logprobs", None)) if top_logprobs else None
            if read is not None:
                rows.append({"score": read[0], "verdict": "ok", "raw": text, "source": "logprobs", **usage})
                continue
            score = parse_score(text)
            rows.append({"score": score, "verdict": "ok" if score is not None else "parse_error", "raw": text,
                         "source": "text" if score is not None else None, **usage})
        if on_done:
            on_done(len(chunk))
    return rows


__all__ = ["judge_messages", "judge_scores", "parse_score", "score_from_logprobs", "format_rubric", "prompt_version", "rubrics"]
