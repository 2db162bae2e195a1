"""`transformers serve` with int8 weights (see agorabench/cpu_weights.py), for a `local` generator with
`cpu_weights: int8`:  python -m agorabench.int8_serve MODEL --device cpu --host ... --port ...

transformers 5.23's server has no CPU quantization (its --quantization is bitsandbytes, GPU), and it
loads every model through ModelManager._load_model, so we wrap that method and hand the command line
to the real CLI. Pinned with transformers in pyproject.toml; tests/test_cpu_weights.py starts this server
and checks that its weights are int8, so a transformers upgrade that moves the method fails there.
"""
import sys

import torch

from transformers.cli import transformers as cli
from transformers.cli.serving.model_manager import ModelManager

from agorabench.cpu_weights import quantize_model

_load_model = ModelManager._load_model


def _load_int8(self, *args, **kwargs):
    model = quantize_model(_load_model(self, *args, **kwargs), "int8")
    int8 = sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
    print(f"agorabench.int8_serve: {int8} Linear layers with int8 weights", file=sys.stderr, flush=True)
    return model


if __name__ == "__main__":
    ModelManager._load_model = _load_int8
    sys.argv = ["transformers", "serve", *sys.argv[1:]]
    cli.main()
