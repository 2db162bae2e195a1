"""The two launchers that tie a child process's life to ours, even when we die by kill -9: a server
runs under PDEATHSIG_LAUNCHER, a command with children of its own (DVC and its stage, an `accelerate
launch` and its workers) under GROUP_LAUNCHER (start_in_group and stop_groups). Each is a short Python
script, run as `python -c LAUNCHER COMMAND...` with AGORA_LAUNCHER_PARENT_PID set to the starting
process's pid; both call die_with_parent, which also serves a process that someone else started (a
training worker of torchrun, which puts each worker in a session of its own, out of the group's reach).
exit_on_sigterm covers the other way out: a SIGTERM to us runs the hooks that stop what we started.
Imports nothing of the project, so any stage may use it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

# Tiny launcher run as the server's first process: it asks the kernel to SIGTERM it if the process that
# started it dies (even by SIGKILL, where no __exit__ or atexit runs), then execs the real server command,
# which keeps that setting. Linux only; elsewhere the prctl call is skipped.
# Caveat of PR_SET_PDEATHSIG: "parent" is the *thread* that started the server, so don't start a server in a
# short-lived thread and keep using it after that thread ends.
_DIE_WITH_PARENT = """
from agorabench.models.launchers import die_with_parent
die_with_parent(int(os.environ.pop("AGORA_LAUNCHER_PARENT_PID")))
"""
PDEATHSIG_LAUNCHER = "import os, sys\n" + _DIE_WITH_PARENT + "os.execvp(sys.argv[1], sys.argv[1:])\n"

# The same idea for a command that starts children of its own (DVC and the stage command it runs, an
# `accelerate launch` and its workers):
# started with start_new_session, this launcher leads their process group and stays in it as the parent.
# When the process that started it dies, even by SIGKILL, the kernel sends it SIGTERM; and a SIGTERM,
# from there or from anyone, stops the whole group: SIGTERM, up to 20 s to exit, then SIGKILL. Without
# it, a killed `agora run` left DVC and the stage it was running working on, holding DVC's lock.
GROUP_LAUNCHER = r"""
import os, signal, subprocess, sys, time
child = None
def stop(*_):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while child is not None and time.monotonic() < deadline:
        # waitpid, not child.poll(): the main thread is inside child.wait(), which holds the lock
        # that poll() needs, so poll() would say "running" until the deadline
        try:
            if os.waitpid(child.pid, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            break
        time.sleep(0.1)
    os.killpg(0, signal.SIGKILL)  # whatever outlived its command, and this launcher with it
signal.signal(signal.SIGTERM, stop)
""" + _DIE_WITH_PARENT + r"""
child = subprocess.Popen(sys.argv[1:])
sys.exit(child.wait())
"""


def start_in_group(command: list[str], env: dict[str, str] | None = None, **popen_kwargs) -> subprocess.Popen:
    """Start `command` under GROUP_LAUNCHER: in a process group of its own, which stops when this
    process dies. Call it from a thread that lives as long as the command (PR_SET_PDEATHSIG's caveat)."""
    env = {**(os.environ if env is None else env), "AGORA_LAUNCHER_PARENT_PID": str(os.getpid())}
    return subprocess.Popen([sys.executable, "-c", GROUP_LAUNCHER, *command], env=env, start_new_session=True,
                            **popen_kwargs)


def stop_groups(procs: list[subprocess.Popen], timeout_s: float = 30) -> None:
    """Stop the groups start_in_group started that still run: SIGTERM to each launcher, which stops its
    group (SIGTERM, up to 20 s, then SIGKILL); then SIGKILL whatever a launcher left."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def stop_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Stop a process started with start_new_session (the leader of a group with its own pid) and
    everything in its group: SIGTERM, up to `grace_s` seconds for the group to be gone, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, else its zombie keeps the group "alive"
            if not _group_alive(proc.pid):
                break
            time.sleep(0.05)
        if not _group_alive(proc.pid):
            break
    proc.poll()
    if proc.returncode is None:
        proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member exists but is not ours to signal
        return True
    return True


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to SIGTERM this process when its parent dies, even by SIGKILL (Linux; elsewhere
    the call is skipped). Exits at once if the parent is already gone: when it is no longer
    `parent_pid` (the pid the starting process passed), or, without one, when init has adopted us."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    gone = os.getppid() == 1 if parent_pid is None else os.getppid() != parent_pid
    if gone:
        sys.exit(1)  # the parent died before prctl took effect


def exit_on_sigterm() -> None:
    """SIGTERM (a plain `kill`, a scheduler stopping us) leaves through SystemExit, so `finally` blocks
    and atexit hooks run and stop what this process started. Python's default dies on the spot: a lone
    stage command stopped so left Prefect's temporary server running, even mid-flow (Prefect's own
    handler, during a flow run, re-sends the signal under the handler it found). Signals reach the main
    thread only: elsewhere (a CLI called from a worker thread) it does nothing."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def free_port() -> int:
    """A loopback port the kernel says is free now, for a server or a rendezvous we are about to start.
    Another process could take it first; then that start fails, and says so."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
