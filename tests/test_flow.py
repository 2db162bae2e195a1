"""The generate stage as a real Prefect flow (one shared test harness per session)."""
import asyncio
import os

import pytest

from agorabench.config import load_params
from agorabench.setting import Setting


def test_flow_generates_and_retries_a_failed_batch(prefect_harness, params_file, fake_server, monkeypatch):
    from flows.generate import generate
    from tasks import generation as gen_tasks

    # A batch that dies after its answers were stored (say, the worker was preempted) is retried by
    # Prefect, and the retry is served from the request store.
    calls = {"n": 0}
    original = gen_tasks.BatchRunner.run

    async def crash_once(self, attempts):
        outcomes = await original(self, attempts)
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("worker lost after the answers were stored")
        return outcomes

    monkeypatch.setattr(gen_tasks.BatchRunner, "run", crash_once)
    monkeypatch.setattr(gen_tasks.generate_batch, "retry_delay_seconds", [0])
    manifest = asyncio.run(generate(generator="fake", domain="code", method="instance_generation",
                                    params_file=str(params_file), num=6))
    assert manifest["num_valid"] == 6 and calls["n"] == 2
    assert manifest["run"]["answers_cached"] == 6, "the retried batch must be answered from the store"
    assert fake_server.completed_count == 6
    params = load_params(params_file)
    assert Setting("fake", "instance_generation", "code").dataset(params)["data"].exists()


def test_flow_does_not_retry_a_refused_request(prefect_harness, params_file, fake_server):
    from agorabench.models.clients.retry import FatalAPIError
    from flows.generate import generate

    fake_server.inject(*["400"] * 50)
    with pytest.raises(FatalAPIError):
        asyncio.run(generate(generator="fake", domain="math", method="response_generation",
                             params_file=str(params_file), num=1))
    assert fake_server.request_count == 1


def test_train_then_evaluate_flows_end_to_end(prefect_harness, tmp_path, fake_server, monkeypatch, tiny_student):
    """generate -> train -> evaluate as Prefect flows: a student is trained on the generated data and
    scored on its domain's benchmarks, with the per-model score summary DVC reads as metrics."""
    import json

    from flows.evaluate import evaluate
    from flows.generate import generate
    from flows.train import train
    from tests.conftest import write_params

    monkeypatch.setenv("FAKE_API_KEY", "k")
    params_file = write_params(tmp_path / "params.yaml", fake_server.url, **{
        "student.base": tiny_student, "training.max_length": 256, "training.packing": False,
        "training.num_epochs": 1, "training.lora": None,
        "training.output_dir": str(tmp_path / "ckpt"), "training.logs_dir": str(tmp_path / "train"),
        "evaluation.limit": 2, "evaluation.decoding.max_new_tokens": 8,
        "evaluation.output_dir": str(tmp_path / "eval"), "evaluation.scores_dir": str(tmp_path / "scores")})
    asyncio.run(generate(generator="fake", domain="math", method="response_generation",
                         params_file=str(params_file), num=4))
    metrics = train(generator="fake", domain="math", method="response_generation", params_file=str(params_file))
    assert metrics["examples"] == 4 and metrics["steps"] >= 1
    results = evaluate(model="student:fake/response_generation/math", params_file=str(params_file))
    assert set(results) == {"gsm8k", "math"}  # a math student: its domain's two benchmarks
    # The stage's batched pass answered them: they count as generated here, not as found in the store.
    assert all(r["run"] == {"generated": r["n_items"], "cached": 0} for r in results.values())
    summary = json.loads((tmp_path / "scores/students/fake/response_generation/math.json").read_text())
    assert set(summary) == {"gsm8k", "math"} and summary["gsm8k"]["n_items"] == 2


def test_stage_flows_run_without_a_heartbeat_thread(params_file, monkeypatch):
    """`agora intrinsic` (like generate, train, evaluate) runs its flow with Prefect's heartbeats off:
    joining that thread, which sleeps in 1-second steps, cost about a second per DVC stage."""
    from prefect.settings import get_current_settings
    from typer.testing import CliRunner

    import flows.intrinsic
    from flows.cli import app

    seen = []

    def fake_flow(**kwargs):
        seen.append(get_current_settings().flows.heartbeat_frequency)
        return {"instance_generation/math": {"n": 0}}

    monkeypatch.setattr(flows.intrinsic, "intrinsic", fake_flow)
    args = ["intrinsic", "-g", "fake", "-m", "instance_generation", "-d", "math", "--params", str(params_file)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen == [None]
    assert get_current_settings().flows.heartbeat_frequency == 180  # canary: Prefect's default outside


_RUN_A_FLOW = """
import sys
from agorabench.env_defaults import apply_defaults
apply_defaults()
from prefect import flow, get_run_logger

@flow
def tiny():
    get_run_logger().info("tiny ran")

if sys.argv[1] == "ours":
    from flows.pipeline import pipeline_server as server
else:  # the canary: the same server and settings, without sending the queued lines before it stops
    from contextlib import contextmanager
    from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings
    from agorabench.pipeline.run import prefect_server

    @contextmanager
    def server(home):
        with prefect_server(home) as url, \\
                temporary_settings(updates={PREFECT_API_URL: url, PREFECT_LOGGING_TO_API_ENABLED: True}):
            yield url
with server(home=sys.argv[2]):
    tiny()
"""


def test_agora_runs_server_receives_the_flows_last_log_lines_before_it_stops(tmp_path):
    """`agora run` stops its Prefect server when the pipeline flow returns; the flow's last log lines
    are still queued then. They reach the server (its database has them), and the run does not end on
    Prefect's "--- Error logging to API ---"; the canary, without the drain, does."""
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    # As in a user's shell: not the session's test server, nor the tests' quiet log levels. Log lines
    # go out in batches once a minute here, so none leaves before the flow ends (without it the
    # canary could see its batch sent between the flow's end and the server's stop).
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL" and not k.startswith("PREFECT_LOGGING")}
    env["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] = "60"
    found = {}
    for which in ("ours", "canary"):
        home = tmp_path / which
        out = subprocess.run([sys.executable, "-c", _RUN_A_FLOW, which, str(home)], capture_output=True, text=True,
                             env=env, cwd=Path(__file__).resolve().parents[1], timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        with sqlite3.connect(home / "prefect.db") as db:
            logs = [m for (m,) in db.execute("SELECT message FROM log")]
        found[which] = (out.stderr, logs)
    stderr, logs = found["ours"]
    assert "Error logging to API" not in stderr and any(m.startswith("Finished in state Completed") for m in logs)
    stderr, logs = found["canary"]
    assert "Error logging to API" in stderr and not any(m.startswith("Finished in state") for m in logs)


_STOPPED_WITH_ITS_SERVER = """
import sys, time
from agorabench.env_defaults import apply_defaults
apply_defaults()
from prefect import flow, task
from flows.pipeline import pipeline_server

@task
def stage():
    print("running", flush=True)
    time.sleep(300)

@flow
def pipeline():
    stage()

with pipeline_server(home=sys.argv[1]):
    pipeline()
"""


@pytest.mark.slow
def test_a_run_stopped_together_with_its_prefect_server_exits_in_seconds(tmp_path):
    """systemd, Slurm and `pkill` stop a job by signalling all of its processes: `agora run` gets SIGTERM
    together with the Prefect server it started. Its flow then reports the crash to a server that is
    gone; with the loopback server's few retries (flows/pipeline.py, LOOPBACK_RETRIES) it exits within
    seconds. Canary: with Prefect's 5 retries (a user's PREFECT_CLIENT_MAX_RETRIES wins) it is still
    retrying long after."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psutil

    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_CLIENT_MAX_RETRIES")}
    runs = {which: subprocess.Popen([sys.executable, "-c", _STOPPED_WITH_ITS_SERVER, str(tmp_path / which)],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                    env={**env, **retries}, cwd=Path(__file__).resolve().parents[1])
            for which, retries in (("ours", {}), ("canary", {"PREFECT_CLIENT_MAX_RETRIES": "5"}))}
    try:
        for run in runs.values():
            assert any(line.strip() == "running" for line in run.stdout), "the flow never started"
        for run in runs.values():  # the server's whole process group (it has its own session), and the run
            server, = [c for c in psutil.Process(run.pid).children() if "server" in c.cmdline()]
            os.killpg(server.pid, signal.SIGTERM)
            run.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        runs["ours"].wait(timeout=30)  # about 11 s here
        time.sleep(max(0.0, stopped + 30 - time.monotonic()))
        assert runs["canary"].poll() is None, "the canary should still be retrying its requests"
    finally:
        for run in runs.values():
            run.kill()
            run.wait()


def test_the_librarys_log_lines_reach_the_flow_runs_page_in_the_prefect_api(prefect_harness):
    """A line the library logs (`agorabench.*`, e.g. how long a judge took) inside a flow run is in
    that run's logs in the API: env_defaults.py makes `agorabench` one of Prefect's extra loggers, which
    gives it Prefect's API handler. Canary: the same flow with that handler taken off sends nothing."""
    import logging
    import time

    from prefect import flow, get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    from prefect.logging.handlers import APILogHandler

    library, root = logging.getLogger("agorabench.evaluation.run"), logging.getLogger("agorabench")
    api_handlers = [h for h in root.handlers if isinstance(h, APILogHandler)]
    assert api_handlers, "env_defaults.py should have made agorabench a Prefect extra logger"

    @flow
    def stage(line: str):
        library.info(line)
        from prefect.runtime import flow_run
        return flow_run.id

    def logged(line: str) -> list[str]:
        with temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: True}):
            level = root.level
            root.setLevel(logging.INFO)  # as the CLI sets it (configure_logging)
            try:
                run_id = stage(line)
                APILogWorker.drain_all(timeout=10)
            finally:
                root.setLevel(level)

        async def messages():
            async with get_client() as client:
                found = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
                return [log.message for log in found]

        for _ in range(8):  # the server may take a moment to write what it was sent
            found = asyncio.run(messages())
            if line in found:
                break
            time.sleep(0.25)
        return found

    assert "alpacaeval: 4 judged by fake in 0.1 s" in logged("alpacaeval: 4 judged by fake in 0.1 s")
    for h in api_handlers:
        root.removeHandler(h)
    try:
        assert "arenahard: 2 judged by fake in 0.1 s" not in logged("arenahard: 2 judged by fake in 0.1 s")
    finally:
        for h in api_handlers:
            root.addHandler(h)
