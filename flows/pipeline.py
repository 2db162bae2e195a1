"""Prefect flows over the whole pipeline.

`pipeline`: what `agora run` runs, and what the scheduled deployment runs (flows/deploy.py): the DVC
pipeline in lanes with shared model servers (agorabench.pipeline.run.run_pipeline), optionally
recorded as a DVC experiment and pushed to the DVC remote, then published as Prefect artifacts (a
table of each generator's PGR and cost, a link to the report). dvc.yaml stays the only definition of
the pipeline; this flow decides how it is run.

`generate_all`: every generation setting of several generators side by side on one task runner,
e.g. a Dask cluster. Outside DVC: for filling the request store and data/generated/ fast, after
which `dvc repro` / `dvc commit` records them without sending a request again.
"""
from __future__ import annotations

import contextlib
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from prefect import flow
from prefect.task_runners import TaskRunner

from agorabench.config import check_setting, load_params
from agorabench.results.db import DB_NAME
from tasks.pipeline import (check_repo, dvc_exp_save, dvc_push, generate_setting_task, publish_results,
                            run_pipeline_task, set_generators)


# Retries of a request to `agora run`'s own Prefect server (pipeline_server): 2 back off 2 + 4 s, enough
# for a busy moment on a loaded machine.
LOOPBACK_RETRIES = 2


@contextmanager
def pipeline_server(ui: bool = False, home: str | Path = ".agora/prefect") -> Iterator[str]:
    """The Prefect server `agora run` starts (agorabench.pipeline.run.prefect_server), with this process
    pointed at it; yields its API URL. On leaving, the log lines still queued for the API (a flow's last
    ones, "Finished in state ...") are sent while the server is up: left to Prefect's exit hook, they
    would go after it stopped, and the run would end on "--- Error logging to API ---".

    When the server is ours, its clients (this process and the stages) retry a failed request
    LOOPBACK_RETRIES times, not Prefect's 5: a server of ours on loopback that refuses a connection is
    gone, most often stopped with the rest of the job (systemd, Slurm and `pkill` signal every process
    at once). With 5 retries, 62 s of backoff per request, the stopped run spent minutes reporting its
    crash to it. A PREFECT_CLIENT_MAX_RETRIES of the user's wins."""
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import (PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, PREFECT_LOGGING_TO_API_ENABLED,
                                  temporary_settings)

    from agorabench.pipeline.run import prefect_server

    ours = not os.environ.get("PREFECT_API_URL")  # else prefect_server yields the user's server
    retries = {PREFECT_CLIENT_MAX_RETRIES: LOOPBACK_RETRIES} \
        if ours and "PREFECT_CLIENT_MAX_RETRIES" not in os.environ else {}
    with prefect_server(home, ui=ui) as url, \
            temporary_settings(updates={PREFECT_API_URL: url, PREFECT_LOGGING_TO_API_ENABLED: True, **retries}):
        try:
            yield url
        finally:
            APILogWorker.drain_all(timeout=5)


# The summary is persisted (a few hundred bytes under PREFECT_HOME/storage) so a scheduled run's
# outcome can be read back later from its state, e.g. `flow_run.state.result()`.
@flow(name="pipeline", flow_run_name="pipeline {repo}", persist_result=True, log_prints=True)
def pipeline(generators: list[str] | None = None, push: bool = False, repo: str = ".",
             targets: list[str] | None = None, force: bool = False, jobs: int | None = None,
             allow_code_execution: bool = False, keep_experiment: bool = False, retries: int = 0) -> dict:
    """Run the pipeline in `repo` for `generators` (default: params.yaml's benchmark_generators, which
    are otherwise rewritten there, as `dvc exp run -S` would), then optionally keep the run as a DVC
    experiment (`dvc exp show` lists its params, dvc.lock and metrics) and upload the outputs to the
    default DVC remote. `targets` restricts the run to some stages (e.g. ["generate"]); `retries`
    re-runs a failed pipeline that many times (resuming: DVC and the request store keep what finished)."""
    start = time.monotonic()
    root = Path(repo).resolve()
    chosen = check_repo(root, generators, push)
    with contextlib.chdir(root):
        if generators is not None:
            set_generators(root, generators)
        ran = run_pipeline_task.with_options(retries=retries)(root, force, jobs, allow_code_execution, targets)
        experiment = dvc_exp_save(root, targets) if keep_experiment else None
        pushed = dvc_push(root) if push else None
        analysis = load_params(root / "params.yaml").analysis
        artifacts = publish_results(root / analysis.results_dir / DB_NAME, root / analysis.report_dir / "index.html")
    summary = {"repo": str(root), "generators": chosen, **ran, "experiment": experiment, "files_pushed": pushed,
               "artifacts": artifacts,
               "duration_s": round(time.monotonic() - start, 1)}
    print(f"pipeline: {len(ran['stages_run'])} stages run, {len(ran['stages_unchanged'])} unchanged, "
          f"experiment {experiment or 'not kept'}, {pushed if push else 'no'} files pushed, {summary['duration_s']} s")
    return summary


@flow(name="generate-all", log_prints=True)
def _generate_all(generators: list[str], domains: list[str] | None = None, methods: list[str] | None = None,
                  params_file: str = "params.yaml") -> dict[str, dict]:
    params = load_params(params_file)
    settings = [(g, m, d) for g in generators for m in methods or params.methods for d in domains or params.domains]
    for g, m, d in settings:  # all names checked before the first request goes out
        params.generator(g)
        check_setting(d, m)
    futures = {f"{g}/{m}/{d}": generate_setting_task.submit(params_file, g, d, m) for g, m, d in settings}
    return {key: future.result() for key, future in futures.items()}


def generate_all(generators: list[str], *, domains: list[str] | None = None, methods: list[str] | None = None,
                 params_file: str = "params.yaml", task_runner: TaskRunner | None = None) -> dict[str, dict]:
    """Generate every (generator, method, domain) setting, each one a task on `task_runner`.

    Returns {"GEN/METHOD/DOMAIN": manifest}; each manifest's run["worker"] says where it ran.
    The default runner is Prefect's thread pool (one process). To spread the settings over a
    Dask cluster (pip install prefect-dask):

        from prefect_dask import DaskTaskRunner
        generate_all(["gpt-4o-mini", "claude-3-5-sonnet"],
                     task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 4, "threads_per_worker": 1}))

    or DaskTaskRunner(address="tcp://scheduler:8786") for a running cluster. The task's parameters
    are plain strings, so process workers work too. Every worker must see the same params file,
    data/generated/ and request store (cache.requests_db, SQLite in WAL mode: one host, or one
    store per host). Results do not depend on the runner: the same seed gives the same datasets
    (where the generators' answers follow from their seeds: agorabench/models/endpoint.py, with_seed).
    """
    run = _generate_all if task_runner is None else _generate_all.with_options(task_runner=task_runner)
    return run(generators=generators, domains=domains, methods=methods, params_file=params_file)
