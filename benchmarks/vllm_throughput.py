"""Tokens per second of a model served by vLLM against the same model served by `transformers serve`.

Each engine serves the model as AgoraBench starts it (agorabench/models/servers.py: the same weights,
vLLM eager on a CPU, transformers serve with the arguments given), one engine at a time, and gets the
same chat requests: first one at a time, then `--concurrency` at once. Prints the decoded tokens per
second of each and vLLM / transformers (above 1: vLLM is faster), plus each server's start-up.

    python benchmarks/vllm_throughput.py [--model smollm2-135m-instruct] [--cpu-weights float32]
        [--requests 16] [--max-tokens 128] [--concurrency 8]

Greedy decoding, so both engines decode about as many tokens; the rate is what they decoded (usage),
divided by the wall time of the whole batch.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOPICS = ["a lighthouse keeper", "a lost key", "the first snow", "a chess match", "a night train", "an old map",
          "a beekeeper", "a broken clock", "a desert well", "a paper boat", "a quiet library", "a red kite",
          "a rainy market", "a mountain hut", "a jazz trio", "a glass bottle"]


def prompts(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"Write a short story about {TOPICS[i % len(TOPICS)]} (#{i})."}]
            for i in range(n)]


async def decode(base_url: str, model: str, conversations, max_tokens: int, concurrency: int) -> float:
    """Decoded tokens per second for `conversations` sent `concurrency` at a time."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", timeout=900, max_retries=0)
    slots = asyncio.Semaphore(concurrency)

    async def one(messages) -> int:
        async with slots:
            resp = await client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                                        temperature=0.0)
            return resp.usage.completion_tokens

    try:
        start = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(m) for m in conversations)))
        return tokens / (time.perf_counter() - start)
    finally:
        await client.close()


def measure(engine: str, args) -> dict:
    from agorabench.models.servers import LocalModelServer

    extra = args.transformers_args.split() if engine == "transformers" else []
    with LocalModelServer(args.model, engine=engine, cpu_weights=args.cpu_weights, extra_args=extra,
                          log_path=Path(".agora/logs") / f"throughput-{engine}.log") as server:
        rates = {}
        for concurrency in (1, args.concurrency):
            # one at a time: a quarter of the requests is enough for a steady rate
            n = max(2, args.requests // 4) if concurrency == 1 else args.requests
            rates[concurrency] = asyncio.run(decode(server.base_url, server.model_id, prompts(n), args.max_tokens,
                                                    concurrency))
        return {"startup_s": server.startup_s, **rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--cpu-weights", default="float32", choices=["float32", "bfloat16", "auto"])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--transformers-args", default="--continuous-batching",
                        help="extra arguments of `transformers serve` (the baseline's best at concurrency)")
    args = parser.parse_args()

    from agorabench.env_defaults import apply_defaults
    from agorabench.models.servers import vllm_python

    apply_defaults()
    if vllm_python() is None:
        sys.exit("vLLM is not installed: scripts/vllm-env.sh builds .venv-vllm (make run does)")
    baseline, ours = measure("transformers", args), measure("vllm", args)
    print(f"{args.model}, {args.cpu_weights}, greedy, {args.max_tokens} tokens per answer")
    print(f"{'':<22}{'transformers serve':>20}{'vLLM':>10}{'vLLM / transformers':>22}")
    print(f"{'start-up (s)':<22}{baseline['startup_s']:>20.0f}{ours['startup_s']:>10.0f}"
          f"{ours['startup_s'] / baseline['startup_s']:>22.2f}")
    for concurrency in (1, args.concurrency):
        print(f"{f'tokens/s, {concurrency} at once':<22}{baseline[concurrency]:>20.1f}{ours[concurrency]:>10.1f}"
              f"{ours[concurrency] / baseline[concurrency]:>22.2f}")


if __name__ == "__main__":
    main()
