"""Run the benchmark on a schedule: a Prefect deployment of the pipeline flow (flows/pipeline.py), the
same pipeline `agora run` runs (lanes, shared model servers, summary), served by this process.

Serving (flow.to_deployment + prefect.serve) needs no work pool, worker, Docker or Prefect Cloud:
the process registers the deployment with the Prefect server, polls it for due runs and runs each
in a subprocess. It needs a real server, because Prefect's ephemeral in-process server cannot
schedule:

    prefect server start &                       # or any self-hosted server
    prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api
    agora deploy --name nightly --cron "0 3 * * *" -g gpt-4o-mini --push

prefect.yaml at the repository root describes the same deployment for `prefect deploy` with a
process work pool, for when a worker, not this process, should run it.
"""
from __future__ import annotations

import os
from pathlib import Path

from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.types.entrypoint import EntrypointType

from flows.pipeline import pipeline


def benchmark_deployment(name: str, cron: str | None, generators: list[str] | None = None, push: bool = False,
                         repo: str = ".", targets: list[str] | None = None,
                         allow_code_execution: bool = False) -> RunnerDeployment:
    """The deployment object (not yet registered): the pipeline flow with these parameters on `cron`
    (None: no schedule, runs start by hand with `prefect deployment run pipeline/NAME`). Each run is
    kept as a DVC experiment and retried once (it resumes where it stopped)."""
    root = Path(repo).resolve()
    if not (root / "dvc.yaml").exists():
        raise ValueError(f"repo: no dvc.yaml in {root}; pass the root of the AgoraBench repository")
    if cron is not None:
        try:
            CronSchedule(cron=cron)
        except ValueError:  # pydantic's ValidationError is a ValueError; its text spans lines
            raise ValueError(f"cron: {cron!r} is not a cron expression; use five fields, e.g. '0 3 * * *'") from None
    if generators is not None and not generators:
        raise ValueError("generators: empty list; name at least one, or none for params.yaml's benchmark_generators")
    if not name or any(c in name for c in "/%&><"):
        raise ValueError(f"name: {name!r} is empty or contains one of / % & > <; use e.g. 'nightly'")
    return pipeline.to_deployment(
        name=name, cron=cron,
        # The run's working directory is the runner's, not the repo: the repo travels as an absolute path.
        parameters={"generators": generators, "push": push, "repo": str(root), "targets": targets,
                    "allow_code_execution": allow_code_execution, "keep_experiment": True, "retries": 1},
        # One run at a time: two pipelines in the same repository would fight over DVC's lock.
        concurrency_limit=1,
        # flows.pipeline is an installed package: the run imports it by module path from any directory.
        entrypoint_type=EntrypointType.MODULE_PATH,
        tags=["agorabench"],
        description="AgoraBench pipeline (lanes of dvc repro, kept as a DVC experiment) on a schedule, then dvc push.")


def deploy(name: str, cron: str, generators: list[str] | None = None, push: bool = False, repo: str = ".",
           targets: list[str] | None = None, allow_code_execution: bool = False) -> None:
    """Register the deployment and serve it until interrupted (Ctrl-C pauses its schedule)."""
    from prefect import serve
    from prefect.settings import get_current_settings

    deployment = benchmark_deployment(name, cron, generators, push, repo, targets, allow_code_execution)
    if not get_current_settings().api.url:
        raise ValueError("PREFECT_API_URL is not set: schedules need a running server; start `prefect server start` "
                         "and run `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`")
    # The served runs inherit this process's environment, where the CLI's default may have turned API
    # logs off (PREFECT_API_URL set in a Prefect profile, not the environment): their logs belong in the UI.
    os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "true"
    serve(deployment)
