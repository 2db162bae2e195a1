"""Tiny, randomly initialised Llama checkpoints over a real tokenizer, and the shipped FSDP config set
to CPU processes: what tests and the paper profile's rehearsal train and serve when the model's
numbers do not matter, only that every code path runs.

May import: anything in agorabench (it sits beside the pipeline, not in it).
"""
from __future__ import annotations

from pathlib import Path

import yaml

# The tests' shape: head_dim 8 keeps training and answering fast in transformers. vLLM's CPU attention
# takes no head under 64, so a model it serves needs hidden_size / num_attention_heads >= 64 (rehearsal.py).
SHAPE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=4096)


def save_tiny_llama(tok, out: str | Path, head: str = "causal_lm", **shape) -> str:
    """A 2-layer Llama over `tok`'s vocabulary, seeded (the same bytes every time), saved with `tok` in
    `out`. head: "causal_lm" (a student or base) or "score" (a reward model, one label). shape: any
    LlamaConfig field, over SHAPE."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    config = dict(SHAPE, vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  tie_word_embeddings=True, **shape)
    cls = {"causal_lm": LlamaForCausalLM, "score": LlamaForSequenceClassification}[head]
    if head == "score":
        config.update(num_labels=1, pad_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    cls(LlamaConfig(**config)).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def cpu_fsdp_config(source: str | Path = "configs/accelerate_fsdp.yaml", processes: int = 2, **changes) -> dict:
    """An accelerate config (the paper profile's FSDP one by default) set to `processes` CPU processes
    over gloo, in float32; changes: any other accelerate field (a rendezvous port, a distributed_type)."""
    config = yaml.safe_load(Path(source).read_text())
    config.update(num_processes=processes, use_cpu=True, mixed_precision="no", **changes)
    return config
