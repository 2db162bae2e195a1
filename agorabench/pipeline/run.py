"""`agora run`: the whole benchmark as `dvc repro`, with one Prefect server for all its stages.

Every DVC stage is one `agora ...` process running one Prefect flow. Without a server, each of those
processes would start Prefect's temporary server of its own (about 5 s each, times ~60 stages); a
server started once here serves them all, and keeps the run history in .agora/prefect for the UI.
A server the user already runs (PREFECT_API_URL set) is used as it is.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from agorabench.pipeline.stages import LaneGroup


def _bin(name: str) -> str:
    """The venv's own executable (dvc, prefect) when this interpreter has one, else PATH's."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


@contextmanager
def prefect_server(home: str | Path = ".agora/prefect", ui: bool = False, timeout_s: float = 120) -> Iterator[str]:
    """Start `prefect server start` on loopback; yield its API URL; stop it (its process group) after."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    from agorabench.models.launchers import PDEATHSIG_LAUNCHER, exit_on_sigterm, free_port, stop_group

    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "true" if ui else "false", "PREFECT_API_URL": ""}

    log = open(home / "server.log", "ab")
    # The launcher makes the kernel stop the server if this process dies, even by kill -9; SIGTERM
    # (a plain kill, or a scheduler stopping us) becomes SystemExit so the `finally` below runs.
    env["AGORA_LAUNCHER_PARENT_PID"] = str(os.getpid())
    exit_on_sigterm()
    proc = subprocess.Popen([sys.executable, "-c", PDEATHSIG_LAUNCHER, _bin("prefect"), "server", "start",
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with code {proc.returncode}; see {home / 'server.log'}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not up after {timeout_s:g} s; see {home / 'server.log'}")
            time.sleep(0.3)
        yield url
    finally:
        stop_group(proc, grace_s=15)
        log.close()


def pending_stages(env: dict[str, str]) -> list[str] | None:
    """The stages `dvc repro` would run (changed or never run); None when DVC cannot tell."""
    out = subprocess.run([_bin("dvc"), "status", "--json"], capture_output=True, text=True, env=env)
    try:
        return sorted(json.loads(out.stdout or "{}")) if out.returncode == 0 else None
    except ValueError:
        return None


@contextmanager
def local_servers(params, pending: list[str] | None, threads: str | None = None) -> Iterator[dict[str, str]]:
    """Start each local model once for the whole run and yield the environment that tells the stages
    where (the CLI reads it and passes the addresses to the stages' flows). Without it every stage that calls a local model starts
    and loads its own server: ~50 starts in the default run, several seconds each on a CPU, and a
    minute or more each for `vllm serve` on a GPU host. Nothing starts when no stage that calls a model
    is pending, so an up-to-date pipeline stays a no-op in seconds. The servers run in this process's
    main thread's children: they stop with it, even when it is killed (PDEATHSIG). `threads`: each server's
    torch (or llama.cpp) threads; default OMP_NUM_THREADS, else every core."""
    with lane_servers(params, pending, [None], threads) as (env,):
        yield env


@contextmanager
def lane_servers(params, pending: list[str] | None, lanes: list[list[str] | None],
                 threads: str | None = None) -> Iterator[list[dict[str, str]]]:
    """local_servers for lanes: one environment per lane, naming the servers for the models its stages
    call (None: every stage; stages.servers_for), started when one of its stages that calls a model is
    pending. A vLLM server batches whatever is in flight, so the lanes share one per model (one copy of
    its weights in memory); a server of another engine answers one request at a time, so each lane gets
    its own, or one lane's judge calls would wait behind the other's generation. All are launched before
    any is waited for, so they load their models at the same time."""
    from agorabench.models.endpoint import SERVERS_ENV as SHARED_SERVERS_ENV
    from agorabench.models.servers import LocalModelServer
    from agorabench.pipeline.stages import ServerSpec, calls_a_model, servers_for

    labels = [lane_letter(i) if len(lanes) > 1 else "" for i in range(len(lanes))]
    wanted: dict[tuple[str, str], ServerSpec] = {}  # (key, lane label; "" for a shared server) -> spec
    lane_keys: list[list[tuple[str, str]]] = []
    for lane, label in zip(lanes, labels):
        mine = pending if pending is None or lane is None else [s for s in pending if s in lane]
        specs = [] if mine is not None and not calls_a_model(params, mine) else servers_for(params, lane)
        keys = []
        for spec in specs:
            where = (spec.key, "" if spec.engine == "vllm" else label)
            wanted[where] = spec.merged(wanted.get(where))
            keys.append(where)
        lane_keys.append(keys)
    with contextlib.ExitStack() as stack:
        launched: dict[tuple[str, str], LocalModelServer] = {}
        for (key, label), spec in wanted.items():  # launched from this thread: see PDEATHSIG_LAUNCHER's caveat
            log_name = f"server-{spec.engine}-{Path(spec.model).name}{'-' + label if label else ''}.log"
            server = LocalModelServer(spec.model, engine=spec.engine, log_path=Path(".agora/logs") / log_name,
                                      extra_args=list(spec.server_args), cpu_weights=spec.cpu_weights,
                                      threads=threads, lora=spec.lora)
            stack.callback(server.stop)
            launched[(key, label)] = server.launch()
        for (key, label), server in launched.items():
            server.wait_ready()
            whose = f" for lane {label}" if label else (" for every lane" if len(lanes) > 1 else "")
            print(f"{server.engine} server for {server.model}{' (LoRA)' if server.lora else ''}{whose} at "
                  f"{server.base_url} (ready in {server.startup_s:.0f} s)", flush=True)
        envs = []
        for keys in lane_keys:
            shared = {key: {"base_url": launched[(key, label)].base_url, "model_id": launched[(key, label)].model_id}
                      for key, label in keys}
            envs.append({SHARED_SERVERS_ENV: json.dumps(shared)} if shared else {})
        yield envs


def merge_servers(envs: list[dict[str, str]]) -> dict[str, str]:
    """One environment naming every server of several lanes' environments (lane_servers; for a
    generator served in several lanes, the first lane's)."""
    from agorabench.models.endpoint import SERVERS_ENV as SHARED_SERVERS_ENV

    shared: dict = {}
    for env in reversed(envs):
        shared.update(json.loads(env.get(SHARED_SERVERS_ENV, "{}")))
    return {SHARED_SERVERS_ENV: json.dumps(shared)} if shared else {}


def stage_names() -> list[str] | None:
    """Every stage of dvc.yaml, matrix entries expanded, in dvc.yaml's order; None when DVC cannot tell."""
    out = subprocess.run([_bin("dvc"), "stage", "list", "--name-only"], capture_output=True, text=True)
    return out.stdout.split() if out.returncode == 0 else None


def default_jobs(params) -> int:
    """How many `dvc repro` lanes `agora run` runs side by side when not told: one per benchmark
    generator, at most one per core, and one on a GPU host (students train and answer on the GPU,
    where two at once would only compete for its memory)."""
    import torch

    if torch.cuda.is_available():
        return 1
    return max(1, min(len(params.benchmark_generators), os.cpu_count() or 1))


def threads_per_lane(lanes: int) -> int:
    """The cores shared out over `lanes` lanes (OMP_NUM_THREADS of their stages and model servers)."""
    return max(1, (os.cpu_count() or 1) // lanes)


def lane_letter(index: int) -> str:
    """"a", "b", ...: how progress lines and `agora run` name a lane."""
    return "abcdefghijklmnopqrstuvwxyz"[index % 26]


def split_lanes(groups: list[LaneGroup], jobs: int) -> list[list[str]]:
    """Deal the pipeline's stages into at most `jobs` lanes that share no stage and no output, so one
    `dvc repro` per lane can run at the same time. `groups` (stages.lane_groups, largest model
    first) are the units dealt: the groups with settings in turn over the lanes, so each generator's
    server serves one lane; then the groups of no setting (the anchors, hosted generators' scores)
    from the last lane back, to the lanes that got the smaller models. With more lanes than
    generators, each group is split into its chains first, dealt the same way: then every lane gets
    some of each generator's settings. Stages that read every lane's outputs (results, report) are
    in no group: the `dvc repro` after the lanes runs them. DVC decides the order inside a lane."""
    if sum(1 for group in groups if group.settings) < jobs:
        groups = [part for group in groups for part in group.parts()]
    lanes: list[list[str]] = [[] for _ in range(jobs)]
    with_settings = [group for group in groups if group.settings]
    for i, group in enumerate(with_settings):
        lanes[i % jobs].extend(group.stages)
    for i, group in enumerate(group for group in groups if not group.settings):
        lanes[jobs - 1 - i % jobs].extend(group.stages)
    return [lane for lane in lanes if lane]


_STAGE_LINE = re.compile(r"^(?:Running stage|Stage) '([^']+)'")


def repro(env: dict[str, str], lanes: list[list[str]] = (), force: bool = False,
          lane_envs: list[dict[str, str]] = (), targets: list[str] = (),
          lines: list[tuple[float, str, str]] | None = None) -> int:
    """Run the pipeline through DVC and print each of its lines with the elapsed time and a stage counter.

    With lanes, first one `dvc repro LANE...` per lane, all at once (DVC locks each stage's files, so
    separate processes on disjoint stages are safe), then a plain `dvc repro` for whatever is left:
    the stages that read every lane's outputs, and anything a lane did not finish. Without lanes, a
    single `dvc repro` (of `targets`, when given). `lane_envs`: what each lane adds to `env` (its own
    model servers). Every line DVC printed is also appended to `lines`, as (seconds since the start,
    lane letter or "", line): what stage_seconds reads. On a terminal, each lane's current stage and
    progress stay in view below the log (pipeline/status.py)."""
    from agorabench.pipeline.status import LaneStatus

    names = stage_names()
    total = len(names) if names is not None else None
    seen: set[str] = set()
    start = time.monotonic()
    printing = threading.Lock()

    def show(status: LaneStatus, line: str, tag: str, quiet_seen: bool) -> None:
        m = _STAGE_LINE.match(line)
        with printing:  # lanes print from their own threads: one line, one counter value at a time
            if lines is not None:
                lines.append((time.monotonic() - start, tag, line))
            status.feed(tag or ALL_LANES, line)
            if m:
                if quiet_seen and m[1] in seen and "didn't change" in line:
                    return  # the lanes already said it: the last pass checks every stage again
                seen.add(m[1])
            elapsed = int(time.monotonic() - start)
            counter = f"{len(seen)}/{total}" if total else str(len(seen))
            status.print(f"[{elapsed // 60:02d}:{elapsed % 60:02d} {counter:>7}{' ' + tag if tag else ''}] {line}")

    def run(commands: list[list[str]], tags: list[str], quiet_seen: bool = False, extra_envs=()) -> list[int]:
        with LaneStatus([tag or ALL_LANES for tag in tags]) as status:
            return _run_dvc(env, commands, lambda i, line: show(status, line, tags[i], quiet_seen), extra_envs,
                            on_end=lambda i: status.finished(tags[i] or ALL_LANES))

    if len(lanes) > 1:
        codes = run([["--wait-for-lock", "repro", *(["--force"] if force else []), *lane] for lane in lanes],
                    [lane_letter(i) for i in range(len(lanes))], extra_envs=lane_envs)
        if any(codes):
            return next(c for c in codes if c)
        # Then what is left. Unforced: a plain `dvc repro`, which finds the lanes' stages done and runs
        # results and report. Forced: only the stages no lane ran, each once (--single-item), so
        # nothing the lanes just re-ran is re-run again.
        left = _left(lanes, names or []) if force else []
        if force and not left:
            return 0
        last = ["--wait-for-lock", "repro"] + (["--force", "--single-item", *left] if force else [])
        return run([last], [""], quiet_seen=True)[0]
    return run([["repro", *(["--force"] if force else []), *targets]], [""])[0]


ALL_LANES = "-"  # the status row of a `dvc repro` that is not one lane's


def pipeline_env(allow_code_execution: bool = False) -> dict[str, str]:
    """The environment `dvc repro` and its stages run in."""
    env = dict(os.environ)
    # The stages' commands call `agora` (dvc.yaml): the one beside this interpreter, so that
    # `.venv/bin/agora run` works without an activated virtualenv, as _bin finds dvc.
    here = Path(sys.executable).parent
    if (here / "agora").is_file():
        env["PATH"] = os.pathsep.join([str(here), *([env["PATH"]] if env.get("PATH") else [])])
    # One progress line per stage is ours (repro); library download/map bars would only interleave
    # with it. Generation keeps its own bar (rich), which these do not touch.
    env.setdefault("TQDM_DISABLE", "1")
    env.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if allow_code_execution:
        env["AGORA_ALLOW_CODE_EXECUTION"] = "1"
    return env


# What a stage stopped by the spending cap prints (models/endpoint.py, BudgetExceeded).
BUDGET_STOP = "(--max-cost / budget_usd) reached"
_RAN = re.compile(r"^Running stage '([^']+)'")
_UNCHANGED = re.compile(r"^(?:Stage )?'([^']+)' didn't change")


def run_pipeline(params, prefect_env: dict[str, str], *, force: bool = False, jobs: int | None = None,
                 allow_code_execution: bool = False, targets: list[str] | None = None, say=print) -> dict:
    """The whole pipeline, as `agora run` and the scheduled deployment run it: `dvc repro` in lanes,
    each lane with the model servers its stages call, all stages reporting to the Prefect server that
    `prefect_env` names (PREFECT_API_URL, and how often its client retries). `targets` limits it to some
    stages (and what they need), in one lane.

    Returns the run's summary: its exit code, the stages run and unchanged, the lanes, the duration."""
    from agorabench.pipeline.stages import lane_groups

    started = time.monotonic()
    # The stages' logs go to that server too (the CLI's default keeps them local without one).
    env = {**pipeline_env(allow_code_execution), **prefect_env, "PREFECT_LOGGING_TO_API_ENABLED": "true"}
    pending = None if force else pending_stages(env)
    jobs = jobs or default_jobs(params)
    lanes = split_lanes(lane_groups(params, stage_names() or []), jobs) \
        if jobs > 1 and not targets else []
    if len(lanes) < 2 or pending is not None and not set(pending) & {s for lane in lanes for s in lane}:
        lanes = []  # one lane, or only results/report to redo: lanes would just check ~70 stages again
    if lanes:
        # Cores shared out, not oversubscribed: torch in every stage and in the model servers reads
        # this. On 2 cores, students answered 1.55-1.61x faster in two one-thread lanes than one
        # after another with two threads (benchmarks/lanes.py); generation, whose long prompts use both
        # threads well, came out about even.
        env.setdefault("OMP_NUM_THREADS", str(threads_per_lane(len(lanes))))
    threads = env.get("OMP_NUM_THREADS")
    lines: list[tuple[float, str, str]] = []
    # With lanes, each lane gets the servers its stages call: its own where a server answers one
    # request at a time (else one lane's judge calls would wait behind the other's generation), one
    # shared vLLM server per model (lane_servers).
    with lane_servers(params, pending, lanes or [None], threads) as lane_envs:
        env.update(merge_servers(lane_envs))  # the last pass: any lane's servers
        if lanes:
            say(f"{len(lanes)} lanes side by side, {threads} thread(s) each: " + "; ".join(
                f"{lane_letter(i)}: {lane_summary(lane, params)}" for i, lane in enumerate(lanes)))
        rc = repro(env, lanes=lanes, force=force, lane_envs=lane_envs if lanes else (), targets=targets or (),
                   lines=lines)
    text = [line for _, _, line in lines]
    ran = list(dict.fromkeys(m[1] for m in map(_RAN.match, text) if m))
    unchanged = list(dict.fromkeys(m[1] for m in map(_UNCHANGED.match, text) if m and m[1] not in ran))
    by_kind = seconds_by_kind(params, *stage_seconds(lines))
    if by_kind:
        say("time per stage kind (summed over lanes): " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in by_kind.items()))
    run_id = record_history(params, ran + unchanged, say=say) if rc == 0 else None
    capped = next((line.split("error: ", 1)[-1] for line in text if BUDGET_STOP in line), None) if rc else None
    if capped:  # the spending cap stopped a stage: say what the run leaves undone, in one line
        left = pending_stages(env)
        capped += (f"; the run leaves {len(left)} stage(s) undone ({', '.join(left[:6])}"
                   f"{', ...' if len(left) > 6 else ''})" if left else "")
        capped += "; raise --max-cost or budget_usd and run again: answers already paid come from the request store"
    return {"rc": rc, "budget_stop": capped, "stages_run": ran, "stages_unchanged": unchanged, "lanes": len(lanes) or 1,
            "duration_s": round(time.monotonic() - started, 1), "seconds_by_kind": by_kind, "run_id": run_id}


def record_history(params, up_to_date: list[str], repo: str | Path = ".", say=print) -> str | None:
    """Record the finished run in the results history (agorabench/results/history.py) and return its
    key, when the results stage is among the stages DVC ran or found up to date (`up_to_date`): then
    data/results/ holds this revision's results. Its own run recorded them already unless nothing
    upstream changed (a new commit of other files, say); the same revision is never added twice.
    None when the results are not this revision's (a run of some stages only)."""
    from agorabench.results.history import record_run

    if "results" not in up_to_date:
        return None
    try:
        recorded = record_run(params, repo, recorded_by="agora run")
    except ValueError as e:  # the run itself succeeded: say why it is not in the history, do not fail it
        say(f"history: run not recorded: {e}")
        return None
    say(recorded.message())
    return recorded.run_id


def stage_seconds(lines: list[tuple[float, str, str]]) -> tuple[dict[str, float], dict[str, float]]:
    """({stage: wall seconds}, {stage: seconds spent waiting on a judge}) from repro's lines. A stage
    runs from its "Running stage" line to the next line DVC prints after it in the same lane that
    belongs to no stage ("Updating lock file", or the next stage's start)."""
    from agorabench.models.answering import JUDGED_LINE

    seconds: dict[str, float] = {}
    judged: dict[str, float] = {}
    current: dict[str, tuple[str, float]] = {}  # lane -> (stage, started at)
    for t, lane, line in lines:
        ran = _RAN.match(line)
        if ran or line.startswith("Updating lock file"):
            if lane in current:
                stage, since = current.pop(lane)
                seconds[stage] = seconds.get(stage, 0.0) + t - since
            if ran:
                current[lane] = (ran[1], t)
        elif (m := JUDGED_LINE.search(line)) and lane in current:
            stage = current[lane][0]
            judged[stage] = judged.get(stage, 0.0) + float(m["seconds"])
    return seconds, judged


def seconds_by_kind(params, seconds: dict[str, float], judged: dict[str, float]) -> dict[str, float]:
    """Stage seconds summed per kind: generation, decontamination, judging (the judge calls of evaluation
    and intrinsic stages), training, evaluation and intrinsic (both without their judging), results (the rest)."""
    from agorabench.pipeline.stages import pipeline_stages

    known = pipeline_stages(params)
    kind_of = {"generate": "generation", "scale-subset": "generation", "import": "generation",
               "train": "training", "scale-train": "training", "import-train": "training",
               "decontaminate": "decontamination", "scale-decontaminate": "decontamination",
               "intrinsic": "intrinsic", "import-intrinsic": "intrinsic", "import-evaluate": "evaluation",
               "results": "results", "report": "results"}
    out: dict[str, float] = {}
    for stage, s in seconds.items():
        kind = known[stage].kind if stage in known else stage.split("@")[0]
        name = kind_of.get(kind, "evaluation" if kind.startswith(("evaluate", "scale-evaluate")) else "results")
        out[name] = out.get(name, 0.0) + s - judged.get(stage, 0.0)
        if judged.get(stage):
            out["judging"] = out.get("judging", 0.0) + judged[stage]
    order = ["generation", "decontamination", "judging", "training", "evaluation", "intrinsic", "results"]
    return {k: round(out[k], 1) for k in order if k in out}


def lane_summary(lane: list[str], params) -> str:
    """"5 smollm2 settings, 4 qwen-coder settings, evaluate-anchor@base (38 stages)": what a lane runs."""
    from collections import Counter

    from agorabench.pipeline.stages import pipeline_stages

    known = pipeline_stages(params)
    setting = {s: known[s].setting if s in known else None for s in lane}
    settings = Counter(s.generator for s in dict.fromkeys(v for v in setting.values() if v is not None))
    lone = [s for s in lane if setting[s] is None]
    parts = [f"{n} {g} setting{'s' * (n != 1)}" for g, n in settings.items()] + lone
    return f"{', '.join(parts)} ({len(lane)} stages)"


def _left(lanes: list[list[str]], stages: list[str]) -> list[str]:
    """The stages no lane ran, in dvc.yaml's order."""
    done = {s for lane in lanes for s in lane}
    return [s for s in stages if s not in done]


def _run_dvc(env: dict[str, str], commands: list[list[str]], on_line,
             extra_envs: list[dict[str, str]] = (), on_end=None) -> list[int]:
    """Run `dvc ARGS` for each ARGS at once (with extra_envs[i] added to env) and pass every output
    line to on_line(index, line), then on_end(index) when that one's output ends; return their exit
    codes. DVC and the stage command it runs share a
    process group of their own, led by GROUP_LAUNCHER, so stopping the run stops the stage too, and so
    does killing it (kill -9): terminating DVC alone left its running stage orphaned, still working."""
    from agorabench.models.launchers import start_in_group, stop_groups

    # All started from this (the main) thread: the launcher's PR_SET_PDEATHSIG watches the thread that
    # started it, and a reader thread ends before the run does.
    procs = [start_in_group([_bin("dvc"), *args], env={**env, **(extra_envs[i] if extra_envs else {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
             for i, args in enumerate(commands)]

    def read(i: int, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            on_line(i, line.rstrip("\n"))
        if on_end:
            on_end(i)

    readers = [threading.Thread(target=read, args=(i, p), daemon=True) for i, p in enumerate(procs)]
    try:
        for r in readers:
            r.start()
        for r in readers:
            r.join()
        return [p.wait() for p in procs]
    finally:
        stop_groups(procs)  # we are being stopped (or all are done): DVC and its stage stop with us
