"""The scaling study (quantity against quality): a larger dataset, nested prefixes as datasets of
generators NAME@SIZE, priced by what producing them took, and seen by the results database."""
from __future__ import annotations


import orjson
import pytest
from typer.testing import CliRunner

from flows.cli import app
from agorabench.config import ParamsError, load_params
from agorabench.setting import Setting
from agorabench.generation.records import DatasetManifest, Instance, Rejection, write_dataset
from agorabench.generation.scaling import write_prefix
from tests.conftest import write_params


def _params(tmp_path, url="http://127.0.0.1:9", **extra):
    return write_params(tmp_path / "params.yaml", url, **{
        "scaling.generators": ["fake"], "scaling.sizes": [3, 2], "scaling.methods": ["instance_generation"],
        "scaling.output_dir": str(tmp_path / "data/scaling"), **extra})


def _write_source(params, rows, rejected):
    """The full-size scaling dataset, written with generation's own records."""
    common = {"seed_ids": [], "request_key": None}
    instances = [Instance(**common, config="m", method="instance_generation", domain="math", theme=None,
                          first_word=None, prompt_sha256=None, **r) for r in rows]
    rejections = [Rejection(**common, detail=None, raw="x", finish_reason="length", **r) for r in rejected]
    manifest = DatasetManifest(
        generator="fake", backend="openai", model="m", domain="math", method="instance_generation",
        num_requested=len(rows), num_valid=len(rows), complete=True, shortfall_reason=None,
        attempts=len(rows) + len(rejected), rejections={}, cost_usd=99.0, input_tokens=0, output_tokens=0,
        prompt_format="text", prompt_file=None, prompt_set_sha256=None, sampling={}, seed=42, seed_source="offline",
        num_seeds=0, seeds_sha256=None, versions={})
    write_dataset(Setting("fake", "instance_generation", "math").scaling_source(params), instances, rejections, manifest)


def test_names_and_sizes(tmp_path):
    params = load_params(_params(tmp_path))
    prefix = Setting("gpt-4o-mini", "instance_generation", "math", 50000)
    assert prefix.name == "gpt-4o-mini@50000" and prefix.label == "gpt-4o-mini@50000/instance_generation/math"
    assert prefix.stage("scale-train") == "scale-train@gpt-4o-mini-instance_generation-math-50000"
    assert prefix.dataset(params)["data"].parts[-3:] == ("gpt-4o-mini@50000", "instance_generation", "math.jsonl")
    assert prefix.scaling_source(params) == Setting("gpt-4o-mini", "instance_generation", "math").dataset(
        params, params.scaling.output_dir)
    # Canary: the full-size dataset is another setting, with another name and paths.
    assert Setting("gpt-4o-mini", "instance_generation", "math").name == "gpt-4o-mini"


def test_prefix_is_priced_by_the_attempts_it_needed(tmp_path):
    params = load_params(_params(tmp_path))
    assert params.scaling.sizes == [2, 3]  # sorted on load
    rows = [{"id": f"fake/instance_generation/math/{k:06d}", "generator": "fake", "instruction": f"q{k}",
             "response": f"a{k}", "attempt": a, "cost_usd": 1.0, "input_tokens": 10, "output_tokens": 5}
            for k, a in enumerate([0, 2, 5])]
    rejected = [{"attempt": a, "reason": "truncated", "cost_usd": 0.5, "input_tokens": 10, "output_tokens": 7}
                for a in (1, 3, 4)]
    _write_source(params, rows, rejected)
    m = write_prefix(params, "fake", "math", "instance_generation", 2)
    # instances 0 and 1 (attempts 0 and 2) needed attempts 0..2: one rejection (attempt 1)
    assert (m["generator"], m["num_valid"], m["complete"], m["attempts"]) == ("fake@2", 2, True, 3)
    assert m["cost_usd"] == pytest.approx(2.5) and m["rejections"] == {"truncated": 1}
    out = Setting("fake", "instance_generation", "math", 2).dataset(params)
    kept = [orjson.loads(line) for line in out["data"].read_bytes().splitlines()]
    assert [r["instruction"] for r in kept] == ["q0", "q1"] and kept[0]["id"].startswith("fake@2/")
    assert m["subset_of"]["cost_usd"] == 99.0
    # the full size needed every attempt (canary: a different cutoff gives a different price)
    assert write_prefix(params, "fake", "math", "instance_generation", 3)["cost_usd"] == pytest.approx(4.5)


def test_wrong_size_and_missing_source_are_one_line(tmp_path):
    params = load_params(_params(tmp_path))
    with pytest.raises(ParamsError, match="agora generate .* --scaling"):
        write_prefix(params, "fake", "math", "instance_generation", 2)
    with pytest.raises(ParamsError, match="scaling.sizes"):
        write_prefix(params, "fake", "math", "instance_generation", 7)


def test_scaling_config_is_checked(tmp_path):
    for overrides, needle in (({"scaling.sizes": []}, "scaling.sizes is empty"),
                              ({"scaling.sizes": [2, 2]}, "distinct positive sizes"),
                              ({"scaling.generators": ["nope"]}, "scaling.generators lists 'nope'")):
        path = write_params(tmp_path / "p.yaml", "http://127.0.0.1:9", **{"scaling.generators": ["fake"],
                                                                         "scaling.sizes": [1], **overrides})
        with pytest.raises(ParamsError, match=needle):
            load_params(path)


def test_generate_subset_and_results_end_to_end(prefect_harness, tmp_path, fake_server, monkeypatch):
    """`agora generate --scaling` writes the larger set once; `agora subset` cuts prefixes that the
    results database shows next to the main dataset, priced and sized."""
    monkeypatch.setenv("FAKE_API_KEY", "k")
    monkeypatch.chdir(tmp_path)
    path = _params(tmp_path, fake_server.url, **{"generation.num_instances": 2,
                                                 "analysis.results_dir": str(tmp_path / "data/results")})
    runner = CliRunner()
    common = ["--params", str(path), "-g", "fake", "-m", "instance_generation", "-d", "math"]
    for extra in ([], ["--scaling"]):
        result = runner.invoke(app, ["generate", *common, *extra])
        assert result.exit_code == 0, result.output
    params = load_params(path)
    big = Setting("fake", "instance_generation", "math").scaling_source(params)
    assert len(big["data"].read_bytes().splitlines()) == 3  # max(scaling.sizes)
    for size in (2, 3):
        result = runner.invoke(app, ["subset", *common, "--size", str(size)])
        assert result.exit_code == 0 and f"fake@{size}" in result.output, result.output
    prefix = Setting("fake", "instance_generation", "math", 2).dataset(params)["data"].read_bytes().splitlines()
    full = big["data"].read_bytes().splitlines()
    assert [orjson.loads(r)["instruction"] for r in prefix] == [orjson.loads(r)["instruction"] for r in full[:2]]

    from agorabench.results.db import build_db

    result = runner.invoke(app, ["results", "--params", str(path)])
    assert result.exit_code == 0, result.output
    db = build_db(params.analysis.results_dir)
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    rows = con.sql("SELECT dataset, prefix_size, instances, cost_usd > 0 FROM quantity_quality "
                   "WHERE generator = 'fake' ORDER BY dataset").fetchall()
    con.close()
    assert rows == [("fake", None, 2, True), ("fake@2", 2, 2, True), ("fake@3", 3, 3, True)]
