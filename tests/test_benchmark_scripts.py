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
