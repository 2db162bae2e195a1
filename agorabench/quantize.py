"""int8 weights for CPU inference: torch's dynamic quantization of every Linear layer.

Why: decoding on a small CPU reads every weight once per token, so it is bound by memory traffic, and
int8 weights are a quarter of float32's (activations are quantized on the fly, per batch). Measured on
2 cores, greedy, batch 1, 160-256 new tokens: Qwen2.5-Coder-0.5B-Instruct 7.4 -> 15-19 tokens/s,
SmolLM2-135M-Instruct 17-19 -> 22-31; batches of 4 gain more (Qwen 48 tokens/s). It is also what the
GGUF files the packaged models come from are made for: a quantized model on a CPU.

The answers are not float32's: greedy decoding of a quantized model drifts to other (equally fluent)
wordings after a few dozen tokens. So a quantized model is a different model to the request store
(`identity`), and the README says which numbers come from int8 weights. On a GPU nothing is quantized:
torch's dynamic int8 kernels are CPU-only, and bf16 is what a GPU is for.
"""
from __future__ import annotations

QUANTIZATIONS = ("int8",)


def effective(quantize: str | None) -> str | None:
    """What quantization a model loaded here gets: `quantize` on a CPU-only host, None on a GPU host."""
    if quantize is None:
        return None
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS} or null, not {quantize!r}")
    import torch

    return None if torch.cuda.is_available() else quantize


def quantize_model(model, quantize: str | None):
    """`model` with int8 Linear layers (in place where torch can) when `effective(quantize)`, else as is."""
    if effective(quantize) is None or next(model.parameters()).device.type != "cpu":
        return model
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch 2.13 points eager-mode quantization users at torchao; the eager API still works and
        # torchao is not installed (nor needed) here.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
