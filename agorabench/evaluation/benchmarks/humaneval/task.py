"""HumanEval: 164 Python functions to complete from a signature and docstring, checked by unit tests.

The prompt shows the function stub (imports, helpers, signature, docstring) and asks for the complete
function in one ```python block. Both kinds of answer work:
  * the whole function (it defines ``entry_point``): the program is the stub followed by the answer. The
    stub brings the imports and helper functions the answer may rely on without repeating them (e.g.
    ``from typing import List``, or ``encode_cyclic`` in HumanEval/38), and the answer's ``def`` then
    replaces the stub's (a stub that ends in its docstring is a valid function on its own).
  * only the body: the program is stub + body; a body written without indentation is indented once.
Then the item's ``test`` code and ``check(<entry_point>)``.

HumanEval has no training split, so few-shot demos are MBPP seed tasks rewritten as HumanEval-style
stubs (signature + a docstring with the task text and one example).
"""

from __future__ import annotations

import ast
import re
import textwrap
from typing import Sequence

from agorabench.evaluation.code_scoring import bootstrap_pass_at_k, extract_code, run_and_score, summarize_pass_at_k
from agorabench.evaluation.context import ScoreContext
from agorabench.evaluation.items import EvalItem, as_list
from agorabench.evaluation.benchmarks.mbpp.task import demo_docs
from agorabench.generation.seeds.offline import fenced_python, normalize_newlines

from agorabench.evaluation.benchmarks.humaneval import DOMAIN, PRIMARY  # noqa: E402,F401  (declared there)

INSTRUCTION = (
    "Complete the following Python function. Answer with the complete function, including its signature, "
    "in a single ```python code block.\n\n```python\n{stub}\n```"
)


def build_messages(item: EvalItem, fewshot: Sequence[tuple[str, str]] = ()) -> list[dict]:
    messages: list[dict] = []
    for question, answer in fewshot:
        messages.append({"role": "user", "content": INSTRUCTION.format(stub=question.rstrip())})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": INSTRUCTION.format(stub=item.prompt.rstrip())})
    return messages


def _stub_from_mbpp(doc: dict) -> str | None:
    """An MBPP seed task as a HumanEval-style stub: its imports, the tested function's signature, a docstring."""
    code = normalize_newlines(doc["code"]).strip("\n")
    tests = as_list(doc["test_list"])
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    lines = code.split("\n")
    imports = [ast.get_source_segment(code, n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    for fn in tree.body:
        if not (isinstance(fn, ast.FunctionDef) and tests and re.search(rf"\b{fn.name}\(", tests[0])):
            continue
        if fn.body[0].lineno == fn.lineno:  # a one-line def has no signature line to show on its own
            return None
        indent = " " * fn.body[0].col_offset
        signature = "\n".join(lines[fn.lineno - 1 : fn.body[0].lineno - 1]).rstrip()
        example = tests[0].strip().removeprefix("assert").strip()
        docstring = f'{indent}"""{doc["text"].strip()}\n{indent}For example: {example}\n{indent}"""'
        return "\n".join([*imports, *([""] if imports else []), signature, docstring]) + "\n"
    return None


def fewshot_examples(k: int, seed_source: str = "offline") -> list[tuple[str, str]]:
    """k MBPP demo tasks (mbpp's demo_docs) as (HumanEval-style stub, complete code in a ```python block)."""
    demos = []
    for doc in demo_docs(seed_source) if k else []:
        if len(demos) == k:
            break
        stub = _stub_from_mbpp(doc)
        if stub is not None:
            demos.append((stub, fenced_python(doc["code"])))
    if len(demos) < k:
        raise ValueError(f"fewshot k={k} is more than the {len(demos)} usable MBPP seed demos; use a smaller k")
    return demos


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in tree.body)


def build_program(item: EvalItem, code: str) -> str:
    entry_point = item.extra.get("entry_point")
    if not entry_point or not item.extra.get("test"):
        raise ValueError(f"item {item.id}: extra needs 'entry_point' and 'test'; load HumanEval items with eval_items")
    stub = item.prompt
    if _defines(code, entry_point):
        solution = stub + "\n" + code
    elif code.lstrip("\n")[:1] not in (" ", "\t"):
        # A body written flush left would land at module level after the stub: indent it under the def.
        solution = stub + textwrap.indent(textwrap.dedent(code), "    ")
    else:
        solution = stub + code
    return f"{solution}\n\n{item.extra['test']}\n\ncheck({entry_point})\n"


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
