"""`agora run` lanes against one `dvc repro`, on real stages of a finished run, in the same run.

Run it in a checkout where `make run` (or `agora run`) has finished. It re-runs the chosen stages
(default: every evaluate-student stage) twice, each time from an empty request store so that every
answer and every judge verdict is computed again, with the model servers started for that mode:

  serial  one `dvc repro --force --single-item STAGES` with every core (what --jobs 1 does)
  lanes   one such `dvc repro` per lane's share of STAGES at once (pipeline.split_lanes), with
          cores/lanes threads for each lane and each model server, the servers started as `agora run`
          starts them (pipeline.run.lane_servers: one vLLM server per model shared by the lanes, one
          per lane for another engine; what the default does on a CPU)

and prints both wall times and serial / lanes (above 1: the lanes are faster). The run's own request
store is put back afterwards; the re-run stages keep the outputs of the second pass (greedy decoding:
the same answers, up to floating-point differences between thread counts), and a last `dvc repro`
brings results and report up to date with them.

    python benchmarks/lanes.py [--match 'evaluate-student@*' ...] [--jobs 2]
"""
from __future__ import annotations

import argparse
import fnmatch
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def timed(params, stages: list[str], jobs: int, store: Path) -> float:
    from agorabench.pipeline.run import _run_dvc, lane_servers, pipeline_env, prefect_server, split_lanes, threads_per_lane
    from agorabench.pipeline.stages import lane_groups

    for suffix in ("", "-wal", "-shm"):  # nothing answered from an earlier pass
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    # dealt as `agora run` deals them: each generator's stages in one lane
    lanes = split_lanes(lane_groups(params, stages), jobs) if jobs > 1 else [stages]
    threads = str(threads_per_lane(len(lanes)))
    env = {**pipeline_env(allow_code_execution=True), "OMP_NUM_THREADS": threads}
    # the servers `agora run` starts for the models the lanes' stages call (shared vLLM, per-lane others)
    with prefect_server() as url, lane_servers(params, None, lanes, threads) as lane_envs:
        env["PREFECT_API_URL"] = url
        start = time.monotonic()
        codes = _run_dvc(env, [["--wait-for-lock", "repro", "--force", "--single-item", *lane] for lane in lanes],
                         lambda i, line: line.startswith("Running stage") and print(f"  {i} {line}", flush=True),
                         lane_envs)
        elapsed = time.monotonic() - start
    if any(codes):
        sys.exit(f"dvc repro failed (exit codes {codes}); see the stage output above")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--match", nargs="+", default=["evaluate-student@*"],
                        help="fnmatch patterns of the stages to re-run (any of them)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--lanes-first", action="store_true", help="time the lanes first (to see order effects)")
    args = parser.parse_args()

    from agorabench import env_defaults as offline
    from agorabench.config import load_params
    from agorabench.pipeline.run import pipeline_env, repro, stage_names, threads_per_lane

    offline.apply_defaults()
    params = load_params("params.yaml")
    stages = [s for s in stage_names() or [] if any(fnmatch.fnmatch(s, m) for m in args.match)]
    if not stages:
        sys.exit(f"--match {args.match!r}: no stage of dvc.yaml matches; run this in the repository root")
    store = Path(params.cache.requests_db)
    if not store.exists():
        sys.exit(f"{store}: no request store; run `make run` first, then this")
    kept = store.with_name(store.name + ".kept-by-lanes-benchmark")
    shutil.copyfile(store, kept)
    try:
        times = {}
        for mode in (["lanes", "serial"] if args.lanes_first else ["serial", "lanes"]):
            jobs = args.jobs if mode == "lanes" else 1
            print(f"{len(stages)} stages, {mode}: {jobs} x dvc repro, {threads_per_lane(jobs)} thread(s) each",
                  flush=True)
            times[mode] = timed(params, stages, jobs, store)
        serial, lanes = times["serial"], times["lanes"]
    finally:
        for suffix in ("-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        shutil.move(kept, store)
    print(f"serial {serial:.0f} s, lanes {lanes:.0f} s, serial / lanes = {serial / lanes:.2f} (target: above 1)")
    repro(pipeline_env())  # results and report from the re-run stages' outputs (no model is called)


if __name__ == "__main__":
    main()
