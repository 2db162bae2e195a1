"""Response quality from a reward model: any Hugging Face sequence-classification model with one
output (the paper: Skywork-Reward-Llama3.1-8B). Optional, and imported only when used.

The conversation is the user instruction and the assistant response, rendered with the reward
model's own chat template (the format it was trained on), with no system turn. The score is the
model's single logit at the last real token. Right padding plus the model's own "rightmost non-pad
token" rule make the score independent of what else is in the batch.
"""
from __future__ import annotations

from typing import Sequence


def load_reward_model(path: str, device: str = "cpu", trust_remote_code: bool = False):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from agorabench.models.packaged import resolve_model

    resolved = resolve_model(path)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(resolved, dtype=dtype,
                                                               trust_remote_code=trust_remote_code)
    if model.config.num_labels != 1:
        raise ValueError(f"intrinsic.reward_model: {path} has {model.config.num_labels} outputs; "
                         f"a reward model has exactly one (num_labels=1)")
    tok = AutoTokenizer.from_pretrained(resolved, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if model.config.pad_token_id is None:  # without it the model refuses batches larger than one
        model.config.pad_token_id = tok.pad_token_id
    tok.padding_side = "right"
    return model.to(device).eval(), tok


def _render(tok, instruction: str, response: str) -> str:
    conv = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
    if tok.chat_template:
        return tok.apply_chat_template(conv, tokenize=False)
    # A reward model without a template: a plain, documented layout rather than a failure.
    return f"User: {instruction}\n\nAssistant: {response}"


def reward_scores(model, tok, examples: Sequence[tuple[str, str]], *, batch_size: int = 4,
                  max_length: int = 4096, on_done=None) -> list[dict]:
    """Per (instruction, response): {"reward", "truncated"}."""
    import torch

    texts = [_render(tok, i, r) for i, r in examples]
    results: list[dict | None] = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    device = next(model.parameters()).device
    add_special = not tok.chat_template  # a rendered template already holds BOS and friends
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        full = [len(tok(texts[i], add_special_tokens=add_special)["input_ids"]) for i in chunk]
        enc = tok([texts[i] for i in chunk], return_tensors="pt", padding=True, truncation=True,
                  max_length=max_length, add_special_tokens=add_special).to(device)
        with torch.inference_mode():
            logits = model(**enc).logits.float()
        for b, i in enumerate(chunk):
            results[i] = {"reward": float(logits[b, 0]), "truncated": full[b] > max_length}
        if on_done:
            on_done(len(chunk))
    return results  # type: ignore[return-value]


def rewards(model_path: str, examples: Sequence[tuple[str, str]], *, batch_size: int = 4, max_length: int = 4096,
            device: str = "cpu", trust_remote_code: bool = False, on_done=None) -> list[dict]:
    if not examples:
        return []
    model, tok = load_reward_model(model_path, device, trust_remote_code)
    try:
        return reward_scores(model, tok, examples, batch_size=batch_size, max_length=max_length, on_done=on_done)
    finally:
        del model


__all__ = ["load_reward_model", "reward_scores", "rewards"]
