"""The headline numbers of a results database in the shapes other tools read: DVC's metrics file
(`dvc exp show` and `dvc metrics diff` compare experiments by PGR) and one row per generator (the
Prefect table artifact of the pipeline flow). Both are read from the views, so PGR keeps its one
implementation (views.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from agorabench.files import write_atomic
from agorabench.results.db import connect

METRICS_FILE = "metrics.json"  # in analysis.results_dir, beside the Parquet (dvc.yaml: the report stage's metrics)


def _rows(con, sql: str) -> list[dict]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def generator_table(db_path: str | Path) -> list[dict]:
    """One row per generator, best overall PGR first: generator, overall PGR (pgr_overall), each
    method's average PGR, and what its datasets cost (generator_summary). NULL stays None."""
    with connect(db_path) as con:
        methods = [r["method"] for r in _rows(con, "SELECT DISTINCT method FROM pgr_method ORDER BY method")]
        method_cols = "".join(f", pgr_{m}" for m in methods)
        return _rows(con, f"""
SELECT generator, pgr AS pgr_overall{method_cols}, datasets, cost_usd
FROM generator_summary ORDER BY pgr DESC NULLS LAST, generator""")


def pgr_metrics(db_path: str | Path) -> dict:
    """{generator: {"pgr": overall, "method": {METHOD: pgr}, "domain": {METHOD: {DOMAIN: pgr}},
    "cost_usd": total}}. A PGR that is NULL (no reference gap, a missing setting) is left out rather
    than written as null: DVC shows a missing metric as "-", and diffs only numbers."""
    with connect(db_path) as con:
        out: dict[str, dict] = {}
        for r in _rows(con, "SELECT generator, pgr, cost_usd FROM generator_summary"):
            g = out.setdefault(r["generator"], {"method": {}, "domain": {}})
            if r["pgr"] is not None:
                g["pgr"] = r["pgr"]
            if r["cost_usd"] is not None:
                g["cost_usd"] = r["cost_usd"]
        for r in _rows(con, "SELECT generator, method, pgr FROM pgr_method WHERE pgr IS NOT NULL"):
            out.setdefault(r["generator"], {"method": {}, "domain": {}})["method"][r["method"]] = r["pgr"]
        for r in _rows(con, "SELECT generator, method, domain, pgr FROM pgr_domain WHERE pgr IS NOT NULL"):
            g = out.setdefault(r["generator"], {"method": {}, "domain": {}})
            g["domain"].setdefault(r["method"], {})[r["domain"]] = r["pgr"]
    return out


def write_metrics(db_path: str | Path, path: str | Path) -> Path:
    """pgr_metrics as JSON at `path` (keys sorted: the same database gives the same bytes)."""
    text = json.dumps(pgr_metrics(db_path), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return write_atomic(Path(path), text, "`agora report`")
