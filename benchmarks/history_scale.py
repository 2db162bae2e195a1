"""The results history at the paper's scale: the whole analysis and report over 100 recorded runs.

The history is --runs paper-scale result sets (benchmarks/analysis_scale.py's synthetic set, one seed
per run), each recorded with the library's own append_run: at 100 runs, 126M instance rows, 126M
per-instance intrinsic scores, 15M evaluated items and 9,900 students. It takes a while to write and
a few GB, so it is written once into a cache folder (default ~/.cache/agorabench/scale) by a
deterministic generator and reused; a smaller --runs reuses the first runs of a larger one.

Each run's views are written once, as `agora results` does when it records a run (history.py: about
3 s a run at this size, paid once), and the history's views read them; pandas has no such files and
computes every run's aggregations from its tables (without the intervals). Each side runs in a fresh
process, so the peak RSS printed is that side's alone (VmHWM):

  ours    build_db(tables="parquet", history_dir=...), every view of every run (schema history) and
          the per-run means of the per-instance intrinsic scores, the two views across runs, the
          PGR/PCA analysis over every run's datasets, and the report of the latest run (write_report).
          DuckDB with --threads threads and --memory-limit. Timed in three parts: the views pandas
          also computes (analysis_scale.PANDAS_VIEWS) with the views across runs and the analysis,
          which is what pandas is compared with; the other views; the report.
  pandas  the same aggregations (not the other views, not the report) with analysis_scale.py's pandas
          views, one run's tables in memory at a time, then the views across runs: how pandas gets
          through a history larger than memory.
  pandas  the same with the whole history in memory at once, where its frames fit in the memory
          available; otherwise what they would need is printed instead.

The two sides' per-run overall PGR, instance counts and item means are compared (else the timing
would compare different work). Target: ours under 15 s and 4 GB peak RSS over 100 runs, 2 threads.

    python benchmarks/history_scale.py [--runs 100] [--repeat 2] [--threads 2] [--pandas one,whole]
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agorabench.analysis import ID_COLUMNS, run_analysis  # noqa: E402
from agorabench.config import AnalysisConfig  # noqa: E402
from agorabench.results.db import build_db  # noqa: E402
from agorabench.results.history import append_run, recorded_runs, run_key, write_views  # noqa: E402
from agorabench.results.schema import INSTANCE_METRICS, INTRINSIC_METRICS  # noqa: E402
from agorabench.results.views import history_views, view_definitions  # noqa: E402
from benchmarks.analysis_scale import (DOMAIN_BENCHMARKS, KEYS, NEEDED, PANDAS_VIEWS,  # noqa: E402
                                       pandas_instance_views, pandas_small_views, synthesize)

CACHE = Path.home() / ".cache" / "agorabench" / "scale"
VERSION = 3  # of the synthetic history: bump when synthesize() or the history's layout changes
REPLICATES = AnalysisConfig().bootstrap_replicates  # each run's score_replicates, as `agora results` writes them
TEXT_CHARS = 600  # the latest run's texts (the history leaves them out)
PER_RUN_EXTRA = f"""
SELECT run_id, generator, method, domain, count(*) AS instances, {', '.join(f'avg({m}) AS {m}' for m in INSTANCE_METRICS)}
FROM history.intrinsic_instances GROUP BY run_id, generator, method, domain"""
# The analysis' features: intrinsic_summary's columns, the first judge's difficulty and quality (with
# several judges features_from_db makes one column per judge; both sides use these, so they agree).
FEATURES = [*ID_COLUMNS, "pgr", "problem_solving", *INTRINSIC_METRICS]


# ---------------------------------------------------------------------------------------------
# The cached history
# ---------------------------------------------------------------------------------------------


def synthetic_run(r: int) -> dict:
    """Run r's runs row: a day apart, a fake commit each, five params variants taken in turn."""
    h = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
    git_rev, lock, params = h(f"commit {r}")[:40], h(f"dvc.lock {r}"), h(f"params {r % 5}")
    return {"run_id": run_key(git_rev, lock, params), "recorded_at": dt.datetime(2025, 1, 1) + dt.timedelta(days=r),
            "recorded_by": "benchmarks/history_scale.py", "git_rev": git_rev, "git_dirty": False,
            "dvc_lock_sha256": lock, "params_sha256": params}


def ensure_cache(root: Path, runs: int, scale: float) -> tuple[Path, Path, float]:
    """(history folder of the first `runs` runs, the latest run's results folder, seconds spent writing).

    Every run is written once under root/runs/ (append_run: written under another name, renamed, so
    an interrupted fill resumes); each --runs gets a folder of hard links to its runs, which is what
    build_db globs."""
    root = root / f"history-v{VERSION}-scale{scale:g}"
    store = root / "runs"
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    have = {p.name for p in recorded_runs(store)}
    for r in range(runs):
        run = synthetic_run(r)
        if f"run_id={run['run_id']}" in have:
            continue
        with tempfile.TemporaryDirectory(prefix="run-", dir=root) as tmp:
            # The history leaves the texts out, so the runs are written without them (the numbers do
            # not depend on text_chars).
            synthesize(Path(tmp), scale, text_chars=0, seed=r, replicates=REPLICATES)
            append_run(tmp, store, run)
        print(f"  wrote run {r + 1}/{runs} ({time.perf_counter() - t0:.0f} s)", flush=True)
    # What `agora results` writes after recording a run: its views, computed once (history.py).
    done = write_views(store)
    if done:
        print(f"  wrote the views of {len(done)} run(s) ({time.perf_counter() - t0:.0f} s)", flush=True)
    latest = root / f"latest-{runs - 1}"
    if not (latest / "instances.parquet").is_file():
        latest.mkdir(parents=True, exist_ok=True)
        synthesize(latest, scale, text_chars=TEXT_CHARS, seed=runs - 1, replicates=REPLICATES)
    history = root / f"history-{runs}"
    wanted = {f"run_id={synthetic_run(r)['run_id']}" for r in range(runs)}
    shutil.rmtree(history, ignore_errors=True)  # links only: remade each time, so views/ is the store's
    for r in range(runs):
        name = f"run_id={synthetic_run(r)['run_id']}"
        shutil.copytree(store / name, history / name, copy_function=os.link)
    assert {p.name for p in recorded_runs(history)} == wanted, f"{history} holds other runs; delete it"
    return history, latest, time.perf_counter() - t0


def history_size(history: Path) -> dict:
    def rows(name: str) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in history.glob(f"run_id=*/{name}.parquet"))

    students = rows("training_runs") or sum(
        pq.read_table(p, columns=["kind"]).column(0).to_pylist().count("student")
        for p in history.glob("run_id=*/scores.parquet")) // 2
    return {"runs": len(recorded_runs(history)), "instances": rows("instances"),
            "intrinsic_instances": rows("intrinsic_instances"), "eval_items": rows("eval_items"),
            "students": students, "bytes": sum(p.stat().st_size for p in history.rglob("*.parquet"))}


# ---------------------------------------------------------------------------------------------
# The two sides (each run in its own process by main())
# ---------------------------------------------------------------------------------------------


def ours(history: Path, latest: Path, work: Path, threads: int, memory_limit: str) -> dict:
    """The whole analysis and report over the history with the library. Returns timings and checks."""
    import duckdb

    from agorabench.report import write_report

    t0 = time.perf_counter()
    db = build_db(latest, db_path=work / "agora.duckdb", tables="parquet", history_dir=history)
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute(f"SET threads = {threads}").fetchall()
        con.execute(f"SET memory_limit = '{memory_limit}'").fetchall()
        # First what pandas also computes, every run's: the same views, the views across runs, the analysis.
        views = view_definitions(DOMAIN_BENCHMARKS)
        per_run = {n: con.execute(f"SELECT * FROM history.{n}").df() for n in PANDAS_VIEWS if n in views}
        per_run["intrinsic_instance_stats"] = con.execute(PER_RUN_EXTRA).df()
        across = {n: con.execute(f"SELECT * FROM {n}").df() for n in history_views(DOMAIN_BENCHMARKS)}
        analysis = pca_over_runs(per_run["intrinsic_summary"])
        t_aggregate = time.perf_counter() - t0
        # Then every other view of every run; the bootstrap replicates' views (*_boot, 30M rows at 100
        # runs, what the intervals of the others are made of) are counted rather than fetched.
        others = {n: con.execute(f"SELECT * FROM history.{n}").df() for n in views
                  if n not in per_run and not n.endswith("_boot")}
        boot_rows = sum(con.execute(f"SELECT count(*) FROM history.{n}").fetchall()[0][0]
                        for n in views if n.endswith("_boot"))
    finally:
        con.close()
    t_views = time.perf_counter() - t0
    write_report(db, work / "report")
    total = time.perf_counter() - t0
    return {"seconds": total, "aggregate_s": t_aggregate, "views_s": t_views, "other_views": len(others),
            "analysis_rows": analysis["n_rows"], "boot_rows": boot_rows, "check": checks(per_run, across)}


def pca_over_runs(intrinsic_summary: pd.DataFrame) -> dict:
    """The analysis (problem-solving regressions, PCA, PGR on the top components) over every run's datasets."""
    features = intrinsic_summary[FEATURES].copy()
    for col in FEATURES[len(ID_COLUMNS):]:
        features[col] = pd.to_numeric(features[col]).astype(float)
    return run_analysis(features)


def tag(frame: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """A per-run pandas view with its run_id (pgr_table's two-level columns flattened first)."""
    if isinstance(frame.columns, pd.MultiIndex):
        frame = frame.copy()
        frame.columns = ["_".join(str(p) for p in c if p) for c in frame.columns]
        frame = frame.reset_index()
    return frame.assign(run_id=run_id)


def load_run(folder: Path, run_id: str | None = None) -> dict[str, pd.DataFrame]:
    frames = {name: pd.read_parquet(folder / f"{name}.parquet", columns=cols) for name, cols in NEEDED.items()}
    if run_id is not None:
        for f in frames.values():
            f.insert(0, "run_id", run_id)
    return frames


def across_runs(per_run: dict[str, pd.DataFrame], runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """pgr_over_runs and latest_results, in pandas."""
    order = runs.sort_values(["recorded_at", "run_id"]).reset_index(drop=True)
    order["run_number"] = np.arange(1, len(order) + 1)
    gs = per_run["generator_summary"].merge(order[["run_id", "run_number", "recorded_at", "git_rev"]], on="run_id")
    gs = gs.sort_values(["generator", "run_number"])
    over = gs[["generator", "run_number", "run_id", "recorded_at", "git_rev", "pgr"]].copy()
    over["pgr_change"] = gs.groupby("generator")["pgr"].diff()
    latest = gs.groupby("generator").tail(1).copy()
    latest["runs"] = latest["generator"].map(gs.groupby("generator").size())
    return {"pgr_over_runs": over, "latest_results": latest}


def pandas_one_run_at_a_time(history: Path) -> dict:
    t0 = time.perf_counter()
    parts: dict[str, list[pd.DataFrame]] = {}
    runs = []
    for folder in recorded_runs(history):
        run_id = folder.name.split("=", 1)[1]
        frames = load_run(folder)
        views = pandas_small_views(frames) | pandas_instance_views(frames)
        for name, frame in views.items():
            parts.setdefault(name, []).append(tag(frame, run_id))
        runs.append(pd.read_parquet(folder / "runs.parquet").assign(run_id=run_id))
    per_run = {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}
    across = across_runs(per_run, pd.concat(runs, ignore_index=True))
    analysis = pca_over_runs(per_run["intrinsic_summary"])
    return {"seconds": time.perf_counter() - t0, "analysis_rows": analysis["n_rows"], "check": checks(per_run, across)}


def pandas_whole_history(history: Path) -> dict:
    """Every run's frames concatenated first, then grouped with run_id as one more key."""
    t0 = time.perf_counter()
    folders = recorded_runs(history)
    loaded = [load_run(f, f.name.split("=", 1)[1]) for f in folders]
    frames = {name: pd.concat([x[name] for x in loaded], ignore_index=True) for name in NEEDED}
    del loaded
    per_run = pandas_instance_views(frames, by=("run_id",))
    small = {name: frames[name] for name in NEEDED if name not in ("instances", "intrinsic_instances", "eval_items")}
    parts: dict[str, list[pd.DataFrame]] = {}
    for run_id, _ in frames["scores"].groupby("run_id"):
        views = pandas_small_views({n: f[f["run_id"] == run_id].drop(columns=["run_id"]) for n, f in small.items()})
        for name, frame in views.items():
            parts.setdefault(name, []).append(tag(frame, run_id))
    per_run |= {name: pd.concat(f, ignore_index=True) for name, f in parts.items()}
    runs = pd.concat([pd.read_parquet(f / "runs.parquet").assign(run_id=f.name.split("=", 1)[1]) for f in folders])
    across = across_runs(per_run, runs)
    analysis = pca_over_runs(per_run["intrinsic_summary"])
    return {"seconds": time.perf_counter() - t0, "analysis_rows": analysis["n_rows"], "check": checks(per_run, across)}


def whole_history_bytes(history: Path) -> int:
    """What pandas' frames of the whole history take in memory, from one run's frames (the data alone:
    the grouping needs more on top)."""
    one = load_run(recorded_runs(history)[0], "x")
    return sum(int(f.memory_usage(deep=False).sum()) for f in one.values()) * len(recorded_runs(history))


def checks(per_run: dict[str, pd.DataFrame], across: dict[str, pd.DataFrame]) -> dict:
    """A few numbers both sides must agree on: every run's overall PGR per generator, the instance and
    intrinsic row counts, the mean of the item means, and the views across runs."""
    po = per_run["pgr_overall"].dropna(subset=["pgr"])
    return {"pgr_overall": {f"{r.run_id}|{r.generator}": float(r.pgr) for r in po.itertuples()},
            "instances": int(per_run["instance_stats"]["instances"].sum()),
            "intrinsic_rows": int(per_run["intrinsic_instance_stats"]["instances"].sum()),
            "mean_correct_pct": float(per_run["eval_item_stats"]["correct_pct"].mean()),
            "mean_perplexity": float(per_run["intrinsic_instance_stats"]["perplexity"].mean()),
            "latest_pgr": {r.generator: None if pd.isna(r.pgr) else float(r.pgr)
                           for r in across["latest_results"].itertuples()},
            "over_runs": len(across["pgr_over_runs"])}


def agree(a: dict, b: dict) -> list[str]:
    problems = []
    if a["pgr_overall"].keys() != b["pgr_overall"].keys():
        problems.append("pgr_overall: different (run, generator) pairs")
    elif not np.allclose([a["pgr_overall"][k] for k in a["pgr_overall"]],
                         [b["pgr_overall"][k] for k in a["pgr_overall"]], rtol=1e-9):
        problems.append("pgr_overall: different values")
    for k in ("instances", "intrinsic_rows", "over_runs"):
        if a[k] != b[k]:
            problems.append(f"{k}: {a[k]} vs {b[k]}")
    for k in ("mean_correct_pct", "mean_perplexity"):
        if not np.isclose(a[k], b[k], rtol=1e-9):
            problems.append(f"{k}: {a[k]} vs {b[k]}")
    if a["latest_pgr"].keys() != b["latest_pgr"].keys() or not np.allclose(
            [np.nan if v is None else v for v in a["latest_pgr"].values()],
            [np.nan if b["latest_pgr"][k] is None else b["latest_pgr"][k] for k in a["latest_pgr"]],
            rtol=1e-9, equal_nan=True):
        problems.append("latest_results: different")
    return problems


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def peak_rss_gb() -> float:
    """This process's peak resident memory. Not getrusage: on Linux its ru_maxrss survives exec, so a
    side would report the parent's peak (the cache writer's) where that is higher."""
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM:"))
    return int(hwm.split()[1]) * 1024 / 1e9  # kB


def measure(side: str, history: Path, latest: Path, args) -> None:
    """One side, --repeat times in this process; prints one JSON line (the best time, the peak RSS)."""
    results = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="agora-history-scale-") as work:
            if side == "ours":
                results.append(ours(history, latest, Path(work), args.threads, args.memory_limit))
            elif side == "pandas-one":
                results.append(pandas_one_run_at_a_time(history))
            else:
                results.append(pandas_whole_history(history))
    best = min(results, key=lambda r: r["seconds"])
    print(json.dumps({**best, "first_s": results[0]["seconds"], "peak_rss_gb": peak_rss_gb()}))


def run_side(side: str, history: Path, latest: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--measure", side, "--history", str(history), "--latest", str(latest),
           "--repeat", str(args.repeat), "--threads", str(args.threads), "--memory-limit", args.memory_limit]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}  # numpy/BLAS of the analysis, both sides
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100, help="recorded runs in the history")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's instance counts per run")
    ap.add_argument("--repeat", type=int, default=2, help="times each side runs in its process (best is shown)")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    ap.add_argument("--memory-limit", default="2GB", help="DuckDB memory_limit")
    ap.add_argument("--pandas", default="one,whole", help="pandas variants to run: one, whole, both or none")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where the synthetic history is kept")
    ap.add_argument("--measure", choices=["ours", "pandas-one", "pandas-whole"], help=argparse.SUPPRESS)
    ap.add_argument("--history", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--latest", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.measure, args.history, args.latest, args)
        return

    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; DuckDB threads {args.threads}, "
          f"memory_limit {args.memory_limit}; best of {args.repeat}")
    history, latest, made = ensure_cache(args.cache, args.runs, args.scale)
    size = history_size(history)
    print(f"history: {size['runs']} runs, {size['instances']:,} instance rows, {size['intrinsic_instances']:,} "
          f"intrinsic rows, {size['eval_items']:,} evaluated items, {size['students']:,} students, "
          f"{size['bytes'] / 1e9:.1f} GB Parquet in {history} ({'written in' if made > 1 else 'reused,'} {made:.0f} s)")

    duck = run_side("ours", history, latest, args)
    if "error" in duck:
        sys.exit(f"ours failed: {duck['error']}")
    print(f"ours (DuckDB): the whole analysis and report {duck['seconds']:.2f} s (first {duck['first_s']:.2f} s; "
          f"the views pandas also computes and the analysis {duck['aggregate_s']:.2f} s, the {duck['other_views']} "
          f"other views {duck['views_s'] - duck['aggregate_s']:.2f} s, the report of the latest run "
          f"{duck['seconds'] - duck['views_s']:.2f} s), peak RSS {duck['peak_rss_gb']:.2f} GB; "
          f"PCA over {duck['analysis_rows']:,} datasets; {duck['boot_rows']:,} bootstrap rows counted")
    ok = duck["seconds"] < 15 and duck["peak_rss_gb"] < 4
    print(f"target under 15 s and under 4 GB: {'met' if ok else 'NOT met'}")

    variants = {"one": "pandas-one", "whole": "pandas-whole"}
    chosen = [variants[v] for v in args.pandas.replace("both", "one,whole").split(",") if v in variants]
    for side in chosen:
        label = "pandas, one run at a time" if side == "pandas-one" else "pandas, whole history in memory"
        if side == "pandas-whole":
            need = whole_history_bytes(history)
            import psutil

            free = psutil.virtual_memory().available
            if need > 0.5 * free:  # its grouping needs about as much again: leave the machine room
                print(f"{label}: not run: its frames alone need {need / 1e9:.1f} GB, and grouping them about as "
                      f"much again; {free / 1e9:.1f} GB of memory is available")
                continue
        p = run_side(side, history, latest, args)
        if "error" in p:
            print(f"{label}: failed ({p['error']})")
            continue
        problems = agree(duck["check"], p["check"])
        print(f"{label}: {p['seconds']:.2f} s (first {p['first_s']:.2f} s), peak RSS {p['peak_rss_gb']:.2f} GB; "
              f"pandas / ours (the same views and analysis) {p['seconds'] / duck['aggregate_s']:.1f}x; "
              f"{'same numbers' if not problems else 'DISAGREE: ' + '; '.join(problems)}")


if __name__ == "__main__":
    main()
