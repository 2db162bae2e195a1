"""The two vLLM routes, without a GPU: vLLM cannot run on this CPU-only machine, so stand-ins take
its place (a `vllm` executable that serves our loopback OpenAI server, and a `vllm` module whose
LLM.chat answers like it). What is checked is our side: the `vllm serve` command line, readiness,
keys and answers through the real openai SDK; and the in-process client's batching, its sampling
parameters and its errors. Only a GPU host can show that vLLM itself does its part."""
from __future__ import annotations

import asyncio
import importlib.machinery
import json
import os
import stat
import sys
import types

import pytest

from agorabench.config import load_params
from agorabench.generation.loop import generate_setting
from agorabench.testing.llm_server import default_responder
from tests.conftest import REPO, write_params

HUB_ID = "meta-llama/Llama-3.1-8B-Instruct"  # never downloaded: the stand-ins only see the string

STAND_IN_SERVE = """#!{python}
# Stand-in for `vllm serve MODEL --host H --port P ...`: records its argv, serves the loopback fake.
import json, os, sys
sys.path.insert(0, {repo!r})
with open(os.environ["VLLM_STAND_IN_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
from agorabench.testing.llm_server import main
main(["--host", args[args.index("--host") + 1], "--port", args[args.index("--port") + 1]])
"""


@pytest.fixture
def vllm_on_path(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "vllm"
    exe.write_text(STAND_IN_SERVE.format(python=sys.executable, repo=str(REPO)))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "vllm-argv.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("VLLM_STAND_IN_LOG", str(log))
    return log


def test_auto_engine_picks_vllm_serve_on_a_gpu_host(vllm_on_path, monkeypatch):
    import torch

    from agorabench.models.servers import local_engine

    assert local_engine("auto", HUB_ID) == "transformers"  # the canary: this host has no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert local_engine("auto", HUB_ID) == "vllm"


def test_local_generator_on_vllm_serve(tmp_path, vllm_on_path, monkeypatch):
    """A `local` generator with engine vllm: we start `vllm serve`, wait for /health, send the
    warm-up request, generate a setting through it, and stop it."""
    monkeypatch.setenv("FAKE_API_KEY", "k")
    monkeypatch.chdir(tmp_path)
    params = load_params(write_params(tmp_path / "params.yaml", "http://127.0.0.1:9", **{
        "generators.gpu": {"backend": "local", "model": HUB_ID, "engine": "vllm", "concurrency": 4,
                           "server_args": ["--max-model-len", "8192"]}}))
    manifest = asyncio.run(generate_setting(params, "gpu", "general", "response_generation", num=3,
                                            progress=False))
    assert manifest["num_valid"] == 3 and manifest["run"]["answers_new"] >= 3
    argv = [json.loads(line) for line in vllm_on_path.read_text().splitlines()]
    assert argv == [["serve", HUB_ID, "--host", "127.0.0.1", "--port", argv[0][5], "--max-model-len", "8192"]]

    from agorabench.models.store import RequestStore

    store = RequestStore(params.cache.requests_db)
    requests = [json.loads(r[0]) for r in store._db.execute("SELECT request FROM responses")]
    store.close()
    assert requests and all(r["engine"] == "vllm" and "cpu_weights" not in r for r in requests)


def test_vllm_engine_without_the_executable_is_one_clear_line(tmp_path, monkeypatch):
    from agorabench.models.servers import LocalModelServer, LocalServerError

    monkeypatch.setenv("PATH", str(tmp_path))  # no vllm anywhere
    with pytest.raises(LocalServerError, match="no `vllm` executable is on PATH"):
        LocalModelServer(HUB_ID, engine="vllm", log_path=tmp_path / "s.log").start()


# ---------------------------------------------------------------------------------------------
# backend: vllm (in-process LLM.chat)
# ---------------------------------------------------------------------------------------------


def stand_in_vllm_module(fail: bool = False):
    """A `vllm` module whose LLM.chat answers each conversation the way the loopback server would."""
    calls = []

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, model, **engine_args):
            self.model, self.engine_args = model, engine_args

        def chat(self, conversations, params, use_tqdm=True):
            params = params if isinstance(params, list) else [params] * len(conversations)  # one per prompt
            calls.append((len(conversations), [p.kw for p in params]))
            if fail:
                raise RuntimeError("CUDA out of memory")
            outs = []
            for messages in conversations:
                text = default_responder("openai", {"messages": messages})
                words = text.split()
                done = types.SimpleNamespace(text=text, finish_reason="stop", token_ids=list(range(len(words))))
                outs.append(types.SimpleNamespace(outputs=[done], prompt_token_ids=[0] * 7))
            return outs

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams
    return module, calls


def test_vllm_backend_batches_concurrent_requests(tmp_path, monkeypatch):
    module, calls = stand_in_vllm_module()
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.chdir(tmp_path)
    params = load_params(write_params(tmp_path / "params.yaml", "http://127.0.0.1:9", **{
        "generators.offline-gpu": {"backend": "vllm", "model": HUB_ID, "concurrency": 16}}))
    manifest = asyncio.run(generate_setting(params, "offline-gpu", "general", "response_generation", num=6,
                                            progress=False))
    assert manifest["num_valid"] == 6
    # The engine's concurrent calls reach vLLM as batches, not one conversation per call.
    assert sum(n for n, _ in calls) == manifest["run"]["answers_new"] and max(n for n, _ in calls) > 1
    sampling = params.generation.sampling
    first = calls[0][1]
    assert {**first[0], "seed": None} == {"temperature": sampling.temperature, "top_p": sampling.top_p,
                                          "max_tokens": sampling.max_tokens, "stop": list(sampling.stop), "seed": None}
    seeds = [kw["seed"] for kw in first]  # each prompt of a batch keeps its own request's seed
    assert len(first) > 1 and all(isinstance(x, int) for x in seeds) and len(set(seeds)) == len(seeds)


def test_vllm_backend_failure_reaches_every_waiter_and_the_worker_survives():
    from agorabench.models.clients import vllm_batch

    module, calls = stand_in_vllm_module(fail=True)
    sys.modules["vllm"] = module
    try:
        client = vllm_batch.VLLMBatch(model=HUB_ID)

        async def go():
            msgs = [{"role": "user", "content": f"q{i}"} for i in range(3)]
            first = await asyncio.gather(*(client.chat([m], {"max_tokens": 8}) for m in msgs),
                                         return_exceptions=True)
            module.LLM.chat = lambda self, conv, params, use_tqdm=True: (_ for _ in ()).throw(RuntimeError("again"))
            second = await asyncio.gather(client.chat(msgs[:1], {"max_tokens": 8}), return_exceptions=True)
            await client.close()
            return first, second

        first, second = asyncio.run(go())
    finally:
        del sys.modules["vllm"]
    assert [str(e) for e in first] == ["CUDA out of memory"] * 3 and len(calls) == 1
    assert str(second[0]) == "again"  # the worker is still serving after a failed batch


def test_vllm_backend_without_vllm_is_one_clear_line(monkeypatch):
    from agorabench.models.clients.vllm_batch import VLLMBatch

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(RuntimeError, match="needs the vllm package on a GPU host"):
        VLLMBatch(model=HUB_ID)


# ---------------------------------------------------------------------------------------------
# evaluation.engine: vllm (students, base and reference in-process through LLM.chat)
# ---------------------------------------------------------------------------------------------


def stand_in_vllm_for_evaluation(monkeypatch):
    """vllm, vllm.lora.request: an LLM that records how it was built and every chat call."""
    built, chats = [], []

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LoRARequest:
        def __init__(self, name, int_id, path):
            self.name, self.int_id, self.path = name, int_id, path

    class LLM:
        def __init__(self, model, **kw):
            built.append({"model": model, **kw})

        def chat(self, conversations, params, **kw):
            chats.append({"n": len(conversations), "params": params.kw, **kw})
            answer = lambda m: types.SimpleNamespace(text=f"[RESULT] {len(m[-1]['content'])} [/RESULT]",
                                                     finish_reason="stop", token_ids=[1, 2, 3])
            return [types.SimpleNamespace(outputs=[answer(m)], prompt_token_ids=[0] * 11) for m in conversations]

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    lora, request = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec("vllm") sees it installed
        monkeypatch.setitem(sys.modules, name, module)
    return built, chats


def test_evaluation_engine_auto_is_transformers_without_a_gpu(monkeypatch):
    import torch

    from agorabench.models.in_process import evaluation_engine

    stand_in_vllm_for_evaluation(monkeypatch)
    assert evaluation_engine("auto") == "transformers"  # vllm importable, but no CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert evaluation_engine("auto") == "vllm"
    assert evaluation_engine("transformers") == "transformers"


def test_vllm_evaluation_answers_once_and_stores_them(tmp_path, monkeypatch, tiny_student):
    from agorabench.models.answering import Decoding
    from agorabench.models.in_process import TransformersAnswerer, VLLMAnswerer
    from agorabench.models.store import RequestStore

    built, chats = stand_in_vllm_for_evaluation(monkeypatch)
    store = RequestStore(tmp_path / "r.sqlite")
    convs = [[{"role": "user", "content": "x" * n}] for n in (3, 50, 7, 1200, 9)]
    decoding = Decoding(temperature=0.2, top_p=0.95, max_new_tokens=64, repetition_penalty=1.03)
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages }}")
    gen = VLLMAnswerer(tiny_student, store, batch_size=2, chat_template=str(template), seed=42)
    done = gen.answer_many(convs, decoding, sample_index=1)
    assert [c.text for c in done] == [f"[RESULT] {n} [/RESULT]" for n in (3, 50, 7, 1200, 9)]
    assert built == [{"model": tiny_student, "seed": 42}]
    # One call for all five prompts, whatever evaluation.batch_size says (vLLM batches them itself).
    assert len(chats) == 1 and chats[0]["n"] == 5 and chats[0]["chat_template"] == "{{ messages }}"
    assert chats[0]["params"] == {"temperature": 0.2, "top_p": 0.95, "max_tokens": 64,
                                  "repetition_penalty": 1.03, "seed": 42 + 1000}
    assert done[0].input_tokens == 11 and done[0].output_tokens == 3

    again = VLLMAnswerer(tiny_student, store, batch_size=2, seed=42).answer_many(convs, decoding, sample_index=1)
    assert len(chats) == 1 and [c.text for c in again] == [c.text for c in done]  # from the store
    # transformers answers the same prompts differently: the store must not hand it vLLM's answers.
    key = TransformersAnswerer(tiny_student, store).request(convs[0], decoding, 1)[1]
    assert key != gen.request(convs[0], decoding, 1)[1]
    store.close()


def test_vllm_evaluation_serves_a_lora_student_as_base_plus_adapter(tmp_path, monkeypatch, tiny_student):
    from agorabench.models.answering import Decoding
    from agorabench.models.in_process import VLLMAnswerer
    from agorabench.models.store import RequestStore
    from agorabench.models.checkpoints import STUDENT_FILE, StudentRecord

    built, chats = stand_in_vllm_for_evaluation(monkeypatch)
    student = tmp_path / "student"
    student.mkdir()
    (student / "adapter_config.json").write_text(json.dumps({"r": 32, "peft_type": "LORA"}))
    (student / STUDENT_FILE).write_text(StudentRecord(
        generator="g", method="response_generation", domain="math", trained=True, base=tiny_student,
        base_path=tiny_student, lora=True, system_prompt=None, dataset="d", generated_examples=1, seed_examples=0,
        examples=1, examples_sha256="e").to_json())
    store = RequestStore(tmp_path / "r.sqlite")
    VLLMAnswerer(str(student), store).answer_many([[{"role": "user", "content": "hi"}]], Decoding(temperature=0.0))
    store.close()
    assert built == [{"model": tiny_student, "enable_lora": True, "max_lora_rank": 32, "seed": 42}]
    lora = chats[0]["lora_request"]
    assert lora.path == str(student) and chats[0]["params"]["top_p"] == 1.0  # greedy: no nucleus cut


def test_evaluation_engine_vllm_without_vllm_is_one_clear_line(tmp_path, monkeypatch, tiny_student):
    from agorabench.models.answering import Decoding
    from agorabench.models.in_process import VLLMAnswerer
    from agorabench.models.store import RequestStore

    monkeypatch.setitem(sys.modules, "vllm", None)
    store = RequestStore(tmp_path / "r.sqlite")
    with pytest.raises(RuntimeError, match="evaluation.engine is vllm but the vllm package is not importable"):
        VLLMAnswerer(tiny_student, store).answer_many([[{"role": "user", "content": "hi"}]], Decoding())
    store.close()
