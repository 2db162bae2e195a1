"""What a scorer may need beyond the items and outputs: the code sandbox and an LLM judge."""
from __future__ import annotations
from dataclasses import dataclass
from typing import Callable, Sequence

# A judge takes a batch of chat conversations and returns one reply per conversation: its text, or None
# where the judge failed after its retries. Called with top_logprobs=k (only when a benchmark asks for
# them), a judge that can give token log-probabilities returns objects with .text and .logprobs instead
# (models/store.py Completion: per reply token, (token, logprob, top-k alternatives)); one that cannot
# returns text as always. Synchronous; the caller batches.
JudgeFn = Callable[..., list]

@dataclass
class ScoreContext:
    allow_code_execution: bool = False   # the user's opt-in; code benchmarks refuse to run without it
    sandbox_timeout_s: float = 10.0
    sandbox_workers: int = 2
    judge: JudgeFn | None = None          # AlpacaEval / Arena-Hard
    judge_name: str = ""                  # recorded with the verdicts
    judge_reasoning: bool = True          # Arena-Hard: the judge answers and critiques before its verdict
    judge_max_answer_chars: int | None = None  # both answers cut to this for the judge (None: whole)
    # Top log-probabilities the judged benchmarks ask the judge for at each reply token (0: read the
    # verdict from the text only). AlpacaEval always asks; Arena-Hard only for the verdict-only prompt.
    judge_top_logprobs: int = 0
    seed: int = 42                        # bootstraps etc.
    pass_k: tuple[int, ...] = (1,)        # code benchmarks: k values for pass@k
