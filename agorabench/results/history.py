"""The history of results: every recorded run's tables, one folder per run, beside the current run's.

`agora results` (and `agora run`, after its pipeline) copies the collected tables of
analysis.results_dir into analysis.history_dir/run_id=KEY/TABLE.parquet. KEY names the revision the
results come from: the git commit, dvc.lock (its stages up to results) and the params. Recording the
same revision again adds nothing, so re-running an unchanged pipeline, or `agora results` twice, leaves
the history as it was. db.py reads every folder at once as the database schema `history` (the folder
name becomes a run_id column), where every view of views.py exists per run.

The history is not a DVC output, on purpose: DVC deletes a stage's outputs before it runs the stage,
caches every version of them, and puts the old version back on `dvc checkout` of an old commit. As an
output of `results` the history would be re-hashed and cached in full each run, and checking out an
older commit would drop the runs recorded after it. `persist: true` only stops the deletion. Kept
outside DVC (git-ignored, like the request store), it only grows, and the results stage stays
reproducible: its outputs are the Parquet of data/results/, byte-identical for the same inputs.

What a run keeps: every deterministic table, without the instance and item texts
(schema.HISTORY_LEFT_OUT); those stay in DVC at the run's git_rev.

And the rows of its views (run_id=KEY/views/VIEW.parquet): a recorded run never changes, so its PGR,
intervals and ranks are computed once, when it is recorded, not again by every query over the history
(at 100 paper-scale runs that recomputation took minutes: each interval view re-reads every run's
bootstrap replicates). views/key names the view SQL that computed them (views_key: the views'
definitions with the run's domains, analysis.combine and min_gap). db.py reads these files where every
run's key is the one it would compute itself, and computes the views from the tables otherwise; each
recording (record_run) writes the views of any run whose key is not current, so a history recorded by
another version, or under another combine, is brought up to date once.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from agorabench.files import AlreadyThere, StorageError, creating_dir, replacing_dir, write_atomic
from agorabench.results.collect import parquet_options
from agorabench.results.schema import HISTORY_TABLES, RUNS, TABLES, history_columns
from agorabench.results.views import view_definitions

PARTITION = "run_id"
RUNS_FILE = "runs.parquet"
VIEWS = "views"  # a run's folder of its views' rows
VIEWS_KEY = "key"  # in it: views_key of the SQL that computed them, written last
# The dvc.lock entries that are written after the results are collected: the results stage itself and
# what reads its outputs. Leaving them out, the key is the same inside the results stage (before DVC
# writes its entry) and after the run (`agora run` records again there: no duplicate).
AFTER_RESULTS = ("results", "report")


@dataclass(frozen=True)
class Recorded:
    run_id: str
    path: Path
    added: bool  # False: this revision was already recorded (nothing written)
    note: str = ""  # a warning worth printing, or ""

    def message(self) -> str:
        runs = len(recorded_runs(self.path.parent))
        what = "recorded" if self.added else "already recorded, nothing added"
        return f"history: run {self.run_id} {what} ({runs} run{'s' * (runs != 1)} in {self.path.parent})" + \
            (f"; {self.note}" if self.note else "")


def run_identity(params, repo: str | Path = ".", recorded_by: str = "agora results") -> dict:
    """The runs row of the results `params` describe, collected in `repo` now: git revision, dvc.lock
    and params hashes, and run_id, the key made of those three."""
    repo = Path(repo)
    git_rev, dirty = _git(repo)
    lock = _dvc_lock_sha256(repo / "dvc.lock")
    params_sha = _sha256(json.dumps(params.model_dump(mode="json"), sort_keys=True).encode())
    return {"run_id": run_key(git_rev, lock, params_sha),
            "recorded_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), "recorded_by": recorded_by,
            "git_rev": git_rev, "git_dirty": dirty, "dvc_lock_sha256": lock, "params_sha256": params_sha}


def run_key(git_rev: str | None, dvc_lock_sha256: str | None, params_sha256: str) -> str:
    """16 hex digits naming a revision (64 bits: no two runs of one project meet by chance)."""
    return _sha256(f"{git_rev}\n{dvc_lock_sha256}\n{params_sha256}".encode())[:16]


def record_run(params, repo: str | Path = ".", recorded_by: str = "agora results") -> Recorded:
    """Add the results in params' analysis.results_dir to its history_dir as the run of this revision."""
    a = params.analysis
    recorded = append_run(a.results_dir, a.history_dir, run_identity(params, repo, recorded_by))
    failed: list[str] = []
    write_views(a.history_dir, a.combine, a.min_gap, failed=failed)
    if failed:  # the run is recorded; the history computes these runs' views at query time instead
        note = "; ".join(filter(None, [recorded.note, *failed]))
        recorded = dataclasses.replace(recorded, note=note)
    return recorded


def views_key(domains: dict[str, list[str]], combine: str, min_gap: float) -> str:
    """A hash of the SQL of every per-run view (view_definitions with by=run_id): the same for two
    computations exactly when they would give the same rows from the same tables."""
    views = view_definitions(domains, combine, min_gap=min_gap, by=(PARTITION,))
    return _sha256(json.dumps([[name, v.sql] for name, v in views.items()]).encode())


def recorded_views_key(run: Path) -> str | None:
    """The views_key a run's views were written with; None when it has none (or an unreadable one)."""
    try:
        return (run / VIEWS / VIEWS_KEY).read_text().strip()
    except OSError:
        return None


def write_views(history_dir: str | Path, combine: str = "mean_of_pgr", min_gap: float = 0.0,
                failed: list[str] | None = None) -> list[str]:
    """Write views/ of every recorded run whose views are missing or were computed otherwise (another
    version's SQL, combine or min_gap), from its recorded tables; return those runs' ids.
    failed: where given, a run whose views cannot be written (an unreadable table, a full disk) adds a
    line there and is skipped (db.py then computes the history's views); otherwise the error is raised."""
    import duckdb

    from agorabench.results.db import pgr_benchmarks  # db.py imports this module

    written = []
    for run in recorded_runs(history_dir):
        domains = pgr_benchmarks(run)
        key = views_key(domains, combine, min_gap)
        if recorded_views_key(run) == key:
            continue
        try:
            _write_run_views(run, domains, key, combine, min_gap)
        except (duckdb.Error, ValueError, OSError, StorageError) as e:
            if failed is None:
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            failed.append(f"the views of {run.name} were not written ({first}); the history computes them")
            continue
        written.append(run.name.split("=", 1)[1])
    return written


def _write_run_views(run: Path, domains: dict[str, list[str]], key: str, combine: str, min_gap: float) -> None:
    """One run's views from a database over that run alone, with the domains it recorded, through the
    history views db.py would otherwise compute, so the files give the same rows. The folder is
    swapped in whole (files.replacing_dir), the key file written last."""
    import shutil
    import tempfile

    import duckdb

    from agorabench.results.db import build_db, sql_string  # db.py imports this module

    with tempfile.TemporaryDirectory(prefix="agora-views-") as tmp:
        history, current = Path(tmp) / "history", Path(tmp) / "results"
        history.mkdir()
        current.mkdir()
        (history / run.name).symlink_to(run.resolve())
        # build_db takes the domains of the database's views from its results folder.
        shutil.copyfile(run / "domain_benchmarks.parquet", current / "domain_benchmarks.parquet")
        db = build_db(current, db_path=Path(tmp) / "views.duckdb", tables="parquet", combine=combine,
                      min_gap=min_gap, history_dir=history)
        con = duckdb.connect(str(db), read_only=True)
        try:
            with replacing_dir(run / VIEWS, rerun="`agora results`") as out:
                for name in view_definitions(domains, combine, min_gap=min_gap, by=(PARTITION,)):
                    con.execute(f"COPY (SELECT * EXCLUDE ({PARTITION}) FROM history.{name}) "
                                f"TO {sql_string(out / f'{name}.parquet')} (FORMAT parquet)").fetchall()
                write_atomic(out / VIEWS_KEY, key + "\n", rerun="`agora results`")
        finally:
            con.close()


def append_run(results_dir: str | Path, history_dir: str | Path, run: dict) -> Recorded:
    """Copy results_dir's tables (less the texts) into history_dir/run_id=RUN/, unless that folder exists.

    `run`: a runs row with its run_id (run_identity). The folder is written under another name and
    renamed (files.creating_dir), so a reader (or a killed writer) never meets a half-written run in the
    history."""
    results_dir, history_dir = Path(results_dir), Path(history_dir)
    run_id = run["run_id"]
    final = history_dir / f"{PARTITION}={run_id}"
    for name in HISTORY_TABLES:
        if not (results_dir / f"{name}.parquet").is_file():
            raise ValueError(f"{results_dir / name}.parquet does not exist; run `agora results` before recording "
                             f"the run in the history")
    digest = results_sha256(results_dir)
    if final.is_dir():
        return Recorded(run_id, final, False, _differs(final, digest))
    try:
        # Written under a hidden name and renamed (files.creating_dir): a killed writer never leaves
        # a half-written run, and of two processes recording the same run the first one wins.
        with creating_dir(final, rerun="`agora results`") as tmp:
            for name in HISTORY_TABLES:
                src = results_dir / f"{name}.parquet"
                keep = history_columns(name)
                table = pq.read_table(src, columns=[c for c in keep if c in pq.read_schema(src).names])
                if table.column_names != keep:
                    raise ValueError(f"{src}: columns {table.column_names} are not those of table {name} "
                                     f"({keep}); re-run `agora results` with this version of agorabench")
                options = parquet_options(TABLES[name])
                options["compression"] = {c: options["compression"][c] for c in keep}
                pq.write_table(table, tmp / f"{name}.parquet", **options)
            row = {**run, "results_sha256": digest}
            runs = pa.Table.from_pylist([{c: row.get(c) for c in RUNS.names}], schema=RUNS.arrow_schema())
            pq.write_table(runs, tmp / RUNS_FILE)
    except AlreadyThere:
        return Recorded(run_id, final, False, _differs(final, digest))  # another process recorded it first
    return Recorded(run_id, final, True)


def results_sha256(results_dir: str | Path) -> str:
    """One hash of the collected tables' bytes (deterministic: the same inputs give the same hash)."""
    h = hashlib.sha256()
    for name in HISTORY_TABLES:
        path = Path(results_dir) / f"{name}.parquet"
        h.update(f"{name}\n".encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def recorded_runs(history_dir: str | Path) -> list[Path]:
    """The run folders of a history, sorted by name (not time: runs.parquet has the times)."""
    history_dir = Path(history_dir)
    return sorted(p for p in history_dir.glob(f"{PARTITION}=*") if p.is_dir()) if history_dir.is_dir() else []


def table_glob(history_dir: str | Path, name: str, folder: str = "") -> str:
    """The pattern that matches table `name` (or "runs") in every run folder, as an absolute path;
    folder: a subfolder of each run's (VIEWS: a view's recorded rows)."""
    return str(Path(history_dir).resolve() / f"{PARTITION}=*" / folder / f"{name}.parquet")


def _differs(final: Path, digest: str) -> str:
    try:
        first = pq.read_table(final / RUNS_FILE, columns=["results_sha256"]).column(0)[0].as_py()
    except (OSError, pa.ArrowException, KeyError):
        return f"{final / RUNS_FILE} is unreadable; delete {final} and record the run again"
    if first == digest:
        return ""
    return ("the results differ from those first recorded for this revision (files changed outside DVC?); "
            "the first are kept: commit the change, or `dvc repro`, to record a new run")


def _git(repo: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it); (None, None) outside a git repository."""
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "-q", "HEAD"],
                             capture_output=True, text=True)
        if rev.returncode != 0:
            return None, None
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True)
    except FileNotFoundError:  # no git on this machine
        return None, None
    return rev.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None


def _dvc_lock_sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        # libyaml's loader where PyYAML has it: the default's dvc.lock (96 stages, 0.5 MB) takes 1.3 s in
        # the pure-Python one and 0.2 s in C, the same data.
        lock = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not YAML ({str(e).splitlines()[0]}); restore it with `git checkout {path.name}`") \
            from None
    stages = {k: v for k, v in (lock.get("stages") or {}).items() if k.split("@")[0] not in AFTER_RESULTS}
    return _sha256(json.dumps(stages, sort_keys=True, default=str).encode())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
