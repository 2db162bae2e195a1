r"""MATH: competition problems, the 5,000 of the test set (`evaluation.math_subset: math500`: MATH-500).

The model reasons step by step and ends with ``[RESULT] <answer> [/RESULT]`` (the AgoraBench math
format). Extraction is GSM8K's: the last [RESULT] tag, else the last ``\boxed{}``; the last number
in the output counts only for the flexible score (see the GSM8K module for why PRIMARY is the
flexible "accuracy"; "accuracy_strict" is reported next to it).

Gold = the last ``\boxed{}`` of the reference solution (the loader's ``reference``), compared with
``math-verify``: \frac{1}{2} = 0.5, 2\sqrt{2} = \sqrt{8}, "x=3" = "3", intervals, sets, \text{(C)} = (C).

Why a child process: math-verify (sympy) can hang on pathological answers, and its own timeouts use
``signal.alarm``, which only works in the main thread. So every comparison runs in one long-lived
child Python process (``EquivalenceChecker``), in *its* main thread, where math-verify's soft
timeouts work; the parent waits at most ``HARD_TIMEOUT_S`` per comparison and kills and restarts
the child past that (a hang in C code, where a signal cannot interrupt). This makes ``score`` safe
to call from any thread, and gives the same answers whichever thread calls it. POSIX only (it waits
on the pipe with ``select``).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import Sequence

from agorabench.evaluation.benchmarks import fewshot_turns
from agorabench.evaluation.context import ScoreContext
from agorabench.evaluation.resampling import mean_correct
from agorabench.evaluation.benchmarks.gsm8k.task import extract_answer
from agorabench.evaluation.benchmarks.math import full_items, math500_items  # noqa: F401
from agorabench.evaluation.items import MATH_SUBJECTS, EvalItem, last_boxed
from agorabench.generation.seeds import hub
from agorabench.generation.seeds.offline import math_non500_docs, math_solution_to_target

from agorabench.evaluation.benchmarks.math import DOMAIN, PRIMARY  # noqa: E402,F401  (declared there)

SOFT_TIMEOUT_S = 5  # math-verify's own (signal) timeout per parse / comparison, inside the child
HARD_TIMEOUT_S = 60.0  # parent-side limit per comparison: a parse of each side + verify, each up to 5 s
STARTUP_TIMEOUT_S = 300.0  # the child imports sympy; generous, as cores may be busy

INSTRUCTION = (
    "Solve the following math problem. Think step by step, then write the final answer on the last line "
    "as [RESULT] <answer> [/RESULT]. Give the answer in simplest form, in LaTeX without $ signs.\n\n"
    "Problem: {problem}"
)


def build_messages(item: EvalItem, fewshot: Sequence[tuple[str, str]] = ()) -> list[dict]:
    return fewshot_turns(lambda text: INSTRUCTION.format(problem=text), item.prompt, fewshot)


def fewshot_examples(k: int, seed_source: str = "offline") -> list[tuple[str, str]]:
    """k MATH problems that are never evaluated, one subject after another (round robin) for variety:
    test problems outside MATH-500 with offline seeds (they are the seeds, left out of the evaluation),
    MATH train with hub seeds.

    The answer is the reference solution followed by [RESULT] <its last \\boxed{}> [/RESULT].
    """
    if k == 0:
        return []  # zero-shot needs no demo source (the hub's would need the network)
    if seed_source == "hub":
        docs = [(doc["subject"], doc) for doc in hub.fewshot_docs("math")]
    else:
        docs = [(math_id.split("/")[2], doc) for math_id, doc in math_non500_docs()]
    by_subject: dict[str, list[tuple[str, str]]] = {s: [] for s in MATH_SUBJECTS}
    for subject, doc in docs:
        target = math_solution_to_target(doc["solution"])
        if target is not None:
            by_subject[subject].append((doc["problem"], target))
    demos: list[tuple[str, str]] = []
    depth = 0
    while len(demos) < k and any(len(v) > depth for v in by_subject.values()):
        demos.extend(v[depth] for v in by_subject.values() if len(v) > depth)
        depth += 1
    if len(demos) < k:
        raise ValueError(f"fewshot k={k} is more than the {len(demos)} MATH demo problems; use a smaller k")
    return demos[:k]


# ---------------------------------------------------------------------------------------------
# Equivalence with math-verify, in a child process
# ---------------------------------------------------------------------------------------------


def _strip_delimiters(answer: str) -> str:
    r"""'$x=3$' / '\(x=3\)' / '\boxed{x=3}' -> 'x=3': what a [RESULT] tag sometimes wraps its answer in."""
    answer = answer.strip()
    boxed = last_boxed(answer)
    if boxed:
        answer = boxed
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) > len(left) + len(right):
            answer = answer[len(left) : -len(right)].strip()
            break
    return answer.rstrip(".").strip()


def _verify_here(gold: str, pred: str) -> bool:
    """math-verify in this process. Only correct in a main thread (its timeouts are signal-based)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    latex_only = [LatexExtractionConfig()]
    any_form = [LatexExtractionConfig(), ExprExtractionConfig()]
    # Wrapping in \boxed{} makes math-verify read the whole answer as one expression. Unwrapped, it
    # would search the text and may settle on a part of it: "\frac{14}{3}+1" would match 14/3.
    # The unwrapped parse is only a fallback for answers the boxed form cannot parse at all.
    gold_parsed = parse("\\boxed{" + gold + "}", latex_only, parsing_timeout=SOFT_TIMEOUT_S)
    if not gold_parsed:
        gold_parsed = parse("$" + gold + "$", any_form, parsing_timeout=SOFT_TIMEOUT_S)
    pred_parsed = parse("\\boxed{" + pred + "}", any_form, parsing_timeout=SOFT_TIMEOUT_S)
    if not pred_parsed:
        pred_parsed = parse(pred, any_form, parsing_timeout=SOFT_TIMEOUT_S)
    return bool(pred_parsed) and verify(gold_parsed, pred_parsed, timeout_seconds=SOFT_TIMEOUT_S)


def _serve_equivalence() -> None:
    """The child's loop: one JSON request {"gold", "pred"} per stdin line, one JSON reply per stdout line."""
    import logging

    logging.disable(logging.WARNING)  # math-verify logs every soft timeout; the verdict says enough
    import math_verify  # noqa: F401  - before "ready": a missing package must fail loudly, not score all wrong
    replies = sys.stdout
    sys.stdout = sys.stderr  # a stray print() from a library must not corrupt the reply stream
    replies.write('{"ready": true}\n')
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            equal = _verify_here(request["gold"], request["pred"])
        except Exception:  # noqa: BLE001 - a comparison that errors is a failed comparison
            equal = False
        replies.write(json.dumps({"equal": equal}) + "\n")
        replies.flush()


class EquivalenceChecker:
    """A long-lived child process that answers "is pred equivalent to gold?", with a hard time limit.

    ``check`` returns True/False, or None when the child did not answer in time (it is then killed and
    restarted on the next call). Thread-safe: calls are serialized with a lock.
    """

    def __init__(self, hard_timeout_s: float = HARD_TIMEOUT_S, startup_timeout_s: float = STARTUP_TIMEOUT_S):
        self.hard_timeout_s = hard_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        # Run from the installed package; the repo root on PYTHONPATH covers an uninstalled checkout.
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[4])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-c", "from agorabench.evaluation.benchmarks.math.task import _serve_equivalence; _serve_equivalence()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
        )
        if self._read_reply(proc, self.startup_timeout_s) != {"ready": True}:
            self._kill(proc)
            raise RuntimeError(
                f"the math-verify child process did not start within {self.startup_timeout_s:.0f} s; "
                "check that math-verify==0.9.0 is installed (its error is printed above)"
            )
        return proc

    @staticmethod
    def _read_reply(proc: subprocess.Popen, timeout_s: float) -> dict | None:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        if not ready:
            return None
        line = proc.stdout.readline()
        return json.loads(line) if line else None  # "" = the child died

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        proc.kill()
        proc.wait()

    def check(self, gold: str, pred: str) -> bool | None:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps({"gold": gold, "pred": pred}) + "\n")
                self._proc.stdin.flush()
                reply = self._read_reply(self._proc, self.hard_timeout_s)
            except (BrokenPipeError, ValueError):  # the child died; ValueError = a reply that is not JSON
                reply = None
            if reply is None:  # hung or crashed: a stale reply must never answer the next question
                self._kill(self._proc)
                self._proc = None
                return None
            return bool(reply["equal"])

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                self._kill(self._proc)
                self._proc = None


_CHECKER = EquivalenceChecker()
atexit.register(_CHECKER.close)


def _same_text(a: str, b: str) -> bool:
    return "".join(a.split()) == "".join(b.split())


def is_equivalent(gold: str, pred: str, checker: EquivalenceChecker | None = None) -> bool | None:
    """math-verify equivalence of two answer strings (None = timed out). Safe from any thread."""
    gold, pred = _strip_delimiters(gold), _strip_delimiters(pred)
    if not pred:
        return False
    if _same_text(gold, pred):  # the common case needs no child process
        return True
    return (checker or _CHECKER).check(gold, pred)


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def score(items: list[EvalItem], outputs: list[str], ctx: ScoreContext) -> list[dict]:
    if len(items) != len(outputs):
        raise ValueError(f"score: {len(items)} items but {len(outputs)} outputs; pass one output per item")
    rows = []
    for item, output in zip(items, outputs):
        if not item.reference:
            raise ValueError(f"item {item.id}: no reference answer (the solution has no \\boxed{{}}); check the loader")
        extracted, extracted_by = extract_answer(output or "")
        equal = is_equivalent(item.reference, extracted) if extracted is not None else False
        if extracted is None:
            verdict = "no_answer"
        elif equal is None:
            verdict = "timeout"
        else:
            verdict = "correct" if equal else "wrong"
        rows.append(
            {
                "id": item.id,
                "extracted": extracted,
                "extracted_by": extracted_by,
                "gold": item.reference,
                "level": item.extra.get("level"),
                "correct": float(bool(equal)),
                "correct_strict": float(bool(equal) and extracted_by in ("result_tag", "boxed")),
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
        "timeouts": float(sum(r["verdict"] == "timeout" for r in rows)),
        "n": float(n),
    }


def bootstrap_scores(items: list[list[dict]], counts):
    """summarize()'s accuracy on bootstrap replicates of the items (agorabench/evaluation/resampling.py)."""
    return mean_correct(items, counts)
