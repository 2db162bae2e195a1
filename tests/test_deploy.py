"""The scheduled deployment for real: a `prefect server start` subprocess, the benchmark flow served
on a one-minute cron, and a scheduled run that runs DVC's generate stage (fake generator) in a tmp
git+DVC repository and pushes it to a local DVC remote. Canaries: a deployment without a schedule
never runs, and a deployment whose flow fails ends FAILED with its error."""
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from agorabench.models.launchers import free_port
from tests.conftest import REPO, write_params
from tests.test_dvc_pipeline import sh


def git_env() -> dict[str, str]:
    return {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
            "PYTHONPATH": str(REPO), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def make_bench_repo(repo, server_url: str, remote=None, **overrides):
    """A committed git+DVC copy of the project whose params.yaml uses the fake generator, one cheap
    generation setting by default, and optionally a local-folder default DVC remote."""
    repo.mkdir()
    for item in ("agorabench", "flows", "tasks", "requirements"):
        shutil.copytree(REPO / item, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "prefect.toml"):  # prefect.toml: Prefect's own lines at WARNING, as in a clone
        shutil.copy(REPO / name, repo / name)
    settings = {"methods": ["response_generation"], "domains": ["general"], "generation.num_instances": 2,
                **overrides}
    params_path = write_params(repo / "params.yaml", server_url, **settings)
    params = yaml.safe_load(params_path.read_text())  # paths relative to the repo, as a user's are
    params["generation"].update(prompt_dir="agorabench/generation/prompts/default", output_dir="data/generated")
    params["cache"]["requests_db"] = ".agora/requests.sqlite"
    for section in params.values():  # every judge (evaluation, intrinsic, ...) must be a declared generator
        if isinstance(section, dict) and "judge" in section:
            section["judge"] = "fake"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text(".agora/\n")
    env = git_env()
    sh(["git", "init", "-q"], repo, env)
    sh(["dvc", "init", "-q"], repo, env)
    if remote is not None:
        sh(["dvc", "remote", "add", "-d", "store", str(remote)], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "bench"], repo, env)
    return repo


def wait_healthy(url: str, proc: subprocess.Popen, log, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"prefect server exited ({proc.returncode}): {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"prefect server not healthy after {timeout_s} s: {log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group we started (server workers, flow-run subprocesses), then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


SERVE = """
import sys
from prefect import serve
from flows.deploy import benchmark_deployment
repo = sys.argv[1]
serve(benchmark_deployment("every-minute", "* * * * *", ["fake"], push=True, repo=repo, targets=["generate"]),
      benchmark_deployment("by-hand", None, ["fake"], push=True, repo=repo, targets=["generate"]),
      benchmark_deployment("broken", "* * * * *", ["no-such-generator"], repo=repo, targets=["generate"]))
"""


@pytest.mark.slow
def test_cron_deployment_runs_the_pipeline_and_pushes(tmp_path, fake_server, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterName, FlowFilter, FlowFilterName,
                                                LogFilter, LogFilterFlowRunId)
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    monkeypatch.setenv("FAKE_API_KEY", "k")
    remote = tmp_path / "remote"
    repo = make_bench_repo(tmp_path / "bench", fake_server.url, remote=remote)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**git_env(), "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    # As on a user's machine, no PREFECT_LOGGING_LEVEL (the session's WARNING is for its own runs): the
    # defaults (env_defaults.py) send the runs' INFO lines to the API with the console at WARNING.
    env.pop("PREFECT_LOGGING_LEVEL", None)
    # As on a user's machine: whether logs go to the API is left to the defaults (the test session's
    # own setting, off, is for its stages without a server).
    env.pop("PREFECT_LOGGING_TO_API_ENABLED", None)
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"
    procs = []
    try:
        with server_log.open("w") as out:
            procs.append(subprocess.Popen(
                [os.path.join(os.path.dirname(sys.executable), "prefect"), "server", "start",
                 "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        wait_healthy(api, procs[0], server_log)
        with serve_log.open("w") as out:
            procs.append(subprocess.Popen([sys.executable, "-c", SERVE, str(repo)], cwd=tmp_path, env=env,
                                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True))

        def runs(client, name):
            return client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])))

        settings = {PREFECT_API_URL: api, PREFECT_LOCAL_STORAGE_PATH: tmp_path / "prefect-home/storage"}
        with temporary_settings(settings), get_client(sync_client=True) as client:
            deadline = time.monotonic() + 150
            done = broken = []
            while time.monotonic() < deadline and not (done and broken):
                assert procs[0].poll() is None, f"prefect server exited: {server_log.read_text()[-3000:]}"
                assert procs[1].poll() is None, f"serve exited: {serve_log.read_text()[-3000:]}"
                done = [r for r in runs(client, "every-minute") if r.state and r.state.is_completed()]
                broken = [r for r in runs(client, "broken") if r.state and r.state.is_final()]
                time.sleep(2)
            assert done, f"no scheduled run COMPLETED within 150 s: {serve_log.read_text()[-3000:]}"
            by_hand = runs(client, "by-hand")
            assert client.read_deployment_by_name("pipeline/by-hand").schedules == []
            assert client.read_deployment_by_name("pipeline/every-minute").schedules[0].schedule.cron == "* * * * *"
            summary = done[0].state.result()  # the flow's persisted summary

            # Its logs are in the API (the UI shows them, at PREFECT_LOGGING_LEVEL): the pipeline's own
            # summary line, and the log of the stage's flow run (a separate process, the same server).
            def logs_of(run_ids):
                found = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)))
                return [log.message for log in found]

            stage_runs = [r.id for r in client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["generate"])))]
            for _ in range(20):  # each process sends its logs in the background; the last ones at its exit
                pipeline_log, stage_log = logs_of([done[0].id]), logs_of(stage_runs)
                if any("stages run" in m for m in pipeline_log) and any("Finished" in m for m in stage_log):
                    break
                time.sleep(0.5)
            assert any(m.startswith("pipeline: 1 stages run") for m in pipeline_log), pipeline_log
            assert "Beginning flow run 'generate fake response_generation general' for flow 'generate'" in stage_log
            assert not any("stages run" in m for m in logs_of([broken[0].id])), "canary: another run's log is apart"

        data = repo / "data/generated/fake/response_generation/general.jsonl"
        assert len(data.read_text().splitlines()) == 2
        pushed = [p for p in remote.rglob("*") if p.is_file()]
        assert len(pushed) >= 2, "dvc push must have sent the stage's outputs to the remote"
        assert "generate@fake-response_generation-general" in (repo / "dvc.lock").read_text()
        assert summary["stages_run"] == ["generate@fake-response_generation-general"]
        assert summary["generators"] == ["fake"] and summary["files_pushed"] == len(pushed)
        refs = sh(["git", "for-each-ref"], repo, git_env())
        assert summary["experiment"] and f"/{summary['experiment']}\n" in refs, "the run is kept as a DVC experiment"

        # Canaries: no schedule -> no run; a failing flow is FAILED, with its error.
        assert by_hand == []
        assert broken and broken[0].state.is_failed(), [r.state for r in broken]
        assert "unknown generator 'no-such-generator'" in broken[0].state.message
    finally:
        for proc in reversed(procs):
            stop(proc)


def test_deployment_arguments_are_checked_in_one_line(tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import benchmark_deployment, deploy

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    dep = benchmark_deployment("nightly", "0 3 * * *", ["smollm2"], push=True, repo=str(tmp_path))
    assert dep.parameters["repo"] == str(tmp_path.resolve()) and dep.parameters["push"] is True
    assert dep.entrypoint == "flows.pipeline.pipeline" and dep.concurrency_limit == 1
    assert benchmark_deployment("by-hand", None, repo=str(tmp_path)).schedules in (None, [])

    for kwargs, field in [({"cron": "every night"}, "cron:"), ({"cron": "0 3 * * *", "repo": str(tmp_path / "no")}, "repo:"),
                          ({"cron": "0 3 * * *", "generators": []}, "generators:"),
                          ({"cron": "0 3 * * *", "name": "a/b"}, "name:")]:
        with pytest.raises(ValueError) as err:
            benchmark_deployment(**{"name": "nightly", "repo": str(tmp_path), **kwargs})
        assert str(err.value).startswith(field) and "\n" not in str(err.value)
    # Canary: serving against the ephemeral server would register a schedule that never fires.
    # (The session's shared Prefect harness sets an API URL; this checks the case without one.)
    with temporary_settings(updates={PREFECT_API_URL: None}), pytest.raises(ValueError, match="PREFECT_API_URL"):
        deploy("nightly", "0 3 * * *", repo=str(tmp_path))


def test_a_run_is_kept_as_a_dvc_experiment(tmp_path):
    """dvc_exp_save against real git and DVC: the experiment's ref is in git, with the run's params,
    its dvc.lock and metrics (untracked until then); a run of some stages is kept with those stages
    as targets, since DVC refuses to save stages whose outputs are missing (the canary)."""
    from tasks.pipeline import dvc_exp_save

    repo = tmp_path / "repo"
    repo.mkdir()
    env = git_env()
    sh(["git", "init", "-q"], repo, env)
    sh(["dvc", "init", "-q"], repo, env)
    (repo / "params.yaml").write_text("n: 1\n")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "one": {"cmd": "echo '{\"n\": 1}' > one.json", "params": ["n"], "metrics": [{"one.json": {"cache": False}}]},
        "two": {"cmd": "echo 2 > two.txt", "outs": ["two.txt"]}}}))
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "init"], repo, env)
    sh(["dvc", "repro", "one"], repo, env)
    with pytest.raises(RuntimeError, match="two.txt' does not exist"):
        dvc_exp_save.fn(repo)
    partial = dvc_exp_save.fn(repo, ["one"])
    sh(["dvc", "repro"], repo, env)
    whole = dvc_exp_save.fn(repo)
    refs = dict(line.split(" commit\trefs/exps/")[::-1] for line in
                sh(["git", "for-each-ref", "refs/exps"], repo, env).splitlines())
    by_name = {ref.rsplit("/", 1)[-1]: sha for ref, sha in refs.items()}
    assert partial != whole and {partial, whole} <= set(by_name)
    kept = sh(["git", "show", "--name-only", "--format=", by_name[whole]], repo, env).split()
    assert {"dvc.lock", "one.json"} <= set(kept), kept  # untracked before: saved with the experiment
