"""Build data/results/agora.duckdb from the collected Parquet tables, with the views of views.py, and
the history of every recorded run (history.py) as the schema `history`.

The .duckdb file is a rebuildable convenience, not a DVC output: DuckDB does not write it
byte-for-byte the same twice, while the Parquet it is built from is (collect.py). Building takes
well under a second for the paper's size, so it is simply rebuilt from scratch each time, but
never over a file that cannot be opened (corrupt, or locked by another process): that is a
one-line StorageError saying what to do.

DuckDB 2.0 notes: results stream, so every query here is drained with fetchall(); a half-read
result would block the connection.
"""
from __future__ import annotations

import re
from pathlib import Path

import duckdb

from agorabench.config import DOMAINS, EvaluationConfig
from agorabench.files import StorageError, replacing
from agorabench.results.collect import collect
from agorabench.results.history import (PARTITION, VIEWS, record_run, recorded_runs, recorded_views_key,
                                        table_glob, views_key)
from agorabench.results.schema import HISTORY_TABLES, RUNS, SQL_TYPES, TABLES, history_columns
from agorabench.results.views import history_views, view_definitions

DB_NAME = "agora.duckdb"


def build_db(results_dir: str | Path = "data/results", db_path: str | Path | None = None,
             combine: str = "mean_of_pgr", tables: str = "copy", min_gap: float = 0.0,
             history_dir: str | Path | None = None) -> Path:
    """Create the database from results_dir/*.parquet (a missing table is created empty).

    combine: which domain-PGR definition `pgr_domain` (and so pgr_method, pgr_overall) uses:
        "mean_of_pgr" (default, the paper's) or "pgr_of_mean". Both stay available as
        pgr_domain_mean_of_pgr / pgr_domain_pgr_of_mean.
    min_gap: PGR is NULL where the reference beats the base by less than this many score points
        (0, the default: any positive gap, as the paper computes it).
    tables: "copy" (default) loads the Parquet into the database file, which then stands alone;
        "parquet" makes each table a view over its Parquet file (absolute path): the build is
        instant, the file tiny, and a query reads only the columns it needs (the instance texts
        are never read for a cost query), but the Parquet must stay where it is.
    Which benchmarks make up a domain's PGR is the collected table domain_benchmarks (params'
    evaluation.benchmarks when `agora results` ran).
    history_dir: the recorded runs (analysis.history_dir). Their tables become views over all their
        Parquet files (schema `history`, a run_id column first), whatever `tables` says: the history
        is the large part and only grows. A run recorded after the build shows up in them without a
        rebuild. Every view exists there per run, and pgr_over_runs and latest_results compare the
        runs. None, or no run recorded yet: the same tables and views, empty.
    Returns the database path (default results_dir/agora.duckdb).
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"results folder {results_dir} does not exist; run collect (`agora results`) first")
    if tables not in ("copy", "parquet"):
        raise ValueError(f"tables={tables!r} is not known; use 'copy' or 'parquet'")
    domains = pgr_benchmarks(results_dir)
    views = view_definitions(domains, combine, min_gap=min_gap)  # checked before anything is written
    db_path = Path(db_path) if db_path is not None else results_dir / DB_NAME
    _check_replaceable(db_path)
    # Built under a temporary name and renamed (files.replacing): a reader never sees a half-built
    # database, and a disk that fills up leaves the previous one as it was.
    with replacing(db_path, rerun="`agora results`") as (tmp,):
        wal = tmp.with_name(tmp.name + ".wal")
        for stale in (tmp, wal):
            stale.unlink(missing_ok=True)
        try:
            _build(tmp, results_dir, tables, domains, views, combine, min_gap, history_dir)
        finally:
            wal.unlink(missing_ok=True)  # left only by a failed build
    return db_path


def _build(tmp: Path, results_dir: Path, tables: str, domains: dict[str, list[str]], views: dict, combine: str,
           min_gap: float, history_dir: str | Path | None) -> None:
    con = duckdb.connect(str(tmp))
    try:
        # One transaction for the whole build: in autocommit mode every CREATE and INSERT is its
        # own commit, each syncing the write-ahead log, and those commits were most of the build
        # time of a tables="parquet" database (and a good part of the views' creation).
        con.execute("BEGIN TRANSACTION").fetchall()
        for name, table in TABLES.items():
            parquet = results_dir / f"{name}.parquet"
            if parquet.is_file() and tables == "parquet":
                source = f"read_parquet({sql_string(parquet.resolve())})"
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM {source}").fetchall()
                _check_columns(con, name, [c.name for c in table.columns], parquet)
            elif parquet.is_file():
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet(?)", [str(parquet)]).fetchall()
                _check_columns(con, name, [c.name for c in table.columns], parquet)
            else:
                cols = ", ".join(f'"{c.name}" {SQL_TYPES[c.type]}' for c in table.columns)
                con.execute(f"CREATE TABLE {name} ({cols})").fetchall()
        if not (results_dir / "domain_benchmarks.parquet").is_file():  # created empty above: the default map
            con.executemany("INSERT INTO domain_benchmarks VALUES (?, ?, ?)",
                            [(d, b, i) for d, names in domains.items() for i, b in enumerate(names)])
        con.execute("CREATE TABLE meta (key VARCHAR, value VARCHAR)").fetchall()
        con.executemany("INSERT INTO meta VALUES (?, ?)",
                        [("combine", combine), ("tables", tables), ("results_dir", str(results_dir)),
                         ("min_gap", repr(float(min_gap))), ("history_dir", _history_key(history_dir))])
        for name, view in views.items():
            con.execute(f"CREATE VIEW {name} AS {view.sql}").fetchall()
        _create_history(con, history_dir, domains, combine, min_gap)
        con.execute("COMMIT").fetchall()
        con.execute("CHECKPOINT").fetchall()
    finally:
        con.close()


def _check_replaceable(db_path: Path) -> None:
    """A database that cannot be opened is never replaced silently (files.py's rule for every store):
    a corrupt one may be worth a look, and a locked one is in use by a process that would go on
    writing into a file no longer there."""
    if not db_path.is_file():
        return
    try:
        connect(db_path).close()
    except StorageError as e:
        if "version number" not in str(e):  # another DuckDB's format is not damage: rebuilt as before
            raise
    except duckdb.Error:
        pass  # not a fault of the file (e.g. this process holds it with other settings): rebuilt as before


def pgr_benchmarks(results_dir: str | Path) -> dict[str, list[str]]:
    """domain -> its PGR benchmarks, in order, from results_dir/domain_benchmarks.parquet (written by
    collect from params' evaluation.benchmarks)."""
    import pyarrow.parquet as pq

    path = Path(results_dir) / "domain_benchmarks.parquet"
    if not path.is_file():  # a folder `agora results` did not write (tests, hand-made tables): the default
        return {d: list(names) for d, names in EvaluationConfig().benchmarks.items()}
    rows = sorted(pq.read_table(path).to_pylist(), key=lambda r: r["position"])
    order = {d: i for i, d in enumerate(DOMAINS)}
    mapping: dict[str, list[str]] = {}
    for row in sorted(rows, key=lambda r: order.get(r["domain"], len(order))):
        mapping.setdefault(row["domain"], []).append(row["benchmark"])
    return mapping


def build_results(params, include_requests: bool = False, tables: str = "copy", repo: str | Path = ".",
                  say=None) -> Path:
    """collect, record the run in the history, build_db: what `agora results` runs. `repo`: the
    repository whose git commit and dvc.lock name the run; `say`: where the history's one line goes
    (None: nowhere). Returns the database path."""
    collect(params, include_requests=include_requests)
    recorded = record_run(params, repo)
    if say is not None:
        say(recorded.message())
    a = params.analysis
    return build_db(a.results_dir, combine=a.combine, tables=tables, min_gap=a.min_gap, history_dir=a.history_dir)


def ensure_db(results_dir: str | Path = "data/results", combine: str = "mean_of_pgr", min_gap: float = 0.0,
              history_dir: str | Path | None = None) -> Path:
    """results_dir/agora.duckdb, rebuilt first when it is missing, older than a Parquet table (after
    `dvc pull` or `dvc checkout` only the Parquet is there: it is what DVC tracks) or than a recorded
    run, or built with another `combine`, `min_gap` or `history_dir` than asked for now."""
    results_dir = Path(results_dir)
    db_path = results_dir / DB_NAME
    newest = max((p.stat().st_mtime for p in results_dir.glob("*.parquet")), default=None)
    runs = recorded_runs(history_dir) if history_dir is not None else []
    if newest is not None and runs:
        newest = max(newest, max(p.stat().st_mtime for p in runs))
    wanted = {"combine": combine, "min_gap": repr(float(min_gap)), "history_dir": _history_key(history_dir)}
    if newest is not None and (not db_path.is_file() or db_path.stat().st_mtime < newest
                               or _built_with(db_path) != wanted):
        build_db(results_dir, combine=combine, min_gap=min_gap, history_dir=history_dir)
    return db_path


def _history_key(history_dir: str | Path | None) -> str:
    return "" if history_dir is None else str(Path(history_dir).resolve())


def _create_history(con: duckdb.DuckDBPyConnection, history_dir: str | Path | None,
                    domains: dict[str, list[str]], combine: str, min_gap: float) -> None:
    """The schema `history`: each table over all recorded runs, every view per run, the views across runs."""
    con.execute("CREATE SCHEMA history").fetchall()
    present = set()
    runs = recorded_runs(history_dir) if history_dir is not None else []
    for run in runs:
        present |= {p.stem for p in run.glob("*.parquet")}
    for name in (*HISTORY_TABLES, "runs"):
        columns = [(c.name, c.type) for c in RUNS.columns] if name == "runs" else \
            [(c, next(x.type for x in TABLES[name].columns if x.name == c)) for c in history_columns(name)]
        if name in present:
            source = _every_run(table_glob(history_dir, name))
        else:
            cols = ", ".join(f'NULL::{SQL_TYPES[t]} AS "{c}"' for c, t in columns)
            source = f"(SELECT NULL::VARCHAR AS {PARTITION}, {cols} WHERE false)"
        if name == "runs":
            select = (f"SELECT {PARTITION}, row_number() OVER (ORDER BY recorded_at, {PARTITION}) AS run_number, "
                      f"* EXCLUDE ({PARTITION}) FROM {source}")
        else:
            select = f"SELECT {PARTITION}, * EXCLUDE ({PARTITION}) FROM {source}"
        con.execute(f"CREATE VIEW history.{name} AS {select}").fetchall()
    # Each run's views as recorded (history.py: views/), where every run has them from the SQL these
    # views would run; otherwise computed here from the runs' tables (the same rows, much slower).
    key = views_key(domains, combine, min_gap)
    recorded = bool(runs) and all(recorded_views_key(run) == key for run in runs)
    for name, view in view_definitions(domains, combine, min_gap=min_gap, by=(PARTITION,)).items():
        if recorded:
            sql = f"SELECT {PARTITION}, * EXCLUDE ({PARTITION}) FROM {_every_run(table_glob(history_dir, name, VIEWS))}"
        else:
            sql = view.sql
        con.execute(f"CREATE VIEW history.{name} AS {sql}").fetchall()
    for name, view in history_views(domains).items():
        con.execute(f"CREATE VIEW {name} AS {view.sql}").fetchall()


def _every_run(glob: str) -> str:
    """read_parquet of every run's file matching `glob`, the folder name read back as run_id (a string,
    whatever its digits look like); union_by_name: a run recorded by another version may lack a newer
    column."""
    return (f"read_parquet({sql_string(glob)}, hive_partitioning = true, union_by_name = true, "
            f"hive_types = {{'{PARTITION}': VARCHAR}})")


def sql_string(text: str | Path) -> str:
    """`text` as an SQL string literal: DDL and COPY take no parameters, so paths go into the SQL text."""
    return "'" + str(text).replace("'", "''") + "'"


def _built_with(db_path: Path) -> dict[str, str]:
    """The combine, min_gap and history_dir a database was built with (empty when it has no meta table).
    A file that cannot be opened at all is a StorageError (connect), not a reason to rebuild over it."""
    try:
        con = connect(db_path)
    except duckdb.Error:
        return {}
    try:
        rows = con.execute("SELECT key, value FROM meta WHERE key IN ('combine', 'min_gap', 'history_dir')").fetchall()
    except duckdb.Error:
        return {}
    finally:
        con.close()
    return dict(rows)


def connect(db_path: str | Path = f"data/results/{DB_NAME}", read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection to a built database (read-only by default: queries must not change it)."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise ValueError(f"results database {db_path} does not exist; build it first (`agora results`)")
    try:
        return duckdb.connect(str(db_path), read_only=read_only)
    except duckdb.Error as e:
        fault = _fault(db_path, e)
        if fault is None:
            raise
        raise fault from None


def _fault(db_path: Path, e: duckdb.Error) -> StorageError | None:
    """The StorageError for a database file that is locked or unreadable (None for other errors)."""
    text = str(e)
    if "Could not set lock" in text or "Conflicting lock" in text:
        pid = re.search(r"PID (\d+)", text)
        by = f"process {pid.group(1)}" if pid else "another process"
        return StorageError(f"{db_path}: the results database is in use by {by}, which holds it open for writing; "
                            f"close that connection (a DuckDB shell, a notebook), then re-run; nothing in the file "
                            f"was changed")
    if isinstance(e, duckdb.IOException) or "database file" in text:
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        return StorageError(f"{db_path}: the results database cannot be read ({first}); it was left as it is: move "
                            f"it aside (`mv {db_path} {db_path}.corrupt`) and run `agora results`, which builds a new "
                            f"one from the Parquet beside it in seconds (nothing is lost: every table comes from "
                            f"those files)")
    return None


def _check_columns(con: duckdb.DuckDBPyConnection, name: str, expected: list[str], parquet: Path) -> None:
    got = [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()]
    if got != expected:
        raise ValueError(f"{parquet}: columns {got} differ from the schema of table {name}; "
                         f"re-run collect with this version of agorabench")
