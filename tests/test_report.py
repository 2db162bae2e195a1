"""The HTML report: built from a results database made by collect from fixture files, rendered twice
byte for byte, and opened in a real headless Chromium over loopback HTTP. Every check that must pass
sits next to a canary that a broken report (or a non-deterministic writer) would hit."""
from __future__ import annotations

import functools
import http.server
import json
import os
import random
import re
import shutil
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from agorabench.files import StorageError
from agorabench.report import write_report
from agorabench.results.collect import collect
from agorabench.results.db import build_db, connect
from agorabench.testing.results_tree import TREE_REPLICATES, write_tree

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
GENERATORS = ("alpha", "beta", "gamma", "delta")
FIGURES = ("pgr_heatmap", "cost_vs_pgr", "problem_solving_vs_pgr", "pca_loadings", "loss_curves",
           "benchmark_scores", "intrinsic_vs_pgr")
PRICE = {"alpha": 0.002, "beta": 0.02, "gamma": 0.2, "delta": 2.0}  # USD per dataset, spread over 3 decades


def vary(paths, seed: int = 3) -> None:
    """The fixture tree's intrinsic metrics and costs are the same everywhere; spread them out so the
    PCA and the cost axis have something to show."""
    rng = random.Random(seed)
    for p in sorted(paths.intrinsic.rglob("*.summary.json")):
        s = json.loads(p.read_text())
        s.update(difficulty=rng.uniform(1, 5), quality=rng.uniform(1, 5), perplexity=rng.uniform(2, 20),
                 instruction_diversity=rng.random(), response_diversity=rng.random())
        p.write_text(json.dumps(s))
    for p in sorted(paths.generated.rglob("*.manifest.json")):
        m = json.loads(p.read_text())
        m["cost_usd"] = PRICE.get(m["generator"], 0.01) * rng.uniform(0.5, 2.0)
        p.write_text(json.dumps(m))


def results_db(root: Path, generators=GENERATORS, intrinsic: bool = True, flat_gsm8k: bool = False) -> Path:
    paths = write_tree(root, generators)
    vary(paths)
    if not intrinsic:
        shutil.rmtree(paths.intrinsic)
    if flat_gsm8k:  # the reference no better than the base on gsm8k: its PGR is undefined
        ref, base = paths.eval / "reference" / "gsm8k.scores.json", paths.eval / "base" / "gsm8k.scores.json"
        ref.write_text(ref.read_text().replace(f'"score": {json.loads(ref.read_text())["score"]}',
                                               f'"score": {json.loads(base.read_text())["score"]}'))
    collect(paths.params)
    return build_db(paths.out)


@pytest.fixture(scope="module")
def full_db(tmp_path_factory) -> Path:
    return results_db(tmp_path_factory.mktemp("full"))


@pytest.fixture(scope="module")
def full_report(full_db, tmp_path_factory) -> Path:
    return write_report(full_db, tmp_path_factory.mktemp("report") / "reports").parent


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# Files, content and determinism
# ---------------------------------------------------------------------------------------------


def test_report_has_every_part_and_reruns_are_byte_identical(full_db, full_report, tmp_path):
    first = tree_bytes(full_report)
    expected = {"index.html", "summary.md", *(f"figures/{f}.{x}" for f in FIGURES for x in ("png", "svg")),
                *(f"plots/{p}.csv" for p in ("pgr_overall", "pgr_setting", "cost_pgr", "problem_solving_pgr"))}
    assert set(first) == expected
    assert all(first[f"figures/{f}.png"].startswith(b"\x89PNG") for f in FIGURES)
    # A second run elsewhere, and a third over the first: the same bytes, file for file.
    assert tree_bytes(write_report(full_db, tmp_path / "again").parent) == first
    write_report(full_db, full_report)
    assert tree_bytes(full_report) == first
    assert b"<dc:date>" not in first["figures/pgr_heatmap.svg"]

    # The headline agrees with the views: order (best overall PGR first) and values to 0.1.
    html = first["index.html"].decode()
    con = connect(full_db)
    overall = con.execute("SELECT generator, pgr FROM pgr_overall ORDER BY pgr DESC").fetchall()
    con.close()
    headline = html[html.index("<h2>Headline</h2>"):html.index("<h2>How to read this</h2>")]
    cells = re.findall(r"<tr><td>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td>", headline)
    assert [(g, f"{v:.1f}") for g, v in overall] == [(g, v) for _, g, v in cells]
    assert [int(rank) for rank, _, _ in cells] == [1, 2, 3, 4]
    summary = first["summary.md"].decode()
    for g, v in overall:
        assert re.search(rf"\| \d \| {g} \| {v:.1f} \|", summary), g
    # Canary: a wrong number is not found, so the two checks above can fail.
    assert not re.search(rf"\| \d \| {overall[0][0]} \| {overall[0][1] + 1:.1f} \|", summary)
    # Nothing is missing in this fixture but a scaling study, so one figure is "not drawn", saying why.
    assert html.count("Not drawn") == 1 and "Not drawn: no scaling study in the results" in html
    assert html.count("<img ") == len(FIGURES) and "instruction_diversity" in html
    assert "Dashed: least-squares line" in html and "log scale" in first["figures/cost_vs_pgr.svg"].decode()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert first["plots/pgr_setting.csv"].decode().count("\n") == 1 + len(GENERATORS) * 9


def test_scaling_prefixes_get_the_quantity_figure(tmp_path):
    """Datasets of NAME@SIZE (agorabench/generation/scaling.py) join their generator's line in the quantity figure,
    and `quantity_quality` prices and sizes them."""
    from agorabench.analysis import quantity_quality_from_db

    paths = write_tree(tmp_path / "main", ("alpha", "beta"), scaling={
        "generators": ["alpha"], "methods": ["instance_generation", "response_generation", "quality_enhancement"],
        "sizes": [2]})
    for data in (paths.generated / "alpha@2").rglob("*.jsonl"):  # a prefix of 2 of alpha's 3 instances
        data.write_text("".join(data.read_text().splitlines(keepends=True)[:2]))
    for manifest in (paths.generated / "alpha@2").rglob("*.manifest.json"):
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "num_valid": 2, "num_requested": 2}))
    collect(paths.params)
    db = build_db(paths.out)
    html = (write_report(db, tmp_path / "reports")).read_text()
    assert "figures/quantity_vs_pgr.svg" in html and "no scaling study" not in html
    qq = quantity_quality_from_db(db)
    assert set(qq) == {f"{m}/{d}" for m in ("instance_generation", "response_generation", "quality_enhancement")
                       for d in ("math", "code", "general")}
    alpha = qq["instance_generation/math"]["generators"]["alpha"]["points"]
    assert [pt["size"] for pt in alpha] == [2.0, 3.0]  # the prefix, then the full dataset
    # canary: without the prefix there is no quantity analysis
    assert quantity_quality_from_db(results_db(tmp_path / "plain", ("alpha", "beta"))) is None


def test_determinism_canary_default_matplotlib_output_differs_between_saves(tmp_path):
    # Without the report's settings an SVG carries a date and per-process random ids, so the
    # byte comparison above would catch a writer that forgot them.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "a.svg")
    fig.savefig(tmp_path / "b.svg")
    a, b = (tmp_path / "a.svg").read_bytes(), (tmp_path / "b.svg").read_bytes()
    assert b"<dc:date>" in a and a != b


def test_the_order_section_and_the_intervals_are_the_views(full_db, full_report, tmp_path):
    """The ranking's cells are pgr_rank's shares, the headline's intervals pgr_overall's, the per-setting
    intervals pgr_domain's, the anchors' gap intervals anchor_gap's; without replicates the section says why
    it is empty and no cell shows an interval."""
    html = (full_report / "index.html").read_text()
    con = connect(full_db)
    rank = {(a, b): p for a, b, p in con.execute("SELECT generator, other, p_above FROM pgr_rank").fetchall()}
    overall = con.execute("SELECT generator, pgr_lo, pgr_hi FROM pgr_overall").fetchall()
    gaps = con.execute("SELECT benchmark, gap_lo, gap_hi FROM anchor_gap").fetchall()
    domain = con.execute("SELECT generator, method, domain, pgr, pgr_lo, pgr_hi FROM pgr_domain").fetchall()
    con.close()
    section = html[html.index("<h2>How sure is the order</h2>"):html.index("<h2>Domain PGR per setting</h2>")]
    names = re.findall(r"<th>([^<]+)</th>", section)[1:]
    rows = re.findall(r"<tr><td>([^<]+)</td>((?:<td>[^<]*</td>)+)</tr>", section)
    assert sorted(names) == sorted(GENERATORS) and [r[0] for r in rows] == names
    for name, cells in rows:
        for other, cell in zip(names, re.findall(r"<td>([^<]*)</td>", cells)):
            assert cell == ("–" if other == name else f"{100 * rank[(name, other)]:.0f}%"), (name, other)
    assert f"{TREE_REPLICATES} bootstrap replicates" in section
    headline = html[html.index("<h2>Headline</h2>"):html.index("<h2>How to read this</h2>")]
    for g, lo, hi in overall:
        assert re.search(rf"<td>{g}</td><td>[^<]+</td><td>\[{lo:.1f}, {hi:.1f}\]</td>", headline), g
    anchors = html[html.index("<h2>Anchors</h2>"):]
    assert all(f"[{lo:.1f}, {hi:.1f}]" in anchors for _, lo, hi in gaps)
    # Each setting's cell is its domain PGR followed by pgr_domain's interval.
    setting = html[html.index("<h2>Domain PGR per setting</h2>"):]
    setting = setting[:setting.index("<h2>", 4)]
    domain = [r for r in domain if r[3] is not None]
    assert domain and all(lo is not None for *_, lo, _ in domain)
    for g, _, _, pgr, lo, hi in domain:
        assert f"<td>{pgr:.1f} [{lo:.1f}, {hi:.1f}]</td>" in setting, g
    assert "How sure is the order" in (full_report / "summary.md").read_text()
    # Canary: the same tree collected without replicates has no order to show, and says so.
    paths = write_tree(tmp_path / "tree", ("alpha", "beta"))
    off = paths.params.model_copy(update={"analysis": paths.params.analysis.model_copy(update={"bootstrap_replicates": 0})})
    collect(off)
    bare = write_report(build_db(paths.out), tmp_path / "bare").read_text()
    assert "Not shown: it needs two generators with an overall PGR and bootstrap replicates" in bare
    assert "row above column" not in bare and "[" not in bare[bare.index("<h2>Headline</h2>"):bare.index("<h2>How to")]
    bare_setting = bare[bare.index("<h2>Domain PGR per setting</h2>"):]
    assert "<td>" in bare_setting[:bare_setting.index("<h2>", 4)]
    assert "[" not in bare_setting[:bare_setting.index("<h2>", 4)]


def test_the_scores_figure_draws_every_interval_in_few_collections(full_db, full_report, tmp_path):
    """benchmark_scores draws one error bar per score with an interval (the SVG's LineCollection paths),
    grouped into one collection per panel, colour and marker rather than one per model (at the paper's
    99 students a call per point was most of the report's time). Canary: without replicates, no bars."""
    def bars(report: Path) -> tuple[int, int]:
        svg = next(report.rglob("benchmark_scores.svg")).read_text()
        groups = re.findall(r'<g id="LineCollection_\d+">(.*?)</g>', svg, re.S)
        return len(groups), sum(g.count("<path") for g in groups)

    con = connect(full_db)
    intervals = con.execute("SELECT count(*) FROM scores JOIN score_interval i USING (model, benchmark) "
                            "WHERE i.score_lo IS NOT NULL AND i.score_hi IS NOT NULL").fetchone()[0]
    # colour: the generator (anchors black); marker: generator itself, student, or anchor
    groups = con.execute("SELECT count(DISTINCT (benchmark, generator, CASE WHEN kind IN ('base', 'reference') "
                         "THEN 'anchor' ELSE kind END)) FROM scores").fetchone()[0]
    con.close()
    collections, paths = bars(full_report)
    assert intervals > 0 and paths == intervals
    assert collections <= groups < intervals
    paths_ = write_tree(tmp_path / "tree", ("alpha", "beta"))
    off = paths_.params.model_copy(update={"analysis": paths_.params.analysis.model_copy(update={"bootstrap_replicates": 0})})
    collect(off)
    assert bars(write_report(build_db(paths_.out), tmp_path / "bare" / "reports").parent) == (0, 0)


def test_missing_pieces_give_a_page_that_says_so(tmp_path, full_report):
    db = results_db(tmp_path / "solo", generators=("solo",), intrinsic=False, flat_gsm8k=True)
    index = write_report(db, tmp_path / "out")
    html = index.read_text()
    assert "Only one generator is in the results" in html
    assert "gsm8k: no PGR for 3 student(s): reference is not above base." in html
    assert "No overall PGR for solo" in html
    assert "No intrinsic metrics are in the database yet" in html
    assert "Not drawn: the database holds no intrinsic metrics" in html  # the PCA
    # One generator without an overall PGR: its datasets are still drawn against problem solving, lineless.
    assert "No fine regression: it compares generators, and there is 1." in html
    assert "Coarse regression left out: it needs 3 generator means, there are 1." in html
    assert (index.parent / "figures" / "problem_solving_vs_pgr.png").is_file()
    assert "blank cell(s)" in html  # the heatmap still shows the other settings
    assert (index.parent / "figures" / "pgr_heatmap.png").is_file()
    assert not (index.parent / "figures" / "pca_loadings.png").exists()
    # Canary: the complete report says none of this.
    full = (full_report / "index.html").read_text()
    assert "Only one generator" not in full and "reference is not above base" not in full
    assert full.count("Not drawn") == 1  # only the scaling figure, which the fixture has no data for
    # An empty database (collect before any stage ran) still gives a page, with no figure at all; written
    # over the complete report, it leaves no figure of the earlier run behind for the page to contradict.
    (tmp_path / "empty").mkdir()
    shutil.copytree(full_report, tmp_path / "out_empty")
    html = write_report(build_db(tmp_path / "empty"), tmp_path / "out_empty").read_text()
    assert "No generator appears in the results yet" in html and "<img" not in html and html.count("Not drawn") == 8
    assert list((tmp_path / "out_empty" / "figures").iterdir()) == []


def empty_setting(paths, generator: str, method: str, domain: str, seed_examples: int = 0,
                  all_dropped: bool = False) -> None:
    """Leave one setting of the fixture tree without training data, as `agora generate` and `agora train`
    do: a dataset with no valid instance, whose student trained on its seed examples alone if it has any
    (instance generation adds its seeds) and is the base model if not; or (all_dropped) a dataset whose
    every instance decontamination.drop left out, whose student is the base model."""
    folder = paths.generated / generator / method
    if not all_dropped:
        (folder / f"{domain}.jsonl").write_text("")
        manifest = json.loads((folder / f"{domain}.manifest.json").read_text())
        manifest.update(num_valid=0, complete=False, shortfall_reason="retry budget spent")
        (folder / f"{domain}.manifest.json").write_text(json.dumps(manifest))
    student = paths.checkpoints / generator / method / domain / "student.json"
    record = json.loads(student.read_text())
    record.update(generated_examples=0, seed_examples=seed_examples, examples=seed_examples,
                  trained=seed_examples > 0, dropped_examples=3 if all_dropped else 0)
    student.write_text(json.dumps(record))


def test_every_setting_without_training_data_is_named_with_what_its_student_is(tmp_path, full_report):
    paths = write_tree(tmp_path / "empty", ("alpha", "beta"))
    empty_setting(paths, "alpha", "instance_generation", "code", seed_examples=4)
    empty_setting(paths, "beta", "quality_enhancement", "math")
    empty_setting(paths, "beta", "response_generation", "code", all_dropped=True)
    collect(paths.params)
    html = write_report(build_db(paths.out), tmp_path / "out").read_text()
    assert ("No valid instance in 2 settings: beta QE math (no training: the student is the base model); "
            "alpha IG code (the student trained on the seed demos alone") in html
    assert ("Every instance left out as contaminated (decontamination.drop), so no training (the student is the "
            "base model): beta RG code.") in html
    assert "*: no training data there" in html  # the heatmap's marks
    assert "\u2020: the generator wrote no valid instance there, so the student trained on the seed demos" in html
    # Canary: the complete report has no empty setting, and says nothing of the kind.
    full = (full_report / "index.html").read_text()
    assert "No valid instance" not in full and "seed demos alone" not in full and "Every instance left" not in full


def test_two_generators_draw_the_fine_regression_and_the_pca(tmp_path, full_report):
    """The embedded default has 2 generators: the problem-solving figure shows every dataset with the fine
    line, the generator means without a coarse line (the caption says why), and the PCA is drawn."""
    index = write_report(results_db(tmp_path / "two", ("alpha", "beta")), tmp_path / "out")
    html = index.read_text()
    fine = re.search(r"Dotted: fine least-squares line over the datasets \(R² = [\d.]+, p = [^,]+, n = (\d+)\)", html)
    assert fine and fine.group(1) == "18"
    assert "Coarse regression left out: it needs 3 generator means, there are 2." in html
    assert "Dashed:" not in html and "figures/pca_loadings.svg" in html and "Not drawn: the PCA" not in html
    assert "coarse regression left out: it needs 3 generator means, there are 2" in html  # the analysis note
    assert html.count("Not drawn") == 1  # only the scaling figure: every figure with data is drawn
    points = (tmp_path / "out" / "plots" / "problem_solving_pgr.csv").read_text().splitlines()
    assert points[0] == "generator,method,domain,problem_solving,pgr" and len(points) == 1 + 18
    # Canary: with 4 generators the coarse line is drawn and nothing is left out.
    full = (full_report / "index.html").read_text()
    assert "Dashed: least-squares line through the generator means" in full and "regression left out" not in full


def test_bad_database_gives_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere\.duckdb does not exist; run `agora results` first") as err:
        write_report(tmp_path / "nowhere.duckdb", tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
    junk = tmp_path / "junk.duckdb"
    junk.write_text("not a database")
    with pytest.raises(StorageError, match=r"junk\.duckdb: the results database cannot be read .*`agora results`") as err:
        write_report(junk, tmp_path / "out")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# A real browser
# ---------------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A browser drops connections it no longer needs (a page left, a request cancelled): the
        # socketserver's traceback for that is noise in the test output. Anything else still prints.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class serve:
    """Serve `folder` on a loopback port in a thread: `with serve(folder) as url: ...`."""

    def __init__(self, folder: Path):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def report_problems(browser, folder: Path) -> list[str]:
    """Everything wrong with the report in `folder` as a browser sees it ([] = a sound page)."""
    problems: list[str] = []
    with serve(folder) as root:
        page = browser.new_page()
        try:
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            response = page.goto(root + "index.html", wait_until="load")
            if response is None or response.status != 200:
                return problems + [f"index.html: HTTP {None if response is None else response.status}"]
            if not page.title().strip():
                problems.append("the page has no title")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])")
            problems += [f"image not rendered: {src}" for src, ok in images if not ok]
            refs = page.eval_on_selector_all(
                "a[href], img[src], link[href]", "els => els.map(e => e.getAttribute('href') || e.getAttribute('src'))")
        finally:
            page.close()
        for ref in refs:
            if ref.startswith(("data:", "#")):
                continue
            parts = urlparse(ref)
            if parts.scheme or parts.netloc:
                problems.append(f"external reference (the page must work offline): {ref}")
                continue
            status = http_status(urljoin(root + "index.html", ref))
            if status != 200:
                problems.append(f"broken reference {ref}: HTTP {status}")
    return problems


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} is not installed (the Makefile installs Debian's chromium)"
        if os.environ.get("AGORA_REQUIRE_BROWSER") == "1":
            pytest.fail(f"AGORA_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_the_page_renders_in_a_real_browser_and_a_broken_one_is_caught(browser, full_report, tmp_path):
    assert report_problems(browser, full_report) == []
    # Canary: the same checker on a copy with one figure deleted reports that very file.
    broken = tmp_path / "broken"
    shutil.copytree(full_report, broken)
    (broken / "figures" / "cost_vs_pgr.png").unlink()
    problems = report_problems(browser, broken)
    assert "image not rendered: figures/cost_vs_pgr.png" in problems
    assert "broken reference figures/cost_vs_pgr.png: HTTP 404" in problems
    # And a deleted SVG (only linked, never shown) is caught by the link check alone.
    (broken / "figures" / "cost_vs_pgr.png").write_bytes((full_report / "figures" / "cost_vs_pgr.png").read_bytes())
    (broken / "figures" / "loss_curves.svg").unlink()
    assert report_problems(browser, broken) == ["broken reference figures/loss_curves.svg: HTTP 404"] * 2


def test_agora_run_ends_with_the_pgr_of_every_generator(full_db, tmp_path, capsys):
    """`agora run` prints the report's headline last: a number per generator, not dashes."""
    from types import SimpleNamespace

    from flows.cli import _print_answer

    params = SimpleNamespace(analysis=SimpleNamespace(results_dir=str(full_db.parent), report_dir="reports"))
    _print_answer(params)
    out = capsys.readouterr().out
    rows = {line.split("|")[2].strip(): line.split("|")[3].strip() for line in out.splitlines()
            if line.startswith("| ") and line.split("|")[2].strip() in GENERATORS}
    assert set(rows) == set(GENERATORS) and all(re.fullmatch(r"-?\d+(\.\d+)?", v) for v in rows.values()), out
    # canary: no database, no table (and no error: the run said where its results are)
    _print_answer(SimpleNamespace(analysis=SimpleNamespace(results_dir=str(tmp_path), report_dir="reports")))
    assert capsys.readouterr().out == ""
