"""The speed scripts in benchmarks/ are run by hand, not by the tests, so a rename in the library
could break them unnoticed: every name they import from agorabench must exist."""
from __future__ import annotations

import ast
import importlib

import pytest

from tests.conftest import REPO


def missing_imports(source: str) -> list[str]:
    """"module.name" for each `from agorabench... import name` in `source` that does not resolve."""
    missing = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agorabench"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                if hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")  # a submodule
                except ImportError:
                    missing.append(f"{node.module}.{alias.name}")
    return missing


def test_benchmark_scripts_import_what_exists():
    scripts = sorted((REPO / "benchmarks").glob("*.py"))
    assert scripts
    assert {s.name: missing_imports(s.read_text()) for s in scripts} == {s.name: [] for s in scripts}
    # canary: a renamed function is caught, inside a function body too
    assert missing_imports("def f():\n    from agorabench.pipeline.run import split_lanes, no_such\n") == [
        "agorabench.pipeline.run.no_such"]


def test_the_synthetic_result_set_is_one_the_history_takes(tmp_path):
    """analysis_scale's synthetic set (which history_scale records 100 times) holds every table that
    `agora results` writes, so append_run takes it; this broke unnoticed when contamination_checks came."""
    from agorabench.results.history import append_run
    from agorabench.results.schema import TABLES
    from benchmarks.analysis_scale import synthesize
    from benchmarks.history_scale import synthetic_run

    (tmp_path / "run").mkdir()
    synthesize(tmp_path / "run", 1e-4, text_chars=0, seed=0)
    assert {p.stem for p in (tmp_path / "run").glob("*.parquet")} >= set(TABLES) - {"requests"}
    assert append_run(tmp_path / "run", tmp_path / "history", synthetic_run(0)).added
    # canary: a set without one of the tables is refused
    (tmp_path / "run" / "contamination_checks.parquet").unlink()
    with pytest.raises(ValueError, match="contamination_checks.parquet does not exist"):
        append_run(tmp_path / "run", tmp_path / "history2", synthetic_run(1))


def test_the_synthetic_result_set_gives_every_generator_an_overall_pgr(tmp_path):
    """analysis_scale times the views over its synthetic set; a set whose judged scores are NaN times
    views that give NULL everywhere. That went unnoticed when Arena-Hard's score came to read each
    game's label probabilities: every main generator's overall PGR was undefined."""
    import json

    import duckdb
    import numpy as np

    from agorabench.results.db import build_db
    from benchmarks.analysis_scale import GENERATORS, own_score, synthesize

    synthesize(tmp_path, 1e-4, text_chars=0, seed=0)
    with duckdb.connect(str(build_db(tmp_path, tables="parquet")), read_only=True) as con:
        overall = dict(con.sql("SELECT generator, pgr FROM pgr_overall").fetchall())
        scores = con.sql("SELECT benchmark, count(*) FILTER (WHERE isnan(score)) FROM scores GROUP BY ALL").fetchall()
    assert {g: overall[g] is not None for g in GENERATORS} == {g: True for g in GENERATORS}
    assert {b: n for b, n in scores if n} == {}
    # canary: the outcomes-only games the set used to write score NaN
    old = [json.dumps({"category": "hard_prompt", "games": [{"model_outcome": c, "strong": False}] * 2})
           for c in (1.0, 0.0)]
    assert np.isnan(own_score("arenahard", np.array([1.0, 0.0]), old))


def test_both_sides_of_the_results_benchmarks_are_timed_on_the_same_views(tmp_path):
    """analysis_scale and history_scale time DuckDB on PANDAS_VIEWS against pandas_views: the names
    must be what pandas computes and what views.py (or the benchmark's extra SQL) defines."""
    from agorabench.results.views import view_definitions
    from benchmarks.analysis_scale import (DOMAIN_BENCHMARKS, EXTRA_SQL, PANDAS_VIEWS, load_frames, pandas_views,
                                           synthesize)

    synthesize(tmp_path, 1e-4, text_chars=0, seed=0)
    assert sorted(pandas_views(load_frames(tmp_path))) == sorted(PANDAS_VIEWS)
    defined = set(view_definitions(DOMAIN_BENCHMARKS)) | set(EXTRA_SQL)
    assert [n for n in PANDAS_VIEWS if n not in defined] == []
    # canary: a name views.py does not define is caught
    assert [n for n in (*PANDAS_VIEWS, "pgr_nowhere") if n not in defined] == ["pgr_nowhere"]
