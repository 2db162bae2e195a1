"""int8 weights (agorabench/quantize.py): what gets quantized, how the request store tells the answers
apart, what params.yaml accepts, and the int8 `transformers serve` wrapper started for real."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from agorabench.config import ParamsError, load_params
from agorabench.quantize import effective, quantize_model
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


def test_unknown_quantization_is_refused():
    assert effective(None) is None and effective("int8") == "int8"  # this suite runs on a CPU
    with pytest.raises(ValueError, match="int8"):
        effective("int4")


def test_int8_answers_are_another_model_to_the_request_store(tmp_path, tiny_student):
    from agorabench.inference import LocalGenerator, model_identity
    from agorabench.request_store import RequestStore

    store = RequestStore(tmp_path / "r.sqlite")
    plain = LocalGenerator(tiny_student, store)
    int8 = LocalGenerator(tiny_student, store, quantize="int8")
    assert plain.identity == model_identity(tiny_student)
    assert int8.identity == plain.identity + "+int8"


def test_generator_request_keys_name_the_quantization(tmp_path):
    from agorabench.clients.generator_client import GeneratorClient
    from agorabench.request_store import RequestStore

    def key(quantize):
        overrides = {"generators.local.backend": "local", "generators.local.model": "smollm2-135m-instruct",
                     "generators.local.engine": "transformers"}
        if quantize:
            overrides["generators.local.quantize"] = quantize
        params = load_params(write_params(tmp_path / "params.yaml", "http://127.0.0.1:1", **overrides))
        client = GeneratorClient("local", params.generators["local"], RequestStore(tmp_path / "r.sqlite"),
                                 open_api=lambda: None)
        return client.key_request([{"role": "user", "content": "hi"}], {"max_tokens": 8}, 0)

    assert key("int8")["quantize"] == "int8"
    assert "quantize" not in key(None)  # keys of float32 servers are what they were before


def test_quantize_on_an_api_generator_is_one_line_naming_the_field(tmp_path):
    path = write_params(tmp_path / "params.yaml", "http://127.0.0.1:1", **{"generators.fake.quantize": "int8"})
    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert "generators.fake" in str(e.value) and "quantize" in str(e.value) and "\n" not in str(e.value)
    path = write_params(tmp_path / "params.yaml", "http://127.0.0.1:1", **{"evaluation.quantize": "int4"})
    with pytest.raises(ParamsError, match="evaluation.quantize"):
        load_params(path)


@pytest.mark.slow
def test_int8_server_loads_int8_weights_and_answers(tmp_path):
    import openai

    from agorabench.local_server import LocalModelServer

    log = tmp_path / "server.log"
    with LocalModelServer("smollm2-135m-instruct", engine="transformers", quantize="int8", log_path=log) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="local", max_retries=0, timeout=120)
        resp = client.chat.completions.create(model=srv.model_id, max_tokens=8, temperature=0,
                                              messages=[{"role": "user", "content": "Name one colour."}])
    assert resp.choices[0].message.content.strip()
    # SmolLM2-135M: 30 layers x 7 projections, plus the LM head. If transformers moves the method the
    # wrapper patches, the server still answers, but this line is missing.
    assert "agorabench.int8_serve: 211 Linear layers with int8 weights" in log.read_text()
