"""The results database: the paper's PGR tables through the SQL views, agreement with pgr.py, a
fixture tree of pipeline files -> deterministic Parquet -> DuckDB -> `agora sql` output, and the
schema document. Every check that must pass sits next to a canary that a wrong version would hit."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import random

import duckdb
import pandas as pd
import pytest

from agorabench.config import DOMAINS, METHODS
from tests.pgr_oracle import DOMAIN_BENCHMARKS, compute_pgr
from agorabench.models.store import Completion
from agorabench.results.collect import collect, write_table
from agorabench.results.db import build_db, build_results, connect, ensure_db
from agorabench.results.docs import render_schema_doc
from agorabench.results.query import run_sql
from agorabench.results.schema import HISTORY_TABLES, RUNS, TABLES, history_columns
from agorabench.results.views import BUILT_TABLES, View, history_views, view_definitions
from agorabench.testing.results_tree import GENS, write_tree
from tests.conftest import query

IG, RG, QE = METHODS
BENCHMARKS = [b for names in DOMAIN_BENCHMARKS.values() for b in names]

# Paper Table 2 (docs/paper.md §6.1), Table 2's printed method averages and Table 3's overall
# (docs/paper.md §6.2).
TABLE2 = {
    "gpt-4o": ([20.6, 73.6, 46.1], [46.7, 28.5, 30.3], [21.9, -8.8, 7.1]),
    "gpt-4o-mini": ([16.1, 41.9, 18.0], [48.1, 18.9, 13.7], [17.8, -11.2, 9.9]),
    "claude-3.5-sonnet": ([8.9, 23.4, 40.1], [29.0, 44.5, 12.7], [15.7, 16.1, 21.8]),
    "llama-3.1-405b": ([10.4, 12.6, 7.4], [31.7, 35.4, 4.9], [-11.8, 7.5, 3.6]),
    "llama-3.1-70b": ([9.6, 58.7, 6.5], [23.0, 37.1, 4.5], [-21.8, 6.9, 2.7]),
    "llama-3.1-8b": ([6.5, 55.7, 6.2], [27.6, 25.8, 5.0], [-1.7, 15.4, 3.0]),
}
TABLE2_AVG = {
    "gpt-4o": (46.8, 35.2, 6.7), "gpt-4o-mini": (25.3, 26.9, 5.5), "claude-3.5-sonnet": (24.1, 28.8, 17.9),
    "llama-3.1-405b": (10.1, 24.0, -0.2), "llama-3.1-70b": (24.9, 21.5, -4.1), "llama-3.1-8b": (22.8, 19.4, 5.6),
}
TABLE3_OVERALL = {"gpt-4o": 29.5, "gpt-4o-mini": 19.2, "claude-3.5-sonnet": 23.6,
                  "llama-3.1-405b": 11.3, "llama-3.1-70b": 14.1, "llama-3.1-8b": 15.9}
# Anchors: the reference is Llama-3.1-8B-Instruct (Table 7); base scores are made up except MATH's.
REFERENCE = {"gsm8k": 78.9, "math": 34.6, "mbpp": 68.5, "humaneval": 69.5, "alpacaeval": 24.2, "arenahard": 25.5}
BASE = {"gsm8k": 55.0, "math": 19.84, "mbpp": 45.0, "humaneval": 30.0, "alpacaeval": 2.0, "arenahard": 3.0}


def score_row(kind: str, benchmark: str, score: float | None, generator=None, method=None, domain=None) -> dict:
    key = {"base": "base", "reference": "reference", "student": f"students/{generator}/{method}/{domain}",
           "generator": f"generators/{generator}"}[kind]
    return {"model": key, "kind": kind, "generator": generator, "method": method,
            "student_domain": domain if kind == "student" else None, "benchmark": benchmark,
            "benchmark_domain": next(d for d, bs in DOMAIN_BENCHMARKS.items() if benchmark in bs), "score": score}


def db_from_scores(tmp_path, rows: list[dict], combine: str = "mean_of_pgr"):
    """A database whose only data is a `scores` table: the views' whole PGR chain runs from it."""
    out = tmp_path / f"results-{combine}"
    out.mkdir(exist_ok=True)
    write_table("scores", rows, out / "scores.parquet")
    write_domain_map(out, DOMAIN_BENCHMARKS)
    return build_db(out, combine=combine)


def write_domain_map(out, domains) -> None:
    write_table("domain_benchmarks", [{"domain": d, "benchmark": b, "position": i}
                                      for d, names in domains.items() for i, b in enumerate(names)],
                out / "domain_benchmarks.parquet")


def anchors() -> list[dict]:
    return ([score_row("base", b, BASE[b]) for b in BENCHMARKS]
            + [score_row("reference", b, REFERENCE[b]) for b in BENCHMARKS])


# ---------------------------------------------------------------------------------------------
# The paper's numbers through the views
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("combine", ["mean_of_pgr", "pgr_of_mean"])
def test_table2_domain_pgrs_give_the_papers_method_and_overall_averages(tmp_path, combine):
    # Students scored so that both benchmarks of a domain recover exactly the domain's printed PGR.
    rows = anchors()
    for gen, per_method in TABLE2.items():
        for method, values in zip(METHODS, per_method):
            for domain, target in zip(DOMAINS, values):
                for b in DOMAIN_BENCHMARKS[domain]:
                    student = BASE[b] + target / 100.0 * (REFERENCE[b] - BASE[b])
                    rows.append(score_row("student", b, student, gen, method, domain))
    db = db_from_scores(tmp_path, rows, combine)
    domain_pgr = {(g, m, d): v for g, m, d, v in query(db, "SELECT generator, method, domain, pgr FROM pgr_domain")}
    assert domain_pgr[("llama-3.1-70b", QE, "math")] == pytest.approx(-21.8)
    method_avg = {(g, m): v for g, m, v in query(db, "SELECT generator, method, pgr FROM pgr_method")}
    overall = dict(query(db, "SELECT generator, pgr FROM pgr_overall"))
    assert len(method_avg) == 18 and len(overall) == 6
    for gen, printed in TABLE2_AVG.items():
        for method, value in zip(METHODS, printed):
            # Cells are printed rounded to 0.1, so their mean can miss the printed average by ~0.05.
            assert method_avg[(gen, method)] == pytest.approx(value, abs=0.1), (gen, method)
        assert overall[gen] == pytest.approx(TABLE3_OVERALL[gen], abs=0.1), gen
    # The text's more precise values (docs/paper.md §6.1).
    assert method_avg[("gpt-4o", IG)] == pytest.approx(46.75, abs=0.03)
    assert method_avg[("claude-3.5-sonnet", QE)] == pytest.approx(17.89, abs=0.03)
    # The wide view is the same numbers.
    wide = query(db, "SELECT ig_math, ig_avg, overall FROM pgr_table WHERE generator = 'gpt-4o'")[0]
    assert wide == pytest.approx((20.6, method_avg[("gpt-4o", IG)], overall["gpt-4o"]))
    # Canary: pooling the scores (PGR of the mean over all six benchmarks) is not the paper's averaging,
    # and this test would see it.
    pooled = dict(query(db, "SELECT generator, (avg(student) - avg(base)) / (avg(reference) - avg(base)) * 100 "
                            "FROM pgr_benchmark GROUP BY generator"))
    assert max(abs(pooled[g] - TABLE3_OVERALL[g]) for g in TABLE3_OVERALL) > 1.0


# ---------------------------------------------------------------------------------------------
# Agreement with the pandas oracle (tests/pgr_oracle.py)
# ---------------------------------------------------------------------------------------------


def random_students(seed: int = 7) -> list[dict]:
    """Uneven on purpose: a missing benchmark, a NULL score, a generator lacking a whole method."""
    rng = random.Random(seed)
    rows = []
    for g in range(6):
        for method in METHODS:
            if g == 4 and method == QE:
                continue
            for domain in DOMAINS:
                for b in DOMAIN_BENCHMARKS[domain]:
                    if g == 2 and method == RG and b == "humaneval":
                        continue
                    score = None if (g == 3 and method == IG and b == "gsm8k") else rng.uniform(0, 90)
                    rows.append(score_row("student", b, score, f"gen{g}", method, domain))
    return rows


def pgr_py(rows: list[dict], combine: str):
    students = pd.DataFrame([{"generator": r["generator"], "method": r["method"], "benchmark": r["benchmark"],
                              "score": math.nan if r["score"] is None else r["score"]}
                             for r in rows if r["kind"] == "student"])
    base = {r["benchmark"]: r["score"] for r in rows if r["kind"] == "base"} or BASE
    reference = {r["benchmark"]: r["score"] for r in rows if r["kind"] == "reference"} or REFERENCE
    return compute_pgr(students, base, reference, combine=combine)


def assert_same(frame: pd.DataFrame, keys: list[str], got: dict) -> None:
    assert len(frame) == len(got)
    for rec in frame.to_dict(orient="records"):
        want, have = rec["pgr"], got[tuple(rec[k] for k in keys)]
        if math.isnan(want):
            assert have is None, rec
        else:
            assert have == pytest.approx(want, rel=1e-12, abs=1e-9), rec


@pytest.mark.parametrize("combine", ["mean_of_pgr", "pgr_of_mean"])
def test_views_agree_with_pgr_py_on_an_uneven_fixture(tmp_path, combine):
    rows = random_students()
    db = db_from_scores(tmp_path, anchors() + rows, combine)
    res = pgr_py(rows, combine)
    levels = [(res.per_benchmark, ["generator", "method", "benchmark"], "pgr_benchmark", "generator, method, benchmark"),
              (res.per_domain, ["generator", "method", "domain"], "pgr_domain", "generator, method, domain"),
              (res.per_method, ["generator", "method"], "pgr_method", "generator, method"),
              (res.overall, ["generator"], "pgr_overall", "generator")]
    for frame, keys, view, cols in levels:
        got = {tuple(r[:-1]): r[-1] for r in query(db, f"SELECT {cols}, pgr FROM {view}")}
        assert_same(frame, keys, got)
    overall = dict(query(db, "SELECT generator, pgr FROM pgr_overall"))
    assert overall["gen0"] is not None and overall["gen2"] is None and overall["gen4"] is None
    # Canary: averaging the benchmarks directly ignores the gaps, so it disagrees with pgr.py.
    naive = dict(query(db, "SELECT generator, avg(pgr) FROM pgr_benchmark GROUP BY generator"))
    assert any(naive[g] is not None and (v is None or abs(naive[g] - v) > 1e-6) for g, v in overall.items())


def test_the_two_domain_definitions_differ_and_both_stay_available(tmp_path):
    rows = random_students()
    db = db_from_scores(tmp_path, anchors() + rows, "pgr_of_mean")
    a = dict(((g, m, d), v) for g, m, d, v in query(db, "SELECT generator, method, domain, pgr FROM pgr_domain_mean_of_pgr"))
    b = dict(((g, m, d), v) for g, m, d, v in query(db, "SELECT generator, method, domain, pgr FROM pgr_domain_pgr_of_mean"))
    chosen = dict(((g, m, d), v) for g, m, d, v in query(db, "SELECT generator, method, domain, pgr FROM pgr_domain"))
    assert chosen == b and query(db, "SELECT value FROM meta WHERE key = 'combine'") == [("pgr_of_mean",)]
    assert max(abs(a[k] - b[k]) for k in a if a[k] is not None) > 0.5  # canary: they are not the same numbers
    with pytest.raises(ValueError, match="combine='median'"):
        build_db(tmp_path / "results-pgr_of_mean", combine="median")


def test_reference_not_above_base_gives_null_with_a_reason(tmp_path):
    rows = [r for r in anchors() if r["benchmark"] != "gsm8k"]
    rows += [score_row("base", "gsm8k", 60.0), score_row("reference", "gsm8k", 60.0)]
    rows += [score_row("student", b, 50.0, "g", IG, "math") for b in ("gsm8k", "math")]
    db = db_from_scores(tmp_path, rows)
    got = dict((b, (p, r)) for b, p, r in query(db, "SELECT benchmark, pgr, reason FROM pgr_benchmark"))
    assert got["gsm8k"] == (None, "reference is not above base")
    assert got["math"][0] == pytest.approx((50.0 - 19.84) / (34.6 - 19.84) * 100) and got["math"][1] is None
    assert query(db, "SELECT pgr FROM pgr_domain") == [(None,)]
    res = pgr_py(rows, "mean_of_pgr")  # pgr.py agrees
    assert math.isnan(res.per_domain.at[0, "pgr"])


# ---------------------------------------------------------------------------------------------
# A tree of pipeline files -> Parquet -> DuckDB -> queries
# ---------------------------------------------------------------------------------------------

# The fixture tree (write_tree, GENS) lives in agorabench/testing/results_tree.py: the report tests use it too.


def parquet_bytes(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.parquet"))}


def test_collect_is_byte_identical_and_the_database_answers(tmp_path):
    paths = write_tree(tmp_path)
    written = collect(paths.params)
    assert set(written) == set(TABLES) - {"requests"}
    first = parquet_bytes(paths.out)
    # Same inputs, different modification times and a fresh output folder: the same bytes.
    for p in paths.generated.rglob("*.json"):
        os.utime(p, (1_000_000, 1_000_000))
    for p in paths.out.glob("*.parquet"):
        p.unlink()
    collect(paths.params)
    assert parquet_bytes(paths.out) == first
    # Canary: one changed score changes the bytes, so the comparison above is not vacuous.
    s = paths.eval / "base" / "gsm8k.scores.json"
    s.write_text(s.read_text().replace('"score": 25.0', '"score": 26.0'))
    collect(paths.params)
    changed = parquet_bytes(paths.out)
    assert changed["scores.parquet"] != first["scores.parquet"] and changed["datasets.parquet"] == first["datasets.parquet"]

    db = build_db(paths.out)
    n = len(GENS) * 9
    assert query(db, "SELECT count(*), sum(instruction_chars) > 0 FROM instances") == [(n * 3, True)]
    assert query(db, "SELECT count(*), sum(rejected), sum(cost_usd) FROM datasets")[0] == pytest.approx((n, n, n * 0.004))
    assert query(db, "SELECT count(*) FROM training_runs WHERE final_loss = 0.5") == [(n,)]
    assert query(db, "SELECT count(*) FROM training_loss") == [(2 * n,)]
    assert query(db, "SELECT instances, cost_per_instance FROM cost_dataset LIMIT 1")[0] == pytest.approx((3, 0.004 / 3))
    # The items agree with the scores files (eval_item_stats is computed from the items) where the score is
    # the mean of `correct`; the judged benchmarks' scores are fits (length-controlled, Bradley-Terry).
    mismatch = query(db, "SELECT count(*) FROM eval_item_stats e JOIN scores s USING (model, benchmark) "
                         "WHERE abs(e.correct_pct - s.score) > 1e-9 AND s.primary_metric IN ('accuracy', 'pass@1')")
    assert mismatch == [(1,)]  # exactly the score edited above, and nothing else
    # Every student has a domain PGR; generator_summary puts Table 7 beside the overall PGR.
    assert query(db, "SELECT count(*), count(pgr) FROM pgr_domain") == [(n, n)]
    summary = {r[0]: r for r in query(db, "SELECT generator, problem_solving, pgr, instances, datasets "
                                          "FROM generator_summary")}
    assert set(summary) == set(GENS)
    own = query(db, "SELECT avg(score) FROM scores WHERE model = 'generators/alpha'")[0][0]
    assert summary["alpha"][1] == pytest.approx(own) and summary["alpha"][3:] == (27, 9)
    # intrinsic_summary: one row per dataset with PGR, the generator's problem solving and the metrics.
    rows = query(db, "SELECT generator, method, domain, pgr, problem_solving, difficulty, quality, reward, "
                     "instruction_diversity, instances FROM intrinsic_summary ORDER BY ALL")
    assert len(rows) == n and all(r[3] is not None and r[4] is not None for r in rows)
    assert rows[0][5:] == (2.5, 4.0, None, 0.25, 3)
    assert query(db, "SELECT count(*), avg(difficulty), count(difficulty) FROM intrinsic_instances")[0] == \
        pytest.approx((n * 3, 2.5, n * 2))
    # The intrinsic_summary frame is what analysis.analyze takes.
    con = connect(db)
    frame = con.sql("SELECT * FROM intrinsic_summary").df()
    con.close()
    from agorabench.analysis import REQUIRED_COLUMNS
    assert set(REQUIRED_COLUMNS) <= set(frame.columns)


def test_run_sql_formats(tmp_path):
    paths = write_tree(tmp_path)
    db = build_results(paths.params)
    q = "SELECT generator, pgr, methods FROM pgr_overall ORDER BY generator"
    want = query(db, q)
    table = run_sql(db, q)
    lines = table.splitlines()
    assert lines[0].split() == ["generator", "pgr", "methods"] and set(lines[1]) <= {"-", " "}
    assert lines[2].startswith("alpha") and lines[-1] == "(2 rows)"
    assert len({len(line) for line in lines[1:4]}) == 1  # aligned: numbers right-justified to one width
    got_csv = list(csv.reader(io.StringIO(run_sql(db, q, fmt="csv"))))
    assert got_csv[0] == ["generator", "pgr", "methods"]
    assert [(r[0], float(r[1]), int(r[2])) for r in got_csv[1:]] == want  # full precision round-trips
    assert [tuple(d.values()) for d in json.loads(run_sql(db, q, fmt="json"))] == want
    md = run_sql(db, "SELECT 'a|b' AS x, NULL AS y", fmt="markdown").splitlines()
    assert md == ["| x | y |", "|---|---|", "| a\\|b | NULL |"]
    assert "1 more row not shown" in run_sql(db, q, limit=1)
    assert json.loads(run_sql(db, "SELECT 'nan'::DOUBLE AS v", fmt="json")) == [{"v": None}]
    # Bad input: one line each, naming what to fix.
    for kwargs, message in [({"fmt": "xml"}, "format 'xml' is not known"),
                            ({"query": "SELECT * FROM nope"}, "SQL error: .*nope"),
                            ({"query": "DELETE FROM scores"}, "SQL error: .*read-only"),
                            ({"query": "  "}, "the query is empty")]:
        with pytest.raises(ValueError, match=message) as err:
            run_sql(db, **{"query": q, **kwargs})
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="does not exist; build it first"):
        run_sql(tmp_path / "missing.duckdb", q)


def test_bad_result_files_give_one_line_errors(tmp_path):
    paths = write_tree(tmp_path)
    manifest = paths.generated / "alpha" / IG / "math.manifest.json"
    good = manifest.read_text()
    manifest.write_text(good[:-5])
    with pytest.raises(ValueError, match="math.manifest.json: not valid JSON"):
        collect(paths.params)
    manifest.write_text(good.replace('"generator": "alpha"', '"generator": "beta"'))
    with pytest.raises(ValueError, match="generator is 'beta' but the file sits under 'alpha'"):
        collect(paths.params)
    manifest.write_text(good)
    data = paths.generated / "alpha" / IG / "code.jsonl"
    data.write_text(data.read_text() + "{oops\n")
    with pytest.raises(ValueError, match="code.jsonl: line 4: not valid JSON"):
        collect(paths.params)
    data.write_text(data.read_text().replace("{oops\n", '{"id": "x"}\n'))
    with pytest.raises(ValueError, match=r"code.jsonl: line 4: instruction: Field required; re-run `agora generate` "
                                         r"for alpha/instance_generation/code"):
        collect(paths.params)
    data.write_text(data.read_text().replace('{"id": "x"}\n', ""))
    # The records are the writers' own: a field the writer does not write is refused, not ignored.
    manifest.write_text(good.replace('"generator": "alpha"', '"generator": "alpha", "generatr": "alpha"'))
    with pytest.raises(ValueError, match="math.manifest.json: generatr: Extra inputs are not permitted"):
        collect(paths.params)
    manifest.write_text(good)
    collect(paths.params)  # canary: the repaired tree collects
    with pytest.raises(ValueError, match="does not exist; run collect"):
        build_db(tmp_path / "nowhere")


def test_requests_table_is_optional(tmp_path):
    from agorabench.models.store import RequestStore

    paths = write_tree(tmp_path)
    with pytest.raises(ValueError, match="no request store"):
        collect(paths.params, include_requests=True)
    store = RequestStore(paths.requests_db)
    store.put("k1", "openai", "m", {"messages": []}, Completion("t", "stop", 3, 4, 0.2, 0.01))
    store.close()
    collect(paths.params, include_requests=True)
    db = build_db(paths.out)
    assert query(db, "SELECT key, input_tokens, cost_usd FROM requests") == [("k1", 3, 0.01)]
    (paths.out / "requests.parquet").unlink()
    db = build_db(paths.out)
    assert query(db, "SELECT count(*) FROM requests") == [(0,)]  # absent: an empty table, views still work


# ---------------------------------------------------------------------------------------------
# The schema document
# ---------------------------------------------------------------------------------------------


def documented_vs_actual(con: duckdb.DuckDBPyConnection, tables: dict, views: dict) -> list[str]:
    problems = []
    for name, cols in [*((n, t.names) for n, t in tables.items()),
                       *((n, [c for c, _ in v.columns]) for n, v in {**BUILT_TABLES, **views}.items())]:
        actual = [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()]
        if actual != cols:
            problems.append(f"{name}: documented {cols}, actual {actual}")
    return problems


def documented_history() -> tuple[dict, dict]:
    """The history schema as documented, as Views (only their columns matter here): its tables, and
    its per-run views and the views across runs."""
    columns = {f"history.{n}": ["run_id", *history_columns(n)] for n in HISTORY_TABLES}
    columns["history.runs"] = ["run_id", "run_number", *RUNS.names]
    tables = {n: View("", "", tuple((c, "") for c in cols)) for n, cols in columns.items()}
    views = {f"history.{n}": v for n, v in view_definitions(DOMAIN_BENCHMARKS, by=("run_id",)).items()}
    return tables, {**views, **history_views(DOMAIN_BENCHMARKS)}


def test_every_table_and_view_is_documented_as_it_is(tmp_path):
    from pathlib import Path

    paths = write_tree(tmp_path)
    db = build_results(paths.params)
    con = connect(db)
    try:
        views = view_definitions(DOMAIN_BENCHMARKS)
        assert documented_vs_actual(con, TABLES, views) == []
        # Canary: a view whose documentation forgot a column is caught.
        broken = dict(views)
        v = broken["pgr_overall"]
        broken["pgr_overall"] = type(v)(v.doc, v.sql, v.columns[:-1])
        assert documented_vs_actual(con, TABLES, broken) == [
            "pgr_overall: documented ['generator', 'pgr', 'methods', 'pgr_lo', 'pgr_hi'], "
            "actual ['generator', 'pgr', 'methods', 'pgr_lo', 'pgr_hi', 'pgr_defined']"]
        # The history, from the run this build_results recorded: a run_id first everywhere.
        tables, history = documented_history()
        assert documented_vs_actual(con, {}, tables | history) == []
        listed = set(con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall())
        main = set(TABLES) | set(BUILT_TABLES) | set(views) | set(history_views(DOMAIN_BENCHMARKS))
        assert listed == {("main", n) for n in main} | {tuple(n.split(".")) for n in tables | history if "." in n}
    finally:
        con.close()
    # An empty history (no run recorded) has the same columns.
    empty = build_db(paths.out, db_path=tmp_path / "empty.duckdb", history_dir=tmp_path / "no-history")
    con = connect(empty)
    try:
        assert documented_vs_actual(con, {}, tables | history) == []
        assert con.execute("SELECT count(*) FROM history.pgr_overall").fetchall() == [(0,)]
    finally:
        con.close()
    doc = (Path(__file__).resolve().parents[1] / "docs" / "results-schema.md").read_text()
    assert doc == render_schema_doc(), "docs/results-schema.md is stale: run agorabench.results.docs.write_schema_doc()"


def test_tables_as_parquet_views_give_the_same_answers(tmp_path):
    paths = write_tree(tmp_path)
    copied = build_results(paths.params)
    lean = build_db(paths.out, db_path=tmp_path / "lean.duckdb", tables="parquet")
    q = "SELECT * FROM generator_summary ORDER BY generator"
    assert query(lean, q) == query(copied, q) and query(lean, "SELECT count(*) FROM instances") == [(54,)]
    # Canary: the lean database reads the Parquet at query time, the copied one stands alone.
    (paths.out / "instances.parquet").rename(tmp_path / "moved.parquet")
    assert query(copied, "SELECT count(*) FROM instances") == [(54,)]
    with pytest.raises(duckdb.Error):
        query(lean, "SELECT count(*) FROM instances")
    with pytest.raises(ValueError, match="tables='both' is not known"):
        build_db(paths.out, tables="both")


def test_a_gap_under_min_gap_gives_null_with_a_reason_and_is_recorded(tmp_path):
    rows = [r for r in anchors() if r["benchmark"] != "gsm8k"]
    rows += [score_row("base", "gsm8k", 56.26), score_row("reference", "gsm8k", 56.40)]
    rows += [score_row("student", b, 56.0, "g", IG, "math") for b in ("gsm8k", "math")]
    out = tmp_path / "results"
    out.mkdir()
    write_table("scores", rows, out / "scores.parquet")
    write_domain_map(out, DOMAIN_BENCHMARKS)
    db = build_db(out, min_gap=1.0)
    got = dict((b, (p, r)) for b, p, r in query(db, "SELECT benchmark, pgr, reason FROM pgr_benchmark"))
    assert got["gsm8k"] == (None, "reference is less than min_gap (1.0) above base")
    assert got["math"][0] is not None  # its gap is 14.76 points
    assert query(db, "SELECT value FROM meta WHERE key = 'min_gap'") == [("1.0",)]
    # ensure_db rebuilds a database that was built with another min_gap (here: the default 0)
    assert dict(query(ensure_db(out), "SELECT benchmark, pgr FROM pgr_benchmark"))["gsm8k"] == pytest.approx(-185.7, abs=0.1)
    # canary: the same scores without a minimum give the huge number the minimum is there to stop
    assert dict(query(build_db(out), "SELECT benchmark, pgr FROM pgr_benchmark"))["gsm8k"] < -180
    with pytest.raises(ValueError, match="min_gap=-1"):
        build_db(out, min_gap=-1)


def test_large_tables_are_written_in_duckdb_sized_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from agorabench.results.collect import ROW_GROUP_ROWS, parquet_options

    n = 2 * ROW_GROUP_ROWS + 1000
    rows = [{"generator": "g", "method": IG, "domain": "math", "idx": i, "id": f"g/{i}", "instruction": "x",
             "response": "y", "instruction_chars": 1, "response_chars": 1} for i in range(n)]
    path = write_table("instances", rows, tmp_path / "instances.parquet")
    groups = [pq.ParquetFile(path).metadata.row_group(i).num_rows for i in range(3)]
    assert pq.ParquetFile(path).metadata.num_row_groups == 3 and groups == [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 1000]
    # Canary: pyarrow's default row-group size would have put all of them in one group.
    table = pq.read_table(path)
    options = {k: v for k, v in parquet_options(TABLES["instances"]).items() if k != "row_group_size"}
    pq.write_table(table, tmp_path / "default.parquet", **options)
    assert pq.ParquetFile(tmp_path / "default.parquet").metadata.num_row_groups == 1
    # Below one group's worth of rows the file is what it was before the option existed.
    small = pa.Table.from_pylist(rows[:500], schema=TABLES["instances"].arrow_schema())
    pq.write_table(small, tmp_path / "a.parquet", **parquet_options(TABLES["instances"]))
    pq.write_table(small, tmp_path / "b.parquet", **options)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_domain_pgr_follows_evaluation_benchmarks_in_params(tmp_path):
    """`agora results` records params' evaluation.benchmarks; the PGR views average exactly those."""
    paths = write_tree(tmp_path)
    both = paths.params
    only_alpaca = both.model_copy(update={"evaluation": both.evaluation.model_copy(update={
        "benchmarks": {**both.evaluation.benchmarks, "general": ["alpacaeval"]}})})
    sql = ("SELECT d.pgr, b.pgr FROM pgr_domain d JOIN pgr_benchmark b USING (generator, method, domain) "
           "WHERE d.domain = 'general' AND b.benchmark = 'alpacaeval' AND d.pgr IS NOT NULL")
    pairs = query(build_results(only_alpaca), sql)
    assert pairs and all(d == pytest.approx(b) for d, b in pairs)  # the domain is its one benchmark
    assert query(paths.out / "agora.duckdb", "SELECT count(*) FROM pgr_benchmark WHERE benchmark = 'arenahard'") == [(0,)]
    # Canary: with both benchmarks (the schema default), the domain PGR is not alpacaeval's alone.
    pairs = query(build_results(both), sql)
    assert pairs and any(d != pytest.approx(b) for d, b in pairs)
