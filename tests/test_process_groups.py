"""A killed `agora run` (even kill -9) takes DVC and the stage command DVC is running with it:
pipeline.repro starts DVC under models/launchers.py's GROUP_LAUNCHER. A killed stage command on its
own takes Prefect's temporary server with it (launchers.exit_on_sigterm)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Stands in for `agora run`: starts a "DVC" that starts a long "stage", prints the stage's pid, waits.
RUN = r"""
import os, subprocess, sys, time
from agorabench.models.launchers import GROUP_LAUNCHER
stage = "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); print(p.pid, flush=True); p.wait()"
cmd = [sys.executable, "-c", stage]
if sys.argv[1] == "launcher":
    cmd = [sys.executable, "-c", GROUP_LAUNCHER, *cmd]
env = {**os.environ, "AGORA_LAUNCHER_PARENT_PID": str(os.getpid())}
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
print(p.stdout.readline().strip(), flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie waits only to be reaped


def _stage_after_kill_9(mode: str, wait_s: float) -> bool:
    """Is the stage still running `wait_s` seconds after its `agora run` got SIGKILL?"""
    run = subprocess.Popen([sys.executable, "-c", RUN, mode], stdout=subprocess.PIPE, text=True,
                           cwd=Path(__file__).resolve().parents[1])
    stage = int(run.stdout.readline())
    return _alive_after(stage, lambda: (run.send_signal(signal.SIGKILL), run.wait()), wait_s)


def _alive_after(stage: int, kill, wait_s: float) -> bool:
    """Is the stage still running `wait_s` seconds after `kill()`? (It must be running before.)"""
    try:
        assert _alive(stage)
        kill()
        deadline = time.monotonic() + wait_s
        while _alive(stage) and time.monotonic() < deadline:
            time.sleep(0.1)
        return _alive(stage)
    finally:
        if _alive(stage):
            os.kill(stage, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_kill_9_of_the_run_stops_the_stage():
    assert not _stage_after_kill_9("launcher", wait_s=15)
    # canary: a new session alone (what repro did before) leaves the stage running
    assert _stage_after_kill_9("plain", wait_s=2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_sigterm_to_the_launcher_stops_its_group():
    """What pipeline.repro sends when `agora run` is stopped (Ctrl-C, kill): the launcher alone gets
    SIGTERM and takes DVC and the stage with it."""
    from agorabench.models.launchers import GROUP_LAUNCHER

    stage_cmd = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; "
                 "time.sleep(120)']); print(p.pid, flush=True); p.wait()")
    env = {**os.environ, "AGORA_LAUNCHER_PARENT_PID": str(os.getpid())}
    launcher = subprocess.Popen([sys.executable, "-c", GROUP_LAUNCHER, sys.executable, "-c", stage_cmd],
                                stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    stage = int(launcher.stdout.readline())
    assert not _alive_after(stage, lambda: (launcher.terminate(), launcher.wait(timeout=10)), wait_s=10)
    # canary: the stage was alive until then (checked inside _alive_after), and a plain child of a
    # terminated process is not taken along
    plain = subprocess.Popen([sys.executable, "-c", stage_cmd], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    stage = int(plain.stdout.readline())
    assert _alive_after(stage, lambda: (plain.terminate(), plain.wait(timeout=30)), wait_s=1)


# A lone stage command (`dvc repro` run by hand, no `agora run` around it) starts Prefect's temporary
# server as its child; the canary is the same command with Python's default SIGTERM action.
_LONE_STAGE = r"""
import sys
import flows.cli as cli
if sys.argv[1] == "canary":
    import agorabench.models.launchers as launchers
    launchers.exit_on_sigterm = lambda: None
sys.argv = ["agora", *sys.argv[2:]]
cli.app()
"""


def _cmdline(process) -> list[str]:
    """A child's command line; none for one that ended while we looked (a short-lived helper the command
    started is a zombie until reaped, and psutil then raises: a make test run met it once)."""
    import psutil

    try:
        return process.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return []


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_a_lone_stage_command_stops_prefects_temporary_server(tmp_path, monkeypatch):
    """`kill` of `agora evaluate` mid-run: the command exits and takes Prefect's temporary server with
    it (launchers.exit_on_sigterm lets atexit run). Canary: with Python's default action the server
    outlives it, though the signal came mid-flow. (A synchronous flow: `agora generate`'s asynchronous
    one leaves through an exception either way.) Both run side by side, each with its own fake API."""
    import psutil

    from agorabench.testing.llm_server import FakeLLMServer
    from tests.conftest import write_params

    monkeypatch.setenv("FAKE_API_KEY", "k")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # as when run by hand
    runs, servers = {}, {}
    with contextlib.ExitStack() as stack:
        for which in ("ours", "canary"):
            fake = stack.enter_context(FakeLLMServer(latency_s=5))  # still waiting on answers at the kill
            params_file = write_params(tmp_path / f"{which}.yaml", fake.url)
            cmd = [sys.executable, "-c", _LONE_STAGE, which, "evaluate", "--model", "generator:fake", "-b", "gsm8k",
                   "--params", str(params_file)]
            runs[which] = (fake, subprocess.Popen(cmd, cwd=tmp_path, env={**env, "PREFECT_HOME": str(tmp_path / which)},
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            deadline = time.monotonic() + 120
            for which, (fake, run) in runs.items():
                while not fake.received:  # the flow runs once requests come in
                    assert run.poll() is None and time.monotonic() < deadline, f"{which} never got going"
                    time.sleep(0.1)
                servers[which] = [c for c in psutil.Process(run.pid).children() if "uvicorn" in _cmdline(c)]
                assert len(servers[which]) == 1, "the command should run Prefect's temporary server"
            for _, run in runs.values():
                run.terminate()
            for _, run in runs.values():
                run.wait(timeout=60)
            time.sleep(3)  # ours stops its server before it exits; give the canary's time to go too
            outlived = {which: _alive(server.pid) for which, (server,) in servers.items()}
        finally:
            for _, run in runs.values():
                run.kill()
                run.wait()
            for server in (s for found in servers.values() for s in found):
                if _alive(server.pid):
                    server.kill()
    assert outlived == {"ours": False, "canary": True}
