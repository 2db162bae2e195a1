"""Audits that hold: `dvc repro` re-runs a stage when any project file it runs changed.

Every stage of dvc.yaml must list, among its deps, every file of its import closure (tests/import_closure.py
reads it from the code); a canary shows the check catches a missing one, and a real DVC repository shows
that an edit of an imported module makes `dvc status` report the stage, and an edit elsewhere does not.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO
from tests.import_closure import closure

_PARAM = re.compile(r"\$\{([\w.]+)\}")


def _stages(dvc: dict) -> dict[str, dict]:
    """name -> stage; a `foreach` stage (the imports') by its `do` body."""
    return {name: stage.get("do", stage) for name, stage in dvc["stages"].items()}


def _resolve(path: str, params: dict) -> str | None:
    """A dep path with its ${section.field} filled from params; None for one of a matrix item (a data file)."""
    if "${item." in path or "${key}" in path:
        return None

    def value(m):
        node = params
        for part in m.group(1).split("."):
            node = node[part]
        return str(node)

    return _PARAM.sub(value, path)


def uncovered(dvc: dict, params: dict, root: Path = REPO) -> dict[str, list[str]]:
    """stage -> the files of its import closure that none of its deps covers."""
    out = {}
    for name, stage in _stages(dvc).items():
        command = stage["cmd"].split()[1]  # `agora COMMAND ...`: the CLI's function of that name runs
        files = closure(root, "flows.cli", command.replace("-", "_"))
        deps = [Path(root, d) for d in (_resolve(p, params) for p in stage.get("deps", [])) if d]
        missing = sorted(str(f.relative_to(root)) for f in files
                         if not any(f == d or d in f.parents for d in deps))
        if missing:
            out[name] = missing
    return out


def test_every_stage_depends_on_all_the_code_it_runs():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert uncovered(dvc, params) == {}
    # The closure is not trivially everything: generation does not run the report code.
    generate = closure(REPO, "flows.cli", "generate")
    assert REPO / "agorabench/generation/parsing.py" in generate
    assert REPO / "agorabench/report/page.py" not in generate
    assert REPO / "agorabench/generation/prompts/default/lists.yaml" in generate  # data files count
    assert REPO / "agorabench/models/transformers_serve.py" in generate  # started as `python -m ...`


def test_a_missing_dep_is_caught():
    """Canary: drop the generation package from the generate stage's deps and the check names its files."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    deps = dvc["stages"]["generate"]["deps"]
    dvc["stages"]["generate"]["deps"] = [d for d in deps if d != "agorabench/generation"]
    missing = uncovered(dvc, params)
    assert list(missing) == ["generate"] and "agorabench/generation/parsing.py" in missing["generate"]


def missing_params(dvc: dict, params: dict) -> dict[str, list[str]]:
    """{stage: [params deps the file lacks]}: DVC refuses to run a stage whose params key is not in
    params.yaml, even where the schema has a default."""
    out = {}
    for name, stage in _stages(dvc).items():
        keys = [k for entry in stage.get("params", []) for k in ([entry] if isinstance(entry, str) else [])]
        # a matrix stage's key names each generator it runs; a foreach stage's each import
        keys = [k.replace("${item.generator}", g) for k in keys
                for g in (params.get("benchmark_generators", []) if "${item.generator}" in k else [""])]
        keys = [k.replace("${key}", n) for k in keys for n in ((params.get("imports") or {}) if "${key}" in k else [""])]
        lacking = []
        for key in keys:
            node = params
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    lacking.append(key)
                    break
                node = node[part]
        if lacking:
            out[name] = lacking
    return out


def test_every_params_dep_is_in_params_yaml_and_the_profiles():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for path in [REPO / "params.yaml", *sorted((REPO / "profiles").glob("*.yaml"))]:
        assert missing_params(dvc, yaml.safe_load(path.read_text())) == {}, path.name
    # canary: a key left to its schema default is caught
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    del params["evaluation"]["benchmarks"]
    assert missing_params(dvc, params) == {"results": ["evaluation.benchmarks"]}


def _sh(args, cwd, **kw):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, **kw)


def test_dvc_status_reports_a_stage_whose_imported_module_changed(tmp_path):
    """A scratch copy of the project with one generation stage recorded in dvc.lock: editing a module
    the stage imports makes `dvc status` report it; editing one it does not import leaves it clean."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for item in ("agorabench", "flows", "tasks", "requirements"):
        shutil.copytree(REPO / item, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
    for item in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / item, repo / item)
    dvc = str(Path(sys.executable).with_name("dvc"))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    _sh(["git", "init", "-q"], repo, env=env)
    _sh([dvc, "init", "-q"], repo, env=env)
    stage = "generate@smollm2-instance_generation-math"
    out = repo / "data/generated/smollm2/instance_generation"
    out.mkdir(parents=True)
    for name in ("math.jsonl", "math.rejected.jsonl", "math.manifest.json"):
        (out / name).write_text("{}\n")
    _sh([dvc, "commit", "-f", "-q", stage], repo, env=env)  # records the stage as if it had run

    def status() -> str:
        return _sh([dvc, "status", stage], repo, env=env).stdout

    assert "up to date" in status()
    with open(repo / "agorabench/report/page.py", "a") as f:  # not imported by generation
        f.write("\n# an edit\n")
    assert "up to date" in status()  # canary: an unrelated edit changes nothing
    with open(repo / "agorabench/generation/parsing.py", "a") as f:
        f.write("\n# an edit\n")
    changed = status()
    assert stage in changed and "agorabench/generation" in changed
