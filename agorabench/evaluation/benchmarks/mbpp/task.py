"""MBPP: short Python functions checked by three asserts each (388 eval tasks of the 500-task test set).

The prompt is the task text plus its asserts (they fix the function name and signature), and asks
for the solution in one ```python block, the format of AgoraBench's code training data.

The program run in the sandbox is: the extracted code, the task's ``test_setup_code``, then the
asserts. The setup code goes *after* the solution because the one task that has setup code builds
objects of a class that the solution defines (``Node``); nothing in it is needed by the solution.

Scoring and pass@k live in ``code_scoring`` (shared with HumanEval).
"""

from __future__ import annotations

from typing import Sequence

from agorabench.evaluation.code_scoring import bootstrap_pass_at_k, extract_code, run_and_score, summarize_pass_at_k
from agorabench.evaluation.context import ScoreContext
from agorabench.evaluation.items import EvalItem, as_list, mbpp_eval_prompt
from agorabench.generation.seeds import hub
from agorabench.generation.seeds.offline import fenced_python, mbpp_seed_docs, normalize_newlines

from agorabench.evaluation.benchmarks.mbpp import DOMAIN, PRIMARY  # noqa: E402,F401  (declared there)

INSTRUCTION = (
    "Write a Python function for the task below. Your code must pass the tests shown.\n"
    "Answer with the complete code in a single ```python code block.\n\n"
    "{task}"
)


def build_messages(item: EvalItem, fewshot: Sequence[tuple[str, str]] = ()) -> list[dict]:
    messages: list[dict] = []
    for question, answer in fewshot:
        messages.append({"role": "user", "content": INSTRUCTION.format(task=question)})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": INSTRUCTION.format(task=item.prompt)})
    return messages


def demo_docs(seed_source: str = "offline") -> list[dict]:
    """MBPP tasks that are never evaluated, in task_id order: the seed part of the test set with offline
    seeds, MBPP's few-shot "prompt" split (task ids 1-10) with hub seeds. HumanEval's demos too."""
    docs = hub.fewshot_docs("mbpp") if seed_source == "hub" else mbpp_seed_docs()
    return sorted(docs, key=lambda d: int(d["task_id"]))


def fewshot_examples(k: int, seed_source: str = "offline") -> list[tuple[str, str]]:
    """The first k demo tasks (demo_docs), answers as ```python blocks."""
    docs = demo_docs(seed_source) if k else []
    if k > len(docs):
        raise ValueError(f"fewshot k={k} is more than the {len(docs)} MBPP demo tasks; use a smaller k")
    return [(mbpp_eval_prompt(doc), fenced_python(doc["code"])) for doc in docs[:k]]


def build_program(item: EvalItem, code: str) -> str:
    setup = normalize_newlines(item.extra.get("test_setup_code") or "")
    tests = as_list(item.extra.get("test_list"))
    if not tests:
        raise ValueError(f"item {item.id}: extra['test_list'] is empty; load MBPP items with the mbpp benchmark's load_items")
    return f"{code}\n\n{setup}\n\n" + "\n".join(tests) + "\n"


def score(items: list[EvalItem], outputs: list[str], ctx: ScoreContext) -> list[dict]:
    """One row per (item, output); the same item may appear several times (n samples for pass@k)."""
    if len(items) != len(outputs):
        raise ValueError(f"score: {len(items)} items but {len(outputs)} outputs; pass one output per item")
    codes = [extract_code(output) for output in outputs]
    programs = [None if code is None else build_program(item, code) for item, (code, _) in zip(items, codes)]
    return run_and_score([item.id for item in items], codes, programs, ctx)


def summarize(rows: list[dict]) -> dict[str, float]:
    return summarize_pass_at_k(rows)


def bootstrap_scores(items: list[list[dict]], counts):
    """summarize()'s pass@1 on bootstrap replicates of the items (agorabench/evaluation/resampling.py)."""
    return bootstrap_pass_at_k(items, counts, k=1)
