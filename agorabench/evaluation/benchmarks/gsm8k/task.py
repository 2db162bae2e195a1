r"""GSM8K: grade-school word problems with a numeric answer (988 eval items of the test set).

The model reasons step by step and ends with ``[RESULT] <number> [/RESULT]``, the format every
AgoraBench math training instance ends with, so a student trained on generated data has seen it.

Answer extraction, in order (the first that applies wins):
  1. the last ``[RESULT] ... [/RESULT]`` pair            -> extracted_by "result_tag"
  2. the last ``\boxed{...}`` (braces balanced)           -> "boxed"
  3. the last number anywhere in the output               -> "last_number"

Two scores are kept. *strict* counts only answers from 1 or 2: it measures "solved it and said so
in the asked format". *flexible* also accepts 3. PRIMARY is the flexible one ("accuracy") because
PGR compares a few-shot base model with fine-tuned students: the base model may ignore the tag
format, and PGR should measure problem solving, not how well training taught the tag. The strict
number is reported next to it so a format effect stays visible.

Comparison is numeric: "$1,200.00", "1200 dollars" and "1200" are all 1200.

The extraction helpers (``extract_answer``, ``last_number``, ``to_number``) are shared with MATH.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Sequence

from agorabench.evaluation.benchmarks import fewshot_turns
from agorabench.evaluation.context import ScoreContext
from agorabench.evaluation.resampling import mean_correct
from agorabench.evaluation.items import EvalItem, last_boxed
from agorabench.generation.seeds import hub
from agorabench.generation.seeds.offline import gsm8k_answer_to_target, gsm8k_seed_docs

from agorabench.evaluation.benchmarks.gsm8k import DOMAIN, PRIMARY  # noqa: E402,F401  (declared there)

INSTRUCTION = (
    "Solve the following math word problem. Think step by step, then write the final answer on the last "
    "line as [RESULT] <answer> [/RESULT], with only the number between the tags (no units, no $ sign).\n\n"
    "Problem: {question}"
)


def build_messages(item: EvalItem, fewshot: Sequence[tuple[str, str]] = ()) -> list[dict]:
    return fewshot_turns(lambda text: INSTRUCTION.format(question=text), item.prompt, fewshot)


def fewshot_examples(k: int, seed_source: str = "offline") -> list[tuple[str, str]]:
    """The first k GSM8K problems that are never evaluated, answers rewritten to end in [RESULT]: the
    seed part of the test set with offline seeds, GSM8K train with hub seeds (the whole test set is
    evaluated then)."""
    if k == 0:
        return []  # zero-shot needs no demo source (the hub's would need the network)
    docs = hub.fewshot_docs("gsm8k") if seed_source == "hub" else [doc for _, doc in gsm8k_seed_docs()]
    demos = []
    for doc in docs:  # file order, so deterministic
        if len(demos) == k:
            break
        target = gsm8k_answer_to_target(doc["answer"])
        if target is not None:
            demos.append((doc["question"], target))
    if len(demos) < k:
        raise ValueError(f"fewshot k={k} is more than the {len(demos)} GSM8K demo problems; use a smaller k")
    return demos


# ---------------------------------------------------------------------------------------------
# Answer extraction (also used by MATH)
# ---------------------------------------------------------------------------------------------

RESULT_OPEN, RESULT_CLOSE = "[RESULT]", "[/RESULT]"

# Thousands separators: a comma between a digit and exactly three digits ("1,200,000" but not "1,2").
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# A number not glued to a preceding digit or letter: in "10-5" the "-" is a minus of nothing,
# so the last number is 5, not -5.
_NUMBER = re.compile(r"(?<!\w)-?(?:\d+(?:\.\d+)?|\.\d+)")


def result_tag(text: str) -> str | None:
    """Content of the last *closed* [RESULT] ... [/RESULT] pair (None if there is none or it is empty).

    Searched backwards from the last closing tag, so "[RESULT] a [RESULT] b [/RESULT]" gives "b".
    An unclosed final "[RESULT] 42" (e.g. a truncated output) is not a tag answer: strict scoring wants
    the asked format; the flexible score still finds 42 as the last number.
    """
    end = text.rfind(RESULT_CLOSE)
    while end >= 0:
        start = text.rfind(RESULT_OPEN, 0, end)
        if start < 0:
            return None
        content = text[start + len(RESULT_OPEN) : end].strip()
        if content:
            return content
        end = text.rfind(RESULT_CLOSE, 0, start)  # empty pair: look at the one before it
    return None


def _clean(text: str) -> str:
    # Unicode minus and thousands separators would otherwise split or sign numbers wrongly.
    return _THOUSANDS.sub("", text.replace("\u2212", "-"))


def last_number(text: str) -> str | None:
    """The last number in `text` as written (after dropping thousands separators), or None."""
    found = _NUMBER.findall(_clean(text))
    return found[-1] if found else None


def to_number(text: str | None) -> Decimal | None:
    """The numeric value of an answer span: its last number ("$18.00" -> 18, "x = -3" -> -3)."""
    if text is None:
        return None
    number = last_number(text)
    if number is None:
        return None
    try:
        return Decimal(number)
    except InvalidOperation:  # not reachable with the regex above; kept as a guard
        return None


def extract_answer(output: str, allow_last_number: bool = True) -> tuple[str | None, str | None]:
    """(answer text, extracted_by) with extracted_by in "result_tag" | "boxed" | "last_number" | None."""
    tagged = result_tag(output)
    if tagged is not None:
        return tagged, "result_tag"
    boxed = last_boxed(output)
    if boxed:
        return boxed, "boxed"
    if allow_last_number:
        number = last_number(output)
        if number is not None:
            return number, "last_number"
    return None, None


def canonical_number(value: Decimal) -> str:
    """'70.00' -> '70', '-0' -> '0', '1E+3' -> '1000': one spelling per value."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def score(items: list[EvalItem], outputs: list[str], ctx: ScoreContext) -> list[dict]:
    if len(items) != len(outputs):
        raise ValueError(f"score: {len(items)} items but {len(outputs)} outputs; pass one output per item")
    rows = []
    for item, output in zip(items, outputs):
        gold = to_number(item.reference)
        if gold is None:
            raise ValueError(f"item {item.id}: reference {item.reference!r} is not a number; check the GSM8K loader")
        extracted, extracted_by = extract_answer(output or "")
        pred = to_number(extracted)
        correct = pred is not None and pred == gold
        if extracted is None:
            verdict = "no_answer"
        else:
            verdict = "correct" if correct else "wrong"
        rows.append(
            {
                "id": item.id,
                "extracted": extracted,
                "extracted_by": extracted_by,
                "pred_number": None if pred is None else canonical_number(pred),
                "gold": canonical_number(gold),
                "correct": float(correct),
                "correct_strict": float(correct and extracted_by in ("result_tag", "boxed")),
                "verdict": verdict,
            }
        )
    return rows


def summarize(rows: list[dict]) -> dict[str, float]:
    if not rows:
        raise ValueError("summarize: no rows; score at least one item first")
    n = len(rows)
    return {
        "accuracy": 100.0 * sum(r["correct"] for r in rows) / n,
        "accuracy_strict": 100.0 * sum(r["correct_strict"] for r in rows) / n,
        "result_tag_rate": 100.0 * sum(r["extracted_by"] == "result_tag" for r in rows) / n,
        "n": float(n),
    }


def bootstrap_scores(items: list[list[dict]], counts):
    """summarize()'s accuracy on bootstrap replicates of the items (agorabench/evaluation/resampling.py)."""
    return mean_correct(items, counts)
