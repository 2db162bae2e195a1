"""DVC around the report stage: the PGR metrics file (what `dvc metrics` and `dvc exp show` read) and
`dvc plots show` drawing offline, in headless Chromium, with this repository's dvc.yaml plots and
.dvc/config in a scratch git+DVC repository. Canaries: a changed metric is what `dvc metrics diff`
reports, and DVC's default page (no template) reaches for the network and draws nothing."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from agorabench.report.data import load_report_data
from agorabench.report.dvc_plots import render_template, write_template
from agorabench.report.page import write_plot_csvs
from agorabench.results.metrics import generator_table, pgr_metrics, write_metrics
from tests.conftest import REPO
from tests.test_report import CHROMIUM, CHROMIUM_ARGS, GENERATORS, results_db


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return results_db(tmp_path_factory.mktemp("metrics-db"))


def test_metrics_hold_every_pgr_level_and_the_cost(db):
    metrics = pgr_metrics(db)
    table = {r["generator"]: r for r in generator_table(db)}
    assert sorted(metrics) == sorted(GENERATORS) == sorted(table)
    for g, m in metrics.items():
        assert m["pgr"] == pytest.approx(table[g]["pgr_overall"])
        assert m["cost_usd"] == pytest.approx(table[g]["cost_usd"]) and m["cost_usd"] > 0
        # Overall = mean of the method averages, each the mean of its domains (views.py), read back here.
        assert m["pgr"] == pytest.approx(sum(m["method"].values()) / len(m["method"]))
        for method, domains in m["domain"].items():
            assert m["method"][method] == pytest.approx(sum(domains.values()) / len(domains))
    ranks = [r["pgr_overall"] for r in generator_table(db)]
    assert ranks == sorted(ranks, reverse=True)


def test_undefined_pgr_is_left_out_not_written_as_null(tmp_path):
    # Canary: the reference no better than the base on gsm8k leaves math PGR (and so the overall) NULL.
    flat = results_db(tmp_path, generators=("alpha",), flat_gsm8k=True)
    m = pgr_metrics(flat)["alpha"]
    assert "pgr" not in m and "math" not in json.dumps(m["domain"])
    assert "null" not in write_metrics(flat, tmp_path / "m.json").read_text()


def test_template_is_dvc_s_page_with_the_library_inline():
    page = render_template()
    assert "{plot_divs}" in page and "{scripts}" not in page  # no placeholder: DVC's CDN tags are dropped
    assert "vegaEmbed" in page and "://cdn" not in page
    assert page.count("<script>") == 3


def sh(args, cwd, env=None):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dvc_repo(db, tmp_path_factory):
    """A git+DVC repository with this repo's .dvc/config, the report stage's metrics declaration and
    the top-level plots, and the report stage's files written from `db`."""
    repo = tmp_path_factory.mktemp("dvc-repo")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    sh(["git", "init", "-q"], repo, env)
    sh(["dvc", "init", "-q"], repo, env)
    shutil.copy(REPO / ".dvc/config", repo / ".dvc/config")
    real = yaml.safe_load((REPO / "dvc.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump({"analysis": {"results_dir": "data/results"}}))
    (repo / "dvc.yaml").write_text(yaml.safe_dump({
        "stages": {"report": {"cmd": "true", "metrics": real["stages"]["report"]["metrics"]}},
        "plots": real["plots"]}))
    write_metrics(db, repo / "data/results/metrics.json")
    write_plot_csvs(load_report_data(db), repo / "reports/plots")  # what the page writes for DVC, no figures
    write_template(repo / "reports/plots/dvc_template.html")
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "baseline"], repo, env)
    return repo, env


@pytest.mark.slow
def test_dvc_reads_the_metrics_and_diffs_a_changed_pgr(db, dvc_repo):
    repo, env = dvc_repo
    shown = json.loads(sh(["dvc", "metrics", "show", "--json"], repo, env))
    data = next(iter(shown.values()))["data"]["data/results/metrics.json"]["data"]
    assert data == json.loads(json.dumps(pgr_metrics(db)))
    # Canary: change one generator's overall PGR in the workspace; the diff names that metric only.
    path = repo / "data/results/metrics.json"
    metrics = json.loads(path.read_text())
    metrics["alpha"]["pgr"] += 5
    path.write_text(json.dumps(metrics))
    diff = json.loads(sh(["dvc", "metrics", "diff", "--json"], repo, env))["data/results/metrics.json"]
    assert list(diff) == ["alpha.pgr"] and diff["alpha.pgr"]["diff"] == pytest.approx(5)
    # Kept as an experiment, `dvc exp show` puts it next to the commit it started from, by PGR.
    sh(["dvc", "exp", "save", "-q", "-n", "alpha-plus-5", "-f"], repo, env)
    rows = {r["name"]: r for r in _exp_rows(json.loads(sh(["dvc", "exp", "show", "--json", "-A"], repo, env)))}

    def pgr(row):
        return row["data"]["metrics"]["data/results/metrics.json"]["data"]["alpha"]["pgr"]
    assert pgr(rows["alpha-plus-5"]) == pytest.approx(metrics["alpha"]["pgr"])
    baseline = next(r for name, r in rows.items() if name not in ("alpha-plus-5", "workspace"))
    assert pgr(rows["alpha-plus-5"]) - pgr(baseline) == pytest.approx(5)


def _exp_rows(shown: list[dict]) -> list[dict]:
    """Every row of `dvc exp show --json`: the workspace and commits, and under each commit its
    experiments (["experiments"][i]["revs"]), each with a "name" (an experiment's, else its rev)."""
    rows = []
    for row in shown:
        rows.append({**row, "name": row.get("name") or row["rev"]})
        for experiment in row.get("experiments") or []:
            rows += _exp_rows(experiment.get("revs") or [])
    return rows


def plot_page_problems(page_file, expect: int = 0) -> tuple[list[str], int]:
    """Open a `dvc plots show` page from disk with every non-file request blocked: what it tried to
    fetch or failed with, and how many plots drew (a vega-embed canvas or svg with a size), waiting
    until `expect` have."""
    if not CHROMIUM.is_file():
        if os.environ.get("AGORA_REQUIRE_BROWSER") == "1":
            pytest.fail(f"AGORA_REQUIRE_BROWSER=1 but {CHROMIUM} is not installed")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()

            def block(route):
                if route.request.url.startswith("file://"):
                    route.continue_()
                else:
                    problems.append(f"network request: {route.request.url}")
                    route.abort()

            page.route("**/*", block)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console error: {m.text}") if m.type == "error" else None)
            page.goto(page_file.as_uri(), wait_until="load")
            count = ("() => [...document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks')]"
                     ".filter(e => e.getBoundingClientRect().width > 50 && e.getBoundingClientRect().height > 50).length")
            if expect:  # vega-embed draws asynchronously, after load
                try:
                    page.wait_for_function(f"({count})() >= {expect}", timeout=30_000)
                except PlaywrightTimeout:
                    pass  # the count below says how many drew
            drawn = page.evaluate(count)
        finally:
            browser.close()
    return problems, drawn


@pytest.mark.slow
def test_dvc_plots_show_draws_offline_and_the_default_page_does_not(dvc_repo):
    repo, env = dvc_repo
    plots = len(yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"])
    sh(["dvc", "plots", "show", "-o", "offline"], repo, env)
    problems, drawn = plot_page_problems(repo / "offline/index.html", expect=plots)
    assert problems == [] and drawn == plots, problems
    # Canary: DVC's own page (the template setting removed) fetches its library and draws nothing.
    sh(["dvc", "config", "--unset", "plots.html_template"], repo, env)
    try:
        sh(["dvc", "plots", "show", "-o", "default"], repo, env)
    finally:
        sh(["git", "checkout", ".dvc/config"], repo, env)
    problems, drawn = plot_page_problems(repo / "default/index.html")
    assert drawn == 0 and any("network request: https://cdn.jsdelivr.net/npm/vega" in p for p in problems), problems
