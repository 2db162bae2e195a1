"""The decontaminate stage: benchmark items and seed copies planted among clean rows are found, exactly
them (near misses below the n-gram are not), with n from params; the report and drop list beside the
dataset; training leaves the flagged rows out only when params say so; `agora decontaminate`."""
from __future__ import annotations

import functools
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from agorabench import decontamination as D  # noqa: E402
from agorabench.config import DecontaminationConfig, Params, ParamsError  # noqa: E402
from agorabench.evaluation import benchmarks as B  # noqa: E402
from agorabench.evaluation.items import ngrams, normalize_text  # noqa: E402
from agorabench.generation.records import read_contamination, read_drop_list  # noqa: E402
from agorabench.generation.seeds import load_seeds  # noqa: E402
from agorabench.setting import Setting  # noqa: E402
from agorabench.testing.datasets import instances, write_instances  # noqa: E402

# The planted dataset is checked as math instance generation: its seeds are packaged, and it is the one
# method whose instances are also checked for copied seeds.
SETTING = {"domain": "math", "method": "instance_generation"}

CLEAN = [
    ("Tom has 3 apples and buys 5 more at the market. How many apples does he have now?",
     "Tom starts with 3 apples. He buys 5 more, so he has 3 + 5 = 8 apples.\n[RESULT] 8 [/RESULT]"),
    ("Let's think step by step. A train travels 60 miles per hour for 2 hours. How far does it go?",
     "Let's think step by step. Distance is speed times time, so the answer is 60 * 2 = 120 miles."),
    ("Sort the list [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20] in reverse order.",
     "[20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]"),
    ("Write a Python function to find the sum of all the elements in a given list of numbers.",
     "```python\ndef sum_list(numbers):\n    total = 0\n    for x in numbers:\n        total += x\n"
     "    return total\n```"),
    ("Explain the difference between a list and a tuple in Python, and when you would use each one.",
     "A list is mutable, so you can add, remove or change its elements after it is created. A tuple is "
     "immutable. Use a list when the collection changes and a tuple for fixed records."),
    ("What is the capital city of the country that hosted the 1992 Summer Olympics, and what is it known for?",
     "The 1992 Summer Olympics were held in Barcelona, which is in Spain; the capital of Spain is Madrid, "
     "known for the Prado museum and the Royal Palace."),
]


def _row(i: int, instruction: str, response: str) -> dict:
    return {"id": f"gen/instance_generation/math/{i:06d}", "instruction": instruction, "response": response}


@functools.lru_cache(maxsize=1)
def planted() -> tuple[list[dict], dict[int, dict]]:
    """(rows, idx -> what was planted there): the clean rows with five plants among them. The near miss
    is the canary: 12 consecutive words of a benchmark prompt, one short of the n-gram."""
    gsm = next(i for i in B.load_items("gsm8k") if len(normalize_text(i.prompt).split()) < 50)
    he = next(i for i in B.load_items("humaneval") if len(normalize_text(i.reference).split()) >= 20)
    signature = next(line for line in he.prompt.splitlines() if line.startswith(f"def {he.extra['entry_point']}("))
    arena = next(i for i in B.load_items("arenahard") if len(normalize_text(i.prompt).split()) > 60)
    words = normalize_text(arena.prompt).split()
    window, short = " ".join(words[20:33]), " ".join(words[20:32])  # 13 words, and 12 of them
    seed = load_seeds(**SETTING)[0]
    plants = {
        "gsm8k": (gsm.prompt, "Half of them are red, so the rest are blue.\n[RESULT] 4 [/RESULT]", gsm.id),
        "humaneval": ("Write the function described below.",
                      f"Here is a solution:\n```python\n{signature}\n{he.reference}```", he.id),
        "near_copy": (f"Please help me with this. {window}. Thanks a lot!", "Sure, here is what I would do.", arena.id),
        "seed": (seed.instruction, seed.response, seed.id),
        "near_miss": (f"Please help me with this. {short}. Thanks a lot!", "Sure, here is what I would do.", arena.id),
    }
    rows, where = [], {}
    for i, (instruction, response) in enumerate(CLEAN):
        rows.append(_row(len(rows), instruction, response))
        if i < len(plants):
            name, (p_instruction, p_response, item_id) = list(plants.items())[i]
            where[len(rows)] = {"name": name, "item_id": item_id, "window": window}
            rows.append(_row(len(rows), p_instruction, p_response))
    return rows, where


def check(rows, method: str = "instance_generation", domain: str = "math", **config):
    return D.contamination_report(rows, generator="gen", domain=domain, method=method, dataset_sha256="x",
                                  config=DecontaminationConfig(**config))


def names(report) -> set[str]:
    _, where = planted()
    return {where.get(e.idx, {"name": f"clean:{e.idx}"})["name"] for e in report.flagged}


def matches_of(report, idx: int) -> list[dict]:
    return [m.model_dump() for m in next(e for e in report.flagged if e.idx == idx).matches]


def by_name() -> dict[str, tuple[int, dict]]:
    return {w["name"]: (idx, w) for idx, w in planted()[1].items()}


# ---------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------


def test_finds_exactly_the_planted_instances():
    rows, _ = planted()
    report = check(rows)
    # every plant but the near miss, and no clean row
    assert names(report) == {"gsm8k", "humaneval", "near_copy", "seed"}
    assert (report.num_instances, report.num_flagged) == (len(rows), 4)
    assert report.flagged_by_source == {"arenahard": 1, "gsm8k": 1, "humaneval": 1, "seeds": 1}
    plants = by_name()

    idx, w = plants["gsm8k"]  # the question verbatim as the instruction
    assert {"source": "gsm8k", "item_id": w["item_id"], "item_field": "prompt", "field": "instruction",
            "kind": "exact", "ngram": None} in matches_of(report, idx)

    idx, w = plants["humaneval"]  # the canonical solution inside a response
    m = matches_of(report, idx)
    assert {(x["source"], x["item_field"], x["field"], x["kind"]) for x in m} == {("humaneval", "answer", "response", "ngram")}
    assert w["item_id"] in {x["item_id"] for x in m}  # (another item sharing its loop may be found too)
    assert all(x["ngram"] in normalize_text(rows[idx]["response"]) for x in m)

    idx, w = plants["near_copy"]  # one shared 13-gram, reported as the overlapping words
    assert matches_of(report, idx) == [{"source": "arenahard", "item_id": w["item_id"], "item_field": "prompt",
                                        "field": "instruction", "kind": "ngram", "ngram": w["window"]}]

    idx, w = plants["seed"]  # a seed verbatim: instance generation copied its demo
    m = matches_of(report, idx)
    assert {(x["source"], x["item_id"]) for x in m} == {("seeds", w["item_id"])}
    assert {(x["item_field"], x["field"], x["kind"]) for x in m} >= {("instruction", "instruction", "exact"),
                                                                      ("response", "response", "ngram")}


def test_canary_changed_words_and_a_disabled_index_find_nothing():
    rows, where = planted()
    # every word of each planted text changed (a letter appended): no n-gram and no exact text survives
    altered = [_row(i, " ".join(w + "q" for w in r["instruction"].split()),
                    " ".join(w + "q" for w in r["response"].split())) for i, r in enumerate(rows) if i in where]
    assert check(altered).flagged == []
    assert check(rows, against=[]).flagged == []  # nothing indexed: every plant is missed
    assert names(check(rows, against=["seeds"])) == {"seed"}
    assert names(check(rows, against=["benchmarks"])) == {"gsm8k", "humaneval", "near_copy"}


def test_ngram_size_is_configurable():
    rows, _ = planted()
    at = {n: check(rows, ngram=n) for n in (5, 12, 13, 14, 50)}
    # 12 words: the near miss is now a copy; 14: the 13-word window no longer is
    assert names(at[12]) >= {"near_copy", "near_miss"} and "near_miss" not in names(at[13])
    assert "near_copy" not in names(at[14])
    total = {n: sum(len(e.matches) for e in r.flagged) for n, r in at.items()}
    assert total[5] > total[13] > total[50]
    assert any(name.startswith("clean:") for name in names(at[5]))  # short n-grams hit common phrasing
    assert "gsm8k" in names(at[50])  # an exact copy is found at any n
    assert all(len(e.matches[0].ngram.split()) == 5 for e in at[5].flagged if e.matches[0].ngram)
    assert at[12].ngram == 12


def test_benchmark_ngrams_the_seeds_also_have_do_not_count():
    # A benchmark n-gram that the math seeds contain too: house style shared by MATH's seed and eval parts.
    bench, seeds = D.benchmark_index(13), load_seeds(**SETTING)
    shared = next(gram for s in seeds for gram in ngrams(normalize_text(s.response).split(), 13)
                  if hash(gram) in bench.grams)
    row = _row(0, "Solve the problem.", f"We use a known fact: {shared}. So we are done.")
    assert check([row], against=["benchmarks"]).flagged == []
    # canary: the code seeds do not contain it, so checked as a code dataset the same row is flagged
    report = check([row], domain="code", against=["benchmarks"])
    assert shared in {m.ngram for m in report.flagged[0].matches}


def test_only_instance_generation_is_checked_for_seed_copies():
    rows, _ = planted()
    seed_row = [rows[by_name()["seed"][0]]]
    for method in ("response_generation", "quality_enhancement"):
        # their instances are seeds answered or revised: overlap with the seeds is the method
        report = check(seed_row, method=method)
        assert report.seed_copies_checked is False
        assert not any(m.source == "seeds" for e in report.flagged for m in e.matches)
    assert check(seed_row).flagged_by_source == {"seeds": 1}  # canary: the same row under instance generation


def test_short_answers_need_an_ngram_but_short_prompts_match_exactly():
    short = next(i for i in B.load_items("humaneval") if len(normalize_text(i.reference).split()) < 5)
    prompt = next(i for i in B.load_items("alpacaeval") if len(normalize_text(i.prompt).split()) < 5)
    rows = [_row(0, "Write the function.", short.reference), _row(1, prompt.prompt, "I do not know.")]
    report = check(rows, against=["benchmarks"])
    assert [e.idx for e in report.flagged] == [1] and report.flagged[0].matches[0].kind == "exact"


def test_every_benchmark_folder_has_a_decision_on_answers(monkeypatch):
    assert set(D.ANSWERS) == set(B.NAMES)
    fields = {(r.source, r.item_field) for r in D.benchmark_index(13).refs}
    for name in B.NAMES:
        assert (name, "prompt") in fields
        assert ((name, "answer") in fields) == (D.ANSWERS[name] is not None)
    # canary: a benchmark folder without an entry stops the index, in one line naming it
    monkeypatch.delitem(D.ANSWERS, "mbpp")
    with pytest.raises(ValueError, match="benchmark 'mbpp' has no entry in .*ANSWERS") as e:
        D.benchmark_index.__wrapped__(13)
    assert "\n" not in str(e.value)


def test_bad_rows_get_a_one_line_error():
    with pytest.raises(ValueError, match=r"instance 1: `response` is missing") as e:
        check([_row(0, "a", "b"), {"id": "x", "instruction": "a"}])
    assert "\n" not in str(e.value)


def test_config_section():
    config = Params.model_validate({"generators": {"g": {"backend": "openai", "model": "m"}}}).decontamination
    assert (config.ngram, config.drop, config.against) == (13, False, ["benchmarks", "seeds"])
    assert DecontaminationConfig.model_validate({"ngram": 8, "drop": True, "against": ["seeds"]}).drop
    for bad in ({"ngrams": 13}, {"ngram": 4}, {"against": ["benchmark"]}, {"drop": "maybe"}):
        with pytest.raises(ValueError):
            DecontaminationConfig.model_validate(bad)


# ---------------------------------------------------------------------------------------------
# The stage's files, and training
# ---------------------------------------------------------------------------------------------


def _params(tmp_path, **decontamination) -> Params:
    return Params.model_validate({
        "generators": {"gen": {"backend": "openai", "model": "m"}}, "benchmark_generators": ["gen"],
        "generation": {"output_dir": str(tmp_path / "data/generated")},
        "training": {"max_seed_examples": 0}, "decontamination": decontamination})


def _write_dataset(params: Params, rows: list[dict]) -> Setting:
    setting = Setting("gen", "instance_generation", "math")
    write_instances(setting.dataset(params)["data"],
                    instances("gen", "instance_generation", "math", [(r["instruction"], r["response"]) for r in rows]))
    return setting


def test_stage_files_and_training_drop_only_when_asked(tmp_path):
    from agorabench.training.sft import training_examples

    rows, where = planted()
    flagged = {i for i, w in where.items() if w["name"] != "near_miss"}
    params = _params(tmp_path)
    setting = _write_dataset(params, rows)
    paths = setting.contamination(params)
    assert paths["report"].name == "math.contamination.json" and paths["report"].parent == paths["drop"].parent

    # the default (the paper): reported, and trained on
    report = D.decontaminate_setting(params, setting)
    assert {e.idx for e in report.flagged} == flagged and not report.dropped
    assert read_contamination(paths["report"], setting.label) == report
    assert read_drop_list(paths["drop"], setting.label).ids == []
    _, info = training_examples(params, "gen", "math", "instance_generation")
    assert (info["generated_examples"], info["dropped_examples"]) == (len(rows), 0)
    first = paths["report"].read_bytes()
    D.decontaminate_setting(params, setting)
    assert paths["report"].read_bytes() == first and str(tmp_path) not in first.decode()  # same bytes, no paths

    # drop: exactly the flagged instances are left out
    dropping = _params(tmp_path, drop=True)
    D.decontaminate_setting(dropping, setting)
    assert set(read_drop_list(paths["drop"], setting.label).ids) == {rows[i]["id"] for i in flagged}
    examples, info = training_examples(dropping, "gen", "math", "instance_generation")
    assert (info["generated_examples"], info["dropped_examples"]) == (len(rows) - len(flagged), len(flagged))
    assert [e["prompt"][-1]["content"] for e in examples] == \
        [r["instruction"] for i, r in enumerate(rows) if i not in flagged]

    # canaries: a drop list made under the other setting, or for another dataset, is refused in one line
    with pytest.raises(ParamsError, match="made with decontamination.drop = true but params say false"):
        training_examples(params, "gen", "math", "instance_generation")
    _write_dataset(params, rows[:-1])
    with pytest.raises(ParamsError, match="made for another version of") as e:
        training_examples(dropping, "gen", "math", "instance_generation")
    assert "agora decontaminate --generator gen --domain math --method instance_generation" in str(e.value)
    paths["drop"].unlink()
    with pytest.raises(ParamsError, match="no drop list, and decontamination.drop is true"):
        training_examples(dropping, "gen", "math", "instance_generation")
    # a dataset made outside the pipeline, without a list, trains on everything unless params ask to drop
    assert training_examples(params, "gen", "math", "instance_generation")[1]["dropped_examples"] == 0


def test_agora_decontaminate(prefect_harness, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    import yaml

    rows, _ = planted()
    params = _params(tmp_path)
    _write_dataset(params, rows)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    common = ["--params", str(path), "-d", "math", "-m", "instance_generation"]
    result = CliRunner().invoke(app, ["decontaminate", "-g", "gen", *common])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("gen/instance_generation/math: 4/11 instances overlap (13-grams; arenahard 1, "
                                     "gsm8k 1, humaneval 1, seeds 1); kept for training (decontamination.drop: false)")
    report = json.loads(Setting("gen", "instance_generation", "math").contamination(params)["report"].read_text())
    assert report["num_flagged"] == 4
    # canary: a dataset that is not there, and a malformed scaling prefix, are one-line errors
    for generator, needle in (("gen@2", "no generated dataset"), ("gen@x", "whole number SIZE"),
                              ("nobody", "unknown generator 'nobody'")):
        result = CliRunner().invoke(app, ["decontaminate", "-g", generator, *common])
        last = result.output.strip().splitlines()[-1]  # (Prefect may log the exception above it)
        assert result.exit_code == 2 and last.startswith("error: ") and needle in last, result.output


# ---------------------------------------------------------------------------------------------
# The results database and the report
# ---------------------------------------------------------------------------------------------


def test_counts_reach_the_results_database_and_the_report(tmp_path):
    from agorabench.report.data import load_report_data
    from agorabench.report.page import contamination_table, notes, render_page
    from agorabench.results.db import build_results, connect
    from agorabench.testing.results_tree import write_tree

    tree = write_tree(tmp_path)  # alpha's math datasets hold a GSM8K prompt, its IG datasets a copied seed

    def summary(db) -> dict[tuple, tuple]:
        con = connect(db)
        try:
            rows = con.execute("SELECT generator, method, domain, instances, flagged, benchmark_instances, "
                               "seed_instances, benchmark_items, benchmarks, dropped, current "
                               "FROM contamination_summary ORDER BY ALL").fetchall()
        finally:
            con.close()
        return {r[:3]: r[3:] for r in rows}

    db = build_results(tree.params)
    got = summary(db)
    assert len(got) == 18
    assert got[("alpha", "instance_generation", "math")] == (3, 2, 2, 1, 2, "gsm8k, math", 0, True)
    assert got[("alpha", "response_generation", "math")] == (3, 1, 1, 0, 1, "gsm8k", 0, True)
    assert got[("alpha", "instance_generation", "code")] == (3, 1, 1, 1, 1, "math", 0, True)
    assert got[("beta", "instance_generation", "math")] == (3, 0, 0, 0, 0, None, 0, True)
    con = connect(db)
    assert con.execute("SELECT count(*) FROM contamination_matches").fetchall() == [(9,)]
    con.close()

    data = load_report_data(db)
    header, rows = contamination_table(data)
    assert len(rows) == 18 and header[-1] == "left out of training"
    assert any("5 of 18 datasets hold instances that overlap benchmark items (6 instances, 6 of them trained on)"
               in n for n in notes(data))
    page = render_page(data, [], None)
    assert "<h2>Contamination</h2>" in page and "<td>gsm8k, math</td>" in page

    # canary: a dataset changed after its check shows as stale, in the view and in the report's notes
    s = Setting("alpha", "response_generation", "math")
    data_file = s.dataset(tree.params)["data"]
    # (its lines reordered: the collector refuses a dataset whose line count differs from its manifest)
    data_file.write_text("".join(reversed(data_file.read_text().splitlines(keepends=True))))
    db = build_results(tree.params)
    stale = {k for k, v in summary(db).items() if not v[-1]}
    assert stale == {("alpha", "response_generation", "math")}
    assert any("older than their dataset" in n and "alpha RG math" in n for n in notes(load_report_data(db)))
    # canary: without reports the report says nothing was checked, and no note claims contamination
    for p in tree.generated.rglob("*.contamination.json"):
        p.unlink()
    data = load_report_data(build_results(tree.params))
    assert data.contamination == [] and not any("overlap" in n for n in notes(data))
    assert "No dataset has been checked yet" in render_page(data, [], None)
