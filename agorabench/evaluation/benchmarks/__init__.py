"""One folder per benchmark; each exposes DOMAIN, PRIMARY, build_messages, fewshot_examples, score, summarize."""
from __future__ import annotations

from typing import Callable, Sequence


def fewshot_turns(render: Callable[[str], str], question: str,
                  fewshot: Sequence[tuple[str, str]] = ()) -> list[dict]:
    """Demos as earlier user/assistant turns, then the question; every user turn rendered alike."""
    messages: list[dict] = []
    for demo_question, demo_answer in fewshot:
        messages.append({"role": "user", "content": render(demo_question)})
        messages.append({"role": "assistant", "content": demo_answer})
    messages.append({"role": "user", "content": render(question)})
    return messages
