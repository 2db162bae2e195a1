"""The paper profile's rehearsal on a CPU (agorabench/pipeline/rehearsal.py): that it changes only the
models and the sizes, that its loopback Hub serves every seed set the paper profile reads, and that its
loopback APIs pass a model's answers through both wire formats. The rehearsal itself, end to end
(`agora run --profile paper --rehearse`), is the last test: it takes most of an hour on two cores, so
it runs only with AGORA_REHEARSAL=1 (`make rehearse`), outside `make test`."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import yaml

from agorabench.pipeline import rehearsal
from tests.conftest import REPO, download_from


def _flat(data, prefix: str = "") -> dict:
    if not isinstance(data, dict):
        return {prefix: data}
    out = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _changed(before: dict, after: dict) -> set[str]:
    a, b = _flat(before), _flat(after)
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


PAPER = yaml.safe_load((REPO / "profiles/paper.yaml").read_text())

# What a rehearsal may change: the models, the sizes, and where what outlives a run is kept.
MODELS = {"generators.llama-3-1-8b.model", "generation.tokenizer", "student.base", "student.reference",
          "training.accelerate_config", "intrinsic.reward_model", "intrinsic.embedding_model",
          "intrinsic.trust_remote_code"}
APART = {"intrinsic.cache_db", "cache.requests_db", "analysis.history_dir"}
SIZES = {"benchmark_generators", "evaluation.generators", "scaling.generators", "scaling.sizes",
         "generation.num_instances", "generation.sampling.max_tokens", "training.max_length", "evaluation.limit",
         "evaluation.decoding.max_new_tokens", "evaluation.judge_max_tokens", "intrinsic.judge_max_tokens"}


def test_the_rehearsal_changes_only_the_models_and_the_sizes():
    from agorabench.config import Params

    data = rehearsal.rehearsal_params(PAPER)
    assert _changed(PAPER, data) == MODELS | SIZES | APART
    # Nothing the rehearsal keeps goes where a real run keeps it.
    assert all(data[section][key].startswith(".agora/rehearsal/") for section, key in rehearsal.APART)
    Params.model_validate(data)
    # One generator per route, the judges the paper's, the students' base without a template of its own.
    assert data["benchmark_generators"] == ["gpt-4o", "claude-3-5-sonnet", "llama-3-1-8b"]
    assert data["intrinsic"]["judges"] == ["gpt-4o", "prometheus-2-8x7b"] and data["evaluation"]["judge"] == "gpt-4o"
    assert data["student"]["chat_template"] == "llama3" and data["seeds"]["source"] == "hub"
    # Derived, not copied: a field the paper profile changes, the rehearsal follows.
    edited = copy.deepcopy(PAPER)
    edited["training"]["learning_rate"] = 3e-5
    edited["evaluation"]["arenahard_version"] = "v2.0"
    assert _changed(data, rehearsal.rehearsal_params(edited)) == {"training.learning_rate",
                                                                  "evaluation.arenahard_version"}
    # Canary: the check sees a change outside the models and the sizes.
    data["evaluation"]["judge_top_logprobs"] = 0
    assert _changed(PAPER, data) - MODELS - SIZES - APART == {"evaluation.judge_top_logprobs"}


def test_the_loopback_hub_serves_every_seed_set_and_arena_hard_v01(tmp_path, monkeypatch):
    """Each of the paper's nine seed sets, S_Ø's demos and Arena-Hard v0.1 load through the real
    `datasets` and `huggingface_hub` clients from the rehearsal's Hub, and keep seeds after
    decontamination against the benchmarks (every packaged math and code problem is a test item there)."""
    from agorabench.evaluation.benchmarks import arenahard
    from agorabench.generation.seeds import hub
    from agorabench.testing.hub_server import FakeHubServer

    with FakeHubServer() as server:
        download_from(server, monkeypatch, tmp_path)
        for key, files in rehearsal.hub_repos().items():
            server.add(key, files)
        for domain in ("math", "code", "general"):
            for method in ("instance_generation", "response_generation", "quality_enhancement"):
                seeds = hub.build(domain, method)
                assert len(seeds) >= 10, (domain, method)
                assert all(s.instruction for s in seeds) and (method == "response_generation") != all(s.response for s in seeds)
        assert {len(hub.fewshot_docs(b)) for b in ("gsm8k", "mbpp")} == {rehearsal.ROWS, 3}
        assert len(arenahard.v01_items.__wrapped__()) == rehearsal.ROWS
        # Canary: the offline seeds of the math domain are test items, so served as they are, none survive.
        from agorabench.generation.seeds import offline
        from agorabench.testing.hub_server import dataset_repo

        rows = [{"question": s.instruction, "answer": "#### 1"} for s in offline.build("math", "instance_generation")]
        server.add("datasets/openai/gsm8k", dataset_repo({"main": {"train": rows[:20]}}))
        assert hub.load_gsm8k_train() == []


def test_the_loopback_apis_pass_a_models_answers_through_both_wire_formats():
    """model_responder between two loopback servers: the front speaks OpenAI and Anthropic to the real
    SDKs, the back stands for the answering model's OpenAI-compatible server. Text, token counts,
    log-probabilities, the system prompt and the sampling fields cross; a request that asks for no
    log-probabilities gets none (the canary)."""
    import anthropic
    import openai

    from agorabench.testing.llm_server import FakeLLMServer

    def model(api, body):
        return {"text": "Paris.", "input_tokens": 7, "output_tokens": 2,
                "logprobs": [("Paris", -0.1, [("Paris", -0.1), ("Lyon", -2.5)]), (".", -0.01, [(".", -0.01)])]}

    with FakeLLMServer(responder=model) as back, \
            FakeLLMServer(responder=rehearsal.model_responder(back.url + "/v1", "m"), blocking_responder=True) as front:
        chat = openai.OpenAI(base_url=front.url + "/v1", api_key="x")
        reply = chat.chat.completions.create(model="gpt-4o-2024-08-06", messages=[{"role": "user", "content": "Capital?"}],
                                             max_tokens=5, temperature=0.0, seed=3, logprobs=True, top_logprobs=2)
        assert reply.choices[0].message.content == "Paris."
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (7, 2)
        top = reply.choices[0].logprobs.content[0].top_logprobs
        assert [(t.token, t.logprob) for t in top] == [("Paris", -0.1), ("Lyon", -2.5)]
        assert back.received[-1]["model"] == "m" and back.received[-1]["seed"] == 3
        plain = chat.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Capital?"}])
        assert plain.choices[0].logprobs is None  # canary: asked for none, given none
        claude = anthropic.Anthropic(base_url=front.url, api_key="x")
        message = claude.messages.create(model="claude-3-5-sonnet-20240620", system="Be brief.", max_tokens=5,
                                         stop_sequences=["[END]"], messages=[{"role": "user", "content": "Capital?"}])
        assert message.content[0].text == "Paris." and message.usage.output_tokens == 2
        assert back.received[-1]["messages"][0] == {"role": "system", "content": "Be brief."}
        assert back.received[-1]["stop"] == ["[END]"] and "logprobs" not in back.received[-1]
        # A meta-prompt for a new instance is answered from the script, in the setting's format...
        asked = back.request_count
        meta = [{"role": "user", "content": "Examples with [RESULT] tags.\nINPUT:"}]
        scripted = chat.chat.completions.create(model="gpt-4o", messages=meta, max_tokens=200)
        assert "OUTPUT:" in scripted.choices[0].message.content and back.request_count == asked
        assert scripted.usage.completion_tokens > 0  # priced on its tokens
        # The model server's refusal reaches the client as a 400 with its reason, sent once: a 500
        # would be retried for minutes. A 500 of the model server stays a 500, and is retried (canary).
        back.inject("400")
        with pytest.raises(openai.BadRequestError, match="the answering model refused the request"):
            chat.with_options(max_retries=2).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Too long?"}])
        assert back.request_count == asked + 1
        back.inject("500")
        retried = chat.with_options(max_retries=2).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Again?"}])
        assert retried.choices[0].message.content == "Paris." and back.request_count == asked + 3
    # ...and by the model when the script is off (the canary).
    with FakeLLMServer(responder=model) as back, \
            FakeLLMServer(responder=rehearsal.model_responder(back.url + "/v1", "m", script_instances=False),
                          blocking_responder=True) as front:
        chat = openai.OpenAI(base_url=front.url + "/v1", api_key="x")
        assert chat.chat.completions.create(model="gpt-4o", messages=meta).choices[0].message.content == "Paris."


def test_a_port_the_rehearsal_cannot_serve_is_one_line():
    """The paper profile's self-hosted endpoints are served on their own ports: one taken, or one not on
    this machine, is one line naming the generator (the canary: the port, freed, passes)."""
    import socket

    from agorabench.config import ParamsError, Params

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"generators.prometheus-2-8x7b.base_url: port {port} is in use") as err:
            rehearsal._check_free(port, "prometheus-2-8x7b")
        assert "\n" not in str(err.value)
    rehearsal._check_free(port, "prometheus-2-8x7b")
    data = rehearsal.rehearsal_params(PAPER)
    assert rehearsal._self_hosted_ports(Params.model_validate(data)) == {8087: "prometheus-2-8x7b"}
    data["generators"]["prometheus-2-8x7b"]["base_url"] = "http://10.1.2.3:8087/v1"
    with pytest.raises(ParamsError, match="prometheus-2-8x7b.base_url: http://10.1.2.3:8087/v1 is not on this machine"):
        rehearsal._self_hosted_ports(Params.model_validate(data))


def test_a_rehearsal_needs_a_profile():
    out = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--rehearse", "--dry-run"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--rehearse rehearses a profile: add --profile NAME" in out.stderr


def _store_spend(repo) -> float:
    import sqlite3

    with sqlite3.connect(repo / rehearsal.APART["cache", "requests_db"]) as db:
        return db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM responses").fetchone()[0]


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)
@pytest.mark.skipif(os.environ.get("AGORA_REHEARSAL") != "1",
                    reason="the whole rehearsal takes most of an hour on two cores: `make rehearse` runs it")
def test_the_paper_profile_rehearses_end_to_end(tmp_path):
    """`agora run --profile paper --rehearse` in a fresh clone: first under a spending cap, which stops
    the run cleanly, then to the end, which pays only for what the first run left; then what each
    stage wrote is checked against the paper profile's code paths."""
    from agorabench.pipeline.run import BUDGET_STOP

    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(repo)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    agora = [os.path.join(os.path.dirname(sys.executable), "agora"), "run", "--profile", "paper", "--rehearse",
             "--allow-code-execution"]

    def run(*extra):
        done = subprocess.run([*agora, *extra], cwd=repo, env=env, capture_output=True, text=True)
        (tmp_path / f"run{len(list(tmp_path.glob('run*.log')))}.log").write_text(done.stdout + done.stderr)
        return done.returncode, done.stdout + done.stderr

    cap = 0.05
    rc, out = run("--max-cost", str(cap))
    assert rc == 2 and BUDGET_STOP in out and "stage(s) undone" in out, out[-3000:]
    assert 0 < _store_spend(repo) <= cap
    rc, out = run()
    assert rc == 0, out[-5000:]
    reused = [int(n) for n in __import__("re").findall(r"this run: \d+ requests sent, (\d+) answers from the request store", out)]
    assert any(reused), "the run after the cap paid again for answers the capped run had bought"
    status = subprocess.run(["dvc", "status"], cwd=repo, env=env, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout[-2000:]
    check_what_the_rehearsal_wrote(repo)


def check_what_the_rehearsal_wrote(repo) -> None:
    """What a finished rehearsal in `repo` wrote, stage by stage, against the paper profile's code paths."""
    from tests.conftest import query

    # The full evaluation sets with hub seeds, a few items each; Arena-Hard v0.1 from the Hub; the
    # paper's judge, with log-probability verdicts for AlpacaEval and reasoning for Arena-Hard.
    full = {"gsm8k": 1319, "math": 5000, "mbpp": 500, "humaneval": 164, "alpacaeval": 805, "arenahard": rehearsal.ROWS}
    for benchmark, size in full.items():
        score = json.loads((repo / f"data/eval/base/{benchmark}.scores.json").read_text())
        assert (score["test_items"], score["n_items"], score["seed_source"]) == (size, 2, "hub"), benchmark
        assert not score["seed_items_left_out"] and score["items_sha256"], benchmark
    arena = json.loads((repo / "data/eval/reference/arenahard.scores.json").read_text())
    assert arena["data_version"].startswith("hf://datasets/lmarena-ai/arena-hard-auto@")
    assert arena["judge"] == "gpt-4o" and arena["judge_reasoning"] and arena["judge_usage"]["cost_usd"] > 0
    alpaca = json.loads((repo / "data/eval/reference/alpacaeval.scores.json").read_text())
    assert alpaca["judge_verdicts"] == "logprobs"

    # Full fine-tuning with the FSDP config, sharded over two CPU processes, in the Llama-3 format.
    records = [json.loads(p.read_text()) for p in (repo / "data/checkpoints").rglob("student.json")]
    trained = [r for r in records if r["trained"]]
    assert trained and all(r["parallelism"] == {"distributed_type": "FSDP", "processes": 2, "sharded": True}
                           and not r["lora"] for r in trained)

    db = repo / "data/results/agora.duckdb"
    # Both intrinsic judges on every dataset, priced; the reward model scored the instances.
    judges = query(db, "SELECT DISTINCT judge FROM intrinsic_judges ORDER BY judge")
    assert judges == [("gpt-4o",), ("prometheus-2-8x7b",)]
    assert query(db, "SELECT COUNT(*) FROM intrinsic WHERE reward IS NOT NULL")[0][0] > 0
    # Every generator's datasets priced at the paper's prices on the tokens its answers took.
    for generator, price_in, price_out in (("gpt-4o", 2.5, 10.0), ("claude-3-5-sonnet", 3.0, 15.0)):
        tokens_in, tokens_out, cost = query(db, "SELECT SUM(input_tokens), SUM(output_tokens), SUM(cost_usd) "
                                                f"FROM cost_dataset WHERE generator = '{generator}'")[0]
        assert cost == pytest.approx((tokens_in * price_in + tokens_out * price_out) / 1e6) and cost > 0
    # The scaling study's prefixes, the PGR table with a row per generator, and the report.
    assert {r[0] for r in query(db, "SELECT DISTINCT prefix_size FROM quantity_quality")} >= {1, 2}
    assert {r[0] for r in query(db, "SELECT generator FROM pgr_overall")} >= {"gpt-4o", "claude-3-5-sonnet", "llama-3-1-8b"}
    assert (repo / "reports/index.html").is_file()
