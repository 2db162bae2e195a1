"""What AlpacaEval 2.0 and Arena-Hard share: the student's prompt, few-shot demos, calling the judge and
finding its verdict among the reply's tokens.

Both benchmarks put a model's answer next to a fixed baseline answer and ask an LLM judge which is
better; they differ only in the judge prompt, the verdict scale and the statistics on top.

Reading a verdict from log-probabilities. Both judges answer with a tag, [[A]] or [[A>B]]. The token
that holds the tag's first letter (the verdict slot) is where the judge decides; its top alternatives
there give the probability of each letter, as AlpacaEval 2.0's weighted annotator reads the one token
its judge writes. The slot is that of the reply's FIRST tag, whatever follows: a small judge that goes
on to echo the whole scale ("[[A>>B]] ... [[A>B]] ... [[B>>A]]") has no text verdict, but its first
tag is the one it chose (upstream, too, reads the first token only).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from agorabench.evaluation.context import ScoreContext
from agorabench.evaluation.items import EvalItem
from agorabench.models.store import alternatives  # noqa: F401  (the benchmarks read it from here)


class NoVerdict(ValueError):
    """Every judgement failed (or none was usable): the benchmark has no score for this model.

    evaluate() records the score as missing, with this message, instead of failing the stage: one
    weak judge must not take a run's other results with it. PGR is then undefined there.
    """


def build_messages(item: EvalItem, fewshot: Sequence[tuple[str, str]] = ()) -> list[dict]:
    """The instruction as the user turn; demos as earlier user/assistant turns. No system prompt:
    the benchmarks measure the model's own instruction-following, so we add no instructions of our own."""
    messages: list[dict] = []
    for question, answer in fewshot:
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": item.prompt})
    return messages


@functools.lru_cache(maxsize=1)
def _general_demos() -> tuple[tuple[str, str], ...]:
    # The Self-Instruct seed pairs that AgoraBench already packages for the general domain, already
    # decontaminated against every eval set. Ordered by a hash of their id, so that the first k demos
    # are a fixed mix of task types rather than the file's first k (which cluster by topic).
    from agorabench.generation.seeds import load_seeds

    seeds = load_seeds("general", "instance_generation")
    ranked = sorted(seeds, key=lambda s: hashlib.sha256(f"fewshot/{s.id}".encode()).hexdigest())
    return tuple((s.instruction, s.response) for s in ranked)


def fewshot_examples(k: int, seed_source: str = "offline") -> list[tuple[str, str]]:
    """k deterministic (instruction, response) demos from the Self-Instruct seed tasks (never eval items,
    whatever the seed source)."""
    if k < 0:
        raise ValueError(f"fewshot k must be >= 0, got {k}")
    if k == 0:
        return []  # no asset needed for zero-shot
    demos = _general_demos()
    if k > len(demos):
        raise ValueError(f"fewshot k={k} is more than the {len(demos)} Self-Instruct demos available; use k <= {len(demos)}")
    return list(demos[:k])


@functools.lru_cache(maxsize=None)
def read_prompt(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def check_inputs(benchmark: str, items: Sequence[EvalItem], outputs: Sequence, ctx: ScoreContext) -> None:
    if len(items) != len(outputs):
        raise ValueError(f"{benchmark}: got {len(items)} items but {len(outputs)} outputs; pass one output per item")
    if ctx.judge is None:
        raise ValueError(f"{benchmark} needs an LLM judge: set ScoreContext.judge (a JudgeFn) before scoring")


class JudgeReply(NamedTuple):
    text: str | None  # None: the judge failed (a judge error)
    logprobs: tuple | None  # per reply token (token, logprob, ((alternative, logprob), ...)); None: not given


def call_judge(benchmark: str, ctx: ScoreContext, conversations: list[list[dict]],
               top_logprobs: int = 0) -> list[JudgeReply]:
    """One JudgeReply per conversation; a reply that is neither text nor has .text becomes a failure.

    top_logprobs > 0 asks the judge for the reply's token log-probabilities (judges that cannot give
    them answer with text, and their replies carry none). The judge is called once with the whole
    batch: the caller (the lead's client) owns concurrency and retries. Exceptions are not caught: a
    judge that raises is misconfigured, not flaky.
    """
    if not conversations:
        return []
    replies = list(ctx.judge(conversations, top_logprobs=top_logprobs) if top_logprobs else ctx.judge(conversations))
    if len(replies) != len(conversations):
        raise ValueError(
            f"{benchmark}: the judge returned {len(replies)} replies for {len(conversations)} conversations;"
            " a JudgeFn must return exactly one (or None) per conversation"
        )
    out = []
    for r in replies:
        if isinstance(r, str):
            out.append(JudgeReply(r, None))
        elif isinstance(getattr(r, "text", None), str):
            out.append(JudgeReply(r.text, getattr(r, "logprobs", None) or None))
        else:
            out.append(JudgeReply(None, None))
    return out


# The first verdict tag's letter: "[[A", "[[ b", "[[B>>A" (any case, as the parsers accept it).
_FIRST_TAG = re.compile(r"\[\[\s*([AaBb])")


def verdict_slot(logprobs: Sequence, bare_label: str | None = None) -> int | None:
    """Index of the reply token that holds the first verdict tag's letter (the module docstring says
    why the first). Without a tag, and only when the text's verdict is a bare label (bare_label "A" or
    "B", a reply such as "B"), the first token that is that label by itself. None when neither exists
    among the tokens given."""
    tokens = [position[0] for position in logprobs]
    tag = _FIRST_TAG.search("".join(tokens))
    if tag is not None:
        end = 0
        for i, token in enumerate(tokens):
            end += len(token)
            if end > tag.start(1):
                return i
    if bare_label in ("A", "B"):
        return next((i for i, t in enumerate(tokens) if t.strip(" \t\n[]()*.:").upper() == bare_label), None)
    return None


def clip(answer: str, max_chars: int | None) -> str:
    """An answer as the judge sees it: cut to max_chars (None: whole), saying it was cut. The model's
    and the baseline's answers are cut alike, so neither side wins by length the judge never read."""
    if max_chars is None or len(answer) <= max_chars:
        return answer
    return answer[:max_chars] + "\n[... cut for the judge]"


def is_empty(output: str | None) -> bool:
    return output is None or not output.strip()
