"""Answering a LoRA student on a CPU: through vLLM with its adapter against transformers in this process
with the adapter merged, the two ways `evaluation.engine` can take (models/servers.py: evaluation_engine).

Both answer the same student (a random adapter of rank --rank on --model, as agorabench/testing/students.py
writes one) through the library's own answerers, as an evaluate-student stage does: vLLM through the
base model's server started with LoRA on (ServedModelAnswerer, --batch requests in flight), transformers
in batches of --batch (TransformersAnswerer). The base model through the same vLLM server is printed too:
what the adapter costs vLLM. One warm-up question each first (server start-up, model load, adapter load),
then --questions questions, greedy, --max-tokens tokens at most. Prints decoded tokens per second and
transformers / vLLM (above 1: in-process transformers is faster).

    python benchmarks/lora_students.py [--model smollm2-135m-instruct] [--questions 20] [--batch 16]
        [--max-tokens 192] [--rank 16]

Run it on a quiet machine: both sides use every core they are given (OMP_NUM_THREADS, default all).
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


def rate(answerer, n: int, decoding) -> dict:
    """Warm-up (one question), then tokens/s over `n` others."""
    start = time.perf_counter()
    answerer.answer_many(questions(1, offset=10_000), decoding)
    ready = time.perf_counter() - start
    start = time.perf_counter()
    done = answerer.answer_many(questions(n), decoding)
    seconds = time.perf_counter() - start
    tokens = sum(c.output_tokens for c in done if c is not None)
    return {"ready_s": ready, "tokens": tokens, "tokens_per_s": tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()

    from agorabench.env_defaults import apply_defaults

    apply_defaults()
    from agorabench.models.answering import Decoding
    from agorabench.models.endpoint import Endpoint
    from agorabench.models.in_process import TransformersAnswerer
    from agorabench.models.served import ServedModelAnswerer
    from agorabench.models.servers import LocalModelServer, vllm_python
    from agorabench.models.store import RequestStore
    from agorabench.testing.students import random_lora_student

    if vllm_python() is None:
        sys.exit("vLLM is not installed: scripts/vllm-env.sh builds .venv-vllm (make run does)")
    greedy = Decoding(temperature=0.0, top_p=1.0, max_new_tokens=args.max_tokens, repetition_penalty=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        student = random_lora_student(tmp / "student", seed=1, base=args.model, rank=args.rank)
        results = {}
        with TransformersAnswerer(student, RequestStore(tmp / "t.sqlite"), batch_size=args.batch,
                                  cpu_weights="float32") as answerer:
            results["transformers, merged"] = rate(answerer, args.questions, greedy)
        with LocalModelServer(args.model, engine="vllm", lora=True, cpu_weights="float32",
                              log_path=Path(".agora/logs") / "lora-students-vllm.log") as server:
            served = Endpoint(server.base_url, server.model_id)
            with ServedModelAnswerer(student, RequestStore(tmp / "v.sqlite"), concurrency=args.batch,
                                     cpu_weights="float32", endpoint=served) as answerer:
                results["vLLM, adapter"] = rate(answerer, args.questions, greedy)
                results["vLLM, adapter"]["ready_s"] += server.startup_s
            # The same server without the adapter: what LoRA costs vLLM on a CPU.
            with ServedModelAnswerer(args.model, RequestStore(tmp / "b.sqlite"), concurrency=args.batch,
                                     cpu_weights="float32", endpoint=served) as base:
                results["vLLM, base (no adapter)"] = rate(base, args.questions, greedy)

    print(f"{args.model} + a rank-{args.rank} LoRA adapter, float32, greedy, {args.questions} questions, "
          f"{args.batch} at a time, up to {args.max_tokens} tokens")
    print(f"{'':<26}{'ready (s)':>10}{'tokens':>8}{'tokens/s':>10}")
    for name, r in results.items():
        print(f"{name:<26}{r['ready_s']:>10.1f}{r['tokens']:>8}{r['tokens_per_s']:>10.1f}")
    ours, baseline = results["transformers, merged"], results["vLLM, adapter"]
    print(f"transformers merged / vLLM with adapter: {ours['tokens_per_s'] / baseline['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
