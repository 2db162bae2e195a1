"""Answering a LoRA student on a CPU: merged into a copy of its base that a vLLM server of its own
answers (what `evaluation.engine: auto` does on a CPU) against transformers in this process with the
adapter merged (`evaluation.engine: transformers`). --adapter adds vLLM with the adapter loaded into
its base's server (what a GPU host does), which is several times slower on a CPU.

Each side answers the same student (a random adapter of rank --rank on --model, as
agorabench/testing/students.py writes one) through the library's own answerers, as an evaluate-student
stage does: ServedModelAnswerer with merge_lora (the merge, the copy written, its server started) and
TransformersAnswerer (the model loaded and merged), --batch requests in flight or to a batch. One warm-up
question each first, then --questions questions, greedy, --max-tokens tokens at most. The defaults are
the embedded default's math domain (30 items, 384 tokens, 32 at a time). Prints the seconds to be ready
(start-up, merge, load, warm-up), decoded tokens per second, the seconds in all, and transformers' seconds
/ vLLM merged's (above 1: the merged copy on vLLM is faster, start-up included).

    python benchmarks/lora_students.py [--model smollm2-135m-instruct] [--questions 30] [--batch 32]
        [--max-tokens 384] [--rank 16] [--weights auto] [--adapter]

Run it on a quiet machine with OMP_NUM_THREADS=1, as a lane runs a stage (vLLM gets one thread on 2 cores).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def questions(n: int, offset: int = 0) -> list[list[dict]]:
    return [[{"role": "user", "content": f"A farmer has {12 + i} sheep and buys {3 + i % 5} more each week. "
                                         f"How many sheep does the farmer have after {2 + i % 7} weeks? "
                                         f"Explain step by step."}] for i in range(offset, offset + n)]


def rate(answerer, n: int, decoding, ready_s: float = 0.0) -> dict:
    """Warm-up (one question: the model load, merge or server start happens here), then `n` others."""
    start = time.perf_counter()
    answerer.answer_many(questions(1, offset=10_000), decoding)
    ready = ready_s + time.perf_counter() - start
    start = time.perf_counter()
    done = answerer.answer_many(questions(n), decoding)
    seconds = time.perf_counter() - start
    tokens = sum(c.output_tokens for c in done if c is not None)
    return {"ready_s": ready, "tokens": tokens, "tokens_per_s": tokens / seconds, "total_s": ready + seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--weights", default="auto", help="cpu_weights of both sides (auto: bfloat16 where native)")
    parser.add_argument("--adapter", action="store_true", help="also vLLM with the adapter in its base's server")
    args = parser.parse_args()

    from agorabench.env_defaults import apply_defaults

    apply_defaults()
    from agorabench.models.answering import Decoding
    from agorabench.models.cpu_weights import effective
    from agorabench.models.endpoint import Endpoint
    from agorabench.models.in_process import TransformersAnswerer
    from agorabench.models.served import ServedModelAnswerer
    from agorabench.models.servers import LocalModelServer, vllm_python
    from agorabench.models.store import RequestStore
    from agorabench.testing.students import random_lora_student

    if vllm_python() is None:
        sys.exit("vLLM is not installed: scripts/vllm-env.sh builds .venv-vllm (make run does)")
    weights = effective(args.weights) or "float32"
    greedy = Decoding(temperature=0.0, top_p=1.0, max_new_tokens=args.max_tokens, repetition_penalty=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        student = random_lora_student(tmp / "student", seed=1, base=args.model, rank=args.rank)
        results = {}
        with TransformersAnswerer(student, RequestStore(tmp / "t.sqlite"), batch_size=args.batch,
                                  cpu_weights=weights) as answerer:
            results["transformers, merged"] = rate(answerer, args.questions, greedy)
        with ServedModelAnswerer(student, RequestStore(tmp / "m.sqlite"), concurrency=args.batch,
                                 cpu_weights=weights, merge_lora=True) as answerer:
            results["vLLM, merged copy"] = rate(answerer, args.questions, greedy)
        if args.adapter:
            with LocalModelServer(args.model, engine="vllm", lora=True, cpu_weights=weights,
                                  log_path=Path(".agora/logs") / "lora-students-vllm.log") as server:
                served = Endpoint(server.base_url, server.model_id)
                with ServedModelAnswerer(student, RequestStore(tmp / "v.sqlite"), concurrency=args.batch,
                                         cpu_weights=weights, endpoint=served) as answerer:
                    results["vLLM, adapter"] = rate(answerer, args.questions, greedy, server.startup_s)

    print(f"{args.model} + a rank-{args.rank} LoRA adapter, {weights}, greedy, {args.questions} questions, "
          f"{args.batch} at a time, up to {args.max_tokens} tokens")
    print(f"{'':<24}{'ready (s)':>10}{'tokens':>8}{'tokens/s':>10}{'in all (s)':>12}")
    for name, r in results.items():
        print(f"{name:<24}{r['ready_s']:>10.1f}{r['tokens']:>8}{r['tokens_per_s']:>10.1f}{r['total_s']:>12.1f}")
    ours, baseline = results["vLLM, merged copy"], results["transformers, merged"]
    print(f"transformers merged / vLLM merged copy, seconds in all: {baseline['total_s'] / ours['total_s']:.2f}x")


if __name__ == "__main__":
    main()
