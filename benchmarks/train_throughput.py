"""Training throughput: `agora train` (TRL SFTTrainer as we configure it) against a bare PyTorch
loop on the same model, the same tokenized batches and the same optimizer, in the same run.

Measured in trained tokens per second (non-padding tokens of the batches, the same count for both):
  ours   train_student's SFTTrainer.train() (data collation, masking, logging, scheduler included)
  bare   for batch in the trainer's own batches: forward, loss, backward, AdamW step, zero_grad
Target: ours / bare >= 0.9. The model load and checkpoint save are reported separately.

    python benchmarks/train_throughput.py [--model smollm2-135m-instruct] [--steps 8] [--rounds 4]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")

from agorabench import env_defaults as offline  # noqa: E402

offline.apply_defaults()


def examples(n: int) -> list[dict]:
    from agorabench.training.sft import conversation

    out = []
    for i in range(n):
        a, b = 3 + 7 * i, 11 + 5 * i
        out.append(conversation(f"A shop sells {a} apples in the morning and {b} in the afternoon. How many in total?",
                                f"In the morning {a}, in the afternoon {b}; together {a} + {b} = {a + b}. "
                                f"[RESULT] {a + b} [/RESULT]", "You are a helpful AI assistant."))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()

    import torch

    from agorabench.config import Params
    from agorabench.training.sft import _training_progress, build_trainer

    params = Params.model_validate({
        "generators": {"none": {"backend": "openai", "model": "none", "base_url": "http://127.0.0.1:9"}},
        "student": {"base": args.model},
        "training": {"learning_rate": 1e-5, "num_epochs": 1, "max_steps": args.steps, "packing": False,
                     "per_device_batch_size": args.batch_size, "gradient_accumulation_steps": 1,
                     "max_length": 512, "lr_scheduler": "constant", "logging_steps": 1}})
    # One epoch exactly, so both sides train on the very same batches.
    data = examples(args.steps * args.batch_size)
    with tempfile.TemporaryDirectory() as scratch:
        t0 = time.perf_counter()
        build_trainer(params, data, scratch)
        setup = time.perf_counter() - t0
        tokens = 0
        ours_runs, bare_runs = [], []
        for round_ in range(args.rounds):  # alternate the order: a noisy neighbour hits both sides
            for side in (("ours", "bare") if round_ % 2 == 0 else ("bare", "ours")):
                trainer = build_trainer(params, data, scratch)
                batches = list(trainer.get_train_dataloader())
                tokens = sum(int(b["attention_mask"].sum()) for b in batches)
                started = time.perf_counter()
                if side == "ours":
                    progress = _training_progress("benchmark")  # as train_student adds it
                    trainer.add_callback(progress)
                    trainer.train()
                    progress.close()
                    ours_runs.append(tokens / (time.perf_counter() - started))
                else:
                    model = trainer.model
                    model.train()
                    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=params.training.weight_decay)
                    for batch in batches:
                        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     labels=batch["labels"]).loss
                        loss.backward()
                        opt.step()
                        opt.zero_grad(set_to_none=True)
                    bare_runs.append(tokens / (time.perf_counter() - started))
        ours, bare = max(ours_runs), max(bare_runs)

    print(f"model {args.model}, {args.steps} steps of batch {args.batch_size}, {tokens} trained tokens, "
          f"torch threads {torch.get_num_threads()}")
    print(f"bare PyTorch loop        {bare:8.1f} tok/s   (best of {args.rounds}: {[round(r) for r in bare_runs]})")
    print(f"agora train (SFTTrainer) {ours:8.1f} tok/s   (best of {args.rounds}: {[round(r) for r in ours_runs]}; "
          f"model load + trainer set-up {setup:.1f} s, not counted)")
    print(f"ratio ours / bare: {ours / bare:.2f}   (target >= 0.9)")


if __name__ == "__main__":
    main()
