"""The chat template a model is trained and prompted with: one answer for training, perplexity and evaluation.

    student.chat_template: llama3   the Llama-3 format of the paper's recipe (chat_templates/llama3.jinja,
                                    ours: a system turn, then user and assistant turns, no date lines)
    student.chat_template: FILE     that Jinja file
    null                            the tokenizer's own template; a checkpoint that ships none (a base
                                    model) gets the Llama-3 format

training/sft.py, intrinsic/perplexity.py and the answerers of models evaluated here (models/in_process.py,
models/served.py) all go through `resolve`. A base model's generation config stops at its end-of-text
token only, so `end_of_turn_ids` names the token that ends an answer in the format it is prompted with.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from agorabench.config import ParamsError

LLAMA3 = "llama3"
LLAMA3_FILE = Path(__file__).parent / "chat_templates" / "llama3.jinja"
END_OF_TURN = "<|eot_id|>"  # closes every turn of the Llama-3 format


def configured_text(configured: str | None) -> str | None:
    """The text of the template `student.chat_template` names; None for null."""
    if not configured:
        return None
    path = LLAMA3_FILE if configured == LLAMA3 else Path(configured)
    if not path.is_file():
        raise ParamsError(f"student.chat_template: {configured} is not a file; give {LLAMA3!r} (the Llama-3 "
                          f"format), a Jinja template file, or null for the tokenizer's own")
    return path.read_text(encoding="utf-8")


def digest(configured: str | None) -> str | None:
    """sha256 of the configured template's text (None for null): what names it in request and result keys."""
    text = configured_text(configured)
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def resolve(tokenizer, configured: str | None) -> str:
    """The template `tokenizer`'s model is used with: the configured one, else its own, else Llama-3's."""
    return configured_text(configured) or tokenizer.chat_template or LLAMA3_FILE.read_text(encoding="utf-8")


def apply(tokenizer, configured: str | None):
    """`tokenizer` with `resolve`'s template set on it (saved with it, when a student is saved)."""
    tokenizer.chat_template = resolve(tokenizer, configured)
    return tokenizer


def end_of_turn_ids(tokenizer) -> list[int]:
    """The token ids that end an answer besides the model's own end-of-text: <|eot_id|> when the
    tokenizer's template closes turns with it and its vocabulary has it as one token."""
    if END_OF_TURN not in (tokenizer.chat_template or ""):
        return []
    token = tokenizer.get_vocab().get(END_OF_TURN)
    return [] if token is None else [token]
