"""Generation throughput: `agora generate` against bare SDK loops, same server, same run.

A loopback OpenAI-compatible server (its own process) answers every request after a fixed 50 ms.
Measured, in instances per second:
  ours      the `generate` Prefect flow (store, retries, limits, parsing, validation, outputs), timed
            from flow call to manifest after a warm-up flow has started Prefect's ephemeral server
            (that start, 5-10 s once per process, is reported separately as end-to-end)
  bare      an asyncio loop of AsyncOpenAI `chat.completions.create` calls at the same concurrency (64),
            what a user would write with the SDK
  bare-post the same loop through the SDK's `client.post("/chat/completions")`, the call our client
            makes (create() also walks every message against its typed-dict schema, a no-op for
            text that costs a fifth of the client's CPU); ours / bare-post is our own overhead
  threads4  a pool of 4 threads of synchronous OpenAI calls (the official tool's default)
Target: ours / bare-post >= 0.9 (ours / bare is higher, by create()'s schema walk).

    python benchmarks/generation_throughput.py [--num 10000] [--concurrency 64] [--latency 0.05] [--batch-size N]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="agora-bench-prefect-"))
os.environ["FAKE_API_KEY"] = "bench"

from agorabench import env_defaults as offline  # noqa: E402
from agorabench.models.launchers import free_port  # noqa: E402

offline.apply_defaults()


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agorabench.testing.llm_server", "--port", str(port),
                             "--latency", str(latency)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    proc.stdout.readline()  # the server prints its URL once it accepts connections
    return proc, f"http://127.0.0.1:{port}"


def bench_params(folder: Path, url: str, concurrency: int, batch_size: int | None = None):
    from tests.conftest import write_params

    extra = {"generation.batch_size": batch_size} if batch_size else {}
    return write_params(folder / "params.yaml", url, **{"generators.fake.concurrency": concurrency,
                                                        "generators.fake.timeout_s": 60, **extra})


def what_ours_sends(params, n: int) -> tuple[list[list[dict]], dict]:
    """Real instance-generation prompts, as many as the runs send, and the sampling fields ours sends
    with them (params' generation.sampling with the generator's overrides), so the loops send the same."""
    from agorabench.generation.plan import SettingPlan
    from agorabench.generation.prompting import load_prompt_set
    from agorabench.generation.seeds import load_seeds

    plan = SettingPlan(generator="fake", gen_cfg=params.generator("fake"), domain="general",
                       method="instance_generation", prompts=load_prompt_set(params.generation.prompt_dir),
                       seeds=load_seeds("general", "instance_generation"), num=n, params=params)
    return [plan._instance_attempt(i, []).messages for i in range(n)], dict(plan.sampling)


async def bare_async(url: str, messages: list[list[dict]], concurrency: int, sampling: dict,
                     post: bool = False) -> float:
    import openai
    from openai.types.chat import ChatCompletion

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="bench", max_retries=0)
    slots = asyncio.Semaphore(concurrency)

    async def one(m):
        async with slots:
            if post:
                r = await client.post("/chat/completions", cast_to=ChatCompletion,
                                      body={"model": "fake-model", "messages": m, **sampling})
            else:
                r = await client.chat.completions.create(model="fake-model", messages=m, **sampling)
            return r.choices[0].message.content

    started = time.perf_counter()
    await asyncio.gather(*(one(m) for m in messages))
    elapsed = time.perf_counter() - started
    await client.close()
    return len(messages) / elapsed


def threads(url: str, messages: list[list[dict]], workers: int, sampling: dict) -> float:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0)
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda m: client.chat.completions.create(model="fake-model", messages=m, **sampling), messages))
    return len(messages) / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=10000)  # one setting at the paper's scale
    ap.add_argument("--batch-size", type=int, default=None,
                    help="generation.batch_size (default: params.yaml's). Larger batches mean fewer Prefect "
                         "tasks but a generated-demo pool that refreshes less often.")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.05)
    args = ap.parse_args()

    from agorabench.config import load_params
    from flows.generate import generate

    server, url = start_server(args.latency)
    try:
        work = Path(tempfile.mkdtemp(prefix="agora-bench-"))
        params_file = bench_params(work, url, args.concurrency, args.batch_size)
        params = load_params(params_file)
        messages, sampling = what_ours_sends(params, args.num)

        t0 = time.perf_counter()  # warm-up flow: starts Prefect's ephemeral server once
        asyncio.run(generate(generator="fake", domain="math", method="response_generation",
                             params_file=str(params_file), num=1))
        startup = time.perf_counter() - t0

        bare = asyncio.run(bare_async(url, messages, args.concurrency, sampling))
        bare_post = asyncio.run(bare_async(url, messages, args.concurrency, sampling, post=True))
        started = time.perf_counter()
        manifest = asyncio.run(generate(generator="fake", domain="general", method="instance_generation",
                                        params_file=str(params_file), num=args.num))
        elapsed = time.perf_counter() - started
        assert manifest["num_valid"] == args.num and manifest["run"]["requests_sent"] == manifest["attempts"]
        ours = args.num / elapsed
        pool4 = threads(url, messages[: max(200, args.num // 8)], 4, sampling)

        print(f"instances: {args.num}, concurrency {args.concurrency}, server latency {args.latency * 1000:.0f} ms, "
              f"batch size {params.generation.batch_size}")
        print(f"bare asyncio loop          {bare:8.1f} inst/s   (chat.completions.create)")
        print(f"bare asyncio loop, post    {bare_post:8.1f} inst/s   (client.post, the call agora makes)")
        print(f"agora generate (flow)      {ours:8.1f} inst/s   ({manifest['attempts']} requests, "
              f"{len(manifest['rejections'])} rejection kinds)")
        print(f"4-thread pool              {pool4:8.1f} inst/s")
        print(f"end-to-end incl. Prefect start ({startup:.1f} s): {args.num / (elapsed + startup):8.1f} inst/s")
        print(f"ratio ours / bare asyncio: {ours / bare:.2f}")
        print(f"ratio ours / bare post:    {ours / bare_post:.2f}   (target >= 0.9; our own overhead: store, limits, "
              f"parsing, Prefect)")
        print(f"ratio ours / 4 threads:    {ours / pool4:.2f}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
