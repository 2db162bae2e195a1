"""Answering a student in this process: the embedded default's `evaluation.batch_size` against a smaller one.

A batch decodes for as many steps as its longest answer, and a small student often writes up to
max_new_tokens, so the number of batches a domain's items take sets most of a student's evaluation
time. This answers one domain's benchmarks (params.yaml's items, prompts and decoding, as an
evaluate-student stage sends them) for a LoRA student of the base (a random adapter, as
agorabench/testing/students.py writes one) with transformers in this process, once per batch size,
each into a fresh request store, and prints the seconds and baseline / ours (above 1: ours is faster).

    OMP_NUM_THREADS=1 python benchmarks/eval_batch_size.py [--domain math] [--baseline 16] [--batch N]

One thread by default, as a lane of `agora run` has. Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="math", choices=["math", "code", "general"])
    parser.add_argument("--baseline", type=int, default=16)
    parser.add_argument("--batch", type=int, default=None, help="default: params.yaml's evaluation.batch_size")
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    args = parser.parse_args()

    from agorabench.env_defaults import apply_defaults

    apply_defaults()
    from agorabench.config import load_params
    from agorabench.evaluation.run import benchmarks_for, prefetch_answers, select_items
    from agorabench.testing.students import random_lora_student

    params = load_params(args.params)
    ev = params.evaluation
    ours = args.batch or ev.batch_size
    # what an evaluate-student stage of this domain answers
    benchmarks = benchmarks_for(params, f"student:{params.benchmark_generators[0]}/response_generation/{args.domain}")
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        student = random_lora_student(tmp / "student", seed=1, base=params.student.base,
                                      rank=params.training.lora.r if params.training.lora else 16)
        for size in (args.baseline, ours):
            run = params.model_copy(update={
                "cache": params.cache.model_copy(update={"requests_db": str(tmp / f"requests-{size}.sqlite")}),
                # transformers in this process, as `auto` answers a LoRA student on a host without a GPU
                "evaluation": ev.model_copy(update={"batch_size": size, "engine": "transformers"})})
            start = time.perf_counter()
            prefetch_answers(run, student, benchmarks, allow_code_execution=True)
            seconds[size] = time.perf_counter() - start
    n_items = ", ".join(f"{b} {len(select_items(params, b))}" for b in benchmarks)
    print(f"{params.student.base} student, {args.domain}: {n_items} items")
    for size, s in seconds.items():
        print(f"batch {size:>3}: {s:7.1f} s")
    print(f"batch {args.baseline} / batch {ours}: {seconds[args.baseline] / seconds[ours]:.2f}x")


if __name__ == "__main__":
    main()
