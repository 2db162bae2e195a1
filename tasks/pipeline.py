"""Prefect tasks of the pipeline flow: the pipeline itself, DVC commands in the repository, and one
whole generation setting as a task (the unit a Dask cluster spreads over its workers).

The DVC tasks shell out to the `dvc` of this environment rather than calling DVC's Python API:
every stage is itself an `agora ...` process, so nothing is gained in-process, and a subprocess
keeps DVC's repository lock, logging and working directory out of the Prefect worker.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from agorabench.config import load_params
from agorabench.generation.loop import BatchRunner, generate_setting
from agorabench.generation.plan import Attempt, Outcome
from tasks.generation import generate_batch


def _bin(name: str) -> str:
    """The executable of this environment (the venv's dvc), else whatever PATH has."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def _env() -> dict[str, str]:
    # Stage commands call `agora`: put this environment's bin first, as a scheduled run's PATH may
    # not have it (a runner started as /venv/bin/python -m ...).
    return {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}


def run_dvc(args: list[str], repo: Path) -> str:
    """Run `dvc ARGS` in `repo`; return its output, or raise with DVC's own error line."""
    done = subprocess.run([_bin("dvc"), *args], cwd=repo, env=_env(), capture_output=True, text=True)
    out = done.stdout + done.stderr
    if done.returncode != 0:
        errors = [line for line in out.splitlines() if line.startswith("ERROR")]
        last = errors[-1] if errors else (out.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"`dvc {' '.join(args)}` failed (exit {done.returncode}) in {repo}: {last}")
    return out


# No retries: a missing file, an unknown generator or a missing remote will not fix itself.
@task(name="check-repo", cache_policy=NO_CACHE, persist_result=False)
def check_repo(repo: Path, generators: list[str] | None, push: bool) -> list[str]:
    """Fail in one line, before anything runs, on what a retry cannot fix. Returns the generators."""
    if not (repo / "dvc.yaml").exists():
        raise ValueError(f"repo: no dvc.yaml in {repo}; pass the root of the AgoraBench repository")
    params = load_params(repo / "params.yaml")
    chosen = generators if generators is not None else params.benchmark_generators
    if not chosen:
        raise ValueError("generators: empty list; name at least one generator declared in params.yaml")
    for name in chosen:
        params.generator(name)  # ParamsError (a ValueError) names the declared ones
    if push and not run_dvc(["remote", "default"], repo).strip():
        raise ValueError(f"push: {repo} has no default DVC remote; run `dvc remote add -d NAME URL` there first")
    return list(chosen)


def set_generators(repo: Path, generators: list[str]) -> None:
    """Write `benchmark_generators` into the repository's params.yaml (as `dvc exp run -S` would: a
    round trip that keeps the file's comments), where DVC hashes it, instead of a side channel."""
    import io

    from ruamel.yaml import YAML

    from agorabench.files import write_atomic

    yaml = YAML()
    path = repo / "params.yaml"
    data = yaml.load(path.read_text())
    data["benchmark_generators"] = list(generators)
    text = io.StringIO()
    yaml.dump(data, text)
    write_atomic(path, text.getvalue(), "the deployment's run")  # a full disk must not leave half a params.yaml


# Retrying is safe (the flow chooses how often): every generation answer is in the request store and
# DVC records each finished stage in dvc.lock as it goes, so a second attempt resumes where the first
# stopped. It helps with what passes (a generator outage longer than the client's retries, another
# `dvc` holding the repository lock); a broken stage fails twice, cheaply.
@task(name="run-pipeline", retry_delay_seconds=60, cache_policy=NO_CACHE, persist_result=False)
def run_pipeline_task(repo: Path, force: bool, jobs: int | None, allow_code_execution: bool,
                      targets: list[str] | None) -> dict:
    """The pipeline in `repo`, as `agora run` runs it (agorabench.pipeline.run.run_pipeline): lanes,
    each lane's model servers, every stage reporting to this flow's Prefect server, whose client retries
    as this one's does (flows/pipeline.py, pipeline_server, says why `agora run` lowers it)."""
    from prefect.settings import get_current_settings

    from agorabench.pipeline.run import run_pipeline

    params = load_params(repo / "params.yaml")
    settings = get_current_settings()
    prefect_env = {"PREFECT_API_URL": settings.api.url, "PREFECT_CLIENT_MAX_RETRIES": str(settings.client.max_retries)}
    summary = run_pipeline(params, prefect_env, force=force, jobs=jobs,
                           allow_code_execution=allow_code_execution, targets=targets)
    if summary["rc"] != 0:
        if summary.get("budget_stop"):
            raise RuntimeError(summary["budget_stop"])
        raise RuntimeError(f"the pipeline stopped (dvc exit code {summary['rc']}) after "
                           f"{len(summary['stages_run'])} stages; its output is above")
    return summary


@task(name="dvc-exp-save", cache_policy=NO_CACHE, persist_result=False)
def dvc_exp_save(repo: Path, targets: list[str] | None = None) -> str:
    """`dvc exp save`: the workspace kept as a DVC experiment (`dvc exp show` lists its params, dvc.lock
    and metrics), so a scheduled run leaves an auditable record even when nobody commits it. `targets`:
    the stages a partial run ran (DVC caches only theirs; the others' outputs may not exist). Files git
    does not track yet (a first dvc.lock, metrics) go in too. Returns the experiment's name."""
    name = f"agora-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.split()
    run_dvc(["exp", "save", "--name", name, *(f"--include-untracked={f}" for f in untracked),
             *(targets or [])], repo)
    return name


# Pushing is idempotent (the remote is content-addressed: only missing objects go up), so a
# network hiccup is worth three more tries.
@task(name="dvc-push", retries=3, retry_delay_seconds=[10, 60, 300], cache_policy=NO_CACHE, persist_result=False)
def dvc_push(repo: Path) -> int:
    """`dvc push` to the default remote; returns how many files went up."""
    out = run_dvc(["push"], repo)
    pushed = re.search(r"(\d+) files? pushed", out)
    return int(pushed.group(1)) if pushed else 0


def _worker_name() -> str:
    """Where a task runs: the Dask worker's name, else the thread's (recorded with the result)."""
    try:
        from distributed import get_worker

        return f"dask:{get_worker().name}"
    except (ImportError, ValueError):  # ValueError: not inside a Dask worker
        return f"thread:{threading.current_thread().name}"


async def _batch(runner: BatchRunner, attempts: list[Attempt]) -> list[Outcome]:
    # quote(): Prefect would otherwise walk every message of every attempt looking for futures.
    return await generate_batch(quote(runner), quote(attempts))


# No retries here: each batch inside is a task with its own retries; a whole-setting retry would
# only repeat what those gave up on. The parameters are plain strings, so the task pickles to a
# Dask worker in another process as readily as to a thread.
@task(name="generate-setting", task_run_name="generate {generator} {method} {domain}",
      cache_policy=NO_CACHE, persist_result=False)
async def generate_setting_task(params_file: str, generator: str, domain: str, method: str) -> dict:
    params = load_params(params_file)
    manifest = await generate_setting(params, generator, domain, method, run_batch=_batch, progress=False)
    manifest["run"]["worker"] = _worker_name()
    return manifest


# The run's headline where the Prefect UI shows it. Keys: lowercase letters, digits and dashes; each
# run adds a new version under the same key, so the UI's artifact page shows the latest and its history.
PGR_ARTIFACT = "agorabench-pgr"
REPORT_ARTIFACT = "agorabench-report"


@task(name="publish-results", cache_policy=NO_CACHE, persist_result=False)
def publish_results(db_path: Path, report_page: Path) -> dict[str, str | None]:
    """A table artifact of each generator's overall PGR, method averages and cost (the results
    database's generator_summary, agorabench.results.metrics.generator_table) and a link artifact to
    the report page. Either is skipped (None) when its file is not there: a run of some stages only."""
    from prefect.artifacts import create_link_artifact, create_table_artifact

    from agorabench.results.metrics import generator_table

    made: dict[str, str | None] = {"table": None, "link": None}
    if db_path.is_file():
        made["table"] = str(create_table_artifact(
            generator_table(db_path), key=PGR_ARTIFACT,
            description=f"Overall PGR (pgr_overall), method averages and generation cost (USD) per generator, "
                        f"from {db_path}"))
    if report_page.is_file():
        made["link"] = str(create_link_artifact(
            report_page.resolve().as_uri(), link_text="AgoraBench report", key=REPORT_ARTIFACT,
            description=f"The HTML report ({report_page.resolve()}); it works offline from the folder."))
    return made
