"""Intrinsic metrics: judge prompts and score parsing, reward model, perplexity, diversity, the cached run.

Models are tiny random ones (the session `tiny_student`, a tiny sequence classifier built here) and a
deterministic fake embedder; one test loads the real packaged MiniLM (~3 s). Every passing check has
a canary next to it that must fail or detect the wrong thing.
"""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest

from agorabench.config import Params
from agorabench.config import IntrinsicConfig, ParamsError, load_params
from agorabench.intrinsic.diversity import mean_pairwise_distance, per_item_distance
from agorabench.intrinsic.judge import judge_messages, judge_scores, parse_score
from agorabench.intrinsic.run import intrinsic_for_dataset

EXAMPLES = [
    ("What is 2 + 3?", "2 + 3 = 5. The answer is 5."),
    ("Write a haiku about autumn leaves falling slowly.",
     "Red leaves drift and fall\nquietly onto the path\nautumn says goodbye"),
    ("Name a prime number.", "7"),
    ("Explain recursion in one long paragraph, with an example in Python.",
     "Recursion is when a function calls itself on a smaller input until a base case stops it. "
     "def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\nEach call waits for the smaller one."),
    ("Hi", ""),
]


# ---------------------------------------------------------------------------------------------
# Judge: prompts and score parsing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reply,score", [
    ("Feedback: clear and correct. [RESULT] 4", 4),
    ("Feedback: good.\n[RESULT]: 5\n\nI hope this helps.", 5),
    ("Feedback: it is more than Score 2: and less than Score 5:. [RESULT] (3)", 3),
    ("The response is fine.\nScore: 4", 4),
    ("Overall I would rate it 3/5.", 3),
    ("Final score: **2**", 2),
    ("It earns 4 out of 5.", 4),
    ("5", 5),
])
def test_parse_score_reads_common_formats(reply, score):
    assert parse_score(reply) == score


@pytest.mark.parametrize("reply", [
    None, "", "I cannot evaluate this.", "[RESULT] 7", "Score: 4.5", "I'd give it 10/10",
    "Score 1: the answer is wrong",  # a quoted rubric level is not a verdict
])
def test_parse_score_canary_refuses_what_is_not_a_1_to_5_score(reply):
    assert parse_score(reply) is None


def test_judge_prompts_carry_the_domain_rubric_and_the_right_texts():
    math_q = judge_messages("quality", "math", "Compute {x} + 1 for x = 2.", "It is 3.")[1]["content"]
    code_q = judge_messages("quality", "code", "Reverse a list.", "xs[::-1]")[1]["content"]
    diff = judge_messages("difficulty", "general", "Plan a trip.", "SECRET RESPONSE")[1]["content"]
    assert "mathematically correct" in math_q and "It is 3." in math_q
    assert "Compute {x} + 1" in math_q  # braces in data are left alone
    assert "executability" not in math_q and "runs" in code_q  # canary: each domain its own rubric
    assert "Plan a trip." in diff and "SECRET RESPONSE" not in diff  # difficulty sees the instruction only
    assert "an instruction" in diff and "Score 5:" in diff


def test_judge_failures_are_kept_with_their_verdict_and_raw_text():
    replies = iter(["Feedback: fine [RESULT] 4", None, "no idea", "Score: 2"])
    seen = []

    def judge(convs):
        seen.append(len(convs))
        return [next(replies) for _ in convs]

    rows = judge_scores("quality", "general", [("i", "r")] * 4, judge, batch_size=3)
    assert [r["score"] for r in rows] == [4, None, None, 2]
    assert [r["verdict"] for r in rows] == ["ok", "judge_error", "parse_error", "ok"]
    assert rows[2]["raw"] == "no idea" and seen == [3, 1]


def test_judge_returning_the_wrong_number_of_replies_is_an_error():
    with pytest.raises(ValueError, match="exactly one"):
        judge_scores("quality", "math", [("i", "r")] * 2, lambda convs: ["[RESULT] 3"])


# ---------------------------------------------------------------------------------------------
# Judge: the verdict-only prompt and the score read from log-probabilities
# ---------------------------------------------------------------------------------------------


def _lp(token: str, alternatives: dict[str, float]) -> tuple:
    """One reply position as Completion.logprobs holds it, from probabilities."""
    return (token, math.log(alternatives.get(token, 1e-9)), tuple((t, math.log(p)) for t, p in alternatives.items()))


def _reply(text_tokens: list[str], at: dict[int, dict[str, float]]):
    from agorabench.models.store import Completion

    positions = tuple(_lp(t, at.get(i, {t: 0.9})) for i, t in enumerate(text_tokens))
    return Completion("".join(text_tokens), "stop", 10, len(text_tokens), 0.0, 0.0, logprobs=positions)


def test_score_from_logprobs_is_the_renormalised_weighted_mean_of_the_five_digits():
    from agorabench.intrinsic.judge import score_from_logprobs

    # "4" sampled; " 5" is a variant of 5 and "4." of 4; "Hello" and "10" are no digit and drop out.
    reply = _reply(["4"], {0: {"4": 0.4, "4.": 0.1, "3": 0.2, " 5": 0.1, "Hello": 0.15, "10": 0.05}})
    score, probs = score_from_logprobs(reply.text, reply.logprobs)
    # By hand: P(3, 4, 5) = 0.2, 0.5, 0.1 of 0.8 -> (3 * 0.2 + 4 * 0.5 + 5 * 0.1) / 0.8 = 3.875.
    assert score == pytest.approx(3.875)
    assert probs[4] == pytest.approx(0.625) and probs[1] == 0 and sum(probs.values()) == pytest.approx(1)
    # Canaries: neither the text's digit nor the unnormalised sum over the list is that number.
    assert parse_score(reply.text) == 4 and 3 * 0.2 + 4 * 0.5 + 5 * 0.1 == pytest.approx(3.1)


def test_score_from_logprobs_reads_the_token_the_text_score_comes_from():
    from agorabench.intrinsic.judge import score_from_logprobs

    # An assessment quoting a rubric level before its verdict: the verdict's token is read, not the quote's.
    tokens = ["Feedback", ":", " more", " than", " Score", " 2", ".", " [", "RESULT", "]", " 4"]
    reply = _reply(tokens, {5: {" 2": 0.9, " 1": 0.1}, 10: {" 4": 0.5, " 5": 0.5}})
    assert score_from_logprobs(reply.text, reply.logprobs)[0] == pytest.approx(4.5)
    # Canary: the same reply without its [RESULT] tag has no score in its text, so none is read at all.
    cut = _reply(tokens[:7], {5: {" 2": 0.9, " 1": 0.1}})
    assert parse_score(cut.text) is None and score_from_logprobs(cut.text, cut.logprobs) is None


def test_score_from_logprobs_gives_way_to_the_text_where_it_cannot_read():
    from agorabench.intrinsic.judge import judge_scores, score_from_logprobs
    from agorabench.models.store import LOGPROB_POSITIONS

    glued = _reply(["4/5"], {0: {"4/5": 0.7, "3/5": 0.3}})  # no token is the digit alone
    long = _reply(["x "] * LOGPROB_POSITIONS + ["[RESULT] ", "3"], {})  # the store kept only the first tokens
    assert score_from_logprobs(glued.text, glued.logprobs) is None and parse_score(glued.text) == 4
    assert score_from_logprobs(long.text, long.logprobs) is None
    assert score_from_logprobs("4", None) is None
    good = _reply(["2"], {0: {"2": 0.5, "1": 0.5}})
    replies = [glued, long, "5", None, good, _reply(["no", " idea"], {})]  # "5": a judge that gives text only
    asked = []

    def judge(convs, top_logprobs=0):
        asked.append(top_logprobs)
        return replies[:len(convs)]

    rows = judge_scores("quality", "code", [("i", "r")] * 6, judge, reasoning=False, top_logprobs=20)
    assert asked == [20]
    assert [r["score"] for r in rows] == [4, 3, 5, None, pytest.approx(1.5), None]
    assert [r["source"] for r in rows] == ["text", "text", "text", None, "logprobs", None]
    assert [r["verdict"] for r in rows] == ["ok", "ok", "ok", "judge_error", "ok", "parse_error"]
    # Canary: with top_logprobs 0 the judge is not asked for them, and the good reply is read as its text.
    asked.clear()
    rows = judge_scores("quality", "code", [("i", "r")] * 6, judge, reasoning=False)
    assert asked == [0] and rows[4] == {"score": 2, "verdict": "ok", "raw": "2", "source": "text",
                                        "input_tokens": 10, "output_tokens": 1, "cost_usd": 0.0, "latency_s": 0.0}
    # A judge that answers bare text leaves what its verdicts cost unknown.
    assert rows[2]["cost_usd"] is None and rows[2]["latency_s"] is None and rows[2]["score"] == 5


def test_verdict_only_prompt_asks_for_the_score_alone_and_keys_its_own_version():
    from agorabench.intrinsic.judge import prompt_version

    brief = judge_messages("quality", "math", "Compute 1 + 1.", "It is 2.", reasoning=False)
    full = judge_messages("quality", "math", "Compute 1 + 1.", "It is 2.")
    assert brief[1]["content"].rstrip().endswith("### Score (1-5):") and "[RESULT]" not in brief[1]["content"]
    assert "It is 2." in brief[1]["content"] and "mathematically correct" in brief[1]["content"]
    assert "explain" not in brief[0]["content"] and "explain" in full[0]["content"]
    assert "[RESULT]" in full[1]["content"]  # canary: the paper's prompt still asks for its format
    assert prompt_version(False) != prompt_version(True)
    # The reasoning prompt's version is what it was before the verdict-only files were added, so
    # judgements cached with it stay valid (sha256 of the same four files, as main computed it).
    import hashlib as _h

    from agorabench.intrinsic.judge import PROMPTS
    h = _h.sha256()
    for name in ("judge_system.txt", "difficulty_user.txt", "quality_user.txt", "rubrics.yaml"):
        h.update(name.encode() + b"\0" + (PROMPTS / name).read_text(encoding="utf-8").encode() + b"\0")
    assert prompt_version(True) == h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def _load_with_intrinsic(tmp_path, section: dict):
    import yaml

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"generators": {"g": {"backend": "openai", "model": "m"}}, "intrinsic": section}))
    return load_params(path)


def test_config_rejects_unknown_keys_and_metrics_in_one_line(tmp_path):
    with pytest.raises(ParamsError, match=r"unknown field 'intrinsic\.judg'"):
        _load_with_intrinsic(tmp_path, {"judg": "gpt"})
    with pytest.raises(ParamsError, match=r"intrinsic\.metrics\.0 = 'perplexty' is not allowed"):
        _load_with_intrinsic(tmp_path, {"metrics": ["perplexty"]})
    with pytest.raises(ParamsError, match="reward_model is null"):
        _load_with_intrinsic(tmp_path, {"metrics": ["reward"]})
    with pytest.raises(ParamsError, match="intrinsic.judge_batch_size = 0 is not allowed"):
        _load_with_intrinsic(tmp_path, {"judge_batch_size": 0})
    with pytest.raises(ValueError, match="no judge is set"):
        _load_with_intrinsic(tmp_path, {"metrics": ["quality"]}).intrinsic.enabled(have_judge=False)
    # Canary: a valid section loads, typed.
    assert _load_with_intrinsic(tmp_path, {"metrics": ["perplexity"], "judge_batch_size": 8}).intrinsic.judge_batch_size == 8


def test_config_default_runs_what_is_configured():
    assert IntrinsicConfig().enabled(False) == ("perplexity", "diversity")
    cfg = IntrinsicConfig(judge="gpt-4o", reward_model="rm")
    assert cfg.enabled(True) == ("difficulty", "quality", "reward", "perplexity", "diversity")


# ---------------------------------------------------------------------------------------------
# Perplexity: response tokens only, per example, independent of the batch
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def student(tiny_student):
    from agorabench.intrinsic.perplexity import load_causal_lm

    return load_causal_lm(tiny_student, "cpu")


def _batch_mean_perplexity(model, tok, examples, system_prompt):
    """The official code's bug, reimplemented as a canary: the batch's mean loss for every item."""
    import torch

    from agorabench.intrinsic.perplexity import encode_example

    enc = [encode_example(tok, i, r, system_prompt) for i, r in examples]
    width = max(len(ids) for ids, _ in enc)
    ids = torch.full((len(enc), width), tok.pad_token_id)
    labels = torch.full((len(enc), width), -100)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    for b, (row, n_prompt) in enumerate(enc):
        ids[b, :len(row)] = torch.tensor(row)
        labels[b, n_prompt:len(row)] = torch.tensor(row[n_prompt:])
        mask[b, :len(row)] = 1
    with torch.inference_mode():
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    return [math.exp(float(loss))] * len(enc)


def test_perplexity_batched_equals_one_by_one_and_batch_mean_fails(student):
    from agorabench.intrinsic.perplexity import response_nll

    model, tok = student
    sp = "You are a helpful AI assistant."
    batched = [r["perplexity"] for r in response_nll(model, tok, EXAMPLES, system_prompt=sp, batch_size=5)]
    single = [response_nll(model, tok, [ex], system_prompt=sp, batch_size=1)[0]["perplexity"] for ex in EXAMPLES]
    assert np.allclose(batched, single, rtol=1e-4)
    assert len(set(round(p, 3) for p in single)) == len(single)  # the items really differ
    # Canary: the official batch-mean assignment gives every item the same number, which the same check rejects.
    wrong = _batch_mean_perplexity(model, tok, EXAMPLES, sp)
    assert not np.allclose(wrong, single, rtol=1e-4)


def test_perplexity_scores_response_tokens_only_and_matches_a_direct_computation(student):
    import torch

    from agorabench.intrinsic.perplexity import encode_example, response_nll

    model, tok = student
    inst, resp = EXAMPLES[3]
    row = response_nll(model, tok, [(inst, resp)], system_prompt=None)[0]
    ids, n_prompt = encode_example(tok, inst, resp, None)
    assert row["response_tokens"] == len(ids) - n_prompt
    # Direct: full logits, log-softmax, the response positions only.
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    nll = -sum(float(logp[t - 1, ids[t]]) for t in range(n_prompt, len(ids)))
    assert row["nll_sum"] == pytest.approx(nll, rel=1e-4)
    # Canary: scoring every token (prompt included), as the official code does, is a different number.
    nll_all = -sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids)))
    assert math.exp(nll_all / (len(ids) - 1)) != pytest.approx(row["perplexity"], rel=1e-3)
    # The response is scored conditioned on its instruction: another instruction, another perplexity.
    other = response_nll(model, tok, [("Something else entirely, please.", resp)], system_prompt=None)[0]
    assert other["response_tokens"] == row["response_tokens"]
    assert other["perplexity"] != pytest.approx(row["perplexity"], rel=1e-6)


def test_perplexity_truncation_is_flagged_and_a_prompt_too_long_is_kept_as_too_long(student):
    from agorabench.intrinsic.perplexity import response_nll

    model, tok = student
    rows = response_nll(model, tok, [EXAMPLES[3], ("word " * 300, "ok")], system_prompt=None, max_length=64)
    assert rows[0]["truncated"] and rows[0]["verdict"] == "ok" and rows[0]["perplexity"] > 0
    assert rows[1]["verdict"] == "too_long" and rows[1]["perplexity"] is None


# ---------------------------------------------------------------------------------------------
# Reward model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_reward(tiny_student, tmp_path_factory) -> str:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tiny_student)
    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id
                      if tok.pad_token_id is not None else tok.eos_token_id, tie_word_embeddings=False)
    out = tmp_path_factory.mktemp("tiny-reward")
    LlamaForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_reward_batched_equals_one_by_one(tiny_reward):
    from agorabench.intrinsic.reward import load_reward_model, reward_scores

    model, tok = load_reward_model(tiny_reward)
    batched = [r["reward"] for r in reward_scores(model, tok, EXAMPLES, batch_size=5)]
    single = [reward_scores(model, tok, [ex], batch_size=1)[0]["reward"] for ex in EXAMPLES]
    assert np.allclose(batched, single, atol=1e-5)
    # Canary: the scores depend on the response (not a constant, not the padding).
    assert np.ptp(single) > 1e-4


def test_reward_model_with_several_outputs_is_refused(tiny_student, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from agorabench.intrinsic.reward import load_reward_model

    tok = AutoTokenizer.from_pretrained(tiny_student)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, num_labels=3)
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="exactly one"):
        load_reward_model(str(tmp_path))


# ---------------------------------------------------------------------------------------------
# Diversity
# ---------------------------------------------------------------------------------------------


def _brute_force(e: np.ndarray) -> tuple[float, np.ndarray]:
    n = len(e)
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    d = 1 - u @ u.T
    pairs = [d[i, j] for i in range(n) for j in range(i + 1, n)]
    per = np.array([np.mean([d[i, j] for j in range(n) if j != i]) for i in range(n)])
    return float(np.mean(pairs)), per


def test_diversity_identity_equals_brute_force_pairs():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(60, 16)) + 0.5  # not centred, so cosines are far from 0
    mean, per = _brute_force(e)
    assert mean_pairwise_distance(e) == pytest.approx(mean, abs=1e-12)
    assert np.allclose(per_item_distance(e), per, atol=1e-12)
    # Canary: averaging with the diagonal (i == j, distance 0) included is measurably different.
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    assert float(np.mean(1 - u @ u.T)) != pytest.approx(mean, abs=1e-4)


def test_diversity_of_duplicates_is_zero_and_of_orthogonal_vectors_one():
    assert mean_pairwise_distance(np.tile([[1.0, 2.0, 3.0]], (5, 1))) == pytest.approx(0, abs=1e-12)
    assert mean_pairwise_distance(np.eye(4) * 3) == pytest.approx(1.0)
    assert mean_pairwise_distance(np.ones((1, 3))) is None


def fake_embed(texts: list[str]) -> np.ndarray:
    """Deterministic hashed bag of words: same words -> same vector, disjoint words -> orthogonal-ish."""
    out = np.zeros((len(texts), 64))
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1
    return out


def test_real_minilm_separates_paraphrases_from_unrelated_text():
    from agorabench.intrinsic.diversity import sentence_embedder

    embed = sentence_embedder()
    same = embed(["How do I bake bread?", "What is the way to bake a loaf of bread?"])
    mixed = embed(["How do I bake bread?", "Prove that there are infinitely many primes."])
    assert same.shape == (2, 384)
    assert mean_pairwise_distance(same) < mean_pairwise_distance(mixed)


# ---------------------------------------------------------------------------------------------
# The whole run: outputs, summary, per-instance cache
# ---------------------------------------------------------------------------------------------


def _params(tmp_path, tiny_student, **intrinsic) -> Params:
    return Params.model_validate({
        "generators": {"fake": {"backend": "openai", "model": "fake-model", "base_url": "http://127.0.0.1:9/v1"}},
        "benchmark_generators": ["fake"],
        "generation": {"output_dir": str(tmp_path / "generated")},
        "student": {"base": tiny_student},
        "intrinsic": {"output_dir": str(tmp_path / "intrinsic"), "cache_db": str(tmp_path / "cache.sqlite"),
                      "device": "cpu", **intrinsic},
    })


def _write_dataset(tmp_path, pairs, method="response_generation", domain="math", generator="gen"):
    from agorabench.testing.datasets import instances, write_instances

    path = tmp_path / "generated" / generator / method / f"{domain}.jsonl"
    write_instances(path, instances("gen", method, domain, pairs))


class CountingJudge:
    def __init__(self):
        self.calls = 0

    def __call__(self, convs):
        self.calls += len(convs)
        # A score that depends on the text, so rows are told apart; the last item always fails.
        out = []
        for c in convs:
            text = c[-1]["content"]
            out.append(None if "Hi" in text.split("###")[1] else f"Feedback: ok [RESULT] {1 + len(text) % 5}")
        return out


def test_intrinsic_for_dataset_writes_rows_and_summary_and_caches_per_instance(tmp_path, tiny_student, tiny_reward):
    params = _params(tmp_path, tiny_student, reward_model=tiny_reward)
    _write_dataset(tmp_path, EXAMPLES)
    judge = CountingJudge()
    summary = intrinsic_for_dataset(params, "gen", "math", "response_generation", judge, judge_name="fake-judge",
                                    embed=fake_embed, embed_name="fake-bow", log=lambda s: None)
    base = tmp_path / "intrinsic" / "gen" / "response_generation"
    table = pd.read_parquet(base / "math.parquet")
    on_disk = json.loads((base / "math.summary.json").read_text())
    assert on_disk == json.loads(json.dumps({k: v for k, v in summary.items() if k != "computed"}))
    assert len(table) == 5 and table["id"].iloc[0] == "gen/response_generation/math/000000"
    assert summary["metrics"] == ["difficulty", "quality", "reward", "perplexity", "diversity"]
    # The failed judgement is a row with its verdict, excluded from the mean and counted.
    assert table["quality_verdict"].tolist()[-1] == "judge_error" and pd.isna(table["quality"].iloc[-1])
    assert summary["failures"]["quality"] == {"judge_error": 1, "parse_error": 0}
    assert summary["quality"] == pytest.approx(table["quality"].dropna().mean())
    assert summary["perplexity"] == pytest.approx(table["perplexity"].mean())
    assert summary["perplexity_token_level"] > 1 and summary["reward"] is not None
    assert 0 < summary["instruction_diversity"] <= 1.2 and len(table["response_distance"]) == 5
    assert judge.calls == 10  # 5 difficulty + 5 quality
    # What the models took to compute is kept with each result; a judge function that gives bare text
    # has no reply times, so its usage does not know them.
    assert set(summary["seconds"]) == {"reward", "perplexity", "diversity"}
    assert summary["seconds"]["reward"] > 0 and summary["seconds"]["perplexity"] > 0
    assert summary["judges"][0]["usage"]["latency_s"] is None

    # Re-run: everything that succeeded comes from the cache; only the failed judgements are asked again.
    judge2 = CountingJudge()
    again = intrinsic_for_dataset(params, "gen", "math", "response_generation", judge2, judge_name="fake-judge",
                                  embed=fake_embed, embed_name="fake-bow", log=lambda s: None)
    assert judge2.calls == 2
    assert again["computed"] == {"difficulty": 1, "quality": 1, "reward": 0, "perplexity": 0, "diversity": 0}
    # ... and the files are the same bytes (DVC outputs: a forced re-run must not change them), though
    # the first run computed everything (canary: the returned summaries do differ, in "computed")
    assert json.loads((base / "math.summary.json").read_text()) == on_disk and again["computed"] != summary["computed"]
    assert pd.read_parquet(base / "math.parquet").equals(table)
    assert again["perplexity"] == summary["perplexity"] and again["quality"] == summary["quality"]
    assert again["seconds"] == summary["seconds"]  # cached results at what they took when computed

    # A second dataset sharing instructions (instance generation) only computes what is new.
    _write_dataset(tmp_path, EXAMPLES[:2] + [("A brand new question?", "A new answer.")], method="quality_enhancement")
    judge3 = CountingJudge()
    third = intrinsic_for_dataset(params, "gen", "math", "quality_enhancement", judge3, judge_name="fake-judge",
                                  embed=fake_embed, embed_name="fake-bow", log=lambda s: None)
    assert third["computed"]["perplexity"] == 1 and third["computed"]["reward"] == 1 and judge3.calls == 2
    # Canary: another judge name is another cache key, so everything is judged again.
    judge4 = CountingJudge()
    intrinsic_for_dataset(params, "gen", "math", "quality_enhancement", judge4, judge_name="other-judge",
                          embed=fake_embed, embed_name="fake-bow", log=lambda s: None)
    assert judge4.calls == 6


class LogprobJudge:
    """Answers like a judge that gives log-probabilities: a digit with P(digit) spread over its
    neighbours; the instruction "Hi" gets text only (as Anthropic's API would)."""

    def __init__(self):
        self.calls, self.asked = 0, set()

    def __call__(self, convs, top_logprobs=0):
        self.calls += len(convs)
        self.asked.add(top_logprobs)
        out = []
        for c in convs:
            text = c[-1]["content"]
            digit = str(2 + len(text) % 3)
            if "Hi" in text.split("###")[1] or not top_logprobs:
                out.append(digit)
            else:
                out.append(_reply([digit], {0: {digit: 0.6, str(int(digit) + 1): 0.4}}))
        return out


def test_run_reads_logprob_scores_counts_fallbacks_and_keys_the_cache_on_the_reading(tmp_path, tiny_student):
    _write_dataset(tmp_path, EXAMPLES)
    brief = {"metrics": ["difficulty", "quality"], "judge_reasoning": False, "judge_max_tokens": 4}
    run = lambda judge, **cfg: intrinsic_for_dataset(
        _params(tmp_path, tiny_student, **{**brief, **cfg}), "gen", "math", "response_generation", judge,
        judge_name="fake-judge", log=lambda s: None)
    judge = LogprobJudge()
    summary = run(judge, judge_top_logprobs=5)
    table = pd.read_parquet(tmp_path / "intrinsic/gen/response_generation/math.parquet")
    assert judge.asked == {5} and judge.calls == 10
    # Each logprob score is digit + 0.4 (P 0.6 on the digit, 0.4 on the next one); "Hi" is read from its text.
    texts = [m[-1]["content"] for m in (judge_messages("quality", "math", i, r, False) for i, r in EXAMPLES)]
    expected = [2 + len(t) % 3 + 0.4 for t in texts[:-1]] + [2 + len(texts[-1]) % 3]
    assert table["quality"].tolist() == pytest.approx(expected)
    assert table["quality_source"].tolist() == ["logprobs"] * 4 + ["text"]
    assert summary["judge_verdicts"] == "logprobs" and summary["judge_fallbacks"] == {"difficulty": 1, "quality": 1}
    assert summary["quality"] == pytest.approx(sum(expected) / 5)

    # The same settings again: all cached. The text reading: another key, so judged again, and its
    # scores are the digits (canary: the cached logprob scores are not reused for it).
    again = LogprobJudge()
    run(again, judge_top_logprobs=5)
    assert again.calls == 0
    text_judge = LogprobJudge()
    text = run(text_judge, judge_top_logprobs=0)
    assert text_judge.calls == 10 and text_judge.asked == {0}
    assert text["judge_verdicts"] == "text" and text["judge_fallbacks"] is None
    assert pd.read_parquet(tmp_path / "intrinsic/gen/response_generation/math.parquet")["quality"].tolist() \
        == [int(x) for x in expected]
    # ... and the paper's prompt (reasoning) is a third key.
    reasoning_judge = LogprobJudge()
    run(reasoning_judge, judge_top_logprobs=0, judge_reasoning=True)
    assert reasoning_judge.calls == 10


def test_diversity_in_the_run_orders_datasets_by_variety(tmp_path, tiny_student):
    params = _params(tmp_path, tiny_student, metrics=["diversity"])
    _write_dataset(tmp_path, [("Solve x + 1 = 2", "x = 1")] * 4, domain="math")
    topics = [("first", "cats"), ("second", "rivers"), ("third", "prime numbers"), ("fourth", "jazz")]
    _write_dataset(tmp_path, [(f"{w} question about {v}", f"{v} answer") for w, v in topics],
                   domain="general")
    dup = intrinsic_for_dataset(params, "gen", "math", "response_generation", embed=fake_embed, embed_name="bow",
                                log=lambda s: None)
    varied = intrinsic_for_dataset(params, "gen", "general", "response_generation", embed=fake_embed,
                                   embed_name="bow", log=lambda s: None)
    assert dup["instruction_diversity"] == pytest.approx(0, abs=1e-9)
    assert varied["instruction_diversity"] > 0.3 and varied["response_diversity"] > 0.3
    assert dup["difficulty"] is None and dup["perplexity"] is None  # not enabled: null, not missing


def test_run_errors_are_one_line(tmp_path, tiny_student):
    params = _params(tmp_path, tiny_student, metrics=["diversity"])
    with pytest.raises(ValueError, match=r"no generated dataset; run `agora generate"):
        intrinsic_for_dataset(params, "gen", "math", "response_generation", embed=fake_embed, embed_name="bow")
    _write_dataset(tmp_path, EXAMPLES)
    # An unknown judge is refused when params load, before any dataset is read.
    with pytest.raises(ValueError, match="intrinsic.judges lists 'nope', which is not under generators"):
        _params(tmp_path, tiny_student, judge="nope")
    with pytest.raises(ValueError, match="without a name"):
        intrinsic_for_dataset(params, "gen", "math", "response_generation", CountingJudge())


def test_prefect_flow_runs_one_task_per_dataset(tmp_path, tiny_student, prefect_harness):
    import yaml

    from flows.intrinsic import intrinsic

    params = _params(tmp_path, tiny_student, metrics=["diversity"])
    _write_dataset(tmp_path, EXAMPLES, generator="fake")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    out = intrinsic("fake", domains=["math"], methods=["response_generation"], params_file=str(path))
    assert list(out) == ["response_generation/math"] and out["response_generation/math"]["n"] == 5
    assert (tmp_path / "intrinsic/fake/response_generation/math.summary.json").is_file()


def test_compute_seconds_counts_a_repeated_result_once_and_an_untimed_one_as_unknown():
    from agorabench.intrinsic.run import compute_seconds

    # "a" twice: one instance repeated in the dataset, computed (and timed) once.
    assert compute_seconds(["a", "a", "b"], [{"seconds": 1.0}, {"seconds": 1.0}, {"seconds": 2.0}]) == 3.0
    # Canary: a result cached before times were kept makes the metric's time unknown, not too low.
    assert compute_seconds(["a", "b"], [{"seconds": 1.0}, {"reward": 0.5}]) is None
