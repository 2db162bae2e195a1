"""Response perplexity under the base student, one number per example.

The example is rendered exactly as the student is trained on it (training.conversation: optional
system turn, the instruction as the user turn, the response as the assistant turn, with the
student's chat template), and only the tokens after the prompt - the assistant turn, including its
closing template tokens, the same tokens the SFT loss sees - are scored:

    PPL_i = exp( mean over response tokens t of -log p(token_t | tokens_<t) )

Fixes over the official code (docs/paper.md §3.2): the model is the student, not the judge; a chat template
separates instruction and response; pad and prompt tokens are masked; and each example gets its own
loss - the official code gave every example of a batch the batch's mean loss.

Batching: right padding (real tokens keep positions 0..L-1, pads come after them and a causal model
never attends forward), and logits are computed only at the positions that predict response tokens,
so a 128K vocabulary does not need batch x length x vocab floats.

Examples longer than max_length are cut from the right (the prompt and the start of the response
are kept) and flagged; one whose prompt alone fills max_length has no response token left and gets
perplexity None (verdict "too_long").
"""
from __future__ import annotations

import inspect
import math
from typing import Sequence


def load_causal_lm(path: str, device: str = "cpu", chat_template: str | None = None):
    """(model, tokenizer) for scoring: packaged names, folders and hub ids, as everywhere else."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agorabench.models import chat_template as templates
    from agorabench.models.packaged import resolve_model

    resolved = resolve_model(path)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(resolved, dtype=dtype).to(device).eval()
    # The template the student is trained in (models/chat_template.py: the configured one, the
    # tokenizer's own, or the Llama-3 format for a base model that ships none).
    tok = templates.apply(AutoTokenizer.from_pretrained(resolved), chat_template)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def encode_example(tok, instruction: str, response: str, system_prompt: str | None) -> tuple[list[int], int]:
    """(token ids of the whole conversation, number of prompt tokens before the response)."""
    prompt = [{"role": "system", "content": system_prompt}] if system_prompt else []
    prompt.append({"role": "user", "content": instruction})
    full = prompt + [{"role": "assistant", "content": response}]
    prompt_text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tok.apply_chat_template(full, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ValueError("the chat template renders the prompt differently with and without the response; "
                         "set student.chat_template to a template whose prompt is a prefix of the conversation")
    # The template already holds the special tokens (BOS etc.); adding them again would double them.
    full_ids = tok(full_text, add_special_tokens=False)["input_ids"]
    prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    # Merging across the boundary could in principle change the last prompt token; count the prefix
    # that really is shared, so no response token is ever counted as prompt or the reverse.
    n_prompt = 0
    for a, b in zip(prompt_ids, full_ids):
        if a != b:
            break
        n_prompt += 1
    return full_ids, n_prompt


def _accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def response_nll(model, tok, examples: Sequence[tuple[str, str]], *, system_prompt: str | None = None,
                 batch_size: int = 4, max_length: int = 4096, on_done=None) -> list[dict]:
    """Per example: {"nll_sum", "response_tokens", "perplexity", "truncated", "verdict"}.

    `examples` are (instruction, response) pairs. The result is independent of batch_size and of
    the other examples in a batch (tests/test_intrinsic.py checks batched == one by one).
    """
    import torch

    encoded = []
    for instruction, response in examples:
        ids, n_prompt = encode_example(tok, instruction, response, system_prompt)
        truncated = len(ids) > max_length
        encoded.append((ids[:max_length], n_prompt, truncated))
    results: list[dict | None] = [None] * len(encoded)
    # Similar lengths together: less padding. The order does not change any result.
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    device = next(model.parameters()).device
    use_keep = _accepts_logits_to_keep(model)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        # The first token has nothing before it to be predicted from, so at least one prompt token.
        scored = [i for i in chunk if len(encoded[i][0]) > max(encoded[i][1], 1)]
        for i in chunk:
            if i not in scored:
                results[i] = {"nll_sum": None, "response_tokens": 0, "perplexity": None,
                              "truncated": encoded[i][2], "verdict": "too_long" if encoded[i][2] else "empty"}
        if scored:
            width = max(len(encoded[i][0]) for i in scored)
            input_ids = torch.full((len(scored), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(scored), width), dtype=torch.long)
            # keep[b, t]: position t predicts a response token (token t+1 lies in the response).
            keep = torch.zeros((len(scored), width), dtype=torch.bool)
            for b, i in enumerate(scored):
                ids, n_prompt, _ = encoded[i]
                input_ids[b, :len(ids)] = torch.tensor(ids)
                attention[b, :len(ids)] = 1
                keep[b, max(n_prompt, 1) - 1:len(ids) - 1] = True
            targets = torch.zeros_like(input_ids)
            targets[:, :-1] = input_ids[:, 1:]
            input_ids, attention, keep, targets = (t.to(device) for t in (input_ids, attention, keep, targets))
            with torch.inference_mode():
                if use_keep:
                    logits = model(input_ids=input_ids, attention_mask=attention, logits_to_keep=keep).logits
                else:
                    logits = model(input_ids=input_ids, attention_mask=attention).logits
                if logits.ndim == 3:  # a model that ignored the mask returns every position
                    logits = logits[keep]
                # float32 log-softmax: bf16 logits would round the per-token losses visibly.
                token_nll = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="none")
            # keep[...] flattens row by row, so each row's tokens are one contiguous run.
            counts = keep.sum(dim=1).tolist()
            sums = torch.split(token_nll, counts)
            for b, i in enumerate(scored):
                nll_sum = float(sums[b].double().sum())
                n = counts[b]
                results[i] = {"nll_sum": nll_sum, "response_tokens": n, "perplexity": math.exp(nll_sum / n),
                              "truncated": encoded[i][2], "verdict": "ok"}
        if on_done:
            on_done(len(chunk))
    return results  # type: ignore[return-value]


def perplexities(model_path: str, examples: Sequence[tuple[str, str]], *, system_prompt: str | None = None,
                 chat_template: str | None = None, batch_size: int = 4, max_length: int = 4096,
                 device: str = "cpu", on_done=None) -> list[dict]:
    """Load the model, score every example, free the model."""
    if not examples:
        return []
    model, tok = load_causal_lm(model_path, device, chat_template)
    try:
        return response_nll(model, tok, examples, system_prompt=system_prompt, batch_size=batch_size,
                            max_length=max_length, on_done=on_done)
    finally:
        del model


__all__ = ["load_causal_lm", "encode_example", "response_nll", "perplexities"]
