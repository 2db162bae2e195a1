"""The layout shows the architecture, and a linter keeps it: the library (agorabench/) never imports
Prefect, the flows or the tasks, and its pipeline steps import downwards only (pyproject.toml's
[tool.importlinter] contracts, checked with import-linter's `lint-imports` on the real code)."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT = str(Path(sys.executable).with_name("lint-imports"))


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT, "--config", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True)


def test_the_library_keeps_its_import_contracts():
    done = _lint(REPO)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken" in done.stdout


def test_a_library_module_that_imports_prefect_breaks_the_contract(tmp_path):
    """Canary: the same check on a copy where a library module imports Prefect (and another imports a
    step above its layer) fails and names both."""
    for item in ("agorabench", "flows", "tasks"):
        shutil.copytree(REPO / item, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "agorabench/setting.py", "a") as f:
        f.write("\nimport prefect  # noqa\n")
    with open(tmp_path / "agorabench/models/store.py", "a") as f:
        f.write("\nimport agorabench.results.db  # noqa\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "agorabench.setting -> prefect" in done.stdout
    assert "agorabench.models is not allowed to import agorabench.results" in done.stdout


def test_every_library_package_says_what_it_owns_and_what_it_may_import():
    """Each package of the library (not the benchmark folders: their docstrings describe a benchmark)."""
    benchmark_folders = (REPO / "agorabench/evaluation/benchmarks").iterdir()
    skip = {p / "__init__.py" for p in benchmark_folders if p.is_dir()}
    missing = [str(init.relative_to(REPO)) for init in sorted((REPO / "agorabench").rglob("__init__.py"))
               if init not in skip and "May import:" not in (ast.get_docstring(ast.parse(init.read_text())) or "")]
    assert missing == [], "packages whose docstring does not say what they may import: " + ", ".join(missing)
