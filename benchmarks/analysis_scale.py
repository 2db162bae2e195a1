"""Results analysis at the paper's scale: every results view in DuckDB against the same aggregations in pandas.

A synthetic results set the size of the paper's experiment is written as the Parquet tables that
`collect` produces (same schema), then, best of --repeat each, and checked to agree:

  1. instance-level aggregations   the per-dataset aggregates over the 1.26M instances (instance_stats),
     from the Parquet files        the 1.26M per-instance intrinsic scores, and the 150K evaluated items
                                   (eval_item_stats). DuckDB reads the Parquet directly (a database built
                                   with tables="parquet"); pandas reads the columns it needs and groups.
  2. the views, data loaded        DuckDB on a built database vs pandas on DataFrames already in memory
  3. the views, from Parquet       build_db(tables="parquet") + the views vs read_parquet + pandas, once
                                   reading only the needed columns (fair) and once whole tables (naive)
  4. the report path               build_db + every view + the PGR/PCA analysis (+ agorabench.report's
                                   write_report when it is importable), wall time; target < 30 s
  5. the intervals                 what the paired bootstrap adds to `agora results` and to the views:
                                   score_replicates computed from the 150K evaluated items (--replicates,
                                   default 1000, as collect does it), written, loaded by build_db, and every
                                   view queried with them against without them; the interval of a
                                   synthetic Bernoulli score checked against its closed form

Sections 1-3 run on a database without replicates (its interval views are empty), so that DuckDB and
pandas compute the same point values; section 4 and the second half of 5 run with them.

Fairness: both sides start from the same Parquet files and compute the same views (PANDAS_VIEWS;
views.py's others, such as the intervals and the contamination checks, are timed on their own) from
the same rows (nothing is pre-aggregated for one side only); pandas is written the idiomatic way
(groupby/agg, merge, pivot_table) and may skip columns it does not need, as DuckDB does by itself. DuckDB runs with
--threads (default 2, the target machine); pyarrow's Parquet reader uses its own thread pool.
This compares the two at one run's size; the results database's target is measured over the history
of 100 such runs by benchmarks/history_scale.py, which uses this file's synthetic set and pandas views.

Scale (docs/paper.md §6.7): 1.26M generated instances = 54 main datasets x 10K + 9 scaling sets x 50K (the
25K sets are their prefixes, as in the paper) + 27 prompt-ablation datasets x 10K; 99 students
(54 + 18 scaling + 27 ablation), each evaluated on its domain's two benchmarks with the real item
counts; the base, the reference and the 6 generators on all six benchmarks.

    python benchmarks/analysis_scale.py [--scale 1.0] [--repeat 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agorabench.analysis import features_from_db, run_analysis  # noqa: E402
from agorabench.config import DOMAINS, METHODS  # noqa: E402
from agorabench.config import EvaluationConfig  # noqa: E402
from agorabench.results.collect import parquet_options, write_table  # noqa: E402
from agorabench.results.replicates import score_replicates  # noqa: E402
from agorabench.results.db import build_db  # noqa: E402
from agorabench.results.schema import INSTANCE_METRICS, INTRINSIC_METRICS, TABLES  # noqa: E402
from agorabench.results.views import view_definitions  # noqa: E402
from agorabench.testing.results_tree import score_row  # noqa: E402

GENERATORS = ("gpt-4o", "gpt-4o-mini", "claude-3.5-sonnet", "llama-3.1-405b", "llama-3.1-70b", "llama-3.1-8b")
SCALING = ("gpt-4o-mini", "llama-3.1-70b", "llama-3.1-8b")  # the paper's scaling and ablation generators
ITEMS = {"gsm8k": 1319, "math": 500, "mbpp": 378, "humaneval": 164, "alpacaeval": 805, "arenahard": 500}
DOMAIN_BENCHMARKS = EvaluationConfig().benchmarks  # the paper's map, the schema default
BENCH_DOMAIN = {b: d for d, bs in DOMAIN_BENCHMARKS.items() for b in bs}
IG = METHODS[0]


# ---------------------------------------------------------------------------------------------
# The synthetic results set
# ---------------------------------------------------------------------------------------------


def settings(scale: float) -> list[tuple[str, str, str, int, bool]]:
    """(generator, method, domain, instances, has_own_rows) for all 99 students' datasets."""
    n10, n25, n50 = (max(1, int(n * scale)) for n in (10_000, 25_000, 50_000))
    out = [(g, m, d, n10, True) for g in GENERATORS for m in METHODS for d in DOMAINS]
    for g in SCALING:
        for d in DOMAINS:
            out.append((f"{g}-50k", IG, d, n50, True))
            out.append((f"{g}-25k", IG, d, n25, False))  # a prefix of the 50K set: no rows of its own
            out += [(f"{g}-ablation{a}", IG, d, n10, True) for a in (1, 2, 3)]
    return out


def write(name: str, columns: dict, out: Path) -> None:
    schema = TABLES[name].arrow_schema()
    n = len(next(iter(columns.values())))
    arrays = [pa.array(columns[f.name], type=f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema]
    # The writer configuration collect.py uses, so both sides read files laid out as the real ones.
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), out / f"{name}.parquet", **parquet_options(TABLES[name]))


def synthesize(out: Path, scale: float, text_chars: int = 600, seed: int = 0, replicates: int = 0) -> dict[str, int]:
    """Write every table `agora results` writes into out. replicates: the bootstrap replicates of
    score_replicates, computed from the items as collect computes them (0: the table is left empty)."""
    rng = np.random.default_rng(seed)
    sets = settings(scale)

    # datasets + instances
    ds = {k: [] for k in ("generator", "method", "domain", "num_valid", "num_requested", "attempts", "input_tokens",
                          "output_tokens", "cost_usd", "complete")}
    inst_parts = []
    for g, m, d, n, own in sets:
        attempts = int(n * 1.2)
        tin, tout = attempts * 900, attempts * 400
        for k, v in zip(ds, (g, m, d, n, n, attempts, tin, tout, round(tin * 2.5e-6 + tout * 1e-5, 6), True)):
            ds[k].append(v)
        if own:
            inst_parts.append((g, m, d, n))
    write("datasets", ds, out)
    total = sum(p[3] for p in inst_parts)
    gen_col = np.repeat([p[0] for p in inst_parts], [p[3] for p in inst_parts])
    met_col = np.repeat([p[1] for p in inst_parts], [p[3] for p in inst_parts])
    dom_col = np.repeat([p[2] for p in inst_parts], [p[3] for p in inst_parts])
    idx = np.concatenate([np.arange(p[3]) for p in inst_parts])
    ichars = rng.integers(40, 2000, total)  # the lengths the real texts would have
    rchars = rng.integers(100, 6000, total)
    # Texts of the published datasets' size (~600 bytes of instruction + response per row): every
    # row distinct, so neither Parquet dictionaries nor pandas can share them.
    words = np.array("the of a to solve write function return value given number list string find".split())
    pool = [" ".join(rng.choice(words, 200)) for _ in range(512)]
    pick = rng.integers(0, len(pool), total)
    ilen, rlen = text_chars // 3, text_chars - text_chars // 3
    instruction = [f"{i} {pool[j][:ilen]}" for i, j in zip(idx.tolist(), pick.tolist())]
    response = [f"{i} {pool[j][-rlen:]}" for i, j in zip(idx.tolist(), pick.tolist())]
    ids = [f"{g}/{m}/{d}/{k:06d}" for g, m, d, n in inst_parts for k in range(n)]
    write("instances", {
        "generator": gen_col, "method": met_col, "domain": dom_col, "idx": idx, "id": ids, "instruction": instruction,
        "response": response, "input_tokens": rng.integers(300, 1500, total), "output_tokens": rng.integers(50, 900, total),
        "cost_usd": rng.random(total) * 1e-3, "instruction_chars": ichars, "response_chars": rchars,
    }, out)
    write("intrinsic_instances", {
        "generator": gen_col, "method": met_col, "domain": dom_col, "idx": idx,
        "difficulty": rng.integers(1, 6, total).astype(float), "quality": rng.integers(1, 6, total).astype(float),
        "reward": rng.normal(size=total), "perplexity": rng.lognormal(1.0, 0.3, total),
    }, out)
    intr = {"generator": [], "method": [], "domain": [], "instances": []}
    intr.update({m: [] for m in INTRINSIC_METRICS})
    for g, m, d, n, own in sets:
        for k, v in (("generator", g), ("method", m), ("domain", d), ("instances", n)):
            intr[k].append(v)
        for metric in INTRINSIC_METRICS:
            intr[metric].append(float(rng.random() * 4 + 1))
    write("intrinsic", intr, out)
    # The paper's two intrinsic judges; the first one's means are the intrinsic table's, as in collect.
    judges = {k: [] for k in ("generator", "method", "domain", "judge", "position", "model", "difficulty", "quality",
                              "failures", "verdicts")}
    for i, (g, m, d, _, _) in enumerate(sets):
        for position, judge in ((1, "prometheus-2-8x7b"), (2, "gpt-4o")):
            if position == 1:
                difficulty, quality = intr["difficulty"][i], intr["quality"][i]
            else:
                difficulty, quality = float(rng.random() * 4 + 1), float(rng.random() * 4 + 1)
            row = (g, m, d, judge, position, judge, difficulty, quality, int(rng.integers(0, 3)), "logprobs")
            for k, v in zip(judges, row):
                judges[k].append(v)
    write("intrinsic_judges", judges, out)
    # The decontamination check of every dataset: a few flagged instances each, their matches not kept.
    checks = {"generator": [s[0] for s in sets], "method": [s[1] for s in sets], "domain": [s[2] for s in sets],
              "ngram": [13] * len(sets), "against": [["benchmarks", "seeds"]] * len(sets),
              "seed_copies_checked": [s[1] == IG for s in sets], "instances": [s[3] for s in sets],
              "flagged": rng.integers(0, 5, len(sets)).tolist(), "dropped": [False] * len(sets)}
    write("contamination_checks", checks, out)

    # Evaluation: students on their domain's two benchmarks; anchors and generators on all six.
    models = [("base", "base", None, None, None, 0.35), ("reference", "reference", None, None, None, 0.7)]
    models += [(f"generators/{g}", "generator", g, None, None, 0.8) for g in GENERATORS]
    models += [(f"students/{g}/{m}/{d}", "student", g, m, d, 0.4 + 0.2 * rng.random()) for g, m, d, _, _ in sets]
    sc = {k: [] for k in ("model", "kind", "generator", "method", "student_domain", "benchmark", "benchmark_domain",
                          "primary_metric", "score", "n_items", "samples", "fewshot")}
    items = {k: [] for k in ("model", "kind", "generator", "method", "student_domain", "benchmark", "item_id",
                             "sample_index", "verdict", "correct", "output_tokens", "details")}
    for key, kind, g, m, d, p in models:
        for b, n in ITEMS.items():
            if kind == "student" and BENCH_DOMAIN[b] != d:
                continue
            correct = (rng.random(n) < p).astype(float)
            details = judged_details(b, correct, rng)
            for k, v in zip(sc, (key, kind, g, m, d, b, BENCH_DOMAIN[b], "accuracy", own_score(b, correct, details), n,
                                 1, 3 if kind == "base" else 0)):
                sc[k].append(v)
            for k, v in (("model", key), ("kind", kind), ("generator", g), ("method", m), ("student_domain", d),
                         ("benchmark", b)):
                items[k] += [v] * n
            items["item_id"] += [f"{b}-{i}" for i in range(n)]
            items["sample_index"] += [0] * n
            items["verdict"] += np.where(correct > 0, "correct", "wrong").tolist()
            items["correct"] += correct.tolist()
            items["output_tokens"] += rng.integers(20, 1024, n).tolist()
            items["details"] += details
    write("scores", sc, out)
    write("eval_items", items, out)
    rows = [dict(zip(items, row)) for row in zip(*items.values())] if replicates else []
    write_table("score_replicates", score_replicates(rows, replicates, 0), out / "score_replicates.parquet")
    gens = sorted({s[0] for s in sets})
    write("generators", {"generator": gens, "datasets": [sum(1 for s in sets if s[0] == g) for g in gens]}, out)
    for name in ("rejections", "training_runs", "training_loss", "contamination_matches"):
        write(name, {c: [] for c in TABLES[name].names}, out)
    pairs = [(d, b, i) for d, bs in DOMAIN_BENCHMARKS.items() for i, b in enumerate(bs)]
    write("domain_benchmarks", {"domain": [d for d, _, _ in pairs], "benchmark": [b for _, b, _ in pairs],
                                "position": [i for _, _, i in pairs]}, out)
    return {"instances": total, "students": sum(1 for mdl in models if mdl[1] == "student"),
            "eval_items": len(items["model"]), "datasets": len(sets)}


def judged_details(benchmark: str, correct: np.ndarray, rng: np.random.Generator) -> list[str | None]:
    """The fields the judged benchmarks' scores read (AlpacaEval: preference and lengths; Arena-Hard: the two
    games), as `agora evaluate` writes them in the items' details; None for the other benchmarks."""
    import json

    if benchmark == "alpacaeval":
        lengths = rng.integers(200, 3000, len(correct))
        return [json.dumps({"preference": c, "model_len": int(n), "baseline_len": 1500}) for c, n in zip(correct, lengths)]
    if benchmark == "arenahard":
        # Both games with their label probabilities, as the test trees write them: the scorer reads
        # the labels, so a set with outcomes alone scored NaN and left every overall PGR undefined.
        rows = [score_row(benchmark, f"{benchmark}-{i}", c) for i, c in enumerate(correct.tolist())]
        return [json.dumps({"category": r["category"], "games": r["games"]}) for r in rows]
    return [None] * len(correct)


def own_score(benchmark: str, correct: np.ndarray, details: list[str | None]) -> float:
    """The benchmark's own score of these items (the judged ones' is a fit, not the mean of correct): its
    replicate scorer on the one replicate that draws every item once."""
    import json

    from agorabench.evaluation.resampling import replicate_scores, task_module

    items = [[{**(json.loads(x) if x else {}), "correct": c}] for c, x in zip(correct.tolist(), details)]
    return float(replicate_scores(task_module(benchmark), items, np.ones((1, len(items)), dtype=int))[0])


# ---------------------------------------------------------------------------------------------
# The views: DuckDB (views.py plus one instance-level query) and the same in pandas
# ---------------------------------------------------------------------------------------------

KEYS = ["generator", "method", "domain"]
# The per-dataset means of the per-instance intrinsic scores: views.py has no view for it (its
# intrinsic_summary reads the dataset-level `intrinsic` table), so both sides compute it here.
EXTRA_SQL = {"intrinsic_instance_stats": f"""
SELECT generator, method, domain, count(*) AS instances, {', '.join(f'avg({m}) AS {m}' for m in INSTANCE_METRICS)}
FROM intrinsic_instances GROUP BY generator, method, domain"""}
INSTANCE_LEVEL = ("instance_stats", "intrinsic_instance_stats", "eval_item_stats")
# The views pandas re-does (pandas_views), which both sides are timed on: views.py has more (the
# intervals, the contamination checks, meta), and timing those on one side only made DuckDB look
# slower the more views it gained. history_scale.py times the same set.
PANDAS_VIEWS = ("pgr_benchmark", "pgr_domain", "pgr_domain_pgr_of_mean", "pgr_method", "pgr_overall", "pgr_table",
                "cost_dataset", "cost_per_pgr_point", "problem_solving", "problem_solving_domain",
                "generator_summary", "intrinsic_summary", "quantity_quality", *INSTANCE_LEVEL)

# The columns pandas needs of each table (DuckDB finds this out by itself).
NEEDED = {
    "scores": ["kind", "generator", "method", "student_domain", "benchmark", "score"],
    "datasets": [*KEYS, "num_valid", "attempts", "input_tokens", "output_tokens", "cost_usd"],
    "generators": ["generator"],
    "intrinsic": [*KEYS, *INTRINSIC_METRICS],
    "instances": [*KEYS, "idx", "instruction_chars", "response_chars", "input_tokens", "output_tokens", "cost_usd"],
    "intrinsic_instances": [*KEYS, "idx", *INSTANCE_METRICS],
    "eval_items": ["model", "benchmark", "item_id", "verdict", "correct", "output_tokens"],
}


def load_frames(out: Path, tables=NEEDED, projected: bool = True) -> dict[str, pd.DataFrame]:
    """The tables as DataFrames: only the needed columns (projected) or whole (all their columns)."""
    return {name: pd.read_parquet(out / f"{name}.parquet", columns=cols if projected else None)
            for name, cols in tables.items()}


def pandas_instance_views(t: dict[str, pd.DataFrame], by: tuple[str, ...] = ()) -> dict[str, pd.DataFrame]:
    """The aggregations over instance-level tables (1.26M instances, 150K evaluated items). by: columns
    to group by first (("run_id",) for frames that hold several runs of a history)."""
    v = {}
    v["instance_stats"] = t["instances"].groupby([*by, *KEYS], observed=True).agg(
        instances=("idx", "size"), mean_instruction_chars=("instruction_chars", "mean"),
        mean_response_chars=("response_chars", "mean"), input_tokens=("input_tokens", "sum"),
        output_tokens=("output_tokens", "sum"), cost_usd=("cost_usd", "sum")).reset_index()
    v["intrinsic_instance_stats"] = t["intrinsic_instances"].groupby([*by, *KEYS], observed=True).agg(
        instances=("idx", "size"), **{m: (m, "mean") for m in INSTANCE_METRICS}).reset_index()
    ei = t["eval_items"]
    stats = ei.assign(no_answer=ei["verdict"] == "no_answer").groupby([*by, "model", "benchmark"], observed=True).agg(
        items=("item_id", "nunique"), outputs=("item_id", "size"), correct_pct=("correct", "mean"),
        no_answer=("no_answer", "sum"), mean_output_tokens=("output_tokens", "mean")).reset_index()
    stats["correct_pct"] *= 100.0
    v["eval_item_stats"] = stats
    return v


def pandas_views(t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """PANDAS_VIEWS (views.py's, mean_of_pgr, plus EXTRA_SQL), re-done with pandas."""
    return pandas_small_views(t) | pandas_instance_views(t)


def pandas_small_views(t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The views over the small tables (scores, datasets, intrinsic, generators): PGR, cost, summaries."""
    db = pd.DataFrame([(d, b) for d, bs in DOMAIN_BENCHMARKS.items() for b in bs], columns=["domain", "benchmark"])
    n_of = db.groupby("domain").size().rename("n")
    s = t["scores"]
    stu = s[s["kind"] == "student"].rename(columns={"student_domain": "domain", "score": "student"})
    stu = stu.merge(db, on=["domain", "benchmark"])
    base = s[s["kind"] == "base"].set_index("benchmark")["score"]
    ref = s[s["kind"] == "reference"].set_index("benchmark")["score"]
    pb = stu[["generator", "method", "domain", "benchmark", "student"]].copy()
    pb["base"], pb["reference"] = pb["benchmark"].map(base), pb["benchmark"].map(ref)
    ok = pb["reference"] > pb["base"]
    pb["pgr"] = ((pb["student"] - pb["base"]) / (pb["reference"] - pb["base"]) * 100.0).where(ok)
    v = {"pgr_benchmark": pb}

    g = pb.groupby(KEYS)
    dom = g["pgr"].agg(["count", "sum"]).reset_index().join(n_of, on="domain")
    dom["pgr"] = (dom["sum"] / dom["n"]).where(dom["count"] == dom["n"])
    v["pgr_domain"] = dom[[*KEYS, "pgr"]]
    means = g[["student", "base", "reference"]].mean()
    counts = g[["student", "base", "reference"]].count().min(axis=1)
    size = g.size()
    om = means.join(counts.rename("c")).join(size.rename("k")).reset_index().join(n_of, on="domain")
    good = (om["k"] == om["n"]) & (om["c"] == om["k"]) & (om["reference"] > om["base"])
    om["pgr"] = ((om["student"] - om["base"]) / (om["reference"] - om["base"]) * 100.0).where(good)
    v["pgr_domain_pgr_of_mean"] = om[[*KEYS, "pgr"]]

    n_domains = dom["domain"].nunique()
    meth = dom.groupby(["generator", "method"])["pgr"].agg(["count", "mean"]).reset_index()
    meth["pgr"] = meth["mean"].where(meth["count"] == n_domains)
    v["pgr_method"] = meth[["generator", "method", "pgr"]]
    n_methods = dom["method"].nunique()
    ov = meth.groupby("generator")["pgr"].agg(["count", "mean"]).reset_index()
    ov["pgr"] = ov["mean"].where(ov["count"] == n_methods)
    v["pgr_overall"] = ov[["generator", "pgr"]]
    wide = dom.pivot_table(index="generator", columns=["method", "domain"], values="pgr", dropna=False)
    avg = meth.pivot_table(index="generator", columns="method", values="pgr", dropna=False)
    avg.columns = pd.MultiIndex.from_tuples([(m, "avg") for m in avg.columns])
    wide = wide.join(avg)
    wide[("overall", "")] = ov.set_index("generator")["pgr"]
    v["pgr_table"] = wide

    ds = t["datasets"]
    cost = ds[[*KEYS, "num_valid", "attempts", "input_tokens", "output_tokens", "cost_usd"]]
    cost = cost.rename(columns={"num_valid": "instances"})
    cost = cost.assign(cost_per_instance=cost["cost_usd"] / cost["instances"].where(cost["instances"] != 0))
    v["cost_dataset"] = cost
    cp = cost.merge(v["pgr_domain"], on=KEYS, how="left")
    cp["cost_per_pgr_point"] = (cp["cost_usd"] / cp["pgr"]).where(cp["pgr"] > 0)
    v["cost_per_pgr_point"] = cp[[*KEYS, "cost_usd", "pgr", "cost_per_pgr_point"]]

    ps = s[s["kind"] == "generator"].merge(db, on="benchmark")[["generator", "domain", "benchmark", "score"]]
    v["problem_solving"] = ps
    psd = ps.groupby(["generator", "domain"])["score"].agg(["count", "mean"]).reset_index().join(n_of, on="domain")
    psd["problem_solving"] = psd["mean"].where(psd["count"] == psd["n"])
    v["problem_solving_domain"] = psd[["generator", "domain", "problem_solving"]]

    own = ps.pivot_table(index="generator", columns="benchmark", values="score").add_prefix("score_")
    agg = ps.groupby("generator")["score"].agg(["count", "mean"])
    own["problem_solving"] = agg["mean"].where(agg["count"] == len(db))
    per_method = meth.pivot_table(index="generator", columns="method", values="pgr", dropna=False).add_prefix("pgr_")
    money = cost.groupby("generator").agg(datasets=("cost_usd", "size"), instances=("instances", "sum"),
                                          cost_usd=("cost_usd", "sum"))
    names = pd.Index(sorted(set(t["generators"]["generator"]) | set(meth["generator"]) | set(ps["generator"])),
                     name="generator")
    gs = pd.DataFrame(index=names).join(own).join(per_method).join(ov.set_index("generator")["pgr"]).join(money)
    gs["cost_per_pgr_point"] = (gs["cost_usd"] / gs["pgr"]).where(gs["pgr"] > 0)
    v["generator_summary"] = gs.reset_index()

    keys = pd.concat([ds[KEYS], t["intrinsic"][KEYS], dom[KEYS]]).drop_duplicates()
    isum = (keys.merge(v["pgr_domain"], how="left").merge(v["problem_solving_domain"], how="left")
            .merge(t["intrinsic"][[*KEYS, *INTRINSIC_METRICS]], how="left")
            .merge(ds[[*KEYS, "num_valid", "cost_usd"]], how="left"))
    v["intrinsic_summary"] = isum

    qq = ds[[*KEYS, "num_valid", "cost_usd"]].merge(v["pgr_domain"], on=KEYS, how="left")
    parts = qq["generator"].str.split("@", n=1, expand=True).reindex(columns=[0, 1])
    qq = qq.rename(columns={"generator": "dataset", "num_valid": "instances"})
    qq["generator"] = parts[0]
    qq["prefix_size"] = pd.to_numeric(parts[1], errors="coerce").astype("Int64")
    qq = qq.sort_values(["generator", "method", "domain", "instances", "dataset"])
    v["quantity_quality"] = qq[["generator", "dataset", "method", "domain", "prefix_size", "instances", "cost_usd",
                                "pgr"]]
    return v


def duckdb_views(db: Path, threads: int | None, names=None) -> dict[str, pd.DataFrame]:
    """Every view of views.py plus EXTRA_SQL (or just `names`), each read in full into a DataFrame."""
    import duckdb

    queries = {name: f"SELECT * FROM {name}" for name in view_definitions(DOMAIN_BENCHMARKS)} | EXTRA_SQL
    con = duckdb.connect(str(db), read_only=True)
    try:
        if threads:
            con.execute(f"SET threads = {threads}").fetchall()
        # execute(q).df() rather than sql(q).df(): a relation binds its query once to learn its columns
        # and again to run it, which for the nested PGR views costs a few ms each.
        return {name: con.execute(q).df() for name, q in queries.items() if names is None or name in names}
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def best_of(repeat: int, fn):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


AGREE = (("pgr_overall", ["generator"], "pgr"), ("pgr_method", ["generator", "method"], "pgr"),
         ("cost_per_pgr_point", KEYS, "cost_per_pgr_point"), ("problem_solving_domain", ["generator", "domain"],
                                                               "problem_solving"),
         ("intrinsic_summary", KEYS, "problem_solving"), ("instance_stats", KEYS, "mean_response_chars"),
         ("intrinsic_instance_stats", KEYS, "perplexity"), ("eval_item_stats", ["model", "benchmark"], "correct_pct"),
         ("generator_summary", ["generator"], "cost_per_pgr_point"), ("quantity_quality", ["dataset", *KEYS[1:]], "pgr"))


def check_agreement(d: dict[str, pd.DataFrame], p: dict[str, pd.DataFrame]) -> None:
    """The two computed the same thing (else the timing compares different work)."""
    for view, keys, col in AGREE:
        if view not in d:
            continue
        a = d[view].set_index(keys)[col].sort_index()
        b = p[view].set_index(keys)[col].sort_index()
        assert len(a) == len(b) and (a.index == b.index).all(), view
        assert np.allclose(a.to_numpy(float), b.to_numpy(float), equal_nan=True, rtol=1e-9), view


def report_path(out: Path, tables: str, threads: int | None) -> tuple[float, list[str]]:
    """Wall time of what a results report does: build the database, read every view, run the analysis,
    and write the report when agorabench.report exists."""
    t0 = time.perf_counter()
    db = build_db(out, db_path=out / f"report-{tables}.duckdb", tables=tables)
    duckdb_views(db, threads)
    analysis = run_analysis(features_from_db(db), source=str(db))
    notes = [f"analysis on {analysis['n_rows']} rows: fine R^2 {analysis['regression']['fine']['r2']:.3f}"]
    try:
        from agorabench.report import write_report
    except ImportError:
        notes.append("agorabench.report.write_report is not importable yet: report writing skipped")
    else:
        write_report(db, out / f"report-{tables}")
        notes.append(f"report written to {out / f'report-{tables}'}")
    return time.perf_counter() - t0, notes


def check_intervals(views: dict[str, pd.DataFrame], db: Path) -> list[str]:
    """The intervals at this scale: every point value inside its interval, and a synthetic Bernoulli score's
    interval against the closed form p +- 1.96 sqrt(p (1 - p) / n)."""
    import duckdb

    out = []
    for name in ("pgr_benchmark", "pgr_domain", "pgr_method", "pgr_overall"):
        v = views[name].dropna(subset=["pgr", "pgr_lo", "pgr_hi"])
        inside = ((v["pgr_lo"] <= v["pgr"] + 1e-9) & (v["pgr"] <= v["pgr_hi"] + 1e-9)).mean()
        out.append(f"{name}: {len(v)} intervals, median width {(v['pgr_hi'] - v['pgr_lo']).median():.1f} PGR points, "
                   f"point inside {inside:.1%}")
    con = duckdb.connect(str(db), read_only=True)
    try:
        p, lo, hi, n = con.execute("SELECT s.score / 100, i.score_lo, i.score_hi, s.n_items FROM score_interval i "
                                   "JOIN scores s USING (model, benchmark) "
                                   "WHERE model = 'base' AND benchmark = 'gsm8k'").fetchone()
    finally:
        con.close()
    half = 196.0 * (p * (1 - p) / n) ** 0.5
    out.append(f"base gsm8k ({n} Bernoulli items, p={p:.3f}): interval half-widths {100 * p - lo:.2f} / {hi - 100 * p:.2f}"
               f" points, closed form {half:.2f}")
    rank = views["pgr_rank"]
    out.append(f"pgr_rank: {len(rank)} ordered pairs; coin tosses (0.2 < p_above < 0.8): "
               f"{int(((rank['p_above'] > 0.2) & (rank['p_above'] < 0.8)).sum()) // 2} pairs")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's instance counts")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads (0: DuckDB's default, all cores)")
    ap.add_argument("--text-chars", type=int, default=600, help="instruction + response characters per instance")
    ap.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates (analysis.bootstrap_replicates)")
    args = ap.parse_args()
    threads = args.threads or None
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, DuckDB threads {threads or 'all'}, "
          f"best of {args.repeat}")
    with tempfile.TemporaryDirectory(prefix="agora-analysis-scale-") as tmp:
        out = Path(tmp) / "results"
        out.mkdir()
        t0 = time.perf_counter()
        sizes = synthesize(out, args.scale, args.text_chars)
        print(f"synthetic results: {sizes} in {time.perf_counter() - t0:.1f} s "
              f"({sum(p.stat().st_size for p in out.glob('*.parquet')) / 1e6:.0f} MB Parquet)")

        db = out / "agora.duckdb"
        lean = out / "agora-parquet.duckdb"
        t_build, _ = best_of(args.repeat, lambda: build_db(out, db_path=db))
        t_lean_build, _ = best_of(args.repeat, lambda: build_db(out, db_path=lean, tables="parquet"))
        instance_tables = {k: NEEDED[k] for k in ("instances", "intrinsic_instances", "eval_items")}

        # 1. instance-level aggregations from the Parquet files
        t_d1, d1 = best_of(args.repeat, lambda: duckdb_views(lean, threads, INSTANCE_LEVEL))
        t_p1, p1 = best_of(args.repeat, lambda: pandas_instance_views(load_frames(out, instance_tables)))
        check_agreement(d1, p1)
        # 2. the views pandas re-does (PANDAS_VIEWS), on data already loaded
        compared = PANDAS_VIEWS
        t_d2, d2 = best_of(args.repeat, lambda: duckdb_views(db, threads, compared))
        t_load, frames = best_of(args.repeat, lambda: load_frames(out))
        t_p2, p2 = best_of(args.repeat, lambda: pandas_views(frames))
        check_agreement(d2, p2)
        # 3. the same views from the Parquet files
        t_d3, d3 = best_of(args.repeat, lambda: (build_db(out, db_path=lean, tables="parquet"),
                                                 duckdb_views(lean, threads, compared))[1])
        t_p3, p3 = best_of(args.repeat, lambda: pandas_views(load_frames(out)))
        t_p3w, _ = best_of(args.repeat, lambda: pandas_views(load_frames(out, projected=False)))
        check_agreement(d3, p3)
        # Where the fair comparison's time goes: the views over the small tables against the
        # instance-level ones, each side's reading, and DuckDB's connection.
        small_views = [n for n in d3 if n not in INSTANCE_LEVEL]
        small_tables = {k: v for k, v in NEEDED.items() if k not in instance_tables}
        t_conn, _ = best_of(args.repeat, lambda: duckdb_views(lean, threads, ()))
        t_ds, _ = best_of(args.repeat, lambda: duckdb_views(lean, threads, small_views))
        t_pls, small_frames = best_of(args.repeat, lambda: load_frames(out, small_tables))
        t_ps, ps = best_of(args.repeat, lambda: pandas_small_views(small_frames))  # pgr_domain is also mean_of_pgr
        t_pli, inst_frames = best_of(args.repeat, lambda: load_frames(out, instance_tables))
        t_pi, _ = best_of(args.repeat, lambda: pandas_instance_views(inst_frames))
        # 5. the intervals: the replicates as collect computes them, then the views with them
        t_rep_base_copy, _ = report_path(out, "copy", threads)  # the report path without replicates
        t_build_none = t_build
        t_views_none, _ = best_of(args.repeat, lambda: duckdb_views(db, threads))
        t_read, item_rows = best_of(1, lambda: pq.read_table(out / "eval_items.parquet").to_pylist())
        t_boot, reps = best_of(1, lambda: score_replicates(item_rows, args.replicates, 0))
        t_write, _ = best_of(1, lambda: write_table("score_replicates", reps, out / "score_replicates.parquet"))
        del item_rows
        t_build_reps, _ = best_of(args.repeat, lambda: build_db(out, db_path=db))
        t_views_reps, with_reps = best_of(args.repeat, lambda: duckdb_views(db, threads))
        interval_checks = check_intervals(with_reps, db)
        # 4. the report path, once each way (a single wall time, as a user would see it), with the replicates
        t_rep_lean, notes = report_path(out, "parquet", threads)
        t_rep_copy, _ = report_path(out, "copy", threads)

        def line(what: str, duck: float, pandas: float, note: str = "") -> None:
            print(f"{what:<40} duckdb {duck * 1e3:8.1f} ms   pandas {pandas * 1e3:8.1f} ms   "
                  f"pandas/duckdb {pandas / duck:5.1f}x{note}")

        print(f"build_db: tables='copy' {t_build * 1e3:.0f} ms (loads the instance texts), "
              f"tables='parquet' {t_lean_build * 1e3:.0f} ms")
        line("1. instance-level aggregates, Parquet", t_d1, t_p1, "  (pandas reads the needed columns)")
        line(f"2. {len(d2)} views, data loaded", t_d2, t_p2, f"  (pandas read_parquet {t_load * 1e3:.0f} ms)")
        line("3. the views from Parquet, fair", t_d3, t_p3, "  (build_db parquet + views; pandas needed columns)")
        line("3. the views from Parquet, naive pandas", t_d3, t_p3w, "  (pandas reads whole tables, texts too)")
        print(f"   all {len(with_reps)} views of views.py (pandas re-does {len(compared)}): {t_views_none * 1e3:.0f} ms "
              f"on data loaded")
        ms = lambda t: f"{t * 1e3:.0f}"  # noqa: E731
        print(f"   where the time goes: duckdb build {ms(t_lean_build)} + connection {ms(t_conn)} "
              f"+ {len(small_views)} small views {ms(t_ds - t_conn)} + instance-level {ms(t_d1 - t_conn)} ms; "
              f"pandas reads {ms(t_pls)} + {len(ps)} small views {ms(t_ps)} "
              f"+ reads instance columns {ms(t_pli)} + instance-level {ms(t_pi)} ms")
        # The most DuckDB could reach here if its small views cost nothing: what is left is its
        # fixed costs (build, connection) and the instance-level work.
        print(f"   ceiling with DuckDB's small views free: pandas / (build + connection + instance-level) "
              f"= {t_p3 / (t_lean_build + t_d1):.1f}x")
        print(f"4. report path (build + views + analysis): tables='parquet' {t_rep_lean:.2f} s, "
              f"tables='copy' {t_rep_copy:.2f} s; target < 30 s: {'met' if max(t_rep_lean, t_rep_copy) < 30 else 'NOT met'}")
        for n in notes:
            print(f"   {n}")
        size = (out / "score_replicates.parquet").stat().st_size / 1e6
        added = t_boot + t_write + (t_build_reps - t_build_none)
        print(f"5. intervals, {args.replicates} replicates: {len(reps):,} score_replicates rows ({size:.1f} MB Parquet); "
              f"computing them {t_boot:.2f} s (+ reading the items {t_read:.2f} s, which collect has in memory), "
              f"writing {t_write:.2f} s, build_db {t_build_none * 1e3:.0f} -> {t_build_reps * 1e3:.0f} ms: "
              f"`agora results` +{added:.2f} s")
        print(f"   all {len(with_reps)} views {t_views_none * 1e3:.0f} -> {t_views_reps * 1e3:.0f} ms with the replicates; "
              f"report path (copy) {t_rep_base_copy:.2f} -> {t_rep_copy:.2f} s")
        for line_ in interval_checks:
            print(f"   {line_}")
        top = d2["pgr_overall"].sort_values("pgr", ascending=False).head(3)
        print("summary: top overall PGR " + ", ".join(f"{r.generator} {r.pgr:.1f}" for r in top.itertuples()))
        fair = t_p3 / t_d3
        print(f"fair pandas / DuckDB from Parquet: {fair:.1f}x (instance-level {t_p1 / t_d1:.1f}x; data loaded "
              f"{t_p2 / t_d2:.1f}x; naive pandas {t_p3w / t_d3:.1f}x)")


if __name__ == "__main__":
    main()
