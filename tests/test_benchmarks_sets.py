"""Which items each benchmark evaluates: the whole standard test set, less the items the seeds are made of
only when the seeds come from that test set (the offline seeds). The selection is checked on injected
item lists, the Hub loaders (Arena-Hard v0.1, S_Ø's demos with hub seeds) on injected rows and on their
offline error; nothing here reaches the network."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

from agorabench.config import Params, load_params
from agorabench.evaluation import benchmarks as B
from agorabench.evaluation.benchmarks import arenahard
from agorabench.evaluation.items import GSM8K_SEED_IDS, MBPP_SEED_IDS, EvalItem
from agorabench.testing.hub_server import jsonl_bytes
from tests.conftest import REPO, write_params

# The standard test sets' ids, written out here rather than read from the packages.
TEST_IDS = {
    "gsm8k": [f"gsm8k/test/{i:04d}" for i in range(1319)],
    "mbpp": [f"mbpp/{i}" for i in range(11, 511)],
    "humaneval": [f"HumanEval/{i}" for i in range(164)],
}


def _items(name: str) -> list[EvalItem]:
    return [EvalItem(i, f"prompt of {i}", "ref") for i in TEST_IDS[name]]


def _selected(name: str, seed_source: str) -> list[str]:
    return [it.id for it in B.leave_out_seeds(_items(name), B.seed_item_ids(name, seed_source))]


def _always_left_out(name: str, seed_source: str) -> list[str]:
    """Canary: the old rule, seed items left out whatever the seed source."""
    return [it.id for it in B.leave_out_seeds(_items(name), B.seed_item_ids(name, "offline"))]


def check_hub_keeps_everything(select) -> None:
    for name, ids in TEST_IDS.items():
        assert select(name, "hub") == ids, name


def check_offline_leaves_out_exactly_the_seeds(select) -> None:
    seeds = {"gsm8k": {f"gsm8k/test/{i:04d}" for i in GSM8K_SEED_IDS}, "mbpp": {f"mbpp/{i}" for i in MBPP_SEED_IDS},
             "humaneval": set()}
    for name, ids in TEST_IDS.items():
        kept = select(name, "offline")
        assert set(ids) - set(kept) == seeds[name], name
        assert kept == [i for i in ids if i not in seeds[name]], name  # order kept, nothing else dropped


def test_hub_seeds_leave_nothing_out():
    check_hub_keeps_everything(_selected)
    with pytest.raises(AssertionError):  # canary: the old always-split sets are caught
        check_hub_keeps_everything(_always_left_out)


def test_offline_seeds_leave_out_exactly_the_seed_items():
    check_offline_leaves_out_exactly_the_seeds(_selected)
    assert (len(GSM8K_SEED_IDS), len(MBPP_SEED_IDS)) == (331, 112)  # pinned: a new rule changes every score
    with pytest.raises(AssertionError):  # canary: leaving out one item too many is caught
        check_offline_leaves_out_exactly_the_seeds(lambda name, source: _selected(name, source)[1:])
    with pytest.raises(AssertionError):  # canary: and so is leaving the seeds in
        check_offline_leaves_out_exactly_the_seeds(lambda name, source: _selected(name, "hub"))


def test_offline_seed_ids_are_the_items_the_offline_seeds_use():
    """The declarations' seed ids are the ids the offline seed builders give their seeds."""
    from agorabench.generation.seeds.offline import gsm8k_seed_docs, math_non500_docs, mbpp_seed_docs

    assert B.seed_item_ids("gsm8k", "offline") == {seed_id for seed_id, _ in gsm8k_seed_docs()}
    assert B.seed_item_ids("mbpp", "offline") == {f"mbpp/{int(d['task_id'])}" for d in mbpp_seed_docs()}
    assert B.seed_item_ids("math", "offline") == {seed_id for seed_id, _ in math_non500_docs()}
    assert all(B.seed_item_ids(name, "hub") == frozenset() for name in B.NAMES)
    with pytest.raises(ValueError, match="unknown seed source 's3'; allowed: offline, hub"):
        B.seed_item_ids("gsm8k", "s3")


def test_math_full_and_math500_under_both_seed_sources():
    full, math500 = SimpleNamespace(math_subset="full"), SimpleNamespace(math_subset="math500")
    items, left_out = B.evaluation_set("math", full, "hub")
    assert (len(items), left_out) == (5000, 0)
    items, left_out = B.evaluation_set("math", full, "offline")  # the offline seeds are the other 4,500
    assert (len(items), left_out) == (500, 4500) and all(it.extra["in_math500"] for it in items)
    for source in ("offline", "hub"):
        items, left_out = B.evaluation_set("math", math500, source)
        assert (len(items), left_out) == (500, 0) and items[0].id.startswith("math500/")
    assert "x 7 subjects sha256=" in B.data_version("math", full)
    assert "minerva_math_500" in B.data_version("math", math500)


# ---------------------------------------------------------------------------------------------
# Arena-Hard: v0.1 from the Hub, v2.0 from the package
# ---------------------------------------------------------------------------------------------


def test_arenahard_version_follows_the_seed_source_unless_given():
    ev = SimpleNamespace
    assert arenahard.version(ev(arenahard_version="auto"), "hub") == "v0.1"
    assert arenahard.version(ev(arenahard_version="auto"), "offline") == "v2.0"
    assert arenahard.version(ev(arenahard_version="v0.1"), "offline") == "v0.1"
    assert arenahard.version(ev(arenahard_version="v2.0"), "hub") == "v2.0"
    with pytest.raises(ValueError, match="'v3' is unknown; use one of auto, v0.1, v2.0"):
        arenahard.version(ev(arenahard_version="v3"))


V01_ROWS = [  # the Hub dataset's layout, and the GitHub repository's older one
    {"uid": "q1", "category": "arena-hard-v0.1", "cluster": "Puzzles", "prompt": "Write a folk tune in ABC."},
    {"question_id": "q2", "category": "arena-hard-v0.1", "cluster": "Code", "turns": [{"content": "Sort a list."}]},
]
V01_ANSWERS = {"q1": "X:1 T:tune", "q2": "sorted(xs)"}


def test_arenahard_v01_items_carry_gpt4_0314s_answers():
    items = arenahard.v01_questions(V01_ROWS, V01_ANSWERS)
    assert [(it.id, it.prompt, it.reference) for it in items] == [
        ("arenahard-v0.1/q1", "Write a folk tune in ABC.", "X:1 T:tune"), ("arenahard-v0.1/q2", "Sort a list.", "sorted(xs)")]
    assert {it.extra["baseline"] for it in items} == {"gpt-4-0314"}
    with pytest.raises(ValueError, match="question q2: gpt-4-0314 has no answer for it"):  # canary: a gap is named
        arenahard.v01_questions(V01_ROWS, {"q1": "x"})
    with pytest.raises(ValueError, match="question 1: no uid/question_id or prompt/turns"):
        arenahard.v01_questions([{"uid": "q3"}], V01_ANSWERS)


def test_arenahard_v01_is_evaluated_whole_with_hub_seeds(monkeypatch):
    """With hub seeds (auto) the evaluation set is v0.1's prompts, all of them, each with its baseline."""
    injected = tuple(arenahard.v01_questions(V01_ROWS, V01_ANSWERS))
    monkeypatch.setattr(arenahard, "v01_items", lambda: injected)
    ev = SimpleNamespace(arenahard_version="auto", arenahard_categories=["hard_prompt"])
    items, left_out = B.evaluation_set("arenahard", ev, "hub")
    assert items == list(injected) and left_out == 0
    items, _ = B.evaluation_set("arenahard", ev, "offline")  # canary: offline it is the packaged v2.0
    assert len(items) == 500 and items[0].extra["baseline"] == "o3-mini-2025-01-31"


def test_arenahard_v01_is_downloaded_from_the_hub_with_its_commit_and_hashes(monkeypatch, tmp_path):
    """Arena-Hard v0.1 through the real `hf_hub_download`, over HTTP from a loopback Hub that serves
    files in the dataset's layout: the items are the download's, and the score's data version names
    the commit and each file's sha256. Canary: a new commit on the Hub gives a new version."""
    import hashlib

    from agorabench.testing.hub_server import FakeHubServer
    from tests.conftest import download_from

    answers = [{"question_id": qid, "model_id": "gpt-4-0314", "choices": [{"index": 0, "turns": [{"content": text}]}]}
               for qid, text in V01_ANSWERS.items()]
    answers_file = f"data/arena-hard-v0.1/model_answer/{arenahard.BASELINES[arenahard.V01_CATEGORY]}.jsonl"
    files = {arenahard.V01_QUESTIONS: jsonl_bytes(V01_ROWS), answers_file: jsonl_bytes(answers)}
    ev = SimpleNamespace(arenahard_version="v0.1", arenahard_categories=["hard_prompt"])
    with FakeHubServer() as hub:
        download_from(hub, monkeypatch, tmp_path)
        commit = hub.add(f"datasets/{arenahard.HUB_REPO}", files)
        items = arenahard.v01_items.__wrapped__()
        assert list(items) == arenahard.v01_questions(V01_ROWS, V01_ANSWERS)
        version = arenahard.data_version(ev, "hub")
        for name, data in files.items():
            assert f"hf://datasets/{arenahard.HUB_REPO}@{commit}/{name} sha256={hashlib.sha256(data).hexdigest()}" in version
        assert any(r["path"].endswith("/resolve/main/" + arenahard.V01_QUESTIONS) for r in hub.requests)
        # Canary: the baseline's answers change on the Hub; the recorded version follows.
        answers[0]["choices"][0]["turns"][0]["content"] = "X:2 T:another tune"
        new_commit = hub.add(f"datasets/{arenahard.HUB_REPO}", {answers_file: jsonl_bytes(answers)})
        assert new_commit != commit and f"@{new_commit}/" in arenahard.data_version(ev, "hub") != version
        assert arenahard.v01_items.__wrapped__()[0].reference == "X:2 T:another tune"


def test_arenahard_v01_offline_error_is_one_line(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConnectionError) as err:
        arenahard.v01_items.__wrapped__()
    message = str(err.value)
    assert "\n" not in message and "lmarena-ai/arena-hard-auto" in message
    assert "data/arena-hard-v0.1/question.jsonl" in message and "evaluation.arenahard_version: v2.0" in message


# ---------------------------------------------------------------------------------------------
# S_Ø's few-shot demos never come from an evaluated item
# ---------------------------------------------------------------------------------------------

TRAIN_ROWS = {
    "gsm8k": [{"question": f"Train question {i}?", "answer": f"{i}+1=<<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}"}
              for i in range(4)],
    "math": [{"problem": f"Train problem {i} ({s})", "solution": f"so $\\boxed{{{i}}}$", "subject": s}
             for s in ("algebra", "geometry") for i in range(2)],
    "mbpp": [{"task_id": i, "text": f"Write function f{i}.", "code": f"def f{i}():\r\n    return {i}",
              "test_list": [f"assert f{i}() == {i}"], "test_setup_code": "", "challenge_test_list": []}
             for i in (3, 1, 2)],
}


def test_hub_seeds_take_the_demos_from_train_splits(monkeypatch):
    from agorabench.evaluation.benchmarks.gsm8k import task as gsm8k
    from agorabench.evaluation.benchmarks.humaneval import task as humaneval
    from agorabench.evaluation.benchmarks.math import task as mathbench
    from agorabench.evaluation.benchmarks.mbpp import task as mbpp
    from agorabench.generation.seeds import hub

    monkeypatch.setattr(hub, "fewshot_docs", lambda benchmark: TRAIN_ROWS[benchmark])
    assert [q for q, _ in gsm8k.fewshot_examples(2, "hub")] == ["Train question 0?", "Train question 1?"]
    assert gsm8k.fewshot_examples(1, "hub")[0][1].endswith("[RESULT] 1 [/RESULT]")
    assert [q for q, _ in mathbench.fewshot_examples(3, "hub")] == [
        "Train problem 0 (algebra)", "Train problem 0 (geometry)", "Train problem 1 (algebra)"]
    assert [q.splitlines()[0] for q, _ in mbpp.fewshot_examples(3, "hub")] == [
        "Write function f1.", "Write function f2.", "Write function f3."]  # task_id order
    assert "def f1()" in humaneval.fewshot_examples(1, "hub")[0][0]
    # Canary: the offline demos are test items, which is why offline runs leave them out.
    offline_demos = {q for q, _ in gsm8k.fewshot_examples(3, "offline")}
    left_out = {it.prompt for it in B.load_items("gsm8k", None, "hub")
                if it.id in B.seed_item_ids("gsm8k", "offline")}
    assert offline_demos <= left_out
    assert offline_demos.isdisjoint(it.prompt for it in B.load_items("gsm8k", None, "offline"))


def test_hub_demos_offline_error_is_one_line(tmp_path, monkeypatch):
    from agorabench.generation.seeds import hub

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConnectionError) as err:
        hub.fewshot_docs("gsm8k")
    message = str(err.value)
    assert "\n" not in message and "openai/gsm8k (train split)" in message and "evaluation.base_fewshot: 0" in message


# ---------------------------------------------------------------------------------------------
# The paper profile and the scores files
# ---------------------------------------------------------------------------------------------


def test_the_paper_profile_names_its_versions():
    raw = yaml.safe_load((REPO / "profiles/paper.yaml").read_text())
    assert raw["evaluation"]["math_subset"] == "full" and raw["evaluation"]["arenahard_version"] == "v0.1"
    assert raw["seeds"]["source"] == "hub" and raw["student"]["chat_template"] == "llama3"
    paper = load_params(REPO / "profiles/paper.yaml")
    assert paper.reads_the_hub()
    default = load_params(REPO / "params.yaml")  # canary: the embedded default stays offline, v2.0
    assert not default.reads_the_hub()
    assert arenahard.version(default.evaluation, default.seeds.source) == "v2.0"
    assert arenahard.version(paper.evaluation, paper.seeds.source) == "v0.1"
    assert Params.model_fields["evaluation"].default.math_subset == "full"  # the schema default too


def test_scores_record_the_test_set_and_what_was_left_out(tmp_path, tiny_student):
    from agorabench.evaluation.run import evaluate, output_paths, resolve_model_ref

    def scores(folder, source):
        folder.mkdir()
        params = load_params(write_params(
            folder / "params.yaml", "http://127.0.0.1:9", **{
                "student.reference": tiny_student, "seeds.source": source, "evaluation.limit": 2,
                "evaluation.limits": {}, "evaluation.decoding.max_new_tokens": 4,
                "evaluation.output_dir": str(folder / "data/eval")}))
        evaluate(params, "reference", "gsm8k")  # zero-shot: no demos, so hub seeds need no network
        return json.loads(output_paths(params, resolve_model_ref(params, "reference"), "gsm8k")["scores"].read_text())

    offline, hub = scores(tmp_path / "offline", "offline"), scores(tmp_path / "hub", "hub")
    assert (offline["seed_source"], offline["test_items"], offline["seed_items_left_out"]) == ("offline", 1319, 331)
    assert (hub["seed_source"], hub["test_items"], hub["seed_items_left_out"]) == ("hub", 1319, 0)
    assert offline["n_items"] == hub["n_items"] == 2
    assert offline["data_version"] == hub["data_version"] and "sha256=" in hub["data_version"]
