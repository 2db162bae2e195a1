"""The generation engine against a real loopback HTTP server, through the real openai/anthropic SDKs."""
import asyncio
import json
import sqlite3

import pytest

from agorabench.models.clients.retry import FatalAPIError
from agorabench.config import load_params
from agorabench.generation.loop import generate_setting
from agorabench.setting import Setting
from tests.conftest import write_params


def run(params, generator="fake", domain="math", method="instance_generation", **kw):
    return asyncio.run(generate_setting(params, generator, domain, method, progress=False, **kw))


def read_bytes(params, generator="fake", domain="math", method="instance_generation"):
    return {k: p.read_bytes() for k, p in Setting(generator, method, domain).dataset(params).items()}


@pytest.mark.parametrize("method", ["instance_generation", "response_generation", "quality_enhancement"])
@pytest.mark.parametrize("domain", ["math", "code", "general"])
def test_every_setting_gives_exactly_n_valid_instances(params_file, fake_server, method, domain):
    params = load_params(params_file)
    manifest = run(params, domain=domain, method=method, num=5)
    assert manifest["num_valid"] == 5 and manifest["complete"]
    rows = [json.loads(line) for line in Setting("fake", method, domain).dataset(params)["data"].read_text().splitlines()]
    assert len(rows) == 5
    for row in rows:
        assert row["instruction"] and row["response"] and row["config"] == "fake-model"
        assert row["prompt_sha256"] and row["seed_ids"] and row["input_tokens"] > 0
        if method == "instance_generation":
            assert row["theme"]
            assert (row["first_word"] is not None) == (domain == "general")
    assert manifest["cost_usd"] > 0 and manifest["prompt_set_sha256"]
    assert fake_server.completed_count == manifest["attempts"]


def test_rerun_sends_zero_requests_and_rewrites_identical_bytes(params_file, fake_server):
    params = load_params(params_file)
    first = run(params, num=12)
    before = read_bytes(params)
    sent = fake_server.request_count
    again = run(params, num=12)
    assert fake_server.request_count == sent, "a finished setting must not send any request"
    assert again["run"]["requests_sent"] == 0 and again["run"]["answers_cached"] == first["attempts"]
    assert read_bytes(params) == before
    # The manifest's time is the generator's: its answers' latencies, as the request store keeps them
    # (so the re-run, answered from the store, wrote the same).
    with sqlite3.connect(params.cache.requests_db) as db:
        stored = db.execute("SELECT sum(latency_s) FROM responses").fetchone()[0]
    assert stored > 0 and first["latency_s"] == pytest.approx(stored, abs=1e-3) == again["latency_s"]


def test_output_does_not_depend_on_concurrency(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "k")
    outs = []
    for conc in (1, 16):
        folder = tmp_path / f"c{conc}"
        folder.mkdir()
        params = load_params(write_params(folder / "params.yaml", fake_server.url,
                                          **{"generators.fake.concurrency": conc, "generation.batch_size": 7}))
        run(params, domain="general", num=20)
        outs.append(Setting("fake", "instance_generation", "general").dataset(params)["data"].read_bytes())
    assert outs[0] == outs[1]


def test_instance_generation_mixes_seed_and_generated_demos(params_file):
    params = load_params(params_file)
    run(params, num=12, **{})  # batches of 256: the first batch can only use seeds
    small = load_params(write_params(params_file, params.generators["fake"].base_url.removesuffix("/v1"),
                                     **{"generation.batch_size": 4}))
    run(small, num=12)
    rows = [json.loads(x) for x in Setting("fake", "instance_generation", "math").dataset(small)["data"].read_text().splitlines()]
    # Batches 0 and 1 are built before any result is in (batch 1 is queued while 0 runs), so their
    # prompts hold 3 seed demos; from batch 2 on, 2 seed demos and 1 generated one (no aliasing).
    assert all(len(r["seed_ids"]) == 3 for r in rows[:8])
    assert all(len(r["seed_ids"]) == 2 for r in rows[8:])


def test_rejected_outputs_are_kept_with_raw_text_and_reason(tmp_path, monkeypatch):
    from agorabench.testing.llm_server import FakeLLMServer, default_responder

    calls = {"n": 0}

    def flaky(api, body):  # every other answer lacks the [RESULT] tags
        calls["n"] += 1
        text = default_responder(api, body)
        return text.replace("[RESULT]", "").replace("[/RESULT]", "") if calls["n"] % 2 else text

    monkeypatch.setenv("FAKE_API_KEY", "k")
    with FakeLLMServer(responder=flaky) as server:
        params = load_params(write_params(tmp_path / "params.yaml", server.url))
        manifest = run(params, method="response_generation", num=6)
    assert manifest["num_valid"] == 6
    assert manifest["rejections"] == {"math_result_tags": manifest["attempts"] - 6}
    rejected = [json.loads(x) for x in Setting("fake", "response_generation", "math").dataset(params)["rejected"].read_text().splitlines()]
    assert rejected and all(r["raw"] and r["reason"] == "math_result_tags" for r in rejected)


@pytest.mark.parametrize("method", ["instance_generation", "quality_enhancement"])
def test_shortfall_is_explained_in_the_manifest(tmp_path, monkeypatch, method):
    from agorabench.testing.llm_server import FakeLLMServer

    monkeypatch.setenv("FAKE_API_KEY", "k")
    with FakeLLMServer(responder=lambda api, body: "no triggers at all") as server:
        params = load_params(write_params(tmp_path / "params.yaml", server.url,
                                          **{"generation.max_attempts_per_instance": 3}))
        manifest = run(params, num=4, method=method)
    assert manifest["num_valid"] == 0 and not manifest["complete"]
    assert "retry budget spent" in manifest["shortfall_reason"] and manifest["attempts"] == 12
    assert manifest["rejections"] == {"missing_trigger": 12}


def test_rg_replaces_a_seed_that_keeps_failing(tmp_path, monkeypatch):
    from agorabench.testing.llm_server import FakeLLMServer, default_responder

    monkeypatch.setenv("FAKE_API_KEY", "k")
    seen = []

    def picky(api, body):  # the first seed asked about never gets a valid answer
        prompt = body["messages"][-1]["content"]
        seen.append(prompt)
        return "no tags" if prompt == seen[0] else default_responder(api, body)

    with FakeLLMServer(responder=picky) as server:
        params = load_params(write_params(tmp_path / "params.yaml", server.url,
                                          **{"generation.max_attempts_per_seed": 2}))
        manifest = run(params, num=3, method="response_generation")
    assert manifest["complete"] and manifest["num_valid"] == 3
    assert seen.count(seen[0]) == 2 and manifest["attempts"] == 5


@pytest.mark.parametrize("fault", ["429", "500", "503", "timeout", "drop", "garbage"])
def test_transient_faults_are_retried(params_file, fake_server, fault):
    params = load_params(params_file)
    if fault == "timeout":
        fake_server.inject(("timeout", {"hang_s": 3}))
        params = params.model_copy(update={"generators": {"fake": params.generators["fake"].model_copy(update={"timeout_s": 0.5})}})
    else:
        fake_server.inject(fault, fault)
    manifest = run(params, method="response_generation", domain="general", num=3)
    assert manifest["num_valid"] == 3
    assert manifest["run"]["retries"] >= 1 and manifest["run"]["errors"]


def test_retry_after_is_honoured(params_file, fake_server):
    import time

    params = load_params(params_file)
    fake_server.inject(("429", {"retry_after": "1"}))
    started = time.perf_counter()
    run(params, method="response_generation", domain="general", num=1)
    assert time.perf_counter() - started >= 1.0


def test_non_retryable_error_fails_fast_with_server_message(params_file, fake_server):
    params = load_params(params_file)
    fake_server.inject(*["400"] * 20)
    with pytest.raises(FatalAPIError) as e:
        run(params, method="response_generation", domain="general", num=1)
    assert "400" in str(e.value) and "\n" not in str(e.value)
    assert fake_server.request_count == 1


def test_openai_client_sends_what_the_sdks_create_would(fake_server, monkeypatch):
    """Our client posts the chat body itself (skipping create()'s per-message schema walk); the
    server must see exactly what `chat.completions.create` sends, and the SDK's auth header."""
    import asyncio

    import openai

    from agorabench.models.clients.openai_chat import OpenAIChat

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi. [END]"}]
    sampling = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 32, "stop": ["[END]"], "seed": None}

    async def both():
        ours = OpenAIChat(model="m", base_url=fake_server.url + "/v1", api_key="k", timeout_s=10)
        text, finish, n_in, n_out, _ = await ours.chat(messages, sampling)
        await ours.close()
        sdk = openai.AsyncOpenAI(base_url=fake_server.url + "/v1", api_key="k", max_retries=0)
        await sdk.chat.completions.create(model="m", messages=messages,
                                          **{k: v for k, v in sampling.items() if v is not None})
        await sdk.close()
        return text, n_in, n_out

    text, n_in, n_out = asyncio.run(both())
    assert text and n_in > 0 and n_out > 0
    ours_body, sdk_body = fake_server.received[-2:]
    assert ours_body == sdk_body and "seed" not in ours_body  # None means "not sent", as in create()
    assert fake_server.received_auth[-2:] == ["Bearer k", "Bearer k"]


def test_anthropic_backend_through_the_real_sdk(params_file, fake_server):
    params = load_params(params_file)
    manifest = run(params, generator="fake-claude", domain="code", num=3)
    assert manifest["num_valid"] == 3 and manifest["backend"] == "anthropic"
    body = fake_server.completed[-1]
    assert body["system"] and body["stop_sequences"] == ["[END]"]
    assert manifest["cost_usd"] == pytest.approx(
        (manifest["input_tokens"] * 3.0 + manifest["output_tokens"] * 15.0) / 1e6, rel=1e-6)


def test_max_cost_stops_cleanly_before_the_budget(params_file, fake_server):
    params = load_params(params_file)
    # One worst-case request: ~600 prompt tokens at $1/M plus 384 output tokens at $2/M = ~$0.0014.
    manifest = run(params, num=10, max_cost=0.005)
    assert not manifest["complete"] and "--max-cost" in manifest["shortfall_reason"]
    assert 0 < manifest["num_valid"] < 10
    assert manifest["run"]["new_cost_usd"] <= 0.005
    # Raising the budget resumes: the answers already paid for are not bought again.
    sent = fake_server.request_count
    resumed = run(params, num=10)
    assert resumed["complete"] and resumed["run"]["answers_cached"] >= manifest["attempts"]
    assert fake_server.request_count - sent == resumed["run"]["requests_sent"]


def test_concurrency_limit_is_respected(tmp_path, monkeypatch):
    import time

    from agorabench.testing.llm_server import FakeLLMServer

    monkeypatch.setenv("FAKE_API_KEY", "k")
    with FakeLLMServer(latency_s=0.1) as server:
        params = load_params(write_params(tmp_path / "params.yaml", server.url, **{"generators.fake.concurrency": 2}))
        started = time.perf_counter()
        run(params, method="response_generation", domain="general", num=6)
        elapsed = time.perf_counter() - started
    # 6 requests of 0.1 s each, at most 2 at a time: at least 3 rounds (all at once would be ~0.1 s).
    assert elapsed >= 0.3


def test_long_seeds_are_dropped_by_seeds_max_tokens(params_file):
    from agorabench.config import ParamsError
    from agorabench.generation.plan import load_setting_seeds
    from agorabench.generation.validation import count_tokens

    params = load_params(params_file)
    everything = load_setting_seeds(params, "math", "instance_generation")
    short = load_setting_seeds(params.model_copy(update={"seeds": params.seeds.model_copy(update={"max_tokens": 100})}),
                               "math", "instance_generation")
    assert 0 < len(short) < len(everything)
    assert all(count_tokens(s.instruction + "\n" + s.response, "approx") <= 100 for s in short)
    with pytest.raises(ParamsError, match="seeds.max_tokens"):
        load_setting_seeds(params.model_copy(update={"seeds": params.seeds.model_copy(update={"max_tokens": 16})}),
                           "math", "instance_generation")


def test_a_run_the_store_answers_never_opens_the_endpoint(params_file, monkeypatch):
    # For a `local` generator, opening the endpoint starts a model server: pointless on a re-run.
    from agorabench.models.endpoint import EndpointAnswerer

    opened = []
    real = EndpointAnswerer._open_api

    def counting(self):
        opened.append(1)
        return real(self)

    monkeypatch.setattr(EndpointAnswerer, "_open_api", counting)
    params = load_params(params_file)
    run(params, num=3)
    assert len(opened) == 1
    again = run(params, num=3)
    assert len(opened) == 1 and again["run"]["answers_cached"] == again["attempts"]


def test_each_request_carries_a_seed_taken_from_its_key(tmp_path, fake_server, monkeypatch):
    """Same request, same seed (a fresh run samples what the last one did on a server that honours
    seeds); retries of one prompt get different seeds; a generator's own sampling seed wins."""
    monkeypatch.setenv("FAKE_API_KEY", "k")

    def seeds_of_a_fresh_run(name, **extra):
        folder = tmp_path / name
        folder.mkdir()
        params = load_params(write_params(folder / "params.yaml", fake_server.url, **extra))
        mark = len(fake_server.received)
        run(params, domain="code", method="response_generation", num=3)
        # sorted: concurrent requests reach the server in any order
        return sorted((json.dumps(b["messages"]), b.get("seed")) for b in fake_server.received[mark:])

    first, again = seeds_of_a_fresh_run("a"), seeds_of_a_fresh_run("b")
    assert first == again and len(first) >= 3 and all(isinstance(seed, int) for _, seed in first)
    assert len({seed for _, seed in first}) == len(first)  # no two requests share a seed
    fixed = seeds_of_a_fresh_run("c", **{"generators.fake.sampling": {"seed": 7}})
    assert {seed for _, seed in fixed} == {7}  # canary: the generator's own seed is sent as it is
    assert {seed for _, seed in seeds_of_a_fresh_run("d", **{"generators.fake.sampling": {"seed": None}})} == {None}
