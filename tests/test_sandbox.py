"""The code sandbox and the MBPP / HumanEval scorers.

Every "must pass" check has a canary next to it that must fail, so that a scorer which passes everything
(human-eval issue #16: nothing ran, everything "passed") or a sandbox that blocks everything is caught.
The hostile programs run once per mode available here (bwrap with its zygote, the default; bwrap with a
fresh sandbox per program; always "process") in one parallel batch per mode; each test then checks one of them.
"""

from __future__ import annotations

import ast
import errno
import glob
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from agorabench.evaluation import sandbox
from agorabench.evaluation.benchmarks.humaneval import task as humaneval
from agorabench.evaluation.benchmarks.mbpp import task as mbpp
from agorabench.evaluation.code_scoring import extract_code, pass_at_k, summarize_pass_at_k
from agorabench.evaluation.context import ScoreContext
from agorabench.evaluation.items import MBPP_SEED_IDS
from agorabench.evaluation.benchmarks import load_items as load_eval_items

CTX = ScoreContext(allow_code_execution=True, sandbox_timeout_s=10, sandbox_workers=2, pass_k=(1, 2))
ISOLATIONS = (["bwrap"] if sandbox.bwrap_works() else []) + ["process"]
# mode -> (isolation, zygote)
MODES = {"bwrap-zygote": ("bwrap", True), "bwrap-fresh": ("bwrap", False)} if sandbox.bwrap_works() else {}
MODES["process"] = ("process", False)
ZYGOTE_MODES = [m for m, (_, zygote) in MODES.items() if zygote]
HOSTILE_TIMEOUT_S = 2.0
SECRET = "agora-fake-secret-7f3a"
NO_SECCOMP = "no seccomp filter here (libseccomp missing, or not x86_64/aarch64)"


def fenced(code: str) -> str:
    return f"Here is my solution.\n\n```python\n{code}\n```\nIt works because..."


# ---------------------------------------------------------------------------------------------
# Opt-in
# ---------------------------------------------------------------------------------------------


def test_refuses_without_opt_in(tmp_path):
    marker = tmp_path / "ran"
    program = f"open({str(marker)!r}, 'w').write('x')"
    with pytest.raises(ValueError, match="--allow-code-execution.*evaluation.allow_code_execution"):
        sandbox.run_program(program, sandbox.SandboxConfig())
    with pytest.raises(ValueError, match="--allow-code-execution"):
        sandbox.run_programs([program], sandbox.SandboxConfig(allow_code_execution=False))
    item = load_eval_items("humaneval")[0]
    with pytest.raises(ValueError, match="--allow-code-execution"):
        humaneval.score([item], [fenced(item.prompt + item.reference)], ScoreContext())
    assert not marker.exists()


def test_bad_config_is_one_clear_line():
    with pytest.raises(ValueError, match="isolation='docker'.*auto, bwrap, process"):
        sandbox.SandboxConfig(isolation="docker")
    with pytest.raises(ValueError, match="timeout_s"):
        sandbox.SandboxConfig(timeout_s=0)


# ---------------------------------------------------------------------------------------------
# Reference solutions pass, wrong ones fail (through the scorers: the path model outputs take)
# ---------------------------------------------------------------------------------------------


def test_humaneval_canonical_solutions_pass_all_164():
    items = load_eval_items("humaneval")
    assert len(items) == 164
    full = humaneval.score(items, [fenced(i.prompt + i.reference) for i in items], CTX)  # whole function
    body = humaneval.score(items, [f"```python\n{i.reference}```" for i in items], CTX)  # body only
    for rows in (full, body):
        failed = [(r["item_id"], r["error_tail"][-200:]) for r in rows if r["correct"] != 1.0]
        assert failed == []
        assert humaneval.summarize(rows)["pass@1"] == 100.0
        assert {r["isolation"] for r in rows} == {ISOLATIONS[0]}


def test_humaneval_wrong_solutions_fail():
    items = load_eval_items("humaneval")[:40]
    wrong = [fenced(f"def {i.extra['entry_point']}(*args, **kwargs):\n    return None") for i in items]
    rows = humaneval.score(items, wrong, CTX)
    assert [r["verdict"] for r in rows] == ["wrong"] * 40
    assert humaneval.summarize(rows)["pass@1"] == 0.0


def test_humaneval_body_without_indentation_and_missing_imports():
    item = next(i for i in load_eval_items("humaneval") if "from typing import List" in i.prompt)
    entry = item.extra["entry_point"]
    # A full function that relies on the stub's `from typing import List` without repeating it.
    stub_def = item.prompt[item.prompt.index(f"def {entry}") :]
    rows = humaneval.score([item], [fenced(stub_def + item.reference)], CTX)
    assert rows[0]["verdict"] == "correct"
    flush_left = "\n".join(line[4:] if line.startswith("    ") else line for line in item.reference.split("\n"))
    rows = humaneval.score([item], [fenced(flush_left)], CTX)
    assert rows[0]["verdict"] == "correct"


def test_mbpp_reference_code_passes_all_388_eval_tasks():
    items = load_eval_items("mbpp")
    assert len(items) == 388
    rows = mbpp.score(items, [fenced(i.reference) for i in items], CTX)
    failed = [(r["item_id"], r["error_tail"][-200:]) for r in rows if r["correct"] != 1.0]
    assert failed == []
    assert mbpp.summarize(rows)["pass@1"] == 100.0


def test_mbpp_wrong_solutions_fail():
    items = load_eval_items("mbpp")[:40]
    # Same function name (taken from the asserts), wrong behaviour.
    names = [i.extra["test_list"][0].split("assert", 1)[1].strip().lstrip("(").split("(")[0].strip() for i in items]
    wrong = [fenced(f"def {name}(*args, **kwargs):\n    return 12345") for name in names]
    rows = mbpp.score(items, wrong, CTX)
    assert all(r["verdict"] == "wrong" and r["correct"] == 0.0 for r in rows)
    assert mbpp.summarize(rows)["pass@1"] == 0.0


def test_no_code_and_timeouts_count_as_failures():
    item = load_eval_items("mbpp")[0]
    ctx = ScoreContext(allow_code_execution=True, sandbox_timeout_s=1.0, pass_k=(1,))
    outputs = ["I cannot solve this.", fenced("while True:\n    pass"), fenced(item.reference)]
    rows = mbpp.score([item] * 3, outputs, ctx)
    assert [r["verdict"] for r in rows] == ["no_answer", "timeout", "correct"]
    assert [r["correct"] for r in rows] == [0.0, 0.0, 1.0]
    assert rows[0]["extracted"] is None and rows[0]["status"] is None


# ---------------------------------------------------------------------------------------------
# Extraction, prompts, few-shot demos
# ---------------------------------------------------------------------------------------------


def test_extract_code_prefers_python_block_then_longest():
    text = "```text\nnot code at all, but longer than the python block\n```\n```python\ndef f():\n    return 1\n```"
    assert extract_code(text) == ("def f():\n    return 1", "python_block")
    two = "```python\ndef f(x):\n    return x + 1\n```\nUsage:\n```python\nf(1)\n```"
    assert extract_code(two)[0] == "def f(x):\n    return x + 1"
    assert extract_code("```\ndef g():\n    pass\n```") == ("def g():\n    pass", "fenced_block")
    assert extract_code("<think>```python\nwrong()\n```</think>```python\nright()\n```")[0] == "right()"
    assert extract_code("```python\ndef h():\n    return 2")[0] == "def h():\n    return 2"  # truncated answer
    assert extract_code("def k(a):\n    return a") == ("def k(a):\n    return a", "raw")
    # Canaries: prose is not code, and an empty answer has none.
    assert extract_code("The answer is to return the sum of the list.") == (None, None)
    assert extract_code("") == (None, None) and extract_code(None) == (None, None)
    # Body-only answers keep their indentation (the stub's def needs it).
    assert extract_code("```python\n    return x\n```")[0] == "    return x"


def test_prompts_ask_for_a_python_block_and_demos_are_seeds():
    item = load_eval_items("mbpp")[0]
    demos = mbpp.fewshot_examples(3)
    messages = mbpp.build_messages(item, demos)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    assert "```python" in messages[-1]["content"] and item.extra["test_list"][0] in messages[-1]["content"]
    eval_prompts = {i.prompt for i in load_eval_items("mbpp")}
    assert not any(q in eval_prompts for q, _ in demos)
    assert len(MBPP_SEED_IDS) >= 100
    with pytest.raises(ValueError, match="fewshot k=1000"):
        mbpp.fewshot_examples(1000)
    he_item = load_eval_items("humaneval")[0]
    he_demos = humaneval.fewshot_examples(3)
    he_messages = humaneval.build_messages(he_item, he_demos)
    assert he_item.prompt.rstrip() in he_messages[-1]["content"] and len(he_messages) == 7
    assert he_demos == humaneval.fewshot_examples(3)  # deterministic


def test_fewshot_demo_answers_pass_their_own_tests():
    # The demo answers are in the format the scorer reads, and they are right.
    from agorabench.generation.seeds.offline import mbpp_seed_docs

    docs = sorted(mbpp_seed_docs(), key=lambda d: int(d["task_id"]))[:3]
    items = [mbpp.EvalItem(f"mbpp/{d['task_id']}", "", None, {"test_list": d["test_list"]}) for d in docs]
    rows = mbpp.score(items, [a for _, a in mbpp.fewshot_examples(3)], CTX)
    assert [r["verdict"] for r in rows] == ["correct"] * 3
    for stub, answer in humaneval.fewshot_examples(3):
        stub_functions = [n.name for n in ast.parse(stub).body if isinstance(n, ast.FunctionDef)]
        code, _ = extract_code(answer)
        code_functions = [n.name for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)]
        assert len(stub_functions) == 1 and stub_functions[0] in code_functions


# ---------------------------------------------------------------------------------------------
# pass@k
# ---------------------------------------------------------------------------------------------


def test_pass_at_k_estimator():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(5, 4, 2) == 1.0 and pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(200, 3, 10) == pytest.approx(1 - math.comb(197, 10) / math.comb(200, 10))
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_summarize_groups_samples_by_item():
    rows = [{"item_id": "a", "correct": c, "verdict": "x", "pass_k": [1, 2, 5]} for c in (1.0, 0.0, 0.0)]
    rows += [{"item_id": "b", "correct": c, "verdict": "x", "pass_k": [1, 2, 5]} for c in (1.0, 1.0, 0.0)]
    out = summarize_pass_at_k(rows)
    assert out["pass@1"] == pytest.approx(100 * (1 / 3 + 2 / 3) / 2)
    assert out["pass@2"] == pytest.approx(100 * ((1 - 1 / 3) + 1.0) / 2)
    assert "pass@5" not in out  # only 3 samples per item
    assert out["n_items"] == 2 and out["n_samples"] == 6
    # Canary: treating the 6 rows as 6 items would give a different pass@2 (it is not even defined with n=1).
    flat = [dict(r, item_id=str(i)) for i, r in enumerate(rows)]
    assert "pass@2" not in summarize_pass_at_k(flat)


def test_score_with_several_samples_per_item():
    item = load_eval_items("humaneval")[0]
    right, wrong = fenced(item.prompt + item.reference), fenced("def nothing():\n    pass")
    rows = humaneval.score([item] * 4, [right, wrong, wrong, right], CTX)
    out = humaneval.summarize(rows)
    assert out["pass@1"] == pytest.approx(50.0) and out["pass@2"] == pytest.approx(100 * (1 - 1 / 6))


# ---------------------------------------------------------------------------------------------
# Hostile programs
# ---------------------------------------------------------------------------------------------

HOSTILE = {
    "fork_bomb": "import os\nwhile True:\n    os.fork()\n",
    "fork_once_daemon": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n",
    "infinite_loop": "while True:\n    pass\n",
    "alloc_10gb": "x = bytearray(10 * 1024 ** 3)\nassert len(x) > 0\n",
    "unbounded_output": "while True:\n    print('spam' * 1000)\n",
    "os_exit_before_asserts": "import os\nos._exit(0)\nassert False\n",
    "sys_exit_before_asserts": "import sys\nsys.exit(0)\nassert False\n",
    "ignore_signals": (
        "import signal\nfor s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
        "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n"
    ),
    "child_env_secret": f"import os\nassert os.environ.get('AGORA_TEST_SECRET') == {SECRET!r}\n",
    "parent_env_secret": (
        "import os\ndata = open(f'/proc/{os.getppid()}/environ', 'rb').read()\n"
        f"assert {SECRET!r}.encode() in data\n"
    ),
    # The harness binds os._exit before the program runs: replacing it does not turn an early exit into a pass.
    "patch_os_exit": "import os, sys\nos._exit = lambda code: None\nsys.exit(0)\nassert False\n",
    # Writing the token fails; the harness must exit at once instead of waiting for the thread.
    "close_stdout_with_thread": "import os, threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()\n"
    "os.close(1)\n",
    # Canaries: the sandbox must not block ordinary work.
    "canary_ok": "import re, math, heapq, itertools, collections, threading\nt = threading.Thread(target=print)\n"
    "t.start(); t.join()\nassert math.gcd(12, 18) == 6\nimport os\nassert os.environ['AGORA_SANDBOX_RUN']\n",
    "canary_wrong": "assert sorted([3, 1, 2]) == [3, 2, 1]\n",
}


def _write_outside_program(paths: list[Path]) -> str:
    # Tries every path and carries on: the test judges by the file system, not by the program's status.
    tries = [f"try:\n    open({str(p)!r}, 'w').write('escaped')\nexcept OSError:\n    pass\n" for p in paths]
    return "".join(tries)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """{mode: {name: ExecResult}} plus the listener, paths and timing the tests check."""
    os.environ["AGORA_TEST_SECRET"] = SECRET  # in the parent only
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    outside = tmp_path_factory.mktemp("outside")
    # A second target outside /tmp: bwrap gives the program its own empty /tmp, so test a shared path too.
    var_dir = Path(tempfile.mkdtemp(prefix="agora-test-outside-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    targets = [outside / "escaped.txt", var_dir / "escaped.txt"]
    programs = dict(HOSTILE)
    programs["socket_loopback"] = (
        f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\ns.sendall(b'hello')\n"
    )
    programs["write_outside"] = _write_outside_program(targets)
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "agora-sbx-*")))
    results, walls = {}, {}
    try:
        for mode, (isolation, zygote) in MODES.items():
            config = sandbox.SandboxConfig(
                allow_code_execution=True, timeout_s=HOSTILE_TIMEOUT_S, workers=2, isolation=isolation,
                tail_bytes=2048, max_output_bytes=1 << 20, zygote=zygote,
            )  # fmt: skip
            start = time.monotonic()
            out = sandbox.run_programs(list(programs.values()), config)
            walls[mode] = time.monotonic() - start
            results[mode] = dict(zip(programs, out))
        accepted = []
        try:
            while True:
                accepted.append(listener.accept())
        except BlockingIOError:
            pass
        # Only this fixture's sandboxes (a work dir is named for its run): a pipeline running beside the
        # tests makes and removes its own.
        ours = {r.run_id for by_name in results.values() for r in by_name.values()}
        leftovers = {d for d in set(glob.glob(os.path.join(tempfile.gettempdir(), "agora-sbx-*"))) - before
                     if os.path.basename(d).split("-")[2] in ours}
        yield {"results": results, "accepted": accepted, "targets": targets, "walls": walls, "leftovers": leftovers}
    finally:
        os.environ.pop("AGORA_TEST_SECRET", None)
        listener.close()
        shutil.rmtree(var_dir, ignore_errors=True)


def _survivors(run_id: str) -> list[int]:
    # The kernel tears a PID namespace down asynchronously: give stragglers a moment before calling it a leak.
    for _ in range(40):
        pids = sandbox.surviving_processes(run_id)
        if not pids:
            return []
        time.sleep(0.05)
    return pids


@pytest.mark.parametrize("mode", MODES)
def test_hostile_programs_all_fail_and_leave_no_process(hostile, mode):
    results = hostile["results"][mode]
    for name, result in results.items():
        assert result.isolation == MODES[mode][0]
        assert _survivors(result.run_id) == [], name
        if name == "canary_ok":
            assert result.passed, result.stderr_tail
        elif name != "write_outside":  # that one may reach its end; the file system check is below
            assert not result.passed and result.status != "passed", name
    assert hostile["leftovers"] == set()  # every work dir was removed


@pytest.mark.parametrize("mode", MODES)
def test_hostile_programs_fail_for_the_right_reason(hostile, mode):
    r = hostile["results"][mode]
    assert r["infinite_loop"].status == "timeout" and r["ignore_signals"].status == "timeout"
    assert r["infinite_loop"].duration_s < HOSTILE_TIMEOUT_S + 1.5
    assert r["alloc_10gb"].status == "failed" and "MemoryError" in r["alloc_10gb"].stderr_tail
    assert r["unbounded_output"].status in ("killed", "timeout")
    assert len(r["unbounded_output"].stdout_tail) <= 2048
    assert r["os_exit_before_asserts"].returncode == 0  # exit code 0, yet not a pass: no token
    assert "SystemExit" in r["sys_exit_before_asserts"].stderr_tail
    assert r["canary_wrong"].status == "failed" and "AssertionError" in r["canary_wrong"].stderr_tail
    assert r["patch_os_exit"].status == "failed" and "SystemExit" in r["patch_os_exit"].stderr_tail
    assert r["close_stdout_with_thread"].status == "failed"  # not "timeout": nobody waited for the thread
    if r["fork_bomb"].seccomp:  # process creation is refused outright
        assert r["fork_bomb"].status == "failed" and "PermissionError" in r["fork_bomb"].stderr_tail
        assert r["fork_once_daemon"].status == "failed"
    # The whole hostile batch (two 2 s timeouts among them) ran in bounded time.
    assert hostile["walls"][mode] < 4 * HOSTILE_TIMEOUT_S + 6


@pytest.mark.parametrize("mode", MODES)
def test_a_left_work_dir_is_named_for_its_run(mode, monkeypatch):
    """What the leftover check above relies on (the canary of its filter): a work dir that was not
    removed carries the run_id of the results it served, so it is told apart from a pipeline's beside."""
    isolation, zygote = MODES[mode]
    remove = shutil.rmtree
    monkeypatch.setattr(sandbox.shutil, "rmtree", lambda *a, **k: None)  # leave every work dir
    config = sandbox.SandboxConfig(allow_code_execution=True, timeout_s=5, workers=1, isolation=isolation,
                                   zygote=zygote)
    [result] = sandbox.run_programs(["pass"], config)
    left = glob.glob(os.path.join(tempfile.gettempdir(), f"agora-sbx-{result.run_id}-*"))
    for d in left:
        remove(d, ignore_errors=True)  # the real rmtree: the stand-in is still in place
    assert result.passed and len(left) == 1


@pytest.mark.parametrize("mode", MODES)
def test_no_file_written_outside_the_work_dir(hostile, mode):
    result = hostile["results"][mode]["write_outside"]
    assert result.status in ("passed", "failed")  # it ran
    for target in hostile["targets"]:
        assert not target.exists(), f"{mode}: the program wrote {target}"


def test_no_network_connection_reaches_the_host(hostile):
    # bwrap: own network namespace, and seccomp refuses AF_INET sockets in both modes. Documented behaviour
    # without seccomp (an architecture other than x86_64/aarch64) and without bwrap: the connection succeeds.
    results = hostile["results"]
    leaky = [mode for mode in MODES if mode == "process" and not results[mode]["socket_loopback"].seccomp]
    assert len(hostile["accepted"]) == len(leaky)
    for mode in MODES:
        if mode not in leaky:
            assert not results[mode]["socket_loopback"].passed


@pytest.mark.parametrize("mode", MODES)
def test_parent_environment_is_not_visible(hostile, mode):
    results = hostile["results"][mode]
    isolation = MODES[mode][0]
    assert os.environ.get("AGORA_TEST_SECRET") == SECRET  # the secret was really there in the parent
    assert not results["child_env_secret"].passed  # the child's own environment is scrubbed
    # The parent's /proc/<pid>/environ: hidden by bwrap's PID namespace. Without bwrap, a root parent is
    # still safe (the child runs with no capabilities, the kernel refuses it the parent's environ), but a
    # same-user child of a non-root parent can read it: the documented limit of the "process" level.
    readable = isolation == "process" and os.geteuid() != 0
    assert results["parent_env_secret"].passed == readable


SIGNAL_HOST = """
import ctypes, fcntl, os
libc = ctypes.CDLL(None, use_errno=True)
info = ctypes.create_string_buffer(128)
info[8:12] = (-1).to_bytes(4, "little", signed=True)  # si_code = SI_QUEUE, as sigqueue() sends it
nr = {{"x86_64": 129, "aarch64": 138}}[os.uname().machine]  # rt_sigqueueinfo
libc.syscall(nr, {first}, 9, info)  # SIGKILL
r, w = os.pipe()  # SIGIO: the pipe's owner gets a signal (SIGKILL, by F_SETSIG) when data arrives
try:
    fcntl.fcntl(r, fcntl.F_SETOWN, {second})
    fcntl.fcntl(r, 10, 9)  # F_SETSIG
    fcntl.fcntl(r, fcntl.F_SETFL, os.O_ASYNC)
    os.write(w, b"x")
except OSError:
    pass
"""


def _signal_host_processes(config: sandbox.SandboxConfig) -> list[bool]:
    """Run SIGNAL_HOST against two fresh `sleep` processes of ours; which of them are still alive after."""
    victims = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    try:
        sandbox.run_program(SIGNAL_HOST.format(first=victims[0].pid, second=victims[1].pid), config)
        for _ in range(20):  # SIGKILL is delivered asynchronously
            if all(v.poll() is not None for v in victims):
                break
            time.sleep(0.05)
        return [v.poll() is None for v in victims]
    finally:
        for v in victims:
            v.kill()
            v.wait()


@pytest.mark.skipif(sandbox.seccomp_arch() is None, reason=NO_SECCOMP)
@pytest.mark.parametrize("mode", MODES)
def test_no_signal_reaches_a_host_process(mode, monkeypatch):
    # kill() is filtered to the program itself; rt_sigqueueinfo and SIGIO (F_SETOWN) reach other processes too.
    isolation, zygote = MODES[mode]
    config = sandbox.SandboxConfig(
        allow_code_execution=True, timeout_s=5, workers=1, isolation=isolation, zygote=zygote
    )
    assert _signal_host_processes(config) == [True, True]
    if mode == "process":  # canary: without the filter, both ways kill (a non-root parent's too: same user)
        monkeypatch.setattr(sandbox, "_load_seccomp", lambda *args, **kwargs: None)
        assert _signal_host_processes(config) == [False, False]


# ---------------------------------------------------------------------------------------------
# One program cannot reach the next (zygote mode: the same sandbox runs them one after another)
# ---------------------------------------------------------------------------------------------

TRACE = uuid.uuid4().hex[:12]
SHM_KEY = 0x41470000 + os.getpid() % 0xFFFF
LEAVE = f"""
import builtins, ctypes, os, sys, threading, time
def attempt(f):
    try:
        f()
    except Exception:
        pass
attempt(lambda: open("left.txt", "w").write("x"))
attempt(lambda: open("/tmp/agora-left-{TRACE}", "w").write("x"))
attempt(lambda: open("/dev/shm/agora-left-{TRACE}", "w").write("x"))
def linger():  # a thread still running when the program ends
    time.sleep(0.3)
    attempt(lambda: open("ghost.txt", "w").write("boo"))
threading.Thread(target=linger).start()
ctypes.CDLL(None).shmget({SHM_KEY}, 4096, 0o1000 | 0o600)  # IPC_CREAT
os.environ["AGORA_LEFT"] = "1"
import math, typing
typing.List = None
sys.modules["math"] = None
builtins.len = lambda x: 0
"""
FIND = f"""
import ctypes, os, sys
found = []
if sorted(os.listdir(".")) != ["prog.py"]:
    found.append("work dir")
for path in ("/tmp/agora-left-{TRACE}", "/dev/shm/agora-left-{TRACE}"):
    if os.path.exists(path):
        found.append(path)
shm = ctypes.CDLL(None).shmget({SHM_KEY}, 0, 0)
if shm != -1:
    found.append("shm")
    ctypes.CDLL(None).shmctl(shm, 0, None)  # IPC_RMID: do not leave it on the host either
if len([1, 2]) != 2:
    found.append("builtins")
try:
    import math
except ImportError:
    found.append("sys.modules")
import typing
if typing.List is None:
    found.append("typing")
if "AGORA_LEFT" in os.environ:
    found.append("environ")
print(*found, sep="\\n")
assert not found
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_program_leaves_nothing_for_the_next_one(mode):
    isolation, zygote = MODES[mode]
    programs = {
        "leave": LEAVE,
        "find": "import time\ntime.sleep(0.5)\n" + FIND,  # long enough for the lingering thread's file
        "leave_and_find": LEAVE + "time.sleep(0.5)\n" + FIND,  # canary: the same checks do see traces
        "find_again": FIND,
    }
    # One worker: in zygote mode all four run in the same sandbox, one after the other.
    config = sandbox.SandboxConfig(
        allow_code_execution=True, timeout_s=5, workers=1, isolation=isolation, zygote=zygote
    )
    r = dict(zip(programs, sandbox.run_programs(list(programs.values()), config)))
    assert r["find"].passed, r["find"].stdout_tail + r["find"].stderr_tail
    assert r["find_again"].passed, r["find_again"].stdout_tail + r["find_again"].stderr_tail
    seen = set(r["leave_and_find"].stdout_tail.split())
    assert not r["leave_and_find"].passed
    assert {"builtins", "sys.modules", "typing", "environ"} <= seen
    if isolation == "bwrap":
        assert "work" in seen  # left.txt / ghost.txt (the process level may not write at all)
    if zygote:
        assert len({x.run_id for x in r.values()}) == 1  # really one sandbox for all four


def _zygote_pid(run_id: str) -> int:
    # Of the sandbox's processes (outer bwrap, bwrap's init, zygote) the zygote is the one running Python.
    for pid in sandbox.surviving_processes(run_id):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if f.read().split(b"\0")[0] == sys.executable.encode():
                return pid
    raise AssertionError(f"no zygote for run {run_id}")


PEEK_AT_PARENT = """
import os
ppid = os.getppid()
paths = [f"/proc/{ppid}/fd/{n}" for n in os.listdir(f"/proc/{ppid}/fd")]
for path in paths + [f"/proc/{ppid}/mem", f"/proc/{ppid}/environ"]:
    try:
        os.close(os.open(path, os.O_RDONLY))
        print("OPENED", path)
    except OSError:
        pass
os.close(os.open(f"/proc/self/fd/0", os.O_RDONLY))  # canary: the same calls work on itself
print("SELF")
"""


@pytest.mark.skipif(not ZYGOTE_MODES, reason="zygote mode needs bwrap and seccomp")
def test_zygote_survives_attacks_from_its_programs_and_a_timeout_replaces_it():
    programs = {
        "kill_zygote": (
            "import os, signal\nfor pid in (os.getppid(), 1, -1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
            "        print('killed', pid)\n    except PermissionError:\n        print('refused', pid)\n"
        ),
        "peek_at_zygote": PEEK_AT_PARENT,
        "after_attacks": "print('still here')\n",
        "hang": "while True:\n    pass\n",
        "after_hang": "print('new sandbox')\n",
    }
    config = sandbox.SandboxConfig(allow_code_execution=True, timeout_s=1.0, workers=1)
    r = dict(zip(programs, sandbox.run_programs(list(programs.values()), config)))
    assert r["kill_zygote"].stdout_tail.count("refused") == 3 and "killed" not in r["kill_zygote"].stdout_tail
    assert "SELF" in r["peek_at_zygote"].stdout_tail and "OPENED" not in r["peek_at_zygote"].stdout_tail
    assert r["after_attacks"].passed
    # The same sandbox lived through both attacks; the timeout replaced it (canary: a new run id is visible).
    assert r["kill_zygote"].run_id == r["peek_at_zygote"].run_id == r["after_attacks"].run_id == r["hang"].run_id
    assert r["hang"].status == "timeout"
    assert r["after_hang"].passed and r["after_hang"].run_id != r["hang"].run_id
    for result in r.values():
        assert _survivors(result.run_id) == []


@pytest.mark.skipif(not ZYGOTE_MODES, reason="zygote mode needs bwrap and seccomp")
def test_zygote_killed_from_outside_is_replaced():
    zygote = sandbox._Zygote(sandbox.SandboxConfig(allow_code_execution=True, timeout_s=5, workers=1))
    run_ids = []
    try:
        first, again = zygote.run("print(1)"), zygote.run("print(2)")
        assert first.passed and again.passed and again.run_id == first.run_id  # canary: kept while healthy
        os.kill(_zygote_pid(first.run_id), signal.SIGKILL)  # while idle: the next program gets a new sandbox
        assert _survivors(first.run_id) == []  # bwrap ends with its zygote (a kill is not instantaneous)
        second = zygote.run("print(3)")
        assert second.passed and second.run_id != first.run_id
        killer = threading.Timer(0.3, os.kill, (_zygote_pid(second.run_id), signal.SIGKILL))
        killer.start()  # during a program: that program is not a pass, and it does not wait out its clock
        during = zygote.run("import time\ntime.sleep(2)\n")
        killer.join()
        assert during.status == "error" and not during.passed and "died" in during.detail
        assert during.duration_s < 1.5
        after = zygote.run("print(4)")
        assert after.passed and after.run_id != second.run_id
        run_ids = [first.run_id, second.run_id, after.run_id]
    finally:
        zygote.close()
    for run_id in run_ids:
        assert _survivors(run_id) == []


@pytest.mark.skipif(not ZYGOTE_MODES, reason="zygote mode needs bwrap and seccomp")
def test_zygote_replaced_when_a_process_outlives_its_program(monkeypatch):
    # seccomp refuses fork, so no program can leave a process behind; take the filter away to check that
    # the zygote's own count of the PID namespace would still catch one.
    allow_all = struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000)  # RET ALLOW
    monkeypatch.setattr(sandbox, "seccomp_filter", lambda *args, **kwargs: allow_all)
    programs = {
        "fork_and_wait": "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\n",
        "daemon": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n",
        "after": "print('next')\n",
    }
    config = sandbox.SandboxConfig(allow_code_execution=True, timeout_s=5, workers=1)
    r = dict(zip(programs, sandbox.run_programs(list(programs.values()), config)))
    assert r["fork_and_wait"].passed  # canary: forking as such is not what is caught
    assert r["daemon"].run_id == r["fork_and_wait"].run_id
    assert r["daemon"].status == "failed" and not r["daemon"].passed and "outlived" in r["daemon"].detail
    assert r["after"].passed and r["after"].run_id != r["daemon"].run_id
    assert _survivors(r["daemon"].run_id) == []


# ---------------------------------------------------------------------------------------------
# The seccomp filter: every refused syscall fails with the errno the sandbox promises
# ---------------------------------------------------------------------------------------------

# The promise, written out independently of agorabench.sandbox's rule tables. Which filter a mode gets:
# a fresh bwrap per program the mildest ("fresh"), the zygote's children "shared" (they share the sandbox with
# the zygote), the process level "strict". label: (syscall, its arguments as source evaluated in the probe,
# the filters that refuse it, errno). The arguments are chosen so that the kernel itself would answer something
# else (or do something harmless), so the errno can only come from the filter; only pivot_root, reboot,
# move_mount, fsopen, fsmount and fspick get EPERM from a capability-less kernel anyway.
EPERM, ENOSYS = 1, 38
ALL, SHARED, STRICT = {"fresh", "shared", "strict"}, {"shared", "strict"}, {"strict"}
VARIANT = {"bwrap-zygote": "shared", "bwrap-fresh": "fresh", "process": "strict"}
AT = "-100"  # AT_FDCWD
DENIED = {
    "fork": ("fork", "", ALL, EPERM),
    "vfork": ("vfork", "", ALL, EPERM),
    "clone_process": ("clone", "17, 0, 0, 0, 0", ALL, EPERM),  # SIGCHLD, no CLONE_THREAD: a fork
    "clone3": ("clone3", "0, 0", ALL, ENOSYS),
    "socket_inet": ("socket", "2, 1, 0", ALL, EPERM),
    "socket_unix_high_bits": ("socket", "(1 << 32) | 1, 1, 0", ALL, EPERM),  # junk above the int: refused
    "io_uring_setup": ("io_uring_setup", "1, BAD", ALL, EPERM),
    "io_uring_enter": ("io_uring_enter", "-1, 0, 0, 0, 0, 0", ALL, EPERM),
    "io_uring_register": ("io_uring_register", "-1, 0, 0, 0", ALL, EPERM),
    "kill_parent": ("kill", "PPID, 0", SHARED, EPERM),
    "kill_group": ("kill", "0, 0", SHARED, EPERM),
    "kill_everyone": ("kill", "-1, 0", SHARED, EPERM),
    "tgkill_parent": ("tgkill", "PPID, PPID, 0", SHARED, EPERM),
    "rt_sigqueueinfo_parent": ("rt_sigqueueinfo", "PPID, 0, INFO", SHARED, EPERM),
    "rt_tgsigqueueinfo_parent": ("rt_tgsigqueueinfo", "PPID, PPID, 0, INFO", SHARED, EPERM),
    "tkill_self": ("tkill", "TID, 0", SHARED, EPERM),
    "pidfd_send_signal": ("pidfd_send_signal", "-1, 0, 0, 0", SHARED, EPERM),
    "fcntl_setown": ("fcntl", "0, 8, ME", SHARED, EPERM),
    "fcntl_setown_high_bits": ("fcntl", "0, (1 << 32) | 8, ME", SHARED, EPERM),  # the kernel reads 32 bits
    "fcntl_setown_ex": ("fcntl", "0, 15, BAD", SHARED, EPERM),
    "ioctl_fiosetown": ("ioctl", "0, 0x8901, BAD", SHARED, EPERM),
    "ioctl_siocspgrp": ("ioctl", "0, 0x8902, BAD", SHARED, EPERM),
    "ptrace": ("ptrace", "0xFFFF, PPID, 0, 0", SHARED, EPERM),
    "process_vm_readv": ("process_vm_readv", "ME, 0, 0, 0, 0, 1", SHARED, EPERM),
    "process_vm_writev": ("process_vm_writev", "ME, 0, 0, 0, 0, 1", SHARED, EPERM),
    "pidfd_getfd": ("pidfd_getfd", "-1, 0, 0", SHARED, EPERM),
    "process_madvise": ("process_madvise", "-1, 0, 0, 0, 0", SHARED, EPERM),
    "kcmp": ("kcmp", "ME, ME, 99, 0, 0", SHARED, EPERM),
    "perf_event_open": ("perf_event_open", "BAD, 0, -1, -1, 0", SHARED, EPERM),
    "mount": ("mount", "BAD, BAD, BAD, 0, BAD", SHARED, EPERM),
    "umount2": ("umount2", "BAD, 0", SHARED, EPERM),
    "chroot": ("chroot", "BAD", SHARED, EPERM),
    "pivot_root": ("pivot_root", "BAD, BAD", SHARED, EPERM),
    "setns": ("setns", "-1, 0", SHARED, EPERM),
    "unshare": ("unshare", "1", SHARED, EPERM),
    "reboot": ("reboot", "0, 0, 0, 0", SHARED, EPERM),
    "open_tree": ("open_tree", "-1, BAD, 0", SHARED, EPERM),
    "move_mount": ("move_mount", "-1, BAD, -1, BAD, 0", SHARED, EPERM),
    "fsopen": ("fsopen", "BAD, 0", SHARED, EPERM),
    "fsconfig": ("fsconfig", "-1, 99, 0, 0, 0", SHARED, EPERM),
    "fsmount": ("fsmount", "-1, 0, 0", SHARED, EPERM),
    "fspick": ("fspick", "-1, BAD, 0", SHARED, EPERM),
    "mount_setattr": ("mount_setattr", "-1, BAD, 0, 0, 0", SHARED, EPERM),
    "shmget": ("shmget", "KEY, 0, 0", SHARED, EPERM),
    "semget": ("semget", "KEY, 0, 0", SHARED, EPERM),
    "msgget": ("msgget", "KEY, 0", SHARED, EPERM),
    "mq_open": ("mq_open", "BAD, 0, 0, 0", SHARED, EPERM),
    "add_key": ("add_key", "BAD, BAD, 0, 0, 0", SHARED, EPERM),
    "request_key": ("request_key", "BAD, BAD, 0, 0", SHARED, EPERM),
    "keyctl": ("keyctl", "9999, 0, 0, 0, 0", SHARED, EPERM),
    "open_wronly": ("open", "b'new.txt', 0o1 | 0o100, 0o600", STRICT, EPERM),
    "open_rdwr": ("open", "b'prog.py', 0o2", STRICT, EPERM),
    "open_trunc": ("open", "b'prog.py', 0o1000", STRICT, EPERM),
    "openat_creat": ("openat", f"{AT}, b'new.txt', 0o100, 0o600", STRICT, EPERM),
    "openat_wronly": ("openat", f"{AT}, b'missing', 0o1", STRICT, EPERM),
    "openat2": ("openat2", f"{AT}, b'prog.py', 0, 0", STRICT, ENOSYS),
    "creat": ("creat", "b'new.txt', 0o600", STRICT, EPERM),
    "unlink": ("unlink", "b'missing'", STRICT, EPERM),
    "unlinkat": ("unlinkat", f"{AT}, b'missing', 0", STRICT, EPERM),
    "rename": ("rename", "b'missing', b'x'", STRICT, EPERM),
    "renameat": ("renameat", f"{AT}, b'missing', {AT}, b'x'", STRICT, EPERM),
    "renameat2": ("renameat2", f"{AT}, b'missing', {AT}, b'x', 0", STRICT, EPERM),
    "mkdir": ("mkdir", "b'newdir', 0o700", STRICT, EPERM),
    "mkdirat": ("mkdirat", f"{AT}, b'newdir', 0o700", STRICT, EPERM),
    "rmdir": ("rmdir", "b'missing'", STRICT, EPERM),
    "link": ("link", "b'missing', b'x'", STRICT, EPERM),
    "linkat": ("linkat", f"{AT}, b'missing', {AT}, b'x', 0", STRICT, EPERM),
    "symlink": ("symlink", "b't', b'missing/x'", STRICT, EPERM),
    "symlinkat": ("symlinkat", f"b't', {AT}, b'missing/x'", STRICT, EPERM),
    "chmod": ("chmod", "b'missing', 0o600", STRICT, EPERM),
    "fchmod": ("fchmod", "-1, 0o600", STRICT, EPERM),
    "fchmodat": ("fchmodat", f"{AT}, b'missing', 0o600", STRICT, EPERM),
    "fchmodat2": ("fchmodat2", f"{AT}, b'missing', 0o600, 0", STRICT, EPERM),
    "chown": ("chown", "b'missing', -1, -1", STRICT, EPERM),
    "fchown": ("fchown", "-1, -1, -1", STRICT, EPERM),
    "lchown": ("lchown", "b'missing', -1, -1", STRICT, EPERM),
    "fchownat": ("fchownat", f"{AT}, b'missing', -1, -1, 0", STRICT, EPERM),
    "truncate": ("truncate", "b'missing', 0", STRICT, EPERM),
    "mknod": ("mknod", "b'missing/x', 0o10600, 0", STRICT, EPERM),
    "mknodat": ("mknodat", f"{AT}, b'missing/x', 0o10600, 0", STRICT, EPERM),
    "setxattr": ("setxattr", "b'missing', b'user.x', 0, 0, 0", STRICT, EPERM),
    "lsetxattr": ("lsetxattr", "b'missing', b'user.x', 0, 0, 0", STRICT, EPERM),
    "fsetxattr": ("fsetxattr", "-1, b'user.x', 0, 0, 0", STRICT, EPERM),
    "setxattrat": ("setxattrat", f"{AT}, b'missing', 0, b'user.x', 0, 0", STRICT, EPERM),
    "removexattr": ("removexattr", "b'missing', b'user.x'", STRICT, EPERM),
    "lremovexattr": ("lremovexattr", "b'missing', b'user.x'", STRICT, EPERM),
    "fremovexattr": ("fremovexattr", "-1, b'user.x'", STRICT, EPERM),
    "removexattrat": ("removexattrat", f"{AT}, b'missing', 0, b'user.x'", STRICT, EPERM),
    "utime": ("utime", "b'missing', 0", STRICT, EPERM),
    "utimes": ("utimes", "b'missing', 0", STRICT, EPERM),
    "utimensat": ("utimensat", f"{AT}, b'missing', 0, 0", STRICT, EPERM),
    "futimesat": ("futimesat", f"{AT}, b'missing', 0", STRICT, EPERM),
}
# The canary next to every refusal: what the filter must let through, in every mode (0 = the call succeeded).
ALLOWED = {
    "socket_unix": ("socket", "1, 1, 0"),
    "kill_self": ("kill", "ME, 0"),
    "tgkill_self": ("tgkill", "ME, TID, 0"),
    "rt_sigqueueinfo_self": ("rt_sigqueueinfo", "ME, 0, INFO"),
    "fcntl_getown": ("fcntl", "0, 9"),
    "ioctl_fionread": ("ioctl", "0, 0x541B, NREAD"),
    "openat_read": ("openat", f"{AT}, b'prog.py', 0"),
    "getppid": ("getppid", ""),
}
# Syscalls newer than some libseccomp releases' tables; from Linux 5.1 on one number fits every architecture.
NEW_SYSCALLS = {"setxattrat": 463, "removexattrat": 466}

PROBE = """
import ctypes, json, os, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ME, PPID, TID = os.getpid(), os.getppid(), threading.get_native_id()
BAD = 1  # an address where nothing is mapped
KEY = 0x41470000 + ME % 0xFFFF  # a System V IPC key nobody uses
INFO = ctypes.create_string_buffer(128)
INFO[8:12] = (-1).to_bytes(4, "little", signed=True)  # si_code = SI_QUEUE, as sigqueue() sends it
NREAD = ctypes.create_string_buffer(8)
def call(nr, *args):
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(nr), *args)
    if result == 0 and os.getpid() != ME:  # a child the filter should have refused: gone at once
        os._exit(0)
    return 0 if result >= 0 else ctypes.get_errno()
results = {{label: call(nr, *args) for label, nr, args in [{calls}]}}
thread = threading.Thread(target=lambda: None)
thread.start()
thread.join()
results["thread"] = 0
print(json.dumps(results))
"""


def _syscall_numbers(names) -> dict[str, int]:
    """This machine's numbers, from libseccomp's tables (syscalls it lacks are left out)."""
    pyseccomp = pytest.importorskip("pyseccomp")
    numbers = {}
    for name in names:
        nr = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
        if nr == -1:
            nr = NEW_SYSCALLS.get(name, -1)
        if nr >= 0:
            numbers[name] = nr
    return numbers


def _probe_errnos(mode: str) -> dict[str, int]:
    """Run the probe in `mode` and return {label: 0 or errno}."""
    isolation, zygote = MODES[mode]
    calls = {label: (spec[0], spec[1]) for label, spec in {**DENIED, **ALLOWED}.items()}
    numbers = _syscall_numbers({name for name, _ in calls.values()})
    source = ", ".join(f"({label!r}, {numbers[name]}, ({args}{',' if args else ''}))"
                       for label, (name, args) in calls.items() if name in numbers)  # fmt: skip
    config = sandbox.SandboxConfig(
        allow_code_execution=True, timeout_s=10, workers=1, isolation=isolation, zygote=zygote, tail_bytes=1 << 16
    )
    result = sandbox.run_program(PROBE.format(calls=source), config)
    assert result.passed and result.seccomp, result.stdout_tail + result.stderr_tail
    return json.loads(result.stdout_tail.strip().splitlines()[-1])


def _mismatches(mode: str, seen: dict[str, int]) -> dict[str, tuple[int, int]]:
    """{label: (expected, seen)} for every call whose outcome differs from the promise for `mode`."""
    variant = VARIANT[mode]
    expected = {label: code for label, (_, _, variants, code) in DENIED.items() if variant in variants}
    expected |= {label: 0 for label in ALLOWED} | {"thread": 0}
    return {label: (code, seen[label]) for label, code in expected.items() if label in seen and seen[label] != code}


@pytest.mark.skipif(sandbox.seccomp_arch() is None, reason=NO_SECCOMP)
@pytest.mark.parametrize("mode", MODES)
def test_each_refused_syscall_fails_with_the_promised_errno(mode):
    seen = _probe_errnos(mode)
    assert _mismatches(mode, seen) == {}
    # Every call of the promise was made (where this architecture has it), the canaries included.
    numbers = _syscall_numbers({spec[0] for spec in {**DENIED, **ALLOWED}.values()})
    assert {label for label, spec in {**DENIED, **ALLOWED}.items() if spec[0] in numbers} | {"thread"} == set(seen)


@pytest.mark.skipif(sandbox.seccomp_arch() is None, reason=NO_SECCOMP)
def test_errno_check_catches_a_missing_rule_and_a_wrong_errno(monkeypatch):
    # Canary for the test above: a filter without the rule for kill and with ENOSYS for io_uring_setup is caught.
    mode = ZYGOTE_MODES[0] if ZYGOTE_MODES else "process"
    broken_always = [(n, errno.ENOSYS if n == "io_uring_setup" else e, c) for n, e, c in sandbox._ALWAYS]
    monkeypatch.setattr(sandbox, "_ALWAYS", broken_always)
    monkeypatch.setattr(sandbox, "_SHARED", [rule for rule in sandbox._SHARED if rule[0] != "kill"])
    sandbox.seccomp_filter.cache_clear()
    try:
        seen = _probe_errnos(mode)
    finally:
        sandbox.seccomp_filter.cache_clear()  # the real filters again for later tests
    assert set(_mismatches(mode, seen)) == {"io_uring_setup", "kill_parent", "kill_group", "kill_everyone"}
    assert seen["io_uring_setup"] == ENOSYS and seen["kill_parent"] == 0  # the kernel let it through


# ---------------------------------------------------------------------------------------------
# The filter for the other architecture (aarch64), checked by running its BPF on made-up syscalls
# ---------------------------------------------------------------------------------------------

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7, "i386": 0x40000003}
# From the kernel's include/uapi/asm-generic/unistd.h, which aarch64 uses.
AARCH64_NR = dict(
    getppid=173, openat=56, openat2=437, clone=220, clone3=435, socket=198, kill=129, tkill=130, tgkill=131,
    rt_sigqueueinfo=138, rt_tgsigqueueinfo=240, pidfd_send_signal=424, ptrace=117, process_vm_readv=270,
    process_vm_writev=271, pidfd_getfd=438, process_madvise=440, kcmp=272, perf_event_open=241, unlinkat=35,
    renameat=38, renameat2=276, mkdirat=34, linkat=37, symlinkat=36, fchmod=52, fchmodat=53, fchmodat2=452,
    fchown=55, fchownat=54, truncate=45, mknodat=33, mount=40, umount2=39, chroot=51, pivot_root=41, setns=268,
    unshare=97, reboot=142, open_tree=428, move_mount=429, fsopen=430, fsconfig=431, fsmount=432, fspick=433,
    mount_setattr=442, shmget=194, semget=190, msgget=186, mq_open=180, add_key=217, request_key=218, keyctl=219,
    io_uring_setup=425, io_uring_enter=426, io_uring_register=427, fcntl=25, ioctl=29, setxattr=5, lsetxattr=6,
    fsetxattr=7, removexattr=14, lremovexattr=15, fremovexattr=16, utimensat=88,
)  # fmt: skip
SECCOMP_ALLOW, SECCOMP_KILL_PROCESS = 0x7FFF0000, 0x80000000


def run_bpf(program: bytes, arch: str, nr: int, *args: int) -> int:
    """What a seccomp filter answers (SECCOMP_RET_*) for one syscall: a classic-BPF interpreter for the
    instructions libseccomp emits."""
    values = list(args) + [0] * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, AUDIT_ARCH[arch], 0, *[v & (2**64 - 1) for v in values])
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = struct.unpack_from("<HBBI", program, 8 * pc)
        pc += 1
        if code == 0x20:  # LD W ABS
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:  # ALU AND K
            acc &= k
        elif code == 0x05:  # JA
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):  # JEQ, JGT, JGE, JSET with K
            taken = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: acc & k != 0}[code]
            pc += jt if taken else jf
        elif code == 0x06:  # RET K
            return k
        else:
            raise AssertionError(f"BPF instruction {code:#x} not handled")


def _errno_ret(code: int) -> int:
    return 0x00050000 | code


def _values(args: str, pid: int) -> list[int]:
    """A probe call's arguments as the filter sees them (paths and buffers are pointers: 0 will do)."""
    names = {"PPID": 1, "ME": pid, "TID": pid, "BAD": 1, "KEY": 7, "INFO": 0, "NREAD": 0}
    return [0 if a.strip().startswith("b'") else eval(a, names) for a in args.split(",")] if args else []


@pytest.mark.skipif(sandbox.pyseccomp is None, reason="libseccomp is not installed")
def test_aarch64_filter_refuses_what_it_promises():
    pyseccomp, pid = sandbox.pyseccomp, 4321
    variants = {"fresh": (False, False), "shared": (False, True), "strict": (True, True)}
    for variant, (strict, shared) in variants.items():
        program = sandbox.seccomp_filter(strict, pid, shared, arch="aarch64")
        for label, (name, args, refused_in, code) in DENIED.items():
            if name not in AARCH64_NR or name in NEW_SYSCALLS:  # (a cross-built filter names only known ones)
                continue
            assert pyseccomp.resolve_syscall(pyseccomp.Arch.AARCH64, name) == AARCH64_NR[name]
            want = _errno_ret(code) if variant in refused_in else SECCOMP_ALLOW
            got = run_bpf(program, "aarch64", AARCH64_NR[name], *_values(args, pid))
            assert got == want, (variant, label, hex(got))
        # The canaries: what every filter lets through, a thread among them.
        for label, (name, args) in ALLOWED.items():
            assert run_bpf(program, "aarch64", AARCH64_NR[name], *_values(args, pid)) == SECCOMP_ALLOW, label
        thread = 0x10000 | 0x800 | 0x100  # CLONE_THREAD | CLONE_SIGHAND | CLONE_VM
        assert run_bpf(program, "aarch64", AARCH64_NR["clone"], thread) == SECCOMP_ALLOW
        # Another ABI is killed, not filtered by the wrong numbers.
        assert run_bpf(program, "x86_64", AARCH64_NR["getppid"]) == SECCOMP_KILL_PROCESS
    # Canary for the interpreter and the numbers: the x86_64 filter does not answer aarch64's numbers this way.
    x86 = sandbox.seccomp_filter(True, pid, True, arch="x86_64")
    assert run_bpf(x86, "aarch64", AARCH64_NR["getppid"]) == SECCOMP_KILL_PROCESS
    assert run_bpf(x86, "x86_64", AARCH64_NR["unlinkat"]) == SECCOMP_ALLOW  # 35 is nanosleep on x86_64
    assert run_bpf(x86, "x86_64", 263) == _errno_ret(EPERM)  # x86_64's unlinkat


@pytest.mark.skipif(sandbox.pyseccomp is None, reason="libseccomp is not installed")
def test_other_abis_are_killed_on_x86_64():
    program = sandbox.seccomp_filter(False, arch="x86_64")
    assert run_bpf(program, "x86_64", 57) == _errno_ret(EPERM)  # fork
    assert run_bpf(program, "x86_64", 39) == SECCOMP_ALLOW  # canary: getpid
    assert run_bpf(program, "x86_64", 0x40000000 | 39) == SECCOMP_KILL_PROCESS  # the x32 ABI
    assert run_bpf(program, "i386", 20) == SECCOMP_KILL_PROCESS  # i386's getpid (int 0x80)


@pytest.mark.skipif(sandbox.pyseccomp is None, reason="libseccomp is not installed")
def test_zygote_template_patches_into_libseccomps_own_filter():
    template = sandbox._zygote_template()
    assert template is not None
    placeholder = sandbox._PID_PLACEHOLDER.to_bytes(4, sys.byteorder)
    for pid in (3, 777, 123456):
        assert sandbox._patch_pid(template, placeholder, pid) == sandbox.seccomp_filter(False, pid, True)
    # Canary: a template without the placeholder (built for a real pid) is not patched into another pid's filter.
    wrong = sandbox.seccomp_filter(False, 555, True)
    assert sandbox._patch_pid(wrong, placeholder, 777) != sandbox.seccomp_filter(False, 777, True)


# ---------------------------------------------------------------------------------------------
# A checkout under /tmp: its interpreter is bound back into the sandbox's private /tmp
# ---------------------------------------------------------------------------------------------

# Runs under the venv's interpreter: which isolation the sandbox picks, and what a program sees inside.
UNDER_TMP = """
import json, sys
from agorabench.evaluation import sandbox
if sys.argv[1] == "hide":  # the canary: what the sandbox did before it bound the interpreter back
    sandbox._interpreter_dirs_under_tmp = lambda: []
program = (
    "import os, sys\\n"
    "assert sys.executable.startswith(" + repr(sys.argv[2]) + ") and os.path.exists(sys.executable)\\n"
    "assert not os.path.exists(" + repr(sys.argv[3]) + ")\\n"  # the rest of the host's /tmp stays hidden
    "open('out.txt', 'w').write('x')\\n"
    "try:\\n    open('/tmp/left-for-the-next', 'w').write('x')\\n    print('TMP WRITABLE')\\n"
    "except OSError:\\n    pass\\n"
)
out = {}
for zygote in (True, False):
    config = sandbox.SandboxConfig(allow_code_execution=True, timeout_s=10, workers=1, zygote=zygote)
    result = sandbox.run_program(program, config)
    writable = "TMP WRITABLE" in result.stdout_tail
    out[str(zygote)] = [result.isolation, result.passed, writable, result.stderr_tail[-300:]]
print(json.dumps(out))
"""


@pytest.mark.skipif(not sandbox.bwrap_works(), reason="bubblewrap cannot run here (missing, or no user namespaces)")
@pytest.mark.skipif(sandbox.pyseccomp is None, reason="the venv under /tmp imports pyseccomp from this one")
def test_bwrap_is_used_when_the_interpreter_lives_under_tmp():
    root = Path(tempfile.mkdtemp(prefix="agora-checkout-", dir="/tmp"))
    try:
        venv = root / "repo" / ".venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
        secret = root / "not-for-programs.txt"
        secret.write_text("a file of the host's /tmp")
        repo = Path(sandbox.__file__).resolve().parents[2]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": f"{repo}:{os.path.dirname(sandbox.pyseccomp.__file__)}"}  # fmt: skip
        seen = {}
        for how in ("bind back", "hide"):
            out = subprocess.run([str(venv / "bin" / "python"), "-c", UNDER_TMP, how, str(venv), str(secret)],
                                 capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
            assert out.returncode == 0, out.stderr[-2000:]
            seen[how] = json.loads(out.stdout.strip().splitlines()[-1])
        for zygote in ("True", "False"):
            isolation, passed, tmp_writable, stderr = seen["bind back"][zygote]
            assert isolation == "bwrap" and passed, (zygote, stderr)
            # A fresh sandbox's private /tmp is its own to write; the zygote's outlives the program: read-only.
            assert tmp_writable == (zygote == "False")
            assert seen["hide"][zygote][0] == "process"  # canary: hidden, bwrap cannot start the interpreter
    finally:
        shutil.rmtree(root, ignore_errors=True)
