"""What a scorer may need beyond the items and outputs: the code sandbox and an LLM judge."""
from __future__ import annotations
from dataclasses import dataclass
from typing import Callable, Sequence

# A judge takes a batch of chat conversations and returns one completion text per conversation
# (None where the judge failed after its retries). It is synchronous; the caller batches.
JudgeFn = Callable[[Sequence[list[dict]]], list["str | None"]]

@dataclass
class ScoreContext:
    allow_code_execution: bool = False   # the user's opt-in; code benchmarks refuse to run without it
    sandbox_timeout_s: float = 10.0
    sandbox_workers: int = 2
    judge: JudgeFn | None = None          # AlpacaEval / Arena-Hard
    judge_name: str = ""                  # recorded with the verdicts
    judge_reasoning: bool = True          # Arena-Hard: the judge answers and critiques before its verdict
    judge_max_answer_chars: int | None = None  # both answers cut to this for the judge (None: whole)
    seed: int = 42                        # bootstraps etc.
    pass_k: tuple[int, ...] = (1,)        # code benchmarks: k values for pass@k
