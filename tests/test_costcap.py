"""Every paid call priced before a run, and the spending cap across a run (budget_usd, agora run --max-cost):
a priced loopback judge driven through the cap, then resumed without paying twice."""
from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from agorabench.config import load_params
from agorabench.models.endpoint import MAX_COST_ENV, BudgetExceeded
from agorabench.models.store import RequestStore
from tests.conftest import write_params

os.environ["OMP_NUM_THREADS"] = "1"
PRICED = {"generators.fake.price_in_per_mtok": 1000.0, "generators.fake.price_out_per_mtok": 1000.0,
          "generators.fake.concurrency": 1, "evaluation.limits": {"alpacaeval": 4, "arenahard": 2}}


def _params(folder, url, **overrides):
    folder.mkdir()
    return write_params(folder / "params.yaml", url, **{**PRICED, "evaluation.output_dir": str(folder / "eval"),
                                                         **overrides})


def _spent(params) -> float:
    store = RequestStore(params.cache.requests_db)
    try:
        return store.spent_usd()
    finally:
        store.close()


def test_the_plan_prices_every_paid_call_per_stage_and_in_total(tmp_path, fake_server, monkeypatch):
    from agorabench.pipeline.dry_run import plan

    monkeypatch.setenv("FAKE_API_KEY", "k")
    params = load_params(_params(tmp_path / "a", fake_server.url, budget_usd=12.5))
    costs = plan(params)["costs"]
    stages = costs["stages"]
    assert list(stages) == ["generation", "intrinsic judge", "benchmark judge", "generator benchmarks"]
    assert all(s["cost_usd"] > 0 and s["requests"] > 0 for s in stages.values())
    # Intrinsic: difficulty and quality per instance; AlpacaEval 1 and Arena-Hard 2 calls per item and model.
    instances = stages["generation"]["requests"]
    assert stages["intrinsic judge"]["requests"] == 2 * instances
    from agorabench.evaluation.run import select_items
    from agorabench.pipeline.costs import evaluated_models

    models, n = evaluated_models(params), {b: len(select_items(params, b)) for b in ("alpacaeval", "arenahard")}
    by_what = {r["what"]: r for r in stages["benchmark judge"]["lines"]}
    assert by_what["alpacaeval"]["requests"] == n["alpacaeval"] * models["alpacaeval"]
    assert by_what["arenahard"]["requests"] == 2 * n["arenahard"] * models["arenahard"]
    assert costs["total"]["cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in stages.values()), abs=1e-3)
    assert costs["cap_usd"] == 12.5
    # Canary: a free judge costs nothing, so its stages' price must follow the judge's own prices.
    free = load_params(_params(tmp_path / "b", fake_server.url, **{"generators.fake.price_in_per_mtok": 0.0,
                                                                   "generators.fake.price_out_per_mtok": 0.0}))
    assert plan(free)["costs"]["stages"]["intrinsic judge"]["cost_usd"] == 0
    assert plan(free)["costs"]["cap_usd"] is None


def test_agora_estimate_json_has_every_stage(tmp_path, fake_server, monkeypatch):
    import json

    from flows.cli import app

    monkeypatch.setenv("FAKE_API_KEY", "k")
    path = _params(tmp_path / "a", fake_server.url)
    out = CliRunner().invoke(app, ["estimate", "-d", "math", "--params", str(path), "--json"])
    assert out.exit_code == 0, out.output
    costs = json.loads(out.output)["costs"]
    assert set(costs["stages"]) == {"generation", "intrinsic judge", "benchmark judge", "generator benchmarks"}
    assert costs["total"]["cost_usd"] > costs["stages"]["generation"]["cost_usd"]


def test_the_cap_stops_a_priced_judge_and_the_next_run_pays_only_for_the_rest(tmp_path, fake_server, monkeypatch,
                                                                              prefect_harness):
    from agorabench.evaluation.run import evaluate

    monkeypatch.setenv("FAKE_API_KEY", "k")
    # Canary and yardstick: without a cap every request is sent (4 answers + 4 AlpacaEval judgements).
    free = load_params(_params(tmp_path / "free", fake_server.url))
    evaluate(free, "generator:fake", "alpacaeval")
    everything, total = fake_server.request_count, _spent(free)
    assert everything == 8 and total > 0

    fake_server.reset_counts()
    cap = total / 2
    monkeypatch.setenv(MAX_COST_ENV, repr(cap))  # as `agora run --max-cost` hands it to its stages
    params = load_params(_params(tmp_path / "capped", fake_server.url))
    with pytest.raises(BudgetExceeded, match="reached"):
        evaluate(params, "generator:fake", "alpacaeval")
    first = fake_server.request_count
    assert 0 < first < everything and _spent(params) <= cap  # stopped before spending past the cap

    # The stage's one line names what is left undone.
    from flows.cli import app

    out = CliRunner().invoke(app, ["evaluate", "--model", "generator:fake", "-b", "alpacaeval",
                                   "--params", str(tmp_path / "capped" / "params.yaml")])
    assert out.exit_code == 2 and "left undone: evaluate generator:fake on alpacaeval" in out.output
    assert _spent(params) <= cap  # what still fit under the cap went out, nothing past it

    # A higher cap resumes: only the requests not yet paid for are sent.
    monkeypatch.setenv(MAX_COST_ENV, repr(total * 10))
    evaluate(params, "generator:fake", "alpacaeval")
    assert fake_server.request_count == everything
    assert _spent(params) == pytest.approx(total)


def test_budget_usd_in_params_is_the_cap_and_a_bad_env_value_is_one_line(tmp_path, fake_server, monkeypatch):
    from agorabench.config import ParamsError
    from agorabench.models.endpoint import spending_cap

    monkeypatch.setenv("FAKE_API_KEY", "k")
    monkeypatch.delenv(MAX_COST_ENV, raising=False)
    params = load_params(_params(tmp_path / "a", fake_server.url, budget_usd=3.0))
    assert spending_cap(params) == 3.0
    monkeypatch.setenv(MAX_COST_ENV, "1.5")
    assert spending_cap(params) == 1.5  # agora run --max-cost wins
    monkeypatch.setenv(MAX_COST_ENV, "lots")
    with pytest.raises(ParamsError, match=f"{MAX_COST_ENV}='lots' is not a USD amount"):
        spending_cap(params)
