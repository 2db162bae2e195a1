"""A student's evaluation in this process: params.yaml's batch size and weights against a baseline.

A LoRA student of the base (a random adapter, as agorabench/testing/students.py writes one) answers
one domain's benchmarks (params.yaml's items, prompts and decoding, as an evaluate-student stage sends
them) with transformers in this process, once as params.yaml says and once with the baseline's one
change, each into a fresh request store. It prints the seconds and baseline / ours (above 1: ours is
faster).

- `--baseline-batch 16`: fewer prompts to a batch. A batch decodes for as many steps as its longest
  answer, and a small student often writes up to max_new_tokens, so the number of batches a domain's
  items take sets most of its time.
- `--baseline-weights float32`: float32 weights where params.yaml's `evaluation.cpu_weights` gives
  bfloat16 (`auto` on a CPU with native bf16). Batched decoding is bound by matrix products, which
  such a CPU computes about twice as fast in bfloat16.

    OMP_NUM_THREADS=1 python benchmarks/student_evaluation.py [--domain math] (--baseline-batch N | --baseline-weights W)

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
    baseline = parser.add_mutually_exclusive_group(required=True)
    baseline.add_argument("--baseline-batch", type=int, help="the baseline's evaluation.batch_size")
    baseline.add_argument("--baseline-weights", choices=["float32", "bfloat16", "int8"],
                          help="the baseline's evaluation.cpu_weights")
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    args = parser.parse_args()

    from agorabench.env_defaults import apply_defaults

    apply_defaults()
    from agorabench.config import load_params
    from agorabench.evaluation.run import benchmarks_for, prefetch_answers, select_items
    from agorabench.models.cpu_weights import effective
    from agorabench.testing.students import random_lora_student

    params = load_params(args.params)
    ev = params.evaluation
    change = ({"batch_size": args.baseline_batch} if args.baseline_batch is not None
              else {"cpu_weights": args.baseline_weights})
    runs = {"baseline": ev.model_copy(update=change), "ours": ev}
    describe = lambda e: f"batch {e.batch_size}, {effective(e.cpu_weights) or 'float32'}"
    # what an evaluate-student stage of this domain answers
    benchmarks = benchmarks_for(params, f"student:{params.benchmark_generators[0]}/response_generation/{args.domain}")
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        student = random_lora_student(tmp / "student", seed=1, base=params.student.base,
                                      rank=params.training.lora.r if params.training.lora else 16)
        for name, evaluation in runs.items():
            run = params.model_copy(update={
                "cache": params.cache.model_copy(update={"requests_db": str(tmp / f"requests-{name}.sqlite")}),
                # transformers in this process, as `auto` answers a LoRA student on a host without a GPU
                "evaluation": evaluation.model_copy(update={"engine": "transformers"})})
            start = time.perf_counter()
            prefetch_answers(run, student, benchmarks, allow_code_execution=True)
            seconds[name] = time.perf_counter() - start
    n_items = ", ".join(f"{b} {len(select_items(params, b))}" for b in benchmarks)
    print(f"{params.student.base} student, {args.domain}: {n_items} items")
    for name, s in seconds.items():
        print(f"{name:>8} ({describe(runs[name])}): {s:7.1f} s")
    print(f"baseline / ours: {seconds['baseline'] / seconds['ours']:.2f}x")


if __name__ == "__main__":
    main()
