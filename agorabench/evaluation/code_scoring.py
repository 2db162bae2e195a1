"""What MBPP and HumanEval share: taking code out of a model's answer, running it, and pass@k.

Code extraction, in order (the first that applies wins):
  1. the longest ```python (or ```py / ```python3) fenced block    -> extracted_by "python_block"
  2. the longest fenced block of any other (or no) language       -> "fenced_block"
  3. the whole output, if it parses as Python and has a def/class/import/return line -> "raw"
An unclosed final fence (a truncated answer) counts as a block running to the end of the text.
``<think>...</think>`` reasoning is dropped first. The longest block, not the first, because models
often add a short usage example after the solution.

pass@k uses the unbiased estimator of Chen et al. (2021): with n samples of an item of which c pass,
pass@k = 1 - C(n-c, k) / C(n, k), computed as a product so that large n does not overflow.
"""

from __future__ import annotations

import ast
import math
import re
from collections import defaultdict

from agorabench.evaluation.context import ScoreContext
from agorabench.evaluation.resampling import mean_per_replicate
from agorabench.evaluation.sandbox import ExecResult, SandboxConfig, run_programs

_THINK = re.compile(r"<think>.*?(</think>|$)", re.S)
# ``` + optional language tag, then the body up to the closing fence (or the end of the text).
_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PYTHON_TAGS = {"python", "py", "python3", "py3"}
_CODE_LINE = re.compile(r"^\s*(def|class|import|from|return)\b", re.M)


def extract_code(output: str | None) -> tuple[str | None, str | None]:
    """(code, extracted_by); (None, None) when the output holds no code."""
    if not output:
        return None, None
    text = _THINK.sub("", output)
    blocks = [(tag.lower(), body.strip("\n")) for tag, body in _FENCE.findall(text)]
    blocks = [(tag, body) for tag, body in blocks if body.strip()]
    python = [body for tag, body in blocks if tag in _PYTHON_TAGS]
    if python:
        return max(python, key=len), "python_block"
    if blocks:
        return max((body for _, body in blocks), key=len), "fenced_block"
    raw = text.strip("\n")
    if _CODE_LINE.search(raw) and _parses(raw):
        return raw, "raw"
    return None, None


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def sandbox_config(ctx: ScoreContext) -> SandboxConfig:
    return SandboxConfig(
        allow_code_execution=ctx.allow_code_execution, timeout_s=ctx.sandbox_timeout_s, workers=ctx.sandbox_workers
    )


def _verdict(result: ExecResult | None) -> str:
    if result is None:
        return "no_answer"
    if result.passed:
        return "correct"
    return {"failed": "wrong", "timeout": "timeout"}.get(result.status, "error")


def run_and_score(item_ids: list[str], codes: list[tuple[str | None, str | None]], programs: list[str | None],
                  ctx: ScoreContext) -> list[dict]:  # fmt: skip
    """Run the programs that exist (None = no code: not run, a failure) and build one row per sample."""
    config = sandbox_config(ctx)  # raises the opt-in error before anything runs
    todo = [i for i, program in enumerate(programs) if program is not None]
    results: list[ExecResult | None] = [None] * len(programs)
    for i, result in zip(todo, run_programs([programs[i] for i in todo], config)):
        results[i] = result
    rows = []
    for item_id, (code, extracted_by), result in zip(item_ids, codes, results):
        rows.append(
            {
                "id": item_id,
                "item_id": item_id,
                "extracted": code,
                "extracted_by": extracted_by,
                "correct": float(result is not None and result.passed),
                "verdict": _verdict(result),
                "status": None if result is None else result.status,
                "duration_s": None if result is None else round(result.duration_s, 4),
                "isolation": None if result is None else result.isolation,
                "seccomp": None if result is None else result.seccomp,
                "error_tail": "" if result is None or result.passed else result.stderr_tail[-600:],
                "pass_k": list(ctx.pass_k),
            }
        )
    return rows


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one item: n samples, c of them correct (a fraction in [0, 1])."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0  # every k-subset contains a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def summarize_pass_at_k(rows: list[dict]) -> dict[str, float]:
    """pass@k (percent) for each k in the rows' ``pass_k`` that every item has enough samples for."""
    if not rows:
        raise ValueError("summarize: no rows; score at least one output first")
    per_item: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        per_item[row["item_id"]].append(row["correct"])
    ks = sorted({int(k) for row in rows for k in row.get("pass_k", [1])} | {1})
    min_n = min(len(v) for v in per_item.values())
    out: dict[str, float] = {}
    for k in ks:
        if k > min_n:
            continue  # not enough samples for this k on some item
        scores = [pass_at_k(len(v), int(sum(x >= 1.0 for x in v)), k) for v in per_item.values()]
        out[f"pass@{k}"] = 100.0 * sum(scores) / len(scores)
    out["n_items"] = float(len(per_item))
    out["n_samples"] = float(len(rows))
    out["no_code_rate"] = 100.0 * sum(r["verdict"] == "no_answer" for r in rows) / len(rows)
    out["timeout_rate"] = 100.0 * sum(r["verdict"] == "timeout" for r in rows) / len(rows)
    return out


def bootstrap_pass_at_k(items: list[list[dict]], counts, k: int = 1):
    """summarize_pass_at_k()'s pass@k (percent) on bootstrap replicates of the items: items[i] holds item
    i's sample rows, counts[r, i] how often replicate r drew it (agorabench/evaluation/resampling.py).
    pass@k is a mean over items, so each replicate is the count-weighted mean of the items' pass@k."""
    values = [pass_at_k(len(rows), int(sum(r["correct"] >= 1.0 for r in rows)), k) for rows in items]
    return 100.0 * mean_per_replicate(values, counts)
