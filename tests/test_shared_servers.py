"""`agora run` starts each local model once for all stages (pipeline.local_servers), and only when a
stage that calls a model is pending; the CLI of each stage reads where from the environment and passes
the addresses to its flow, and the library gets them as a parameter."""
from __future__ import annotations

import contextlib
import json

import pytest

from agorabench.models import servers as local_server
from agorabench.pipeline import run as pipeline
from agorabench.pipeline import stages
from agorabench.config import load_params
from agorabench.models.endpoint import SERVERS_ENV as SHARED_SERVERS_ENV
from agorabench.models.endpoint import Endpoint, EndpointAnswerer
from tests.conftest import write_params


class FakeServer:
    started: list[str] = []
    lora: dict[str, bool] = {}

    def __init__(self, model, engine="auto", log_path=None, extra_args=(), lora=False, **_):
        self.model, self.engine, self.lora, self.startup_s = model, engine, lora, 0.1
        self.base_url, self.model_id = f"http://127.0.0.1:1/{model}/v1", f"/models/{model}"

    def launch(self):
        FakeServer.started.append(self.model)
        FakeServer.lora[self.model] = self.lora
        self.base_url = f"http://127.0.0.1:{len(FakeServer.started)}/{self.model}/v1"  # one address each
        return self

    def wait_ready(self):
        return self

    def stop(self):
        pass

    def __enter__(self):
        return self.launch()

    def __exit__(self, *exc):
        pass


@pytest.fixture
def local_params(tmp_path, monkeypatch):
    monkeypatch.setattr(local_server, "LocalModelServer", FakeServer)
    FakeServer.started, FakeServer.lora = [], {}
    path = write_params(tmp_path / "params.yaml", "http://127.0.0.1:9", **{
        "generators.tiny": {"backend": "local", "model": "smollm2-135m-instruct", "engine": "transformers"},
        "generators.judge": {"backend": "local", "model": "qwen2.5-coder-0.5b-instruct", "engine": "transformers"},
        "benchmark_generators": ["fake", "tiny"], "evaluation.judge": "judge", "intrinsic.judges": ["judge"]})
    return load_params(path)


def test_servers_start_once_only_when_a_model_stage_is_pending(local_params):
    assert stages.served_generators(local_params) == ["tiny", "judge"]  # fake is remote: not ours to start
    with pipeline.local_servers(local_params, ["train@tiny-instance_generation-math", "results", "report"]) as env:
        assert env == {} and FakeServer.started == []  # nothing that calls a model: nothing starts
    with pipeline.local_servers(local_params, ["results", "intrinsic@tiny-instance_generation-math"]) as env:
        shared = json.loads(env[SHARED_SERVERS_ENV])
    with pipeline.local_servers(local_params, ["evaluate-anchor@base", "report"]) as env:
        assert SHARED_SERVERS_ENV in env  # the judge of a pending evaluation
    FakeServer.started = FakeServer.started[:2]
    # canary of the first block: a pending model stage does start them, each once
    assert FakeServer.started == ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]
    # named by engine and model (servers.server_key): a stage finds the server of the model it would start
    assert shared["transformers:qwen2.5-coder-0.5b-instruct"] == {
        "base_url": "http://127.0.0.1:2/qwen2.5-coder-0.5b-instruct/v1", "model_id": "/models/qwen2.5-coder-0.5b-instruct"}


def test_each_lane_starts_the_servers_its_stages_call(local_params):
    """With lanes, every lane gets its own servers (one request at a time each), and only those its
    stages call: its generator's for generation, the judge's for evaluation and intrinsic metrics."""
    tiny_lane = ["generate@tiny-instance_generation-math", "train@tiny-instance_generation-math",
                 "evaluate-student@tiny-instance_generation-math", "evaluate-generator@tiny"]
    fake_lane = ["generate@fake-instance_generation-math", "evaluate-anchor@base"]
    assert stages.generators_called_by(local_params, tiny_lane) == ["tiny", "judge"]
    assert stages.generators_called_by(local_params, fake_lane) == ["judge"]  # fake is remote
    assert stages.generators_called_by(local_params, tiny_lane[:2]) == ["tiny"]  # no evaluation: no judge
    # canary: the generation stage of a served generator calls it
    assert stages.generators_called_by(local_params, ["generate@tiny-quality_enhancement-code"]) == ["tiny"]
    pending = ["generate@fake-instance_generation-math"]
    with pipeline.lane_servers(local_params, pending, [tiny_lane, fake_lane]) as envs:
        assert envs[0] == {} and FakeServer.started == ["qwen2.5-coder-0.5b-instruct"]  # only b has pending work
        assert json.loads(pipeline.merge_servers(envs)[SHARED_SERVERS_ENV]) == json.loads(envs[1][SHARED_SERVERS_ENV])
    FakeServer.started = []
    with pipeline.lane_servers(local_params, None, [tiny_lane, fake_lane]) as envs:  # both: three servers
        assert FakeServer.started == ["smollm2-135m-instruct"] + ["qwen2.5-coder-0.5b-instruct"] * 2
        assert json.loads(envs[0][SHARED_SERVERS_ENV]).keys() == {"transformers:smollm2-135m-instruct",
                                                                  "transformers:qwen2.5-coder-0.5b-instruct"}
    assert pipeline.merge_servers([{}, {}]) == {}


def _vllm(params, **generator_update):
    return params.model_copy(update={
        "evaluation": params.evaluation.model_copy(update={"engine": "vllm", "cpu_weights": "float32"}),
        "generators": {**params.generators, "tiny": params.generators["tiny"].model_copy(
            update={"engine": "vllm", "cpu_weights": "float32", **generator_update})}})


def test_with_vllm_the_run_serves_the_student_base_with_lora(local_params, monkeypatch):
    """Students evaluated through vLLM: one server of the base (the base anchor and every student; LoRA
    on where students load their adapters into it, on a GPU), shared with a generator of the same model
    and weights; the reference's stage starts its own."""
    from agorabench.models import servers

    params = _vllm(local_params)
    base = params.student.base
    both = ["evaluate-student@tiny-instance_generation-math", "generate@tiny-instance_generation-math"]
    monkeypatch.setattr(servers, "_on_gpu", lambda: True)
    specs = {s.key: s for s in stages.servers_for(params, both)}
    assert list(specs) == [f"vllm:{base}", "transformers:qwen2.5-coder-0.5b-instruct"]  # tiny's model is the base
    assert specs[f"vllm:{base}"].lora
    # on a CPU a student is merged and served on its own: the base's server needs no LoRA
    monkeypatch.setattr(servers, "_on_gpu", lambda: False)
    assert not {s.key: s for s in stages.servers_for(params, both)}[f"vllm:{base}"].lora
    assert [s.key for s in stages.servers_for(params, ["evaluate-anchor@reference"])] == [
        "transformers:qwen2.5-coder-0.5b-instruct"]  # the judge's; none for the reference
    # canaries: training calls no model; with transformers students nothing is served for them
    assert stages.servers_for(params, ["train@tiny-instance_generation-math"]) == []
    plain = params.model_copy(update={"evaluation": params.evaluation.model_copy(update={"engine": "transformers"})})
    assert [s.key for s in stages.servers_for(plain, ["evaluate-student@tiny-instance_generation-math"])] == [
        "transformers:qwen2.5-coder-0.5b-instruct"]


def test_lanes_share_vllm_servers_and_keep_their_own_of_other_engines(local_params, monkeypatch):
    """vLLM batches what the lanes send it: one server per model for all lanes, with LoRA on if any lane
    evaluates students (on a GPU); a transformers server answers one request at a time: one per lane (canary)."""
    from agorabench.models import servers

    monkeypatch.setattr(servers, "_on_gpu", lambda: True)
    params = _vllm(local_params)
    lanes = [["generate@tiny-instance_generation-math", "evaluate-anchor@base"],
             ["generate@tiny-instance_generation-code", "evaluate-student@tiny-instance_generation-code"]]
    with pipeline.lane_servers(params, None, lanes) as envs:
        served = [json.loads(env[SHARED_SERVERS_ENV]) for env in envs]
    base = f"vllm:{params.student.base}"
    assert served[0][base] == served[1][base]  # the same server
    judge = "transformers:qwen2.5-coder-0.5b-instruct"
    assert served[0][judge] != served[1][judge]  # one each
    assert sorted(FakeServer.started) == sorted([params.student.base] + ["qwen2.5-coder-0.5b-instruct"] * 2)
    assert FakeServer.lora == {params.student.base: True, "qwen2.5-coder-0.5b-instruct": False}


def test_a_stage_uses_the_shared_server_instead_of_starting_one(local_params, tmp_path, monkeypatch):
    shared = {"transformers:smollm2-135m-instruct": Endpoint("http://h:1/v1", "m")}
    answerer = EndpointAnswerer(local_params, "tiny", endpoints=shared)
    api = answerer._open_api()
    assert str(api.client.base_url) == "http://h:1/v1/" and api.model == "m" and FakeServer.started == []
    answerer.close()
    # canary: a generator the run did not start gets its own server, as without `agora run`
    answerer = EndpointAnswerer(local_params, "judge", endpoints=shared)
    answerer._open_api()
    assert FakeServer.started == ["qwen2.5-coder-0.5b-instruct"]
    answerer.close()


def test_the_cli_passes_the_run_s_servers_to_the_flow(local_params, tmp_path, monkeypatch):
    """The one place that reads SERVERS_ENV is the CLI: the flow gets the addresses as a parameter."""
    from typer.testing import CliRunner

    import flows.generate
    from flows.cli import app

    seen = []

    async def fake_flow(**kwargs):
        seen.append(kwargs["endpoints"])
        return {"complete": True, "num_valid": 0, "num_requested": 1, "attempts": 0, "rejections": {},
                "cost_usd": 0.0, "run": {}}

    monkeypatch.setattr(flows.generate, "generate", fake_flow)
    args = ["generate", "-g", "tiny", "-m", "instance_generation", "-d", "math", "--params", str(tmp_path / "params.yaml")]
    servers = {"tiny": {"base_url": "http://h:1/v1", "model_id": "m"}}
    monkeypatch.setenv(SHARED_SERVERS_ENV, json.dumps(servers))
    assert CliRunner().invoke(app, args).exit_code == 0
    monkeypatch.delenv(SHARED_SERVERS_ENV)
    assert CliRunner().invoke(app, args).exit_code == 0
    assert seen == [servers, None]  # the second: no `agora run`, no servers named (canary)


def test_up_to_date_run_starts_no_server(tmp_path, monkeypatch):
    """`agora run` with nothing pending in `dvc status` goes straight to `dvc repro`: no Prefect server,
    no model server; with a pending stage it starts both (canary)."""
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", "http://127.0.0.1:9")
    monkeypatch.setenv("FAKE_API_KEY", "k")
    started = []

    @contextlib.contextmanager
    def fake_prefect(home=None, ui=False):
        started.append("prefect")
        yield "http://127.0.0.1:1/api"

    import flows.pipeline

    def fake_pipeline(**kwargs):  # the flow `agora run` runs: lanes, servers, dvc repro
        started.append("pipeline")
        return {"stages_run": ["generate@fake-instance_generation-math"], "duration_s": 1.0}

    monkeypatch.setattr(pipeline, "prefect_server", fake_prefect)
    monkeypatch.setattr(pipeline, "repro", lambda env, **kw: 0)
    monkeypatch.setattr(flows.pipeline, "pipeline", fake_pipeline)
    monkeypatch.setattr(pipeline, "pending_stages", lambda env: [])
    assert CliRunner().invoke(app, ["run"]).exit_code == 0 and started == []
    monkeypatch.setattr(pipeline, "pending_stages", lambda env: ["generate@fake-instance_generation-math"])
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 0 and started == ["prefect", "pipeline"], result.output
