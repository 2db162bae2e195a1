"""A local model's weights on a CPU (agorabench/models/cpu_weights.py): what int8 quantizes, what bfloat16
loads, how the request store tells the answers apart, what params.yaml accepts, and both server
variants' command lines (the int8 one started for real)."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json

import pytest

from agorabench.config import ParamsError, load_params
from agorabench.models.cpu_weights import effective, native_bf16, quantize_model
from tests.conftest import write_params


def _int8_layers(model) -> int:
    import torch

    return sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())


def test_every_linear_layer_gets_int8_weights_and_the_model_still_answers(tiny_student):
    import torch
    from transformers import AutoModelForCausalLM

    model = quantize_model(AutoModelForCausalLM.from_pretrained(tiny_student), "int8")
    assert _int8_layers(model) == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer, and the LM head
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)


def test_no_quantization_leaves_the_model_alone_canary(tiny_student):
    from transformers import AutoModelForCausalLM

    model = quantize_model(AutoModelForCausalLM.from_pretrained(tiny_student), None)
    assert _int8_layers(model) == 0


def test_what_each_setting_means_on_this_cpu():
    # this suite runs on a CPU
    assert effective(None) is None and effective("float32") is None
    assert effective("int8") == "int8" and effective("bfloat16") == "bfloat16"
    assert effective("auto") == ("bfloat16" if native_bf16() else None)
    with pytest.raises(ValueError, match="int8"):
        effective("int4")


def test_bfloat16_loads_bfloat16_weights(tiny_student):
    import torch

    from agorabench.models.in_process import load_model

    model, _ = load_model(tiny_student, cpu_weights="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    model, _ = load_model(tiny_student)  # canary: the default stays float32
    assert next(model.parameters()).dtype == torch.float32


def _update_kept(merged, base, update) -> float:
    """How much of a LoRA `update` (per weight, in float32) the bfloat16 `merged` adds to the bfloat16
    `base`: the projection of their difference onto the update, 1 where all of it is kept on average."""
    base = base.state_dict()
    along = size = 0.0
    for name, weight in merged.state_dict().items():
        if name in update:
            along += float(((weight.float() - base[name].float()) * update[name]).sum())
            size += float((update[name] ** 2).sum())
    return along / size


def test_a_bfloat16_student_keeps_an_update_smaller_than_bfloat16_can_add(tmp_path, tiny_student):
    # A trained adapter changes a weight by less than bfloat16's spacing (a default student: 0.04% on
    # average). Added to weights already rounded to bfloat16, most of it rounds away; merged in float32
    # and then rounded, it moves a share of the weights by one step, and keeps the update on average.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from agorabench.models.in_process import load_model
    from agorabench.testing.students import random_lora_student

    student = random_lora_student(tmp_path / "student", seed=3, base=tiny_student, scale=1e-4)
    base32, student32 = load_model(tiny_student)[0].state_dict(), load_model(student)[0].state_dict()
    update = {k: student32[k] - w for k, w in base32.items() if not torch.equal(student32[k], w)}
    assert update and max(float((d.abs().mean() / base32[k].abs().mean())) for k, d in update.items()) < 2e-3
    base, _ = load_model(tiny_student, cpu_weights="bfloat16")
    merged, _ = load_model(student, cpu_weights="bfloat16")
    assert next(merged.parameters()).dtype == torch.bfloat16
    assert 0.8 < _update_kept(merged, base, update) < 1.2
    # canary: the same adapter merged into the bfloat16 base keeps much less of it
    in_bf16 = AutoModelForCausalLM.from_pretrained(tiny_student, dtype=torch.bfloat16)
    in_bf16 = PeftModel.from_pretrained(in_bf16, student).merge_and_unload()
    assert _update_kept(in_bf16, base, update) < 0.6


def test_other_weights_are_another_model_to_the_request_store(tmp_path, tiny_student):
    from agorabench.models.in_process import TransformersAnswerer, model_identity
    from agorabench.models.store import RequestStore

    store = RequestStore(tmp_path / "r.sqlite")
    name = lambda weights=None: TransformersAnswerer(tiny_student, store, cpu_weights=weights).identity["model"]
    assert name() == model_identity(tiny_student) == name("float32")
    assert name("int8") == name() + "+int8" and name("bfloat16") == name() + "+bfloat16"


def test_generator_request_keys_name_the_weights(tmp_path):
    from agorabench.models.answering import Decoding
    from agorabench.models.endpoint import EndpointAnswerer

    def key(weights):
        overrides = {"generators.local.backend": "local", "generators.local.model": "smollm2-135m-instruct",
                     "generators.local.engine": "transformers"}
        if weights:
            overrides["generators.local.cpu_weights"] = weights
        params = load_params(write_params(tmp_path / "params.yaml", "http://127.0.0.1:1", **overrides))
        with EndpointAnswerer(params, "local") as answerer:
            return json.loads(answerer.request([{"role": "user", "content": "hi"}], Decoding(max_new_tokens=8))[0])

    assert key("int8")["cpu_weights"] == "int8" and key("bfloat16")["cpu_weights"] == "bfloat16"
    # keys of float32 servers are what they were before the setting existed
    assert "cpu_weights" not in key(None) and "cpu_weights" not in key("float32")


def test_cpu_weights_on_an_api_generator_is_one_line_naming_the_field(tmp_path):
    path = write_params(tmp_path / "params.yaml", "http://127.0.0.1:1", **{"generators.fake.cpu_weights": "int8"})
    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert "generators.fake" in str(e.value) and "cpu_weights" in str(e.value) and "\n" not in str(e.value)
    path = write_params(tmp_path / "params.yaml", "http://127.0.0.1:1", **{"evaluation.cpu_weights": "int4"})
    with pytest.raises(ParamsError, match="evaluation.cpu_weights"):
        load_params(path)


@pytest.mark.slow
def test_int8_server_loads_int8_weights_and_answers(tmp_path):
    import openai

    from agorabench.models.servers import LocalModelServer

    log = tmp_path / "server.log"
    with LocalModelServer("smollm2-135m-instruct", engine="transformers", cpu_weights="int8", log_path=log) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="local", max_retries=0, timeout=120)
        resp = client.chat.completions.create(model=srv.model_id, max_tokens=8, temperature=0,
                                              messages=[{"role": "user", "content": "Name one colour."}])
    assert resp.choices[0].message.content.strip()
    # SmolLM2-135M: 30 layers x 7 projections, plus the LM head. If transformers moves the method the
    # wrapper patches, the server still answers, but this line is missing.
    assert "agorabench.models.transformers_serve: 211 Linear layers with int8 weights" in log.read_text()


def test_served_models_generate_in_inference_mode(monkeypatch):
    """agorabench.models.transformers_serve runs the server's generation thread in torch.inference_mode()."""
    import torch
    from transformers.cli.serving.utils import InferenceThread

    from agorabench.models import transformers_serve

    # canary: transformers' own thread runs with inference mode off
    assert InferenceThread().submit(torch.is_inference_mode_enabled).result(timeout=30) is False
    monkeypatch.setattr(InferenceThread, "_run", transformers_serve.thread_loop_in_inference_mode)
    assert InferenceThread().submit(torch.is_inference_mode_enabled).result(timeout=30) is True


def test_bfloat16_server_is_started_with_bfloat16():
    from agorabench.models.servers import LocalModelServer

    server = LocalModelServer("smollm2-135m-instruct", engine="transformers", cpu_weights="bfloat16")
    server.model_id, server.port = "/models/x", 1
    assert server._command("transformers")[2:6] == ["agorabench.models.transformers_serve", "/models/x", "--dtype", "bfloat16"]
    server.cpu_weights = "float32"  # canary: float32 adds nothing
    assert "--dtype" not in server._command("transformers")
