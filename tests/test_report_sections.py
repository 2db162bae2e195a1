"""The report's sections beyond PGR (agorabench/report): scores per benchmark (with bootstrap intervals only
where the database has the score_interval view), valid rates and rejection reasons, intrinsic metrics
against PGR, sample instances, the cost of each stage, and the single-file copy of the page. Each check
of a section's numbers sits next to a canary: the same section on data that lacks it, or a broken input."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

from agorabench.report import write_report
from agorabench.results.collect import collect
from agorabench.results.db import build_db, connect
from agorabench.testing.results_tree import write_tree
from tests.test_report import browser, report_problems, results_db, vary  # noqa: F401 (browser: a fixture)

os.environ.setdefault("OMP_NUM_THREADS", "1")
SHORT = {"instance_generation": "IG", "response_generation": "RG", "quality_enhancement": "QE"}


def section(html: str, anchor: str) -> str:
    """The page from the <h2> with this id to the next <h2>."""
    start = html.index(f'<h2 id="{anchor}">')
    end = html.find("<h2", start + 4)
    return html[start:end if end > 0 else None]


def table_rows(html: str, cls: str) -> list[list[str]]:
    body = re.search(rf'<table class="{cls}">.*?<tbody>(.*?)</tbody>', html, re.DOTALL).group(1)
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL)]


@pytest.fixture(scope="module")
def tree_db(tmp_path_factory) -> Path:
    """Three generators; alpha's IG math dataset has an unusual manifest (6 attempts, two reasons) and a
    first instance with markup and a long response, to check the valid rate, the reasons and escaping."""
    paths = write_tree(tmp_path_factory.mktemp("tree"), ("alpha", "beta", "gamma"))
    vary(paths)
    manifest = paths.generated / "alpha" / "instance_generation" / "math.manifest.json"
    m = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**m, "attempts": 6, "rejections": {"too_long": 2, "no_answer": 1}}))
    data = paths.generated / "alpha" / "instance_generation" / "math.jsonl"
    lines = data.read_text().splitlines()
    first = json.loads(lines[0])
    first.update(instruction="Solve <script>alert(1)</script> & explain", response="x" * 1000)
    data.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    collect(paths.params)
    return build_db(paths.out)


@pytest.fixture(scope="module")
def page(tree_db, tmp_path_factory) -> str:
    return write_report(tree_db, tmp_path_factory.mktemp("out") / "reports").read_text()


def test_scores_table_gives_every_model_and_benchmark(tree_db, page):
    con = connect(tree_db)
    scores = con.execute("SELECT model, kind, benchmark, score FROM scores").fetchall()
    con.close()
    rows = {r[0]: r[1:] for r in table_rows(section(page, "scores"), "scores")}
    header = re.search(r'<table class="scores">\s*<thead><tr>(.*?)</tr>', page).group(1)
    benches = re.findall(r"<th>(.*?)</th>", header)[1:]
    assert benches == ["gsm8k", "math", "mbpp", "humaneval", "alpacaeval", "arenahard"]
    # base, reference, 3 generators and 27 students, each with its scores in the right column
    assert len(rows) == 2 + 3 + 27 and list(rows)[:5] == ["base (S₀)", "reference (S_ref)", "generator alpha",
                                                          "generator beta", "generator gamma"]
    label = {"base": "base (S₀)", "reference": "reference (S_ref)"}
    for model, kind, bench, score in scores:
        if kind == "student":
            g, m, d = model.split("/")[1:]
            name = f"student {g} {SHORT[m]} {d}"
        else:
            name = label.get(kind, f"generator {model.split('/')[-1]}")
        assert rows[name][benches.index(bench)].split(" [")[0] == f"{score:.1f}", (name, bench)
    assert rows["student alpha IG math"][benches.index("mbpp")] == "–"  # scored on its own domain only
    # The database's score_interval view gives each score its bootstrap interval, in brackets and as bars.
    assert rows["base (S₀)"][0].count("[") == 1 and "No intervals" not in page


def with_view(db: Path, tmp_path: Path, sql: str) -> Path:
    copy = tmp_path / "agora.duckdb"
    shutil.copy(db, copy)
    con = duckdb.connect(str(copy))
    con.execute(sql)
    con.close()
    return copy


def test_intervals_appear_only_when_the_score_interval_view_exists(tree_db, tmp_path):
    db = with_view(tree_db, tmp_path, "CREATE OR REPLACE VIEW score_interval AS SELECT model, benchmark, score - 5 AS score_lo, "
                                      "score + 5 AS score_hi FROM scores")
    html = write_report(db, tmp_path / "out").read_text()
    rows = {r[0]: r[1:] for r in table_rows(html, "scores")}
    assert rows["base (S₀)"][0] == "25.0 [20.0, 30.0]" and rows["reference (S_ref)"][0] == "75.0 [70.0, 80.0]"
    n = duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM scores").fetchone()[0]
    assert f"Bars: 95% bootstrap intervals ({n} of them)." in html and "In brackets: the 95% bootstrap" in html
    # Canary: a view of that name without the interval columns (a database from before intervals) is not
    # taken for one: the report asks for the database to be rebuilt, in one line.
    other = tmp_path / "other"
    other.mkdir()
    db = with_view(tree_db, other, "CREATE OR REPLACE VIEW score_interval AS SELECT model, benchmark FROM scores")
    with pytest.raises(ValueError, match=r"lacks what the report reads .*rebuild it with `agora results`"):
        write_report(db, other / "out")


def test_an_anchor_without_a_score_leaves_its_line_out_and_the_report_is_written(tree_db, tmp_path):
    """An anchor whose judge gave no usable verdict has no score on that benchmark (the paper profile's
    rehearsal met it on Arena-Hard): its panel is drawn without that anchor's line, and the scores table
    shows a dash. Before, the figure drew a line at None and `agora report` failed (checked by hand)."""
    db = with_view(tree_db, tmp_path, "UPDATE scores SET score = NULL WHERE kind = 'reference' AND benchmark = 'gsm8k'")
    html = write_report(db, tmp_path / "out").read_text()
    assert (tmp_path / "out/figures/benchmark_scores.png").is_file()
    rows = {r[0]: r[1:] for r in table_rows(html, "scores")}
    assert rows["reference (S_ref)"][0].startswith("–") and rows["base (S₀)"][0].startswith("25.0")


def test_the_anchors_table_gives_the_extras_gap_beside_pgrs(tree_db, tmp_path):
    """The reference's gap over the base, with its interval, on every benchmark the anchors were scored on:
    PGR's benchmarks first, then the extras (the default scores AlpacaEval and Arena-Hard outside PGR, and
    a user must see whether they separate). An extra whose interval includes 0 gets its own note; the note
    about PGR's benchmarks does not name it."""
    # Arena-Hard made an extra: out of domain_benchmarks, still scored; its reference made a coin toss.
    db = with_view(tree_db, tmp_path, "DELETE FROM domain_benchmarks WHERE benchmark = 'arenahard'; "
                                      "UPDATE score_replicates SET score = score - 1000 WHERE kind = 'reference' "
                                      "AND benchmark = 'arenahard' AND replicate % 2 = 0")
    html = write_report(db, tmp_path / "out").read_text()
    con = duckdb.connect(str(db), read_only=True)
    gaps = {b: (lo, hi) for b, lo, hi in con.execute("SELECT benchmark, gap_lo, gap_hi FROM anchor_gap").fetchall()}
    pgr_benchmarks = [b for b, in con.execute("SELECT benchmark FROM domain_benchmarks").fetchall()]
    con.close()
    rows = table_rows(html, "anchors")
    assert [r[1] for r in rows] == [*[r[1] for r in rows if r[2] == "yes"], "arenahard"]
    assert sorted(r[1] for r in rows[:-1]) == sorted(pgr_benchmarks) and rows[-1][2] == "no (extra)"
    for r in rows:
        lo, hi = gaps[r[1]]
        assert r[-1] == f"[{lo:.1f}, {hi:.1f}]", r
    assert gaps["arenahard"][0] < 0 < gaps["arenahard"][1]
    assert "includes 0 on arenahard (an extra, outside PGR)" in html
    assert not re.search(r"includes 0 on [^:]*arenahard: the reference is not reliably better", html)
    # Canary: in the tree as collected, Arena-Hard is a PGR benchmark, and no row is an extra.
    rows = table_rows(write_report(tree_db, tmp_path / "as-collected").read_text(), "anchors")
    assert [r[2] for r in rows if r[1] == "arenahard"] == ["yes"] and "no (extra)" not in {r[2] for r in rows}


def test_valid_rate_and_rejection_reasons_per_dataset_and_generator(page, tree_db, tmp_path):
    out_dir = write_report(tree_db, tmp_path / "out").parent
    part = section(page, "validity")
    per_dataset = {(r[0], r[1]): r[2:] for r in table_rows(part, "validity")}
    assert len(per_dataset) == 27
    # requested, valid, attempts, valid rate, rejected, reasons
    assert per_dataset[("alpha", "IG math")] == ["3", "3", "6", "50.0%", "3", "too_long 2, no_answer 1"]
    assert per_dataset[("beta", "QE code")] == ["3", "3", "4", "75.0%", "1", "no_answer 1"]
    per_gen = {r[0]: r[1:] for r in table_rows(part, "validity-generator")}
    assert per_gen["alpha"] == ["9", "27", "38", "71.1%", "no_answer 9, too_long 2"]
    assert per_gen["beta"] == ["9", "27", "36", "75.0%", "no_answer 9"]
    # summary.md carries the per-generator table too.
    assert "| alpha | 9 | 27 | 38 | 71.1% | no_answer 9, too_long 2 |" in (out_dir / "summary.md").read_text()


def test_intrinsic_metrics_against_pgr_give_the_views_correlations(tree_db, page, tmp_path):
    con = connect(tree_db)
    for metric in ("difficulty", "quality", "perplexity", "instruction_diversity", "response_diversity"):
        x, y = np.array(con.execute(f"SELECT {metric}, pgr FROM intrinsic_summary WHERE {metric} IS NOT NULL "
                                    f"AND pgr IS NOT NULL").fetchall(), dtype=float).T
        assert f"{metric} r = {np.corrcoef(x, y)[0, 1]:.2f} (n = 27)" in page, metric
    con.close()
    assert "reward r" not in page  # nobody computed it: no panel
    assert "figures/intrinsic_vs_pgr.png" in page
    # Canary: without intrinsic metrics the figure is not drawn and says why.
    html = write_report(results_db(tmp_path / "bare", ("alpha", "beta"), intrinsic=False), tmp_path / "out").read_text()
    assert "Not drawn: no dataset has both an intrinsic metric and a PGR" in html
    assert "intrinsic_vs_pgr.png" not in html


def test_samples_are_the_first_two_instances_escaped_and_truncated(page):
    part = section(page, "samples")
    assert part.count('<details class="dataset">') == 27 and part.count('<div class="sample">') == 54
    assert "Q0 of code | by beta" in part and "Q1 of code | by beta" in part and "Q2 of" not in part
    assert "Solve &lt;script&gt;alert(1)&lt;/script&gt; &amp; explain" in part and "<script" not in page
    assert "x" * 400 + " … [600 more characters]" in part and "x" * 401 not in part


def test_stage_costs_come_from_the_database(tree_db, page):
    con = connect(tree_db)
    cost, attempts, gen_s = con.execute("SELECT sum(cost_usd), sum(attempts), sum(latency_s) FROM datasets").fetchone()
    train_s = con.execute("SELECT sum(wall_s) FROM training_runs").fetchone()[0]
    student_s, items = con.execute("SELECT sum(latency_s), count(*) FROM eval_items WHERE kind = 'student'").fetchone()
    intrinsic_s, scored = con.execute("SELECT sum(compute_s), sum(instances) FROM intrinsic").fetchone()
    con.close()
    stages = {r[0]: r[1:] for r in table_rows(section(page, "cost"), "stage-costs")}
    assert list(stages) == ["generation", "training", "evaluation: base and reference", "evaluation: generators",
                            "evaluation: students", "intrinsic: reward, perplexity, embeddings"]
    assert stages["generation"][1] == f"{attempts:,}" and stages["generation"][4] == f"${cost:,.2f}"
    assert gen_s == 2.0 * 27 and stages["generation"][3] == f"{gen_s:,.1f} s"
    assert stages["training"][3] == f"{train_s:,.1f} s"
    assert stages["evaluation: students"][1:4:2] == [f"{items:,}", f"{student_s:,.1f} s"]
    assert intrinsic_s == 1.0 * 27 and stages["intrinsic: reward, perplexity, embeddings"][1:4:2] == [
        f"{scored:,}", f"{intrinsic_s:,.1f} s"]
    per_dataset = table_rows(section(page, "cost"), "dataset-costs")
    assert len(per_dataset) == 27 and per_dataset[0][:3] == ["alpha", "IG math", "6"]
    assert per_dataset[0][6] == "2.0 s"
    # Canary: a wrong total is not what the page shows.
    assert stages["generation"][4] != f"${cost + 0.01:,.2f}"


def test_stage_costs_book_the_judges_and_an_unrecorded_cost_stays_unknown(tmp_path):
    from agorabench.report.data import load_report_data
    from agorabench.report.page import BLANK, seconds, stage_cost_table, usd

    paths = write_tree(tmp_path / "tree", ("alpha",))
    eval_dir, intrinsic_dir = Path(paths.params.evaluation.output_dir), Path(paths.params.intrinsic.output_dir)
    judged = sorted(eval_dir.glob("*/alpacaeval.scores.json")) + sorted(eval_dir.glob("*/arenahard.scores.json"))
    for p in judged:
        score = json.loads(p.read_text())
        p.write_text(json.dumps({**score, "judge": "j", "judge_usage": {
            "requests": 20, "input_tokens": 1000, "output_tokens": 10, "cost_usd": 0.25, "latency_s": 4.0}}))
    summaries = sorted(intrinsic_dir.glob("*/*/*.summary.json"))
    judge = {"judge": "j", "model": "m", "difficulty": 2.5, "quality": 4.0, "failures": {}, "verdicts": "text",
             "usage": {"requests": 6, "input_tokens": 600, "output_tokens": 6, "cost_usd": 0.5, "latency_s": 1.5}}
    for p in summaries:
        p.write_text(json.dumps({**json.loads(p.read_text()), "judges": [judge]}))

    def stages() -> dict[str, list[str]]:
        collect(paths.params)
        return {r[0]: r for r in stage_cost_table(load_report_data(build_db(paths.out)))[1]}

    got = stages()
    assert got["evaluation: judges"][1:6] == [f"{len(judged)}", f"{20 * len(judged):,}", f"{1010 * len(judged):,}",
                                              seconds(4.0 * len(judged)), usd(0.25 * len(judged))]
    assert got["intrinsic: judges"][1:6] == [f"{len(summaries)}", f"{6 * len(summaries):,}",
                                             f"{606 * len(summaries):,}", seconds(1.5 * len(summaries)),
                                             usd(0.5 * len(summaries))]
    assert got["intrinsic: reward, perplexity, embeddings"][4] == seconds(1.0 * len(summaries))
    # Canary: one summary written before costs were kept makes the intrinsic total unknown, not too low;
    # so does one without its models' times.
    first = json.loads(summaries[0].read_text())
    summaries[0].write_text(json.dumps({**first, "judges": [{**judge, "usage": None}], "seconds": None}))
    # A dataset without its generation time (an import) is counted apart, the others' time still shown.
    manifests = sorted(Path(paths.params.generation.output_dir).glob("*/*/*.manifest.json"))
    assert got["generation"][4] == seconds(2.0 * len(manifests))
    manifests[0].write_text(json.dumps({**json.loads(manifests[0].read_text()), "latency_s": None}))
    got = stages()
    assert got["generation"][4] == seconds(2.0 * (len(manifests) - 1)) + " + 1 unknown"
    assert got["intrinsic: judges"][2:6] == [BLANK, BLANK, BLANK, BLANK]
    assert got["intrinsic: reward, perplexity, embeddings"][4] == BLANK
    assert got["evaluation: judges"][5] == usd(0.25 * len(judged))


def test_an_empty_database_shows_every_new_section_as_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    html = write_report(build_db(tmp_path / "empty"), tmp_path / "out").read_text()
    for text in ("No model has been scored yet", "No dataset has been generated yet", "No stage has recorded a cost",
                 "No generated instance is in the database yet"):
        assert text in html
    assert '<table class="scores">' not in html and '<details' not in html


def test_single_file_has_no_external_reference_and_renders(tree_db, tmp_path, browser):  # noqa: F811
    one = tmp_path / "share" / "report.html"
    one.parent.mkdir()
    index = write_report(tree_db, tmp_path / "out", single_file=one)
    html = one.read_text()
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r for r in refs if not r.startswith("data:")]
    assert html.count('<img src="data:image/png;base64,') == html.count("<img ") == 7
    assert "<script" not in html and "http://" not in html and "https://" not in html
    # Alone in a folder, the file renders: every image decoded, nothing fetched.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(one, alone / "index.html")
    assert report_problems(browser, alone) == []
    # Canary: the folder's page alone is not self-contained, and the same check says so.
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(index, bare / "index.html")
    problems = report_problems(browser, bare)
    assert "image not rendered: figures/benchmark_scores.png" in problems
