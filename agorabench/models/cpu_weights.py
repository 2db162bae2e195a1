"""The weights a local model runs with on a CPU: float32 (the default), bfloat16 or int8.

Why: on a small CPU every answer costs minutes, and the two cheaper formats win in different places.
Measured on 2 cores with native bf16 (AVX512-BF16/AMX), Qwen2.5-Coder-0.5B-Instruct:

                                   float32   bfloat16   int8 (torch dynamic quantization)
  a 2,600-token prompt (a judge)     18.3 s      7.9 s     11.2 s
  10 GSM8K+MATH answers, batched     90 s       45 s       47 s
  decoding one answer                7.4 tok/s  7.0        15-19

bfloat16 is the format these models were trained in, and its answers match float32's closely.
int8 quantizes every Linear layer per tensor: it decodes twice as fast, but it changes the model. In
our run the int8 Qwen stopped answering Arena-Hard's 2,500-token judge prompt with a verdict and
continued the answers instead, where the float32 and bfloat16 ones give verdicts. int8 is there for
generation-only models.

The default profile serves its generators with vLLM in `auto`: 1.6-2x faster generation, though vLLM's
bfloat16 answers depend on what else is in the batch, so a run from an empty request store may write
other data than the last (float32 writes the same). The 1.5B reference answers in bfloat16 (float32
does not fit beside the rest), and the base and its students in this process with `auto`: one
SmolLM2-135M answer decodes no faster in bfloat16, but a batch of 32 1.5-1.8x as fast
(benchmarks/student_evaluation.py).

A CPU without native bf16 runs bfloat16 slower than float32, so "auto" (the default profile's value)
means bfloat16 where the CPU has it (avx512_bf16 or amx_bf16 in /proc/cpuinfo) and float32 elsewhere.
On a GPU the setting is ignored: models load in bf16 there anyway, and torch's int8 kernels are
CPU-only. Either way the weights are part of what identifies an answer in the request store.
"""
from __future__ import annotations

CPU_WEIGHTS = ("auto", "float32", "bfloat16", "int8")


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (Linux: avx512_bf16 or amx_bf16)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def effective(cpu_weights: str | None) -> str | None:
    """The non-default weights a model loaded on this host gets: "bfloat16", "int8" or None (float32, or a GPU)."""
    if cpu_weights not in (None, *CPU_WEIGHTS):
        raise ValueError(f"cpu_weights must be one of {', '.join(CPU_WEIGHTS)}, not {cpu_weights!r}")
    if cpu_weights == "auto":
        cpu_weights = "bfloat16" if native_bf16() else None
    if cpu_weights in (None, "float32"):
        return None
    import torch

    return None if torch.cuda.is_available() else cpu_weights


def load_dtype(cpu_weights: str | None):
    """The dtype to load a model in on this host: bfloat16 on a GPU or when asked, else float32."""
    import torch

    if torch.cuda.is_available() or effective(cpu_weights) == "bfloat16":
        return torch.bfloat16
    return torch.float32


def quantize_model(model, cpu_weights: str | None):
    """`model` with int8 Linear layers (in place) when `cpu_weights` is int8 on a CPU, else as it is."""
    if effective(cpu_weights) != "int8" or next(model.parameters()).device.type != "cpu":
        return model
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch 2.13 points eager-mode quantization users at torchao; the eager API still works and
        # torchao is not installed (nor needed) here.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
