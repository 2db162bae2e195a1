"""The results history: each revision's tables recorded once, the per-run views and those across runs,
and a results stage under a real `dvc repro` that stays reproducible while the history grows. Every
check that must pass sits next to a canary that a wrong version would hit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from agorabench.config import Params
from agorabench.pipeline.run import record_history
from agorabench.results.collect import collect
from agorabench.results.db import build_db, build_results, ensure_db
from agorabench.results.history import append_run, recorded_runs, run_identity
from agorabench.results.schema import HISTORY_TABLES
from agorabench.results.views import view_definitions
from agorabench.testing.results_tree import GENS, tree_params, write_tree
from tests.conftest import REPO
from tests.pgr_oracle import DOMAIN_BENCHMARKS
from tests.conftest import query as rows

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}


def sh(args, cwd, **env) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, env={**GIT_ENV, **env}).stdout


def git_repo(root: Path) -> Path:
    """A git repository with one commit and a dvc.lock, as the project's checkout would have."""
    root.mkdir(parents=True, exist_ok=True)
    sh(["git", "init", "-q"], root)
    (root / "dvc.lock").write_text("schema: '2.0'\nstages:\n  generate:\n    cmd: agora generate\n")
    sh(["git", "add", "dvc.lock"], root)
    sh(["git", "commit", "-q", "-m", "first"], root)
    return root


def with_params(params: Params, **analysis) -> Params:
    data = params.model_dump()
    data["analysis"].update(analysis)
    return Params.model_validate(data)


def set_score(paths, model: str, benchmark: str, score: float) -> None:
    f = paths.eval / model / f"{benchmark}.scores.json"
    record = json.loads(f.read_text())
    record["score"] = score
    f.write_text(json.dumps(record))


def test_two_runs_with_different_params_are_two_runs_and_pgr_over_runs_shows_both(tmp_path):
    paths = write_tree(tmp_path)
    repo = git_repo(tmp_path / "repo")
    said = []
    first = build_results(paths.params, repo=repo, say=said.append)
    pgr_first = dict(rows(first, "SELECT generator, pgr FROM pgr_overall"))
    # The second run: other params (min_gap) and a better base on gsm8k, so every PGR moves.
    set_score(paths, "base", "gsm8k", 30.0)
    second = with_params(paths.params, min_gap=0.5)
    db = build_results(second, repo=repo, say=said.append)
    pgr_second = dict(rows(db, "SELECT generator, pgr FROM pgr_overall"))
    history = paths.params.analysis.history_dir
    assert len(recorded_runs(history)) == 2 and all("recorded (" in s for s in said)
    assert pgr_first != pgr_second

    over = rows(db, "SELECT generator, run_number, pgr, pgr_change FROM pgr_over_runs")
    assert [(g, n) for g, n, _, _ in over] == [(g, n) for g in GENS for n in (1, 2)]
    for g, n, pgr, change in over:
        assert pgr == pytest.approx((pgr_first if n == 1 else pgr_second)[g])
        assert change is None if n == 1 else change == pytest.approx(pgr_second[g] - pgr_first[g])
    latest = rows(db, "SELECT generator, run_number, runs, pgr FROM latest_results")
    assert latest == [(g, 2, 2, pytest.approx(pgr_second[g])) for g in GENS]
    runs = rows(db, "SELECT run_number, recorded_by, git_rev IS NOT NULL, params_sha256 FROM history.runs ORDER BY 1")
    assert [r[:3] for r in runs] == [(1, "agora results", True), (2, "agora results", True)] and runs[0][3] != runs[1][3]

    # Each run's views read that run's rows only: history.pgr_overall of run 1 is what the first
    # build said, though the history holds both runs' scores.
    per_run = rows(db, "SELECT generator, pgr FROM history.pgr_overall WHERE run_id = "
                       "(SELECT run_id FROM history.runs WHERE run_number = 1)")
    assert dict(per_run) == pytest.approx(pgr_first)
    # Canary: the same views without the split by run mix the two runs: each student's score meets
    # both runs' domain map, base and reference, and every benchmark PGR comes out 2 x 2 x 2 times.
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{db}' AS r (READ_ONLY)").fetchall()
        con.execute("USE r.history").fetchall()
        # pgr_benchmark_point: the view that reads the tables (pgr_benchmark adds the intervals to it).
        mixed = view_definitions(DOMAIN_BENCHMARKS)["pgr_benchmark_point"].sql
        split = view_definitions(DOMAIN_BENCHMARKS, by=("run_id",))["pgr_benchmark_point"].sql
        n_split = con.execute(f"SELECT count(*) FROM ({split})").fetchall()[0][0]
        n_mixed = con.execute(f"SELECT count(*) FROM ({mixed})").fetchall()[0][0]
    finally:
        con.close()
    assert n_split == 2 * len(GENS) * 9 * 2 and n_mixed == 8 * n_split

    # The history keeps the numbers, not the texts.
    assert rows(db, "SELECT count(*), sum(instruction_chars) > 0 FROM history.instances") == [(2 * 54, True)]
    with pytest.raises(duckdb.BinderException):
        rows(db, "SELECT instruction FROM history.instances")


def test_the_same_revision_twice_adds_nothing(tmp_path):
    paths = write_tree(tmp_path)
    repo = git_repo(tmp_path / "repo")
    history = Path(paths.params.analysis.history_dir)
    first = build_results(paths.params, repo=repo)
    files = {p: p.read_bytes() for p in history.rglob("*.parquet")}
    said = []
    build_results(paths.params, repo=repo, say=said.append)
    assert len(recorded_runs(history)) == 1 and "already recorded, nothing added" in said[0]
    assert {p: p.read_bytes() for p in history.rglob("*.parquet")} == files
    assert rows(first, "SELECT count(*) FROM pgr_over_runs") == [(len(GENS),)]
    assert not [p for p in history.iterdir() if p.name.startswith(".")]  # no temporary folder left

    # What names the revision: the results stage's own dvc.lock entry (and the report's) do not,
    # since DVC writes them after the results are collected; any other stage's entry does.
    lock = repo / "dvc.lock"
    lock.write_text(lock.read_text() + "  results:\n    cmd: agora results\n  report:\n    cmd: agora report\n")
    assert record_history(paths.params, ["results"], repo=repo, say=said.append) is not None
    assert len(recorded_runs(history)) == 1 and "already recorded" in said[-1]
    # Canaries: an upstream stage's lock entry, a new commit and new params are each a new run.
    lock.write_text(lock.read_text() + "  train:\n    cmd: agora train\n")
    build_results(paths.params, repo=repo)
    sh(["git", "commit", "-q", "--allow-empty", "-m", "second"], repo)
    build_results(paths.params, repo=repo)
    build_results(with_params(paths.params, top_k=3), repo=repo)
    assert len(recorded_runs(history)) == 4


def test_results_changed_at_the_same_revision_keep_the_first_and_say_so(tmp_path):
    paths = write_tree(tmp_path)
    repo = git_repo(tmp_path / "repo")
    said = []
    build_results(paths.params, repo=repo, say=said.append)
    set_score(paths, "base", "gsm8k", 30.0)  # outside DVC: same git, dvc.lock and params
    db = build_results(paths.params, repo=repo, say=said.append)
    assert "the results differ from those first recorded" in said[-1] and "the first are kept" in said[-1]
    assert rows(db, "SELECT score FROM history.scores WHERE model = 'base' AND benchmark = 'gsm8k'") == [(25.0,)]
    # Canary: the current tables have the new score; only the history kept the old.
    assert rows(db, "SELECT score FROM scores WHERE model = 'base' AND benchmark = 'gsm8k'") == [(30.0,)]


def test_a_run_recorded_later_shows_up_and_ensure_db_rebuilds_for_the_first(tmp_path):
    paths = write_tree(tmp_path)
    repo = git_repo(tmp_path / "repo")
    a = paths.params.analysis
    collect(paths.params)
    db = ensure_db(a.results_dir, a.combine, a.min_gap, a.history_dir)  # no run recorded: empty history views
    assert rows(db, "SELECT count(*) FROM pgr_over_runs") == [(0,)]
    record_history(paths.params, ["results"], repo=repo, say=lambda _: None)
    db = ensure_db(a.results_dir, a.combine, a.min_gap, a.history_dir)
    assert rows(db, "SELECT count(*), min(run_number) FROM pgr_over_runs") == [(len(GENS), 1)]
    # Once the history has files, the views read them at query time: no rebuild for the next run.
    built = db.stat().st_mtime_ns
    other = {**run_identity(paths.params, repo), "run_id": "0000000000000042"}
    append_run(a.results_dir, a.history_dir, other)
    assert rows(db, "SELECT count(*) FROM history.runs") == [(2,)] and db.stat().st_mtime_ns == built
    # Canary: a database built without the history sees none of it.
    bare = build_db(a.results_dir, db_path=tmp_path / "bare.duckdb")
    assert rows(bare, "SELECT count(*) FROM history.runs") == [(0,)]


def test_only_a_run_whose_results_are_up_to_date_is_recorded(tmp_path):
    paths = write_tree(tmp_path)
    repo = git_repo(tmp_path / "repo")
    collect(paths.params)
    said = []
    # `agora run -t generate...` (results neither run nor checked): data/results is not this revision's.
    assert record_history(paths.params, ["generate@alpha-instance_generation-math"], repo=repo, say=said.append) is None
    assert recorded_runs(paths.params.analysis.history_dir) == [] and said == []
    run_id = record_history(paths.params, ["generate@alpha-instance_generation-math", "results"], repo=repo,
                            say=said.append)
    assert len(run_id) == 16 and said[-1].startswith(f"history: run {run_id} recorded (1 run in ")
    # Canary: with a results table missing, the run is not recorded and the line says why.
    (Path(paths.params.analysis.results_dir) / "scores.parquet").unlink()
    assert record_history(with_params(paths.params, top_k=2), ["results"], repo=repo, say=said.append) is None
    assert said[-1].startswith("history: run not recorded: ") and "scores.parquet does not exist" in said[-1]


def test_a_table_written_by_another_version_is_a_one_line_error(tmp_path):
    paths = write_tree(tmp_path)
    collect(paths.params)
    out = Path(paths.params.analysis.results_dir)
    import pyarrow.parquet as pq

    table = pq.read_table(out / "scores.parquet")
    pq.write_table(table.drop_columns(["score"]), out / "scores.parquet")
    run = run_identity(paths.params, tmp_path)
    with pytest.raises(ValueError, match=r"scores\.parquet: columns .* are not those of table scores") as err:
        append_run(out, tmp_path / "history", run)
    assert "\n" not in str(err.value) and recorded_runs(tmp_path / "history") == []
    history = tmp_path / "history"
    assert not [p for p in history.iterdir() if p.name.startswith(".")]  # nothing half-written left behind


@pytest.mark.slow
def test_the_results_stage_stays_reproducible_under_dvc_while_the_history_grows(tmp_path):
    """A scratch DVC project whose results stage is the library's build_results: `dvc repro` records the
    run, the same key is found after DVC wrote the stage's lock entry (as `agora run` records again),
    nothing is out of date, and only an upstream change adds a run."""
    repo = git_repo(tmp_path / "repo")
    paths = write_tree(repo)
    (repo / "upstream.txt").write_text("1\n")
    script = ("import sys; from agorabench.results.db import build_results; "
              "from agorabench.testing.results_tree import tree_params; "
              "build_results(tree_params(sys.argv[1]), repo='.', say=print)")
    (repo / "results.py").write_text(script + "\n")
    outs = [f"data/results/{n}.parquet" for n in HISTORY_TABLES]
    stages = {"stages": {
        "upstream": {"cmd": "cp upstream.txt data/upstream.txt", "deps": ["upstream.txt"], "outs": ["data/upstream.txt"]},
        "results": {"cmd": f"{sys.executable} results.py {repo}", "deps": ["data/upstream.txt", "results.py"],
                    "outs": outs}}}
    import yaml

    (repo / "dvc.yaml").write_text(yaml.safe_dump(stages))
    (repo / ".gitignore").write_text("/data/history/\n/data/results/agora.duckdb*\n")
    dvc = str(Path(sys.executable).with_name("dvc"))
    sh([dvc, "init", "-q"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-q", "-m", "pipeline"], repo)
    params = tree_params(repo)
    history = Path(params.analysis.history_dir)

    def repro() -> str:
        return sh([dvc, "repro"], repo, PYTHONPATH=str(REPO))

    out = repro()
    assert "history: run" in out and "recorded (1 run" in out
    said = []
    record_history(params, ["results"], repo=repo, say=said.append)  # what `agora run` does after `dvc repro`
    assert "already recorded" in said[0] and len(recorded_runs(history)) == 1
    assert "changed" not in sh([dvc, "status"], repo)
    assert "didn't change" in repro() and len(recorded_runs(history)) == 1
    # Canary: an upstream change re-runs results, which records a second run; DVC never deleted the first.
    (repo / "upstream.txt").write_text("2\n")
    assert "Running stage 'results'" in repro()
    assert len(recorded_runs(history)) == 2
    assert sh(["git", "status", "--porcelain", "--untracked-files=all", "data/history"], repo) == ""


def test_each_run_has_its_own_intervals_and_a_run_without_replicates_has_none(tmp_path):
    paths = write_tree(tmp_path)
    repo = git_repo(tmp_path / "repo")
    # Run 1 without bootstrap replicates (as a run recorded before the intervals existed), run 2 with them.
    build_results(with_params(paths.params, bootstrap_replicates=0), repo=repo)
    db = build_results(paths.params, repo=repo)
    current = rows(db, "SELECT generator, pgr, pgr_lo, pgr_hi, pgr_defined FROM pgr_overall ORDER BY 1")
    assert current and all(lo is not None and lo <= pgr <= hi for _, pgr, lo, hi, _ in current)
    run = "(SELECT run_id FROM history.runs WHERE run_number = {})"
    per_run = {n: rows(db, f"SELECT generator, pgr, pgr_lo, pgr_hi, pgr_defined FROM history.pgr_overall "
                           f"WHERE run_id = {run.format(n)} ORDER BY 1") for n in (1, 2)}
    assert per_run[2] == current  # run 2's replicates alone give the current build's intervals
    assert [(g, lo, hi, d) for g, _, lo, hi, d in per_run[1]] == [(g, None, None, None) for g in GENS]
    assert [pgr for _, pgr, *_ in per_run[1]] == pytest.approx([pgr for _, pgr, *_ in current])
    assert rows(db, "SELECT count(*) FROM history.pgr_rank GROUP BY run_id") == \
        rows(db, "SELECT count(*) FROM pgr_rank")  # only run 2 has replicates to rank with
    over = rows(db, "SELECT run_number, pgr_lo IS NULL FROM pgr_over_runs WHERE generator = 'alpha' ORDER BY 1")
    assert over == [(1, True), (2, False)]
    # The same holds where a run's folder has no score_replicates file at all (recorded by an older version).
    history = Path(paths.params.analysis.history_dir)
    first = rows(db, "SELECT run_id FROM history.runs WHERE run_number = 1")[0][0]
    (history / f"run_id={first}" / "score_replicates.parquet").unlink()
    db = build_db(paths.params.analysis.results_dir, history_dir=history)
    assert rows(db, f"SELECT generator, pgr, pgr_lo, pgr_hi, pgr_defined FROM history.pgr_overall "
                    f"WHERE run_id = {run.format(1)} ORDER BY 1") == per_run[1]
    # Canary: the replicate chain split by replicate only mixes the runs' domain maps: twice the rows.
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{db}' AS r (READ_ONLY)").fetchall()
        con.execute("USE r.history").fetchall()
        mixed = view_definitions(DOMAIN_BENCHMARKS)["pgr_benchmark_boot"].sql
        split = view_definitions(DOMAIN_BENCHMARKS, by=("run_id",))["pgr_benchmark_boot"].sql
        n_split, n_mixed = (con.execute(f"SELECT count(*) FROM ({q})").fetchall()[0][0] for q in (split, mixed))
    finally:
        con.close()
    assert n_split > 0 and n_mixed == 2 * n_split


def test_recorded_views_are_read_back_and_equal_the_computed_ones(tmp_path):
    """record_run writes each run's views once (views/); the history schema reads them instead of
    recomputing every run's chain, and they give the rows the computation gives. A run whose views
    were computed otherwise (here: another min_gap) turns the whole schema back to computing, and the
    next recording brings that run's views up to date."""
    from agorabench.results.history import VIEWS, recorded_views_key, write_views

    paths = write_tree(tmp_path)
    repo = git_repo(tmp_path / "repo")
    build_results(with_params(paths.params, bootstrap_replicates=0), repo=repo)
    set_score(paths, "base", "gsm8k", 30.0)
    db = build_results(paths.params, repo=repo)
    a = paths.params.analysis
    history = Path(a.history_dir)
    runs = recorded_runs(history)
    names = list(view_definitions(DOMAIN_BENCHMARKS))
    assert len(runs) == 2 and all(sorted(p.stem for p in (r / VIEWS).glob("*.parquet")) == sorted(names) for r in runs)

    def history_sql(db_path: Path) -> dict[str, str]:
        return dict(rows(db_path, "SELECT view_name, sql FROM duckdb_views() WHERE schema_name = 'history'"))

    def every_view(db_path: Path) -> dict[str, list]:
        return {n: sorted(rows(db_path, f"SELECT * FROM history.{n}"), key=repr) for n in names}

    assert all(f"/{VIEWS}/" in history_sql(db)[n] for n in names)  # read back, not computed
    recorded = every_view(db)
    assert any(recorded[n] for n in ("pgr_overall", "pgr_rank", "pgr_benchmark_boot"))
    # The same database with the views computed from the tables: remove the files' keys.
    keys = {r: (r / VIEWS / "key").read_text() for r in runs}
    for r in runs:
        (r / VIEWS / "key").unlink()
    computed_db = build_db(a.results_dir, db_path=tmp_path / "computed.duckdb", history_dir=history)
    assert not any(f"/{VIEWS}/" in history_sql(computed_db)[n] for n in names)
    assert every_view(computed_db) == recorded
    # Canary: one run's views computed otherwise (another version's SQL, combine or min_gap: another
    # key); the schema computes them all, and write_views rewrites that run only.
    for r in runs:
        (r / VIEWS / "key").write_text(keys[r])
    (runs[0] / VIEWS / "key").write_text("computed by another version\n")
    other = build_db(a.results_dir, db_path=tmp_path / "other.duckdb", history_dir=history)
    assert not any(f"/{VIEWS}/" in history_sql(other)[n] for n in names)
    assert write_views(history, a.combine, a.min_gap) == [runs[0].name.split("=", 1)[1]]
    assert recorded_views_key(runs[0]) == keys[runs[0]].strip()
    assert write_views(history, a.combine, a.min_gap) == []  # up to date: nothing written
    again = build_db(a.results_dir, db_path=tmp_path / "again.duckdb", history_dir=history)
    assert all(f"/{VIEWS}/" in history_sql(again)[n] for n in names) and every_view(again) == recorded
    # Recorded under another min_gap, every run's views are rewritten with it.
    assert len(write_views(history, a.combine, 30.0)) == 2
    # A run whose views cannot be written (a damaged table) is named and skipped when asked, else raised.
    (runs[1] / VIEWS / "key").write_text("stale\n")
    (runs[1] / "scores.parquet").write_bytes(b"not parquet")
    failed: list[str] = []
    assert write_views(history, a.combine, a.min_gap, failed=failed) == [runs[0].name.split("=", 1)[1]]
    assert len(failed) == 1 and runs[1].name in failed[0] and "the history computes them" in failed[0]
    with pytest.raises(duckdb.Error):
        write_views(history, a.combine, a.min_gap)
