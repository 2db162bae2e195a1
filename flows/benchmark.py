"""Prefect flows over the whole benchmark.

`benchmark`: the full pipeline for some generators, through DVC (dvc.yaml stays the only definition
of the pipeline), then `dvc push`. This is the flow the scheduled deployment runs (flows/deploy.py).

`generate_all`: every generation setting of several generators side by side on one task runner,
e.g. a Dask cluster. Outside DVC: for filling the request store and data/generated/ fast, after
which `dvc repro` / `dvc commit` records them without sending a request again.
"""
from __future__ import annotations

import time
from pathlib import Path

from prefect import flow
from prefect.task_runners import TaskRunner

from agorabench.config import check_setting, load_params
from tasks.benchmark import check_repo, dvc_exp_run, dvc_push, generate_setting_task


# The summary is persisted (a few hundred bytes under PREFECT_HOME/storage) so a scheduled run's
# outcome can be read back later from its state, e.g. `flow_run.state.result()`.
@flow(name="benchmark", flow_run_name="benchmark {repo}", log_prints=True, persist_result=True)
def benchmark(generators: list[str] | None = None, push: bool = False, repo: str = ".",
              targets: list[str] | None = None) -> dict:
    """Run the benchmark's DVC pipeline in `repo` for `generators` (default: params.yaml's
    benchmark_generators) and, with push=True, upload the outputs to the default DVC remote.

    It runs `dvc exp run`, not a bare `dvc repro`: the same stages re-run (only what changed), and each
    run is also kept as a DVC experiment holding the params.yaml, dvc.lock and metrics it produced.
    A scheduled run therefore leaves an auditable record (`dvc exp show`) even when nobody commits
    its dvc.lock, and the generator choice is written into params.yaml with `-S`, where DVC hashes
    it, instead of a side channel DVC cannot see. `targets` restricts the run to some stages
    (e.g. ["generate"]); the default is the whole DAG.
    """
    start = time.monotonic()
    root = Path(repo).resolve()
    chosen = check_repo(root, generators, push)
    ran = dvc_exp_run(root, generators, targets)
    pushed = dvc_push(root) if push else None
    summary = {"repo": str(root), "generators": chosen, **ran, "files_pushed": pushed,
               "duration_s": round(time.monotonic() - start, 1)}
    print(f"benchmark: {len(ran['stages_run'])} stages run, {len(ran['stages_skipped'])} unchanged, "
          f"experiment {ran['experiment']}, {pushed if push else 'no'} files pushed, {summary['duration_s']} s")
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
    store per host). Results do not depend on the runner: the same seed gives the same datasets.
    """
    run = _generate_all if task_runner is None else _generate_all.with_options(task_runner=task_runner)
    return run(generators=generators, domains=domains, methods=methods, params_file=params_file)
