"""Real DVC in a real git repo: the generate stage fans out, and a forced re-run of a finished stage
rebuilds byte-identical data without a single request."""
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO, write_params


def sh(cmd, cwd, env):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_dvc_repro_matrix_and_forced_rebuild(tmp_path, fake_server, monkeypatch, prefect_api_env):
    monkeypatch.setenv("FAKE_API_KEY", "k")
    repo = tmp_path / "bench"
    repo.mkdir()
    for item in ("agorabench", "flows", "tasks", "requirements"):
        shutil.copytree(REPO / item, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    params_path = write_params(repo / "params.yaml", fake_server.url, methods=["response_generation", "instance_generation"],
                               domains=["general"], **{"generation.num_instances": 5})
    # Paths relative to the repo, as a user's params.yaml has them.
    params = yaml.safe_load(params_path.read_text())
    params["generation"]["prompt_dir"] = "agorabench/generation/prompts/default"
    params["scaling"] = {"generators": ["fake"], "methods": ["instance_generation"], "sizes": [2, 7],
                         "output_dir": "data/scaling"}
    params["generation"]["output_dir"] = "data/generated"
    params["cache"]["requests_db"] = ".agora/requests.sqlite"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, **prefect_api_env, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "PYTHONPATH": str(REPO), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    sh(["git", "init", "-q"], repo, env)
    sh(["dvc", "init", "-q"], repo, env)
    shutil.copy(REPO / ".dvcignore", repo / ".dvcignore")  # after init, which writes an empty one
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "bench"], repo, env)

    sh(["dvc", "repro", "generate"], repo, env)
    data = repo / "data/generated/fake/response_generation/general.jsonl"
    assert len(data.read_text().splitlines()) == 5
    assert (repo / "data/generated/fake/instance_generation/general.jsonl").exists()
    assert "generate@fake-instance_generation-general" in (repo / "dvc.lock").read_text()
    before, sent = data.read_bytes(), fake_server.request_count

    out = sh(["dvc", "repro", "-f", "generate@fake-response_generation-general"], repo, env)
    assert "0 requests sent" in out
    assert fake_server.request_count == sent and data.read_bytes() == before

    assert "didn't change" in sh(["dvc", "repro", "generate"], repo, env)  # nothing changed: nothing runs
    # Python's bytecode cache, written wherever a module is first imported without
    # PYTHONDONTWRITEBYTECODE, is no change to the code folders the stages depend on (.dvcignore)
    cache = repo / "agorabench/generation/__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "stray.cpython-311.pyc").write_bytes(b"\0" * 16)
    assert "up to date" in sh(["dvc", "status", "generate"], repo, env)
    # canary: any other new file there is a change
    (repo / "agorabench/generation/stray.txt").write_text("x")
    assert "generate@fake-response_generation-general" in sh(["dvc", "status", "generate"], repo, env)
    (repo / "agorabench/generation/stray.txt").unlink()

    # Canary: a params change that matters is seen by DVC and re-runs the stage.
    params["generation"]["num_instances"] = 6
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    assert "generate@fake-response_generation-general" in sh(["dvc", "status"], repo, env)
    sh(["dvc", "repro", "generate"], repo, env)
    assert len(data.read_text().splitlines()) == 6
    assert fake_server.request_count - sent == 2, "only the new instances are requested"

    # The scaling study's stages: the larger set once, then each prefix as the dataset of fake@SIZE.
    sent = fake_server.request_count
    sh(["dvc", "repro", "scale-subset"], repo, env)
    lock = (repo / "dvc.lock").read_text()
    assert "scale-subset@fake-instance_generation-general-7" in lock
    assert len((repo / "data/scaling/fake/instance_generation/general.jsonl").read_text().splitlines()) == 7
    prefix = repo / "data/generated/fake@2/instance_generation/general.jsonl"
    full = (repo / "data/scaling/fake/instance_generation/general.jsonl").read_text().splitlines()
    assert prefix.read_text().splitlines()[0].split('"instruction"')[1] == full[0].split('"instruction"')[1]
    # its first instances are the main run's requests, answered by the store: only the rest are new
    assert 0 < fake_server.request_count - sent < 7


def test_the_stages_find_the_agora_beside_the_interpreter(monkeypatch):
    """`.venv/bin/agora run` without an activated virtualenv: the stages' `agora` commands (dvc.yaml)
    are found, as `make run`, which puts the virtualenv on PATH, finds them."""
    from agorabench.pipeline.run import pipeline_env

    ours = os.path.join(os.path.dirname(sys.executable), "agora")
    if not os.path.isfile(ours):
        pytest.skip("this interpreter has no agora script beside it (not installed with `make`)")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert shutil.which("agora", path=os.environ["PATH"]) is None  # canary: the bare PATH has none
    assert shutil.which("agora", path=pipeline_env()["PATH"]) == ours
