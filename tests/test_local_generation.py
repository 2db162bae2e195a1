"""The engines `engine: auto` falls back to: SmolLM2-135M-Instruct (shipped in a package) through
`transformers serve` (where vLLM is not installed) or llama.cpp (an optional extra), and the openai SDK.

llama.cpp answers fast enough to try the three methods; transformers serve takes one request at a time
(models/endpoint.py), so it tries instance generation only, the method whose output carries both an
instruction and a response (240 s for the three on 2 cores; the default engine, vLLM, generates and
judges a setting in tests/test_vllm_paths.py)."""
import asyncio

import pytest

from agorabench.config import METHODS, load_params
from agorabench.generation.loop import generate_setting
from agorabench.models.endpoint import Endpoint
from agorabench.models.servers import LocalModelServer, server_key
from tests.conftest import REPO
from tests.test_faults import store_rows


# transformers serve with continuous batching: 8 short greedy attempts at a time.
ENGINES = {"llamacpp": [], "transformers": ["--continuous-batching", "--cb-max-memory-percent", "0.1"]}
ENGINE_METHODS = {"llamacpp": METHODS, "transformers": ["instance_generation"]}


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(ENGINES))
def test_smollm2_produces_valid_instances(tmp_path, engine):
    import yaml

    if engine == "llamacpp":
        pytest.importorskip("llama_cpp", reason="llama.cpp is an optional extra: pip install -e '.[llamacpp]'")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    gen = params["generation"]
    # Greedy decoding keeps this test repeatable; the 135M model rambles at high temperature.
    gen["sampling"].update(temperature=0.0, max_tokens=192)
    gen.update(prompt_dir=str(REPO / "agorabench/generation/prompts/default"), output_dir=str(tmp_path / "data"),
               batch_size=8)
    # The engine and weights of the server started below: a generator reaches a running server only under
    # the key it would start one with itself (servers.server_key), or it starts its own.
    params["generators"]["smollm2"].update(concurrency=8, engine=engine, cpu_weights="float32")
    params["cache"]["requests_db"] = str(tmp_path / "requests.sqlite")
    params["seeds"]["max_tokens"] = 4096  # the paper's seed filter: richer demos help this small model
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    p = load_params(tmp_path / "params.yaml")

    with LocalModelServer("smollm2-135m-instruct", engine=engine, extra_args=ENGINES[engine],
                          warmup_params={"temperature": 0.0}, log_path=tmp_path / "server.log") as server:
        assert server.engine == engine
        for method in ENGINE_METHODS[engine]:
            # Greedy answers to the same prompt repeat, so response generation and quality
            # enhancement move to the next seed after one try; every setting may make 32 attempts.
            pm = p.model_copy(update={"generation": p.generation.model_copy(
                update={"max_attempts_per_instance": 32, "max_attempts_per_seed": 1})})
            served = Endpoint(server.base_url, server.model_id)
            endpoints = {server_key(engine, "smollm2-135m-instruct", "float32"): served}
            manifest = asyncio.run(generate_setting(pm, "smollm2", "general", method, num=1, progress=False,
                                                    endpoints=endpoints))
            assert manifest["num_valid"] == 1, (method, manifest["rejections"])
            assert manifest["input_tokens"] > 0 and manifest["output_tokens"] > 0
    # Every answer came from that server: its log has a request for each. (Canary: the endpoint under
    # another key, as this test had it until the default's generators went to bfloat16, left the
    # generator to start a vLLM server of its own, and the test passed on vLLM's float32 answers.)
    answers = store_rows(p.cache.requests_db)
    requests = (tmp_path / "server.log").read_text().count('"POST /v1/chat/completions')
    assert answers > 0 and requests >= answers, (answers, requests)
