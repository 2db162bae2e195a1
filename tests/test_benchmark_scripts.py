"""The speed scripts in benchmarks/ are run by hand, not by the tests, so a rename in the library
could break them unnoticed: every name they import from agorabench must exist."""
from __future__ import annotations

import ast
import importlib

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
