"""Several intrinsic judges (intrinsic.judges): each judge's difficulty and quality per dataset, over real
HTTP to the loopback server, in the results database, and as features of their own in the PCA (the
paper's two judges give its 9 features); and how Table 4's mean |loading| is averaged."""
from __future__ import annotations

import random
import sqlite3

import numpy as np
import pandas as pd
import pytest
import yaml

from agorabench.analysis import analyze, features_from_db, format_analysis, run_analysis
from agorabench.config import IntrinsicConfig, ParamsError, load_params
from agorabench.intrinsic.records import IntrinsicSummary, JudgeSummary
from agorabench.intrinsic.run import intrinsic_for_dataset
from agorabench.results.collect import collect
from agorabench.results.db import build_db, connect
from agorabench.results.schema import INTRINSIC_METRICS
from agorabench.setting import Setting
from agorabench.testing.datasets import instances, write_instances
from agorabench.testing.llm_server import FakeLLMServer, last_user_text
from agorabench.testing.results_tree import write_tree
from tests.conftest import query, write_params

RG = "response_generation"
PAIRS = [("What is 2 + 3?", "5"), ("Solve x + 1 = 4.", "x = 3"), ("Is 7 prime?", "Yes, 7 is prime.")]


def judge_responder(api, body):
    """Two judges on one loopback server: the OpenAI-format one gives 2 to a difficulty question and 3
    to a quality one, the Anthropic-format one 4 and 5, so each judge's means are told apart."""
    difficulty = "challenging" in last_user_text(body)  # the difficulty rubric asks how challenging
    if api == "openai":
        return "2" if difficulty else "3"
    return "4" if difficulty else "5"


def _params_file(tmp_path, url, judges):
    return write_params(tmp_path / "params.yaml", url, **{
        "intrinsic.judges": judges, "intrinsic.metrics": ["difficulty", "quality"],
        "intrinsic.judge_reasoning": False, "intrinsic.judge_top_logprobs": 0,
        "intrinsic.output_dir": str(tmp_path / "data/intrinsic"),
        "intrinsic.cache_db": str(tmp_path / ".agora/intrinsic-cache.sqlite")})


def test_a_second_judge_is_asked_alone_and_each_judge_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "k")
    with FakeLLMServer(responder=judge_responder, latency_s=0.02) as server:
        params = load_params(_params_file(tmp_path, server.url, ["fake"]))
        write_instances(Setting("fake", RG, "math").dataset(params)["data"], instances("fake", RG, "math", PAIRS))
        one = intrinsic_for_dataset(params, "fake", "math", RG, log=lambda s: None)
        assert server.completed_count == 2 * len(PAIRS)
        assert (one["difficulty"], one["quality"]) == (2, 3) and [j["judge"] for j in one["judges"]] == ["fake"]
        usage = one["judges"][0]["usage"]  # what its 6 verdicts cost, at the judge's price
        price = params.generators["fake"]
        assert usage["requests"] == 2 * len(PAIRS) and usage["input_tokens"] > 0 and usage["cost_usd"] > 0
        assert usage["cost_usd"] == pytest.approx((usage["input_tokens"] * price.price_in_per_mtok
                                                   + usage["output_tokens"] * price.price_out_per_mtok) / 1e6)
        # ... and the time its replies took: the request store's latencies (the server waits 20 ms a reply).
        with sqlite3.connect(params.cache.requests_db) as db:
            stored = db.execute("SELECT sum(latency_s) FROM responses").fetchone()[0]
        assert usage["latency_s"] == pytest.approx(stored) and usage["latency_s"] >= 0.02 * 2 * len(PAIRS)

        # Adding a judge: only the new one is asked; the first judge's verdicts come from the intrinsic cache.
        server.reset_counts()
        params = load_params(_params_file(tmp_path, server.url, ["fake", "fake-claude"]))
        two = intrinsic_for_dataset(params, "fake", "math", RG, log=lambda s: None)
        assert server.completed_count == 2 * len(PAIRS)
        assert two["computed"] == {"difficulty": 0, "quality": 0, "difficulty@fake-claude": 3, "quality@fake-claude": 3}
        assert [(j["judge"], j["model"], j["difficulty"], j["quality"]) for j in two["judges"]] == [
            ("fake", "fake-model", 2, 3), ("fake-claude", "claude-fake", 4, 5)]
        assert (two["difficulty"], two["quality"]) == (2, 3)  # the first judge fills the one-judge fields
        paths = Setting("fake", RG, "math").intrinsic(params)
        table = pd.read_parquet(paths["parquet"])
        assert table["difficulty"].tolist() == [2] * 3 and table["quality@fake-claude"].tolist() == [5] * 3
        assert "quality_verdict@fake-claude" in table.columns
        summary = IntrinsicSummary.model_validate_json(paths["summary"].read_bytes())
        assert [j.judge for j in summary.judges] == ["fake", "fake-claude"]

        # Canary: the order decides which judge fills difficulty/quality, and nothing is asked again.
        server.reset_counts()
        params = load_params(_params_file(tmp_path, server.url, ["fake-claude", "fake"]))
        swapped = intrinsic_for_dataset(params, "fake", "math", RG, log=lambda s: None)
        assert server.completed_count == 0 and (swapped["difficulty"], swapped["quality"]) == (4, 5)
        # Verdicts from the cache are booked at what they cost when asked: the same figures as the first run.
        assert {j["judge"]: j["usage"] for j in swapped["judges"]}["fake"] == usage


def test_a_repeated_instance_is_judged_and_booked_once(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "k")
    with FakeLLMServer(responder=judge_responder) as server:
        params = load_params(_params_file(tmp_path, server.url, ["fake"]))
        twice = PAIRS + PAIRS[:1]  # the first instance again
        write_instances(Setting("fake", RG, "math").dataset(params)["data"], instances("fake", RG, "math", twice))
        usage = intrinsic_for_dataset(params, "fake", "math", RG, log=lambda s: None)["judges"][0]["usage"]
        assert server.completed_count == 2 * len(PAIRS)  # asked once
        # Booked once: the same figures as the dataset without the repeat (canary: 8 requests booked).
        assert usage["requests"] == 2 * len(PAIRS) != 2 * len(twice)


def test_judge_is_short_for_one_judge_and_bad_lists_are_one_line_errors(tmp_path):
    assert IntrinsicConfig(judge="gpt-4o").judges == ["gpt-4o"] == IntrinsicConfig(judges=["gpt-4o"]).judges
    assert IntrinsicConfig(judge=None).judges == [] and "judge" not in IntrinsicConfig(judge="x").model_dump()

    def load(section):
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump({"generators": {"g": {"backend": "openai", "model": "m"}},
                                        "intrinsic": section}))
        return load_params(path)

    assert load({"judge": "g"}).intrinsic.judges == ["g"]
    for section, message in (({"judges": ["g", "nope"]}, "intrinsic.judges lists 'nope', which is not under generators"),
                             ({"judge": "g", "judges": ["g"]}, "sets both judge and judges; keep judges"),
                             ({"judges": ["g", "g"]}, "intrinsic.judges = .* lists 'g' twice")):
        with pytest.raises(ParamsError, match=message) as err:
            load(section)
        assert "\n" not in str(err.value)


def _rewrite_summaries(tree, judges: list[str]) -> None:
    """Give every dataset of the tree varied metrics and `judges` judges, each with its own means."""
    rng = random.Random(7)
    for path in sorted(tree.intrinsic.rglob("*.summary.json")):
        s = IntrinsicSummary.model_validate_json(path.read_bytes())
        per_judge = [JudgeSummary(judge=j, model=f"{j}-model", difficulty=rng.uniform(1, 5), quality=rng.uniform(1, 5),
                                  failures={"difficulty": {"judge_error": 0, "parse_error": 0},
                                            "quality": {"judge_error": 1, "parse_error": 0}}, verdicts="text")
                     for j in judges]
        s = s.model_copy(update={
            "judges": per_judge, "difficulty": per_judge[0].difficulty, "quality": per_judge[0].quality,
            "models": {"judge": per_judge[0].model}, "reward": rng.uniform(-1, 1), "perplexity": rng.uniform(2, 9),
            "instruction_diversity": rng.uniform(0.2, 0.6), "response_diversity": rng.uniform(0.2, 0.6)})
        path.write_text(s.to_json())


def test_two_judges_give_the_papers_nine_features_and_one_judge_the_seven_of_before(tmp_path):
    tree = write_tree(tmp_path)
    _rewrite_summaries(tree, ["gpt-4o", "prometheus"])
    collect(tree.params)
    db = build_db(tree.out)
    n = len(tree.params.benchmark_generators) * 9
    assert query(db, "SELECT count(*), count(DISTINCT judge), sum(failures) FROM intrinsic_judges") == [(2 * n, 2, 2 * n)]
    # The intrinsic table keeps the first judge's means.
    assert query(db, "SELECT count(*) FROM intrinsic i JOIN intrinsic_judges j USING (generator, method, domain) "
                     "WHERE j.position = 1 AND j.judge = 'gpt-4o' AND i.difficulty = j.difficulty") == [(n,)]
    result = run_analysis(features_from_db(db))
    assert result["features"] == ["difficulty:gpt-4o", "difficulty:prometheus", "quality:gpt-4o", "quality:prometheus",
                                  "reward", "perplexity", "instruction_diversity", "response_diversity", "problem_solving"]
    assert result["n_rows"] == n and len(result["pca"]["loadings"]["PC1"]) == 9

    # One judge: the features and the numbers are those of the intrinsic_summary view alone, as before.
    _rewrite_summaries(tree, ["gpt-4o"])
    collect(tree.params)
    db = build_db(tree.out)
    one = run_analysis(features_from_db(db))
    assert one["features"] == ["difficulty", "quality", "reward", "perplexity", "instruction_diversity",
                               "response_diversity", "problem_solving"]
    # What the analysis read before there were several judges: the intrinsic_summary view as it is.
    con = connect(db)
    before = con.sql(f"SELECT generator, method, domain, pgr, problem_solving, {', '.join(INTRINSIC_METRICS)} "
                     f"FROM intrinsic_summary ORDER BY generator, method, domain").df()
    con.close()
    assert one == run_analysis(before)
    assert one["pca"]["explained_variance_ratio"] != result["pca"]["explained_variance_ratio"]  # canary


def test_mean_loading_is_averaged_over_all_components_or_the_top_k():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"generator": [f"g{i % 4}" for i in range(40)], "method": "m",
                       "domain": [f"d{i}" for i in range(40)], "pgr": rng.normal(size=40),
                       "problem_solving": rng.normal(size=40), **{f"f{k}": rng.normal(size=40) for k in range(5)}})
    every = analyze(df, top_k=2)
    top = analyze(df, top_k=2, loading_average="top_k")
    loadings = pd.DataFrame(every["pca"]["loadings"]).T  # components x features
    assert every["pca"]["loading_average"] == "all" and every["pca"]["loading_components"] == 6
    assert every["pca"]["mean_abs_loading"] == pytest.approx(loadings.abs().mean().to_dict())
    assert top["pca"]["loading_components"] == 2
    assert top["pca"]["mean_abs_loading"] == pytest.approx(loadings.iloc[:2].abs().mean().to_dict())
    assert top["pca"]["mean_abs_loading"] != pytest.approx(every["pca"]["mean_abs_loading"])  # canary
    assert top["regression"] == every["regression"]  # only the average changes
    assert "over all 6 components (the paper's Table 4" in format_analysis(every)
    assert "over the top 2 components" in format_analysis(top)
    with pytest.raises(ValueError, match="loading_average='some' is not known; use one of all, top_k"):
        analyze(df, loading_average="some")


def test_the_report_caption_says_how_the_mean_loading_is_averaged(tmp_path):
    from agorabench.report.figures import pca_loadings

    rng = np.random.default_rng(4)
    df = pd.DataFrame({"generator": [f"g{i % 3}" for i in range(12)], "method": "m",
                       "domain": [f"d{i}" for i in range(12)], "pgr": rng.normal(size=12),
                       "problem_solving": rng.normal(size=12), "difficulty": rng.normal(size=12),
                       "quality": rng.normal(size=12)})
    caption = pca_loadings(analyze(df), tmp_path).caption
    assert "Mean |loading| (share) over all 3 components (the paper's Table 4" in caption
    assert "over the top 3 components" in pca_loadings(analyze(df, loading_average="top_k"), tmp_path).caption
