"""`transformers serve` as AgoraBench starts it for a `local` generator (engine transformers):

    python -m agorabench.models.transformers_serve [--int8] MODEL --device cpu --host ... --port ...

Two changes to the real CLI, made in the methods transformers 5.23 sends every model and every request
through (pinned in pyproject.toml; tests/test_cpu_weights.py checks both, so an upgrade that moves them
fails there):

- Every generate() runs under torch.inference_mode(). transformers' generate() only turns gradients off
  (no_grad), which still keeps autograd's version counters; in an interleaved A/B on one CPU thread,
  inference mode decoded 11-13% faster for SmolLM2-135M and 5-10% for Qwen2.5-Coder-0.5B. The server
  runs generate() on one persistent thread (InferenceThread), so that thread's loop is wrapped.
- --int8: int8 weights (see agorabench/models/cpu_weights.py). The server has no CPU quantization of its own
  (its --quantization is bitsandbytes, GPU), and it loads every model through ModelManager._load_model.
"""
import sys

import torch

from transformers.cli import transformers as cli
from transformers.cli.serving.model_manager import ModelManager
from transformers.cli.serving.utils import InferenceThread

from agorabench.models.cpu_weights import quantize_model

_load_model = ModelManager._load_model
_thread_loop = InferenceThread._run


def load_int8(self, *args, **kwargs):
    model = quantize_model(_load_model(self, *args, **kwargs), "int8")
    int8 = sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
    print(f"agorabench.models.transformers_serve: {int8} Linear layers with int8 weights", file=sys.stderr, flush=True)
    return model


def thread_loop_in_inference_mode(self):
    with torch.inference_mode():
        _thread_loop(self)


if __name__ == "__main__":
    InferenceThread._run = thread_loop_in_inference_mode
    args = sys.argv[1:]
    if "--int8" in args:
        args.remove("--int8")
        ModelManager._load_model = load_int8
    sys.argv = ["transformers", "serve", *args]
    cli.main()
