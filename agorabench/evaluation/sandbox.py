"""Running untrusted, model-written Python programs (MBPP / HumanEval scoring).

Nothing runs unless the user opted in (``--allow-code-execution`` / ``evaluation.allow_code_execution``).

Every program gets, in order of strength:

1. **bubblewrap** (isolation "bwrap"), where ``bwrap`` is installed and works (probed once): a new mount,
   PID, network, IPC, UTS and user namespace with every capability dropped; the whole file system
   read-only (``/dev`` included) except the program's own work dir; no network at all. Killing the outer
   ``bwrap`` (``--die-with-parent``) tears the PID namespace down, which kills every process inside.
   By default (``SandboxConfig.zygote``) each worker starts ONE such sandbox for its whole batch, with a
   small pre-started interpreter inside (the "zygote") that forks a child per program, so a program costs
   a fork instead of a namespace set-up plus an interpreter start-up; see "The zygote" below.
   With ``zygote=False`` every program gets its own ``bwrap`` and its own empty ``/tmp``. The private
   ``/tmp`` hides the host's; where the interpreter itself lives under ``/tmp`` (a checkout there with its
   ``.venv``), its folders are bound back into it read-only (``_bwrap_argv``).
2. Otherwise a plain **process** (isolation "process"): a fresh interpreter per program, no namespaces.
3. In both cases, a **seccomp filter** (x86_64 and aarch64; recorded as ``seccomp``), built with libseccomp
   (``pyseccomp``; no filter, and ``seccomp`` False, where libseccomp is missing): bwrap gets it exported as
   BPF (``--seccomp``), the process level loads it directly. It refuses to create processes (fork/vfork/
   clone without CLONE_THREAD; clone3 answers ENOSYS so threads fall back to clone), network sockets (only
   AF_UNIX is allowed) and io_uring (whose operations bypass seccomp). Where something else shares the
   program's namespaces (the host without bwrap; the zygote and the later programs with it) the filter also
   refuses signals to any process but itself (kill, tgkill, rt_(tg)sigqueueinfo, SIGIO via F_SETOWN),
   ptrace and other ways into another process (its memory, its fds), mount/unshare/setns, and kernel objects
   that outlive a process (System V IPC, POSIX message queues, keyrings). Without bwrap it also refuses
   opening files for writing, deleting, renaming, chmod, chown, utimes, xattrs etc. anywhere (the work dir
   included), since nothing else protects the file system. Syscalls of another ABI (i386, x32) kill the
   process. The rules with their errnos are ``_ALWAYS``, ``_SHARED`` and ``_STRICT`` below.
   Process creation is refused rather than counted with RLIMIT_NPROC because that limit does not apply to
   processes of the real root user at all, not even inside a user namespace (the kernel exempts uid 0 of
   the host, and bwrap maps root to root); RLIMIT_NPROC is still set when not root.
4. Always: a fresh interpreter state per program (``python -I -S -B``: no user site, no site-packages, no
   .pyc writes; in zygote mode a fork of one, so each program gets its own copy), an environment scrubbed
   down to PATH/LANG/HOME/TMPDIR (no API keys), a fresh empty work dir, rlimits (address space, CPU time,
   file size, open files, no core dumps), a wall clock enforced by the parent that SIGKILLs the program's
   whole process group (zygote mode: the whole sandbox, which is then restarted), and stdout/stderr read
   incrementally into bounded tails (a program that floods output is killed once it passes
   ``max_output_bytes``). When root without bwrap, all capabilities are dropped from the bounding set.

The zygote: started once per worker inside the bwrap sandbox, with the harness below and a few common
standard-library modules already imported, then made non-dumpable (no program may ptrace it or read its
memory). Per program the parent writes ``prog.py`` into the (emptied) work dir, makes three fresh pipes and
hands their ends to the zygote over a socket; the zygote forks; the child starts a new session, puts the
pipes on 0/1/2, closes every other descriptor (the control socket included), sets the rlimits, installs
the seccomp filter (built by the parent with a placeholder for the child's pid, which the child patches
in) and runs the program like the per-program harness. The zygote waits for the child,
checks that no other process is left in the PID namespace and reports the exit status. The parent reads
the pipes, enforces the wall clock and output limit, and on a timeout, a flood, a dead zygote or a
leftover process kills the whole sandbox and starts a new one for the next program. Between programs the
parent empties the work dir, so nothing a program leaves there reaches the next. The token never passes
through the zygote: the parent writes it into the child's own stdin pipe. What differs from a fresh
``bwrap`` per program: the programs of one worker share the (read-only, capability-less) namespaces one
after another, and the hash seed (``PYTHONHASHSEED``) of their interpreter; ``AGORA_SANDBOX_RUN`` and
``ExecResult.run_id`` name the sandbox, not the program; the work dir is ``/tmp`` inside (where the
interpreter lives under ``/tmp``: the work dir at its own path inside a read-only private ``/tmp``).

Success is proven by a token, not an exit code: the harness reads a fresh ``secrets.token_hex`` from
stdin (never written to the source file, the command line or the environment), runs the program, and
only if the program returned normally writes the token as the last line of stdout and ``_exit(0)``s.
``sys.exit(0)`` or ``os._exit(0)`` before the asserts therefore fail. The token lives in a local
variable of the harness, so a program that deliberately searches the interpreter's memory could find
it; this guards against early exits, which is what model-written code does, not against an adversary
who targets this harness.

What the "process" level does not stop: reading files the user can read, and, when not running as
root, reading ``/proc/<pid>/environ`` of the user's other processes (the parent's included). As root,
the child has no capabilities left, so the kernel refuses it the environment of the (privileged) parent.
Use bwrap wherever model-written code runs on a machine with secrets.

Programs cannot import third-party packages (``-S``): MBPP and HumanEval only need the standard library.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import queue
import resource
import secrets
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

ISOLATIONS = ("auto", "bwrap", "process")
OPT_IN_ERROR = (
    "code execution is disabled: running model-written code needs an explicit opt-in "
    "(--allow-code-execution on the command line or evaluation.allow_code_execution: true in params.yaml)"
)


@dataclass(frozen=True)
class SandboxConfig:
    allow_code_execution: bool = False  # the user's opt-in; nothing runs without it
    timeout_s: float = 10.0  # wall clock per program, enforced by the parent
    workers: int = 2  # programs run at the same time
    memory_bytes: int = 4 << 30  # RLIMIT_AS
    file_size_bytes: int = 16 << 20  # RLIMIT_FSIZE
    open_files: int = 64  # RLIMIT_NOFILE
    tail_bytes: int = 4096  # how much of stdout/stderr each result keeps (the end)
    max_output_bytes: int = 4 << 20  # stdout+stderr beyond this: the program is killed
    isolation: str = "auto"  # "auto" (bwrap if it works, else process) | "bwrap" | "process"
    zygote: bool = True  # bwrap only: one sandbox per worker that forks a child per program (module docstring)

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATIONS:
            raise ValueError(f"sandbox isolation={self.isolation!r}; use one of {', '.join(ISOLATIONS)}")
        if not self.timeout_s > 0:
            raise ValueError(f"sandbox timeout_s={self.timeout_s}; use a positive number of seconds")
        if self.workers < 1:
            raise ValueError(f"sandbox workers={self.workers}; use at least 1")


@dataclass
class ExecResult:
    status: str  # "passed" | "failed" | "timeout" | "killed" (output flood) | "error" (could not run)
    passed: bool
    duration_s: float
    returncode: int | None
    stdout_tail: str
    stderr_tail: str
    isolation: str  # "bwrap" | "process"
    seccomp: bool  # whether the syscall filter was applied
    detail: str = ""  # why it was killed / could not run
    run_id: str = ""  # also in the child's environment as AGORA_SANDBOX_RUN (to find stray processes);
    # in zygote mode it names the worker's sandbox, which the programs of that worker share


def require_opt_in(allow_code_execution: bool) -> None:
    if not allow_code_execution:
        raise ValueError(OPT_IN_ERROR)


# ---------------------------------------------------------------------------------------------
# The code that runs inside (passed with -c, so it is not a file the program can edit)
# ---------------------------------------------------------------------------------------------

# Both harnesses run the program the same way: read the token from stdin, exec prog.py (in the current dir)
# in a fresh globals dict, and only if it returned normally write the token as the last line of stdout.
_RUN_PROGRAM = r"""
import os, sys
def _run_program(_exit=os._exit, _write=os.write):  # bound now: a program may replace os._exit / os.write
    token = sys.stdin.readline().strip().encode()
    with open("prog.py", encoding="utf-8") as f:
        source = f.read()
    try:
        code = compile(source, "prog.py", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException:  # SystemExit too: leaving before the end is not a pass
        try:
            import traceback
            traceback.print_exc()
        except BaseException:  # the program may have broken what traceback needs; keep its output anyway
            pass
        _flush()
        _exit(1)
    _flush()
    _write(1, b"\n" + token + b"\n")
    _exit(0)  # no atexit handlers or lingering threads after the token
def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
"""

# If even writing the token fails (the program closed stdout), exit at once: no waiting for its threads.
_HARNESS = _RUN_PROGRAM + "try:\n    _run_program()\nfinally:\n    os._exit(1)\n"

# Standard-library modules the zygote imports once so that its children need not (what MBPP / HumanEval
# programs and failing programs' tracebacks use most). They hold no state of the zygote's own.
_PRELOAD = ("collections", "functools", "heapq", "itertools", "math", "re", "string", "traceback", "typing")

# The zygote's children patch their pid into a template; kept in one piece of source that runs both inside the
# zygote and here (to check that libseccomp's program has the shape the patching assumes).
_PATCH_PID = r"""
def _patch_pid(template, placeholder, pid):
    # BPF records are 8 bytes, the constant k the last 4: put the pid wherever the placeholder is compared.
    records = [template[i:i + 8] for i in range(0, len(template), 8)]
    return b"".join(r[:4] + pid.to_bytes(4, sys.byteorder) if r[4:] == placeholder else r for r in records)
"""

# argv: control socket fd, rlimits "which:value,...", seccomp filter (hex), the filter's own-pid placeholder
# (hex), the modules to preload. The zygote only forks, waits and reports; it never sees a program or a token.
_ZYGOTE = _RUN_PROGRAM + _PATCH_PID + r"""
import ctypes, gc, resource, socket, struct

class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

def _prepare_child(fds, limits, template, placeholder, libc):
    os.setsid()  # alone in its own session and process group, like a per-program interpreter
    for target, fd in enumerate(fds):  # stdin, stdout, stderr: the parent's fresh pipes
        os.dup2(fd, target)
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # the control socket above all
    for which, value in limits:
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))
    # The filter allows signals to this process only: put its pid where the parent left a placeholder.
    program = _patch_pid(template, placeholder, os.getpid())
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _Fprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp")  # PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP

def _zygote():
    fd, limits, template, placeholder, preload = sys.argv[1:]
    del sys.argv[1:]  # the children see sys.argv == ["-c"], as under the per-program harness
    limits = [tuple(int(x) for x in pair.split(":")) for pair in limits.split(",")]
    template, placeholder = bytes.fromhex(template), bytes.fromhex(placeholder)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no ptrace, no /proc/<pid>/mem or fd/ for its children
    sock = socket.socket(fileno=int(fd))
    for name in preload.split(","):
        __import__(name)
    gc.freeze()  # the children's collector leaves the zygote's objects alone (fewer copy-on-write pages)
    own = os.getpid()
    sock.send(b"ready")
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 3)
        except OSError:
            os._exit(0)
        if not msg or len(fds) != 3:  # the parent closed the socket (or sent nonsense): stop
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            try:
                _prepare_child(fds, limits, template, placeholder, libc)
            except BaseException as e:
                os.write(2, f"sandbox: could not prepare the child: {e!r}\n".encode())
                os._exit(125)
            try:
                _run_program()
            finally:  # never back into the zygote's loop
                os._exit(1)
        for f in fds:
            os.close(f)
        _, status = os.waitpid(pid, 0)
        # Anything besides bwrap's init (pid 1) and the zygote outlived its program: the parent restarts.
        others = sum(1 for n in os.listdir("/proc") if n.isdigit() and int(n) not in (1, own))
        sock.send(struct.pack("=ii", status, others))

_zygote()
"""


# ---------------------------------------------------------------------------------------------
# seccomp filter (built with libseccomp through pyseccomp; exported as classic BPF for bwrap and the zygote)
# ---------------------------------------------------------------------------------------------

# The policy: which syscalls the filter refuses and with which errno. A rule with a condition refuses only the
# calls that match it: (argument, libseccomp comparison, a, b). MASKED_EQ tests (arg & a) == b; a mask of
# 0xFFFFFFFF compares only the low 32 bits, which is all the kernel reads of an int argument. NE compares all
# 64 bits, so junk in the high half is refused too. _OWN_PID stands for the pid of the process being filtered.
# Names an architecture lacks (fork, open, ... on aarch64) are skipped.
_OWN_PID = "own pid"
_CLONE_THREAD, _AF_UNIX = 0x10000, 1
_F_SETOWN, _F_SETOWN_EX, _FIOSETOWN, _SIOCSPGRP = 8, 15, 0x8901, 0x8902
_O_WRONLY, _O_RDWR, _O_CREAT, _O_TRUNC = 0o1, 0o2, 0o100, 0o1000
_LOW32 = 0xFFFFFFFF

# Every filter: no new processes (threads are clone with CLONE_THREAD), no sockets but AF_UNIX, no io_uring
# (its operations open files, create sockets etc. without passing through seccomp at all).
_ALWAYS = [
    ("fork", errno.EPERM, None),
    ("vfork", errno.EPERM, None),
    ("clone", errno.EPERM, (0, "MASKED_EQ", _CLONE_THREAD, 0)),
    ("clone3", errno.ENOSYS, None),  # its flags sit behind a pointer; ENOSYS makes libc fall back to clone
    ("socket", errno.EPERM, (0, "NE", _AF_UNIX, 0)),
] + [(name, errno.EPERM, None) for name in ("io_uring_setup", "io_uring_enter", "io_uring_register")]

# Whenever something else shares the program's namespaces (the host without bwrap; the zygote and the later
# programs with it): signals to itself only (kill(0) included: libseccomp cannot say "neither 0 nor own pid"
# in one rule, and a program has no use for it), no handing SIGIO to another process (F_SETOWN and friends),
# no reaching into other processes (ptrace, their memory, their fds), no mount changes, and no kernel objects
# that outlive the program (System V IPC, POSIX message queues, keyrings) through which it could leave something.
_SHARED = (
    [(name, errno.EPERM, (0, "NE", _OWN_PID, 0)) for name in ("kill", "tgkill", "rt_sigqueueinfo",
                                                               "rt_tgsigqueueinfo")]
    + [("fcntl", errno.EPERM, (1, "MASKED_EQ", _LOW32, cmd)) for cmd in (_F_SETOWN, _F_SETOWN_EX)]
    + [("ioctl", errno.EPERM, (1, "MASKED_EQ", _LOW32, cmd)) for cmd in (_FIOSETOWN, _SIOCSPGRP)]
    + [(name, errno.EPERM, None) for name in (
        "tkill pidfd_send_signal ptrace process_vm_readv process_vm_writev pidfd_getfd process_madvise kcmp "
        "perf_event_open mount umount2 chroot pivot_root setns unshare reboot open_tree move_mount fsopen fsconfig "
        "fsmount fspick mount_setattr shmget semget msgget mq_open add_key request_key keyctl"
    ).split()]
)  # fmt: skip

# Only without bwrap (strict), where nothing else protects the file system: no opening for writing, and none
# of the calls that create, delete, rename or change files (their mode, owner, times, extended attributes).
_STRICT = (
    [("open", errno.EPERM, (1, "MASKED_EQ", flag, flag)) for flag in (_O_WRONLY, _O_RDWR, _O_CREAT, _O_TRUNC)]
    + [("openat", errno.EPERM, (2, "MASKED_EQ", flag, flag)) for flag in (_O_WRONLY, _O_RDWR, _O_CREAT, _O_TRUNC)]
    + [("openat2", errno.ENOSYS, None)]  # flags behind a pointer; Python never calls it
    + [(name, errno.EPERM, None) for name in (
        "creat unlink unlinkat rename renameat renameat2 mkdir mkdirat rmdir link linkat symlink symlinkat chmod "
        "fchmod fchmodat fchmodat2 chown fchown lchown fchownat truncate mknod mknodat setxattr lsetxattr "
        "fsetxattr setxattrat removexattr lremovexattr fremovexattr removexattrat utime utimes utimensat futimesat"
    ).split()]
)  # fmt: skip

# Syscalls from Linux 5.1 on have one number on every architecture; a libseccomp older than the kernel may not
# know the newest by name, so these numbers stand in where it answers "unknown".
_UNIFIED_NUMBERS = {
    "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "clone3": 435, "openat2": 437, "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442,
    "fchmodat2": 452, "setxattrat": 463, "removexattrat": 466,
}  # fmt: skip
_ARCHES = {"x86_64": "X86_64", "aarch64": "AARCH64"}  # tested here; the constants above hold on both
# Where the zygote's children get their filter, their own pid is not known yet: the zygote patches it in.
_PID_PLACEHOLDER = 0x7FFFFFFE  # above any pid (pid_max <= 2**22) and no other constant of the filter

try:
    import pyseccomp
except (ImportError, RuntimeError, OSError):  # RuntimeError: pyseccomp found no libseccomp.so
    pyseccomp = None


def seccomp_arch() -> str | None:
    """The machine's architecture when a filter can be built for it (libseccomp loads), else None."""
    arch = platform.machine()
    return arch if arch in _ARCHES and pyseccomp is not None else None


def _build_filter(strict: bool, own_pid: int, shared: bool, arch: str | None = None):
    """The policy above as a libseccomp filter (``pyseccomp.SyscallFilter``) for `arch` (default: this machine).

    `strict`: no bwrap (also protects the file system; implies `shared`). `shared`: other processes share the
    namespaces (signals only to `own_pid`, no ptrace, no lasting kernel objects). Everything not refused is
    allowed; a syscall of another ABI (i386 or x32 on x86_64) kills the process."""
    arch = arch or seccomp_arch()
    if arch not in _ARCHES or pyseccomp is None:
        raise ValueError(f"no seccomp filter for {arch or platform.machine()} (needs libseccomp and one of "
                         f"{', '.join(_ARCHES)})")  # fmt: skip
    native = arch == platform.machine()
    token = pyseccomp.Arch.NATIVE if native else getattr(pyseccomp.Arch, _ARCHES[arch])
    f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    f.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    if not native:  # (tests build the aarch64 filter on x86_64)
        f.add_arch(token)
        f.remove_arch(pyseccomp.Arch.NATIVE)
    rules = _ALWAYS + (_SHARED if strict or shared else []) + (_STRICT if strict else [])
    for name, code, condition in rules:
        nr = pyseccomp.resolve_syscall(token, name)
        if nr == -1 and native:  # a name this libseccomp does not know (it reads numbers as the native arch's)
            syscall = _UNIFIED_NUMBERS[name]  # (all older names are in every libseccomp since 2.4)
        elif nr < 0:  # -1: unknown (to a filter for another arch); below: a syscall this arch does not have
            continue
        else:
            syscall = name  # by name: libseccomp translates it for a filter of another architecture
        args = []
        if condition is not None:
            index, op, a, b = condition
            args.append(pyseccomp.Arg(index, getattr(pyseccomp, op), own_pid if a == _OWN_PID else a, b))
        f.add_rule(pyseccomp.ERRNO(code), syscall, *args)
    return f


@functools.lru_cache(maxsize=8)
def seccomp_filter(strict: bool, own_pid: int = 0, shared: bool = False, arch: str | None = None) -> bytes:
    """The filter exported by libseccomp as raw ``struct sock_filter`` records (what ``bwrap --seccomp`` and
    prctl take). Arguments as for `_build_filter`."""
    with tempfile.TemporaryFile() as f:
        _build_filter(strict, own_pid, shared, arch).export_bpf(f)
        f.seek(0)
        return f.read()


def _load_seccomp(strict: bool, own_pid: int) -> None:
    """Build the filter and load it into this process, which shares the host's namespaces (libseccomp sets
    no_new_privs first)."""
    _build_filter(strict, own_pid, shared=True).load()


_patch_namespace = {"sys": sys}  # _patch_pid (defined with the zygote's code)
exec(_PATCH_PID, _patch_namespace)
_patch_pid = _patch_namespace["_patch_pid"]


def _zygote_template() -> bytes | None:
    """The zygote children's filter with `_PID_PLACEHOLDER` for their own pid, or None when patching a pid into
    it would not give the filter libseccomp builds for that pid (then no zygote: a fresh bwrap per program)."""
    template = seccomp_filter(strict=False, own_pid=_PID_PLACEHOLDER, shared=True)
    placeholder = _PID_PLACEHOLDER.to_bytes(4, sys.byteorder)
    for pid in (2, 4194303):  # pids at both ends of the range
        if _patch_pid(template, placeholder, pid) != seccomp_filter(strict=False, own_pid=pid, shared=True):
            return None
    return template


_PR_CAPBSET_DROP = 24
_libc = ctypes.CDLL(None, use_errno=True)


# ---------------------------------------------------------------------------------------------
# Launching
# ---------------------------------------------------------------------------------------------


def _child_env(workdir: str, run_id: str) -> dict[str, str]:
    # Built from scratch: nothing of the parent's environment (API keys!) reaches the program.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "OMP_NUM_THREADS": "1",
        "AGORA_SANDBOX_RUN": run_id,
    }


def _python_argv() -> list[str]:
    return [sys.executable, "-I", "-S", "-B", "-c", _HARNESS]


def _interpreter_dirs_under_tmp() -> list[str]:
    """The interpreter's folders that lie under /tmp (a checkout there with its .venv inside, a Python
    unpacked there), outermost only: the sandbox's private /tmp would hide them, so they are bound back."""
    tmp = os.path.realpath("/tmp") + "/"
    needed = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, os.path.dirname(sys.executable)}
    needed |= {os.path.realpath(p) for p in needed} | {os.path.dirname(os.path.realpath(sys.executable))}
    found: list[str] = []
    for path in sorted({os.path.abspath(p) for p in needed if p}):  # sorted: a folder before those inside it
        if path.startswith(tmp) and not any(path.startswith(f + "/") for f in found):
            found.append(path)
    return found


def _bwrap_argv(workdir: str, seccomp_fd: int | None, zygote: bool = False) -> tuple[list[str], str]:
    """The bwrap command (up to and including "--") and where `workdir` (on the host) appears inside.

    `workdir` is the only writable place. By default it appears at its own path over a private empty /tmp.
    The zygote binds it over /tmp itself, so that /tmp is not a second place to write that outlives a program.
    The interpreter's folders under /tmp, if any, are bound back read-only over the private /tmp; a zygote then
    gets a read-only private /tmp with the work dir at its own path inside (TMPDIR and HOME point there)."""
    argv = [
        "bwrap", "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL",
        "--ro-bind", "/", "/", "--dev", "/dev", "--remount-ro", "/dev", "--proc", "/proc",
    ]  # fmt: skip
    hidden = _interpreter_dirs_under_tmp()
    if zygote and not hidden:
        inside = "/tmp"
        argv += ["--bind", workdir, inside]
    else:
        inside = workdir
        argv += ["--tmpfs", "/tmp"]
        for path in hidden:
            argv += ["--ro-bind", path, path]
        if zygote:  # the mount point first: a read-only /tmp cannot get one later
            argv += ["--dir", workdir, "--remount-ro", "/tmp"]
        argv += ["--bind", workdir, workdir]
    argv += ["--chdir", inside]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return argv + ["--"], inside


def _current_user_processes() -> int:
    uid = os.getuid()
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                count += os.stat(f"/proc/{name}").st_uid == uid
            except OSError:
                pass
    return count


def _preexec(config: SandboxConfig, bare: bool, use_seccomp: bool, nproc: int | None):
    """`bare`: no bwrap, so this very process becomes the program's interpreter."""
    cpu = int(config.timeout_s) + 2

    def limits() -> None:  # runs in the child between fork and exec
        def cap(which: int, value: int) -> None:
            _, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)  # an unprivileged process cannot raise its hard limit
            resource.setrlimit(which, (value, value))

        cap(resource.RLIMIT_AS, config.memory_bytes)
        cap(resource.RLIMIT_CPU, cpu)
        cap(resource.RLIMIT_FSIZE, config.file_size_bytes)
        cap(resource.RLIMIT_NOFILE, config.open_files)
        cap(resource.RLIMIT_CORE, 0)
        if nproc is not None:
            cap(resource.RLIMIT_NPROC, nproc)
        if bare and os.geteuid() == 0:
            for c in range(64):  # root keeps no capability across exec
                _libc.prctl(_PR_CAPBSET_DROP, c, 0, 0, 0)
        if bare and use_seccomp:  # (under bwrap, bwrap itself installs the milder filter)
            _load_seccomp(strict=True, own_pid=os.getpid())

    return limits


@functools.lru_cache(maxsize=1)
def bwrap_works() -> bool:
    """Probe once: can bwrap start our Python with the options we use?"""
    if shutil.which("bwrap") is None:
        return False
    for zygote in (False, True):  # both layouts of the file system (`_bwrap_argv`)
        workdir = tempfile.mkdtemp(prefix="agora-sbx-probe-")
        try:
            argv, inside = _bwrap_argv(workdir, None, zygote)
            out = subprocess.run(
                argv + [sys.executable, "-I", "-S", "-c", "print('ok')"],
                capture_output=True, timeout=20, env=_child_env(inside, "probe"), stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if out.returncode != 0 or out.stdout.strip() != b"ok":
                return False
        except (OSError, subprocess.SubprocessError):
            return False
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return True


def isolation_level(config: SandboxConfig) -> str:
    if config.isolation == "process":
        return "process"
    if bwrap_works():
        return "bwrap"
    if config.isolation == "bwrap":
        raise ValueError("sandbox isolation='bwrap' but bwrap is missing or cannot create namespaces here; "
                         "install bubblewrap or use isolation='auto'")  # fmt: skip
    return "process"


class _Tail:
    """The last `limit` bytes of a stream, plus how many bytes came in total."""

    def __init__(self, limit: int) -> None:
        self.limit, self.total, self.buf = limit, 0, bytearray()

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buf += chunk
        if len(self.buf) > self.limit:
            del self.buf[: len(self.buf) - self.limit]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole session/group: children too
    except (ProcessLookupError, PermissionError):
        pass


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # Python built without it, or a kernel before 5.3
        return None


def _read_into(fd: int, tail: _Tail) -> bool:
    """Read what is there now; False at end of file or when nothing is waiting."""
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return False
    tail.add(chunk)
    return bool(chunk)


def _exited(pid: int) -> bool:
    # WNOWAIT: look without reaping, so the pid (= our process group id) cannot be reused before killpg.
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _uses_zygote(config: SandboxConfig, isolation: str) -> bool:
    # The zygote's children install their own filter; without one they could fork where the zygote cannot
    # follow, so no seccomp (or no filter the zygote can patch its children's pids into) means a fresh bwrap
    # per program.
    return config.zygote and isolation == "bwrap" and seccomp_arch() is not None and _zygote_template() is not None


def run_program(source: str, config: SandboxConfig) -> ExecResult:
    """Run one program (setup + solution + tests) and report whether it reached its end."""
    require_opt_in(config.allow_code_execution)
    isolation = isolation_level(config)
    if _uses_zygote(config, isolation):
        zygote = _Zygote(config)
        try:
            return zygote.run(source)
        finally:
            zygote.close()
    return _run_fresh(source, config, isolation)


def _run_fresh(source: str, config: SandboxConfig, isolation: str) -> ExecResult:
    """One program in a new interpreter of its own (in a bwrap of its own when `isolation` is "bwrap")."""
    use_seccomp = seccomp_arch() is not None
    run_id = secrets.token_hex(8)
    token = secrets.token_hex(16)
    start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix=f"agora-sbx-{run_id}-")  # named for its run: whose it is, if one is left
    seccomp_r = None
    try:
        with open(os.path.join(workdir, "prog.py"), "w", encoding="utf-8") as f:
            f.write(source)
        argv, pass_fds = _python_argv(), ()
        if isolation == "bwrap" and use_seccomp:
            seccomp_r, seccomp_w = os.pipe()
            os.write(seccomp_w, seccomp_filter(strict=False))  # a few hundred bytes: fits in the pipe
            os.close(seccomp_w)
            pass_fds = (seccomp_r,)
        if isolation == "bwrap":
            argv = _bwrap_argv(workdir, seccomp_r)[0] + argv
        nproc = None if os.geteuid() == 0 else _current_user_processes() + 64 * config.workers
        try:
            proc = subprocess.Popen(
                argv, cwd=workdir, env=_child_env(workdir, run_id), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, pass_fds=pass_fds, close_fds=True,
                preexec_fn=_preexec(config, isolation == "process", use_seccomp, nproc),
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as e:
            return ExecResult("error", False, time.monotonic() - start, None, "", "", isolation, use_seccomp,
                              f"could not start: {e}", run_id)  # fmt: skip
        if seccomp_r is not None:
            os.close(seccomp_r)
            seccomp_r = None
        return _supervise(proc, token, config, start, isolation, use_seccomp, run_id)
    finally:
        if seccomp_r is not None:
            os.close(seccomp_r)
        shutil.rmtree(workdir, ignore_errors=True)


def _pump(
    tails: dict[int, _Tail], done_fd: int | None, done: Callable[[], bool], deadline: float, config: SandboxConfig
) -> tuple[str | None, str]:  # fmt: skip
    """Read the program's stdout/stderr into their tails until `done()` says it is over (asked when `done_fd`
    becomes readable, or every 5 ms without one). (None, "") when it ended by itself; ("timeout" | "killed",
    why) when the caller has to kill it."""
    sel = selectors.DefaultSelector()
    try:
        for fd in tails:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        if done_fd is not None:
            sel.register(done_fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout", f"wall clock {config.timeout_s:g}s"
            over = False
            for key, _ in sel.select(timeout=remaining if done_fd is not None else min(remaining, 0.005)):
                if key.fd == done_fd:
                    over = done()
                elif not _read_into(key.fd, tails[key.fd]):
                    sel.unregister(key.fd)  # EOF
            over = over or (done_fd is None and done())
            if over:  # what it wrote before exiting is still in the pipes
                for fd in tails:
                    while _read_into(fd, tails[fd]) and tails[fd].total <= config.max_output_bytes:
                        pass
            if sum(t.total for t in tails.values()) > config.max_output_bytes:
                return "killed", f"output over {config.max_output_bytes} bytes"
            if over:
                return None, ""
    finally:
        sel.close()


def _supervise(
    proc: subprocess.Popen, token: str, config: SandboxConfig, start: float, isolation: str, use_seccomp: bool,
    run_id: str,
) -> ExecResult:  # fmt: skip
    deadline = start + config.timeout_s
    try:
        proc.stdin.write(token.encode() + b"\n")
        proc.stdin.close()
    except OSError:
        pass  # the child died at once; its exit status tells the story
    tails = {proc.stdout.fileno(): _Tail(config.tail_bytes), proc.stderr.fileno(): _Tail(config.tail_bytes)}
    # A pidfd becomes readable when the child exits, so no polling; old kernels fall back to a 5 ms poll.
    exit_fd = _pidfd(proc.pid)
    try:
        status, detail = _pump(tails, exit_fd, lambda: exit_fd is not None or _exited(proc.pid), deadline, config)
    finally:
        _kill_group(proc)  # leftovers included; the leader is not reaped yet, so its pgid is still ours
        if isolation == "process" and not use_seccomp:  # it could fork and setsid() out of the group
            for pid in surviving_processes(run_id):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if exit_fd is not None:
            os.close(exit_fd)
        returncode = proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return _result(status, detail, returncode, tails, token, start, isolation, use_seccomp, run_id)


def _result(
    status: str | None, detail: str, returncode: int | None, tails: dict[int, _Tail], token: str, start: float,
    isolation: str, use_seccomp: bool, run_id: str,
) -> ExecResult:  # fmt: skip
    """A pass needs all three: it ended by itself, with exit code 0, and the token is the last line of stdout."""
    out_tail, err_tail = tails.values()
    out = bytes(out_tail.buf)
    marker = b"\n" + token.encode() + b"\n"
    passed = status is None and returncode == 0 and out.endswith(marker)
    if passed:
        out = out[: -len(marker)]
    if status is None:
        status = "passed" if passed else "failed"
        if returncode is not None and returncode < 0:
            detail = f"killed by signal {-returncode}"
    return ExecResult(
        status, passed, time.monotonic() - start, returncode, out.decode("utf-8", "replace"),
        bytes(err_tail.buf).decode("utf-8", "replace"), isolation, use_seccomp, detail, run_id,
    )  # fmt: skip


def _empty_dir(path: str) -> bool:
    """Remove everything inside `path` without following links; False when something would not go."""
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
    except OSError:
        return False
    return True


class _Zygote:
    """One worker's bwrap sandbox with a forking interpreter inside (module docstring, "The zygote").

    Started on the first program and again after anything that makes it untrustworthy (a timeout, an output
    flood, a leftover process, a dead zygote, a work dir that would not empty). One thread at a time."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.workdir = ""
        self.run_id = ""

    def _start(self) -> str:
        """Start the sandbox and wait until the zygote is ready; "" on success, else why it failed."""
        config = self.config
        self.run_id = secrets.token_hex(8)
        self.workdir = tempfile.mkdtemp(prefix=f"agora-sbx-{self.run_id}-")
        limits = [
            (resource.RLIMIT_AS, config.memory_bytes), (resource.RLIMIT_CPU, int(config.timeout_s) + 2),
            (resource.RLIMIT_FSIZE, config.file_size_bytes), (resource.RLIMIT_NOFILE, config.open_files),
            (resource.RLIMIT_CORE, 0),
        ]  # fmt: skip
        if os.geteuid() != 0:
            limits.append((resource.RLIMIT_NPROC, _current_user_processes() + 64 * config.workers))
        template = _zygote_template()
        if template is None:
            return "libseccomp's filter has no place to patch a child's pid into"
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        bwrap, inside = _bwrap_argv(self.workdir, None, zygote=True)
        argv = bwrap + [
            sys.executable, "-I", "-S", "-B", "-c", _ZYGOTE, str(theirs.fileno()),
            ",".join(f"{which}:{value}" for which, value in limits), template.hex(),
            struct.pack("=I", _PID_PLACEHOLDER).hex(), ",".join(_PRELOAD),
        ]  # fmt: skip
        self.sock = ours
        try:
            # No rlimits here: the zygote lives for the whole batch (its CPU time adds up); each child sets its own.
            self.proc = subprocess.Popen(
                argv, cwd=self.workdir, env=_child_env(inside, self.run_id), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                pass_fds=(theirs.fileno(),), close_fds=True,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as e:
            self.close()
            return f"could not start the sandbox: {e}"
        finally:
            theirs.close()
        ours.settimeout(max(30.0, config.timeout_s))  # a loaded machine may take a while to start it
        try:
            ready = ours.recv(16)
        except OSError:  # socket.timeout included
            ready = b""
        ours.settimeout(None)
        if ready != b"ready":
            why = self.close()
            return f"the sandbox did not start: {why or 'no reason given'}"
        return ""

    def run(self, source: str) -> ExecResult:
        config, start = self.config, time.monotonic()
        token = secrets.token_hex(16)
        for attempt in (1, 2):  # a zygote that died while idle is replaced once
            if self.proc is not None and _exited(self.proc.pid):
                self.close()
            if self.proc is None:
                why = self._start()
                if why:
                    return ExecResult("error", False, time.monotonic() - start, None, "", "", "bwrap", True, why,
                                      self.run_id)  # fmt: skip
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            try:
                with open(os.path.join(self.workdir, "prog.py"), "x", encoding="utf-8") as f:
                    f.write(source)
                socket.send_fds(self.sock, [b"run"], [in_r, out_w, err_w])
                break
            except OSError as e:
                for fd in (in_w, out_r, err_r):
                    os.close(fd)
                self.close()
                if attempt == 2:
                    return ExecResult("error", False, time.monotonic() - start, None, "", "", "bwrap", True,
                                      f"could not hand the program to the sandbox: {e}", self.run_id)  # fmt: skip
            finally:
                for fd in (in_r, out_w, err_w):  # the zygote has its own copies now (or never will)
                    os.close(fd)
        run_id = self.run_id
        try:
            os.write(in_w, token.encode() + b"\n")  # straight to the child: the zygote never sees the token
        except OSError:
            pass  # the child is gone already; its exit status tells the story
        os.close(in_w)
        tails = {out_r: _Tail(config.tail_bytes), err_r: _Tail(config.tail_bytes)}
        report: list[bytes] = []

        def done() -> bool:  # the zygote's report (8 bytes), or b"" when the zygote is gone
            try:
                report.append(self.sock.recv(64))
            except OSError:
                report.append(b"")
            return True

        try:
            status, detail = _pump(tails, self.sock.fileno(), done, time.monotonic() + config.timeout_s, config)
        finally:
            os.close(out_r)
            os.close(err_r)
        returncode = None
        if status is None and len(report[0]) != 8:
            status, detail = "error", "the sandbox died during the program"
        elif status is None:
            wait_status, others = struct.unpack("=ii", report[0])
            returncode = os.waitstatus_to_exitcode(wait_status)
            if others:
                status, detail = "failed", f"{others} process(es) outlived the program"
        if status is not None or not _empty_dir(self.workdir):
            self.close()  # nothing of this sandbox is trusted again: the next program gets a new one
        return _result(status, detail, returncode, tails, token, start, "bwrap", True, run_id)

    def close(self) -> str:
        """Kill the whole sandbox (its PID namespace dies with the outer bwrap) and remove its work dir.
        Returns the start of what the sandbox wrote to stderr (bwrap's or the zygote's complaints)."""
        err = b""
        if self.proc is not None:
            if self.proc.returncode is None:  # not reaped yet, so its pgid cannot belong to anyone else
                _kill_group(self.proc)
            self.proc.wait()
            os.set_blocking(self.proc.stderr.fileno(), False)
            try:
                err = self.proc.stderr.read(2048) or b""
            except OSError:
                pass
            self.proc.stderr.close()
        if self.sock is not None:
            self.sock.close()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.proc, self.sock, self.workdir = None, None, ""
        return err.decode("utf-8", "replace").strip()


def run_programs(sources: Sequence[str], config: SandboxConfig) -> list[ExecResult]:
    """Run many programs, at most ``config.workers`` at a time; results in input order."""
    require_opt_in(config.allow_code_execution)
    if not sources:
        return []
    isolation = isolation_level(config)  # probe bwrap once, before the threads start
    if not _uses_zygote(config, isolation):
        with ThreadPoolExecutor(max_workers=config.workers) as pool:
            return list(pool.map(lambda s: _run_fresh(s, config, isolation), sources))
    # One sandbox per worker: a thread takes an idle one, runs one program in it and gives it back.
    zygotes = [_Zygote(config) for _ in range(min(config.workers, len(sources)))]
    idle: queue.SimpleQueue[_Zygote] = queue.SimpleQueue()
    for zygote in zygotes:
        idle.put(zygote)

    def run_one(source: str) -> ExecResult:
        zygote = idle.get()
        try:
            return zygote.run(source)
        finally:
            idle.put(zygote)

    try:
        with ThreadPoolExecutor(max_workers=len(zygotes)) as pool:
            return list(pool.map(run_one, sources))
    finally:
        for zygote in zygotes:
            zygote.close()


def surviving_processes(run_id: str) -> list[int]:
    """Pids whose environment carries AGORA_SANDBOX_RUN=<run_id> (for tests and post-mortems)."""
    needle = f"AGORA_SANDBOX_RUN={run_id}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            pass  # gone, or not ours to read
    return found
