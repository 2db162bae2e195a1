"""`agora report`: the results database -> reports/index.html, figures/, summary.md and plots/*.csv.

The page is one static HTML file with inline CSS and no JavaScript, whose only references are the
figure files and summary.md next to it (the machines it is read on may be offline). Every output
is a pure function of the database (and the `analysis` dict), so re-running with unchanged results
rewrites the same bytes and DVC sees no change.
"""
from __future__ import annotations

import base64
import csv
import io
import math
from pathlib import Path

import jinja2

from agorabench.files import write_atomic
from agorabench.report import figures as F
from agorabench.report.data import (COMBINE_TEXT, METHOD_SHORT, SAMPLE_CHARS, SAMPLES, ReportData, load_report_data,
                                    scored_models, setting_label)
from agorabench.results.schema import INTRINSIC_METRICS

TEMPLATE = "page.html.j2"


def write_report(db_path: str | Path = "data/results/agora.duckdb", out_dir: str | Path = "reports",
                 analysis: dict | None = None, single_file: str | Path | None = None) -> Path:
    """Write the report for the database at db_path into out_dir; return out_dir/index.html.

    analysis: the output of agorabench.analysis.analyze() (or run_analysis()) for the PCA figure.
        None: it is computed here from the intrinsic_summary view; when that is impossible (no
        intrinsic metrics, too few generators or rows) the page says why instead of the figure.
    single_file: also write the page as this one self-contained HTML file (figures inlined), to share.
    """
    data = load_report_data(db_path)  # checks db_path first: nothing is written for a bad database
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    why_no_pca = ""
    if analysis is None:
        analysis, why_no_pca = analysis_from_data(data)
    with F.style():
        figs = [F.pgr_heatmap(data, fig_dir), F.cost_vs_pgr(data, fig_dir), F.problem_solving_vs_pgr(data, fig_dir),
                F.pca_loadings(analysis, fig_dir, why_no_pca), F.loss_curves(data, fig_dir),
                F.quantity_vs_pgr(data, fig_dir), F.benchmark_scores(data, fig_dir), F.intrinsic_vs_pgr(data, fig_dir)]
    # A figure skipped this time must not leave last run's files behind for the page to contradict.
    for f in figs:
        if isinstance(f, F.FigureSkipped):
            for suffix in (".png", ".svg"):
                (fig_dir / f"{f.name}{suffix}").unlink(missing_ok=True)
    write_plot_csvs(data, out_dir / "plots")
    write_atomic(out_dir / "summary.md", render_summary(data, figs), "`agora report`")
    if single_file is not None:
        write_atomic(Path(single_file), render_page(data, figs, analysis, inline_from=out_dir), "`agora report`")
    return write_atomic(out_dir / "index.html", render_page(data, figs, analysis), "`agora report`")


def analysis_from_data(data: ReportData) -> tuple[dict | None, str]:
    """analyze() over the intrinsic_summary rows, or (None, why not) when it cannot run."""
    import pandas as pd

    from agorabench.analysis import analyze, judge_features

    if not data.has_intrinsic:
        return None, "the database holds no intrinsic metrics (run the intrinsic stage, then `agora results`)"
    columns = ["generator", "method", "domain", "judge", "position", "difficulty", "quality"]
    frame = judge_features(pd.DataFrame(data.intrinsic), pd.DataFrame(data.judges, columns=columns))
    # Metrics nobody computed (e.g. no reward model) would drop every row; leave them out instead.
    metrics = [c for c in frame.columns if c in INTRINSIC_METRICS or ":" in c]
    features = [m for m in metrics if frame[m].notna().any()]
    for col in ("pgr", "problem_solving", *features):
        frame[col] = pd.to_numeric(frame[col]).astype(float)
    try:
        return analyze(frame[["generator", "method", "domain", "pgr", "problem_solving", *features]],
                       features=features), ""
    except ValueError as e:
        return None, f"the PCA could not run on these results: {str(e).removeprefix('analyze: ')}"


# ---------------------------------------------------------------------------------------------
# Number formatting shared by the page and summary.md
# ---------------------------------------------------------------------------------------------

BLANK = "–"  # a NULL: shown, never silently turned into 0


def fmt(v: float | int | None, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return BLANK
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.{digits}f}"


def interval(lo: float | None, hi: float | None, digits: int = 1) -> str:
    """A 95% interval as "[lo, hi]" (BLANK when there is none)."""
    if lo is None or hi is None:
        return BLANK
    return f"[{fmt(lo, digits)}, {fmt(hi, digits)}]"


def with_interval(v: float | None, bounds: tuple[float, float] | None, digits: int = 1) -> str:
    """A value and its 95% interval, "v [lo, hi]"; the value alone when it has no interval."""
    if v is None or bounds is None:
        return fmt(v, digits)
    return f"{fmt(v, digits)} {interval(*bounds, digits=digits)}"


def usd(v: float | None) -> str:
    if v is None:
        return BLANK
    return f"${v:,.2f}" if abs(v) >= 1 else f"${v:.3g}"  # small amounts keep 3 significant digits


# ---------------------------------------------------------------------------------------------
# Tables (lists of rows of strings), used by both the HTML page and summary.md
# ---------------------------------------------------------------------------------------------


def headline_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    header = ["#", "generator", "overall PGR", "95% interval", *(f"{METHOD_SHORT.get(m, m)} avg" for m in data.methods),
              "problem solving", "datasets", "instances", "cost", "cost / PGR point"]
    rows = []
    for i, g in enumerate(data.generators, start=1):
        rows.append([str(i) if g["pgr"] is not None else BLANK, g["generator"], fmt(g["pgr"]),
                     interval(g["pgr_lo"], g["pgr_hi"]),
                     *(fmt(g["method_pgr"][m]) for m in data.methods), fmt(g["problem_solving"]),
                     fmt(g["datasets"]), fmt(g["instances"]), usd(g["cost_usd"]), usd(g["cost_per_pgr_point"])])
    return header, rows


def rank_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """How often the row's overall PGR is above the column's across the bootstrap replicates (percent)."""
    names = [g["generator"] for g in data.generators if any(k[0] == g["generator"] for k in data.rank)]
    header = ["row above column", *names]
    rows = [[a, *(BLANK if a == b or (a, b) not in data.rank else f"{100 * data.rank[(a, b)]:.0f}%" for b in names)]
            for a in names]
    return header, rows


def domain_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """The paper's Table 2 layout: one column per setting, each PGR followed by its 95% interval."""
    header = ["generator", *(setting_label(m, d) for m, d in data.settings)]
    rows = [[g["generator"], *(with_interval(data.pgr_domain.get((g["generator"], m, d)),
                                             data.pgr_domain_interval.get((g["generator"], m, d)))
                               for m, d in data.settings)]
            for g in data.generators if any(k[0] == g["generator"] for k in data.pgr_domain)]
    return header, rows


def anchor_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    header = ["domain", "benchmark", "in PGR", "base (S₀)", "reference (S_ref)", "gap", "gap 95% interval"]
    rows = [[a["domain"], a["benchmark"], "yes" if a["in_pgr"] else "no (extra)", fmt(a["base"]), fmt(a["reference"]),
             fmt(a["gap"]), interval(a["gap_lo"], a["gap_hi"])] for a in data.anchors]
    return header, rows


def intrinsic_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    header = ["generator", "setting", "PGR", "problem solving", *INTRINSIC_METRICS, "instances", "cost"]
    digits = {"difficulty": 2, "quality": 2, "reward": 2, "perplexity": 2,
              "instruction_diversity": 3, "response_diversity": 3}
    rows = [[r["generator"], setting_label(r["method"], r["domain"]), fmt(r["pgr"]), fmt(r["problem_solving"]),
             *(fmt(r[m], digits[m]) for m in INTRINSIC_METRICS), fmt(r["instances"]), usd(r["cost_usd"])]
            for r in data.intrinsic]
    return header, rows


def contamination_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    header = ["generator", "setting", "instances", "flagged", "flagged %", "benchmark items", "seed copies",
              "benchmarks matched", "left out of training"]
    rows = [[r["generator"], setting_label(r["method"], r["domain"]), fmt(r["instances"]), fmt(r["flagged"]),
             fmt(r["flagged_pct"], 2), fmt(r["benchmark_instances"]), fmt(r["seed_instances"]),
             r["benchmarks"] or BLANK, fmt(r["dropped"])] for r in data.contamination]
    return header, rows


def score_cell(r: dict | None) -> str:
    if r is None:
        return BLANK
    if r["score_lo"] is None or r["score_hi"] is None:
        return fmt(r["score"])
    return f"{fmt(r['score'])} [{fmt(r['score_lo'])}, {fmt(r['score_hi'])}]"


def scores_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """Every model's primary score per benchmark (students: their domain's benchmarks only)."""
    header = ["model", *data.benchmarks]
    rows = [[m["label"], *(score_cell(m["scores"].get(b)) for b in data.benchmarks)] for m in scored_models(data)]
    return header, rows


def valid_rate(valid: int | None, attempts: int | None) -> float | None:
    return None if not attempts or valid is None else 100.0 * valid / attempts


def reasons_text(rows: list[dict]) -> str:
    """"no_answer 3, too_long 1": rejection counts, most frequent first."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["reason"]] = counts.get(r["reason"], 0) + r["count"]
    return ", ".join(f"{k} {n:,}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or BLANK


def validity_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """Per dataset: how many generation attempts gave a valid instance, and why the others were rejected."""
    header = ["generator", "setting", "requested", "valid", "attempts", "valid rate", "rejected", "rejection reasons"]
    rows = []
    for d in data.datasets:
        mine = [r for r in data.rejections if (r["generator"], r["method"], r["domain"]) ==
                (d["generator"], d["method"], d["domain"])]
        rate = valid_rate(d["num_valid"], d["attempts"])
        rows.append([d["generator"], setting_label(d["method"], d["domain"]), fmt(d["num_requested"]),
                     fmt(d["num_valid"]), fmt(d["attempts"]), BLANK if rate is None else f"{rate:.1f}%",
                     fmt(d["rejected"]), reasons_text(mine)])
    return header, rows


def validity_by_generator(data: ReportData) -> tuple[list[str], list[list[str]]]:
    header = ["generator", "datasets", "valid", "attempts", "valid rate", "rejection reasons"]
    rows = []
    for g in sorted({d["generator"] for d in data.datasets}):
        mine = [d for d in data.datasets if d["generator"] == g]
        valid = sum(d["num_valid"] or 0 for d in mine)
        attempts = sum(d["attempts"] or 0 for d in mine)
        rate = valid_rate(valid, attempts)
        rows.append([g, fmt(len(mine)), fmt(valid), fmt(attempts), BLANK if rate is None else f"{rate:.1f}%",
                     reasons_text([r for r in data.rejections if r["generator"] == g])])
    return header, rows


def _total(rows: list[dict], key: str) -> float | int | None:
    """The sum of a column, or None when no row has it (unknown, not zero)."""
    known = [r[key] for r in rows if r[key] is not None]
    return sum(known) if known else None


def _total_with_unknown(rows: list[dict], key: str, show) -> str:
    """The sum of the known values, shown, and how many rows do not know theirs (an imported dataset has
    no generation cost or time): "$1.20 + 2 unknown"."""
    unknown = sum(r[key] is None for r in rows)
    known = _total(rows, key)
    if known is None:
        return BLANK
    return show(known) + (f" + {unknown} unknown" if unknown else "")


def seconds(v: float | None) -> str:
    if v is None:
        return BLANK
    return f"{v:,.1f} s" if v < 600 else f"{v / 60:,.1f} min"


def stage_cost_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """What each stage cost, from what the results database records: generation its requests (USD, and
    the generator's answer time), training its wall time, evaluation the models' answer time, the intrinsic
    models their compute time, the judges (intrinsic difficulty and quality, AlpacaEval and Arena-Hard)
    their requests (USD, reply time). Answer and reply times are latencies summed, so requests answered
    side by side count each. Empty stages are left out; decontamination (seconds) records no time."""
    header = ["stage", "runs", "requests / items", "tokens (in + out)", "time", "cost", "recorded as"]
    rows = []
    if data.datasets:
        tokens = (_total(data.datasets, "input_tokens") or 0) + (_total(data.datasets, "output_tokens") or 0)
        rows.append(["generation", fmt(len(data.datasets)), fmt(_total(data.datasets, "attempts")), fmt(tokens),
                     _total_with_unknown(data.datasets, "latency_s", seconds),
                     _total_with_unknown(data.datasets, "cost_usd", usd),
                     "manifests: every attempt, rejected ones included; the sum of answer latencies"])
    trained = [t for t in data.training if t["trained"]]
    if trained:
        rows.append(["training", fmt(len(trained)), BLANK, fmt(_total(trained, "train_tokens")),
                     seconds(_total(trained, "wall_s")), BLANK, "training metrics: trainer wall time"])
    kinds = {"base": "evaluation: base and reference", "reference": "evaluation: base and reference",
             "generator": "evaluation: generators", "student": "evaluation: students"}
    groups: dict[str, list[dict]] = {}
    for e in data.eval_time:
        groups.setdefault(kinds.get(e["kind"], "evaluation: other models"), []).append(e)
    for name in dict.fromkeys([*kinds.values(), "evaluation: other models"]):
        if name in groups:
            g = groups[name]
            tokens = (_total(g, "input_tokens") or 0) + (_total(g, "output_tokens") or 0)
            rows.append([name, fmt(len(g)), fmt(_total(g, "items")), fmt(tokens), seconds(_total(g, "seconds")),
                         BLANK, "evaluated items: the sum of answer latencies"])
    for m in data.intrinsic_models:
        rows.append(["intrinsic: reward, perplexity, embeddings", fmt(m["runs"]), fmt(m["instances"]), BLANK,
                     seconds(m["seconds"]), BLANK, "intrinsic summaries: each result's compute time, a result two "
                                                      "datasets share in both"])
    # Each dataset or score books its verdicts at what they cost when asked; a verdict two datasets share
    # (the difficulty of an instruction both have) was paid once and is booked in each.
    judged = {"intrinsic": ("intrinsic: judges", "intrinsic_judges: each dataset's verdicts, a verdict two "
                                                 "datasets share in both"),
              "evaluation": ("evaluation: judges", "scores: the judge's verdicts of AlpacaEval / Arena-Hard")}
    for j in data.judging:
        name, recorded = judged[j["stage"]]
        tokens = None if j["input_tokens"] is None or j["output_tokens"] is None \
            else j["input_tokens"] + j["output_tokens"]
        rows.append([name, fmt(j["runs"]), fmt(j["requests"]), fmt(tokens), seconds(j["latency_s"]),
                     usd(j["cost_usd"]), recorded])
    return header, rows


def dataset_cost_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    header = ["generator", "setting", "generation requests", "tokens in", "tokens out", "generation cost",
              "generation time", "training time", "student answer time"]
    training = {(t["generator"], t["method"], t["domain"]): t for t in data.training}
    answering = {e["model"]: e for e in data.eval_time if e["kind"] == "student"}
    rows = []
    for d in data.datasets:
        key = (d["generator"], d["method"], d["domain"])
        t, e = training.get(key), answering.get("students/" + "/".join(key))
        rows.append([d["generator"], setting_label(d["method"], d["domain"]), fmt(d["attempts"]),
                     fmt(d["input_tokens"]), fmt(d["output_tokens"]), usd(d["cost_usd"]), seconds(d["latency_s"]),
                     seconds(t["wall_s"]) if t else BLANK, seconds(e["seconds"]) if e else BLANK])
    return header, rows


def truncate(text: str | None, limit: int = SAMPLE_CHARS) -> str:
    """The first `limit` characters; the page escapes them (autoescape), so any markup shows as text."""
    if text is None:
        return BLANK
    return text if len(text) <= limit else text[:limit].rstrip() + f" … [{len(text) - limit:,} more characters]"


def sample_groups(data: ReportData) -> list[dict]:
    """The first instances of each dataset, truncated, grouped per dataset."""
    groups: dict[tuple[str, str, str], dict] = {}
    for r in data.samples:
        g = groups.setdefault((r["generator"], r["method"], r["domain"]), {
            "label": f"{r['generator']} {setting_label(r['method'], r['domain'])}", "instances": []})
        g["instances"].append({"idx": r["idx"], "instruction": truncate(r["instruction"]),
                               "response": truncate(r["response"])})
    return list(groups.values())


def notes(data: ReportData) -> list[str]:
    """What is missing or undefined, in sentences; the page and summary.md both list them."""
    out = []
    if not data.generators:
        out.append("No generator appears in the results yet: run the pipeline, then `agora results`.")
    elif len(data.generators) == 1:
        out.append("Only one generator is in the results, so nothing is compared yet.")
    for r in data.null_reasons:
        out.append(f"{r['benchmark']}: no PGR for {r['students']} student(s): {r['reason']}.")
    if any(g["pgr"] is None for g in data.generators):
        missing = ", ".join(g["generator"] for g in data.generators if g["pgr"] is None)
        out.append(f"No overall PGR for {missing}: it needs a PGR in every method and domain.")
    unsure = [a["benchmark"] for a in data.anchors if a["excludes_zero"] is False and a["in_pgr"]]
    if unsure:
        out.append(f"The 95% interval of reference minus base includes 0 on {', '.join(unsure)}: the reference is "
                   f"not reliably better there, so PGR on it is mostly noise.")
    unsure_extra = [a["benchmark"] for a in data.anchors if a["excludes_zero"] is False and not a["in_pgr"]]
    if unsure_extra:
        which = "an extra" if len(unsure_extra) == 1 else "extras"
        out.append(f"The 95% interval of reference minus base includes 0 on {', '.join(unsure_extra)} ({which}, "
                   f"outside PGR): this run cannot tell the reference from the base there.")
    partial = [g for g in data.generators if g["pgr"] is not None and g["pgr_defined"] is not None
               and g["pgr_defined"] < 1]
    for g in partial:
        out.append(f"{g['generator']}: the overall PGR is undefined in {100 * (1 - g['pgr_defined']):.0f}% of the "
                   f"bootstrap replicates (a reference not above the base there); its interval is over the others.")
    def cells(settings: list[tuple[str, str, str]]) -> str:
        return ", ".join(f"{g} {setting_label(m, d)}" for g, m, d in settings)

    # Every setting whose generator wrote no valid instance, and what its student is.
    no_data = [s for s in data.untrained if s not in data.contaminated_only]
    empty = [f"{cells(no_data)} (no training: the student is the base model)"] if no_data else []
    if data.seeds_only:
        empty.append(f"{cells(data.seeds_only)} (the student trained on the seed demos alone, which instance "
                     f"generation adds to its data: its PGR is the seeds', not the generator's)")
    if empty:
        n = len(no_data) + len(data.seeds_only)
        out.append(f"No valid instance in {n} setting{'s' * (n > 1)}: {'; '.join(empty)}.")
    if data.contaminated_only:
        out.append(f"Every instance left out as contaminated (decontamination.drop), so no training (the student "
                   f"is the base model): {cells(data.contaminated_only)}.")
    if not data.has_intrinsic:
        out.append("No intrinsic metrics (difficulty, quality, reward, perplexity, diversity) are in the database.")
    contaminated = [r for r in data.contamination if r["benchmark_instances"]]
    if contaminated:
        kept = sum(r["benchmark_instances"] for r in contaminated if not r["dropped"])
        out.append(f"{len(contaminated)} of {len(data.contamination)} datasets hold instances that overlap benchmark "
                   f"items ({sum(r['benchmark_instances'] for r in contaminated):,} instances"
                   + (f", {kept:,} of them trained on" if kept else ", all left out of training") + "): see Contamination.")
    stale = [f"{r['generator']} {setting_label(r['method'], r['domain'])}" for r in data.contamination if not r["current"]]
    if stale:
        out.append(f"Contamination reports older than their dataset (re-run `agora decontaminate`): {', '.join(stale)}.")
    return out


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def render_page(data: ReportData, figs: list, analysis: dict | None, inline_from: Path | None = None) -> str:
    """The page. inline_from: the report folder whose figure PNGs go into the page as data: URIs (the
    single-file copy); None: the figures are referenced by their paths in the folder."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    figures = [{"drawn": isinstance(f, F.Figure), **vars(f)} for f in figs]
    if inline_from is not None:
        for f in figures:
            if f["drawn"]:
                png = (inline_from / f["png"]).read_bytes()
                f["png"] = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    by_name = {f["name"]: f for f in figures}
    placed = [n for n in ("benchmark_scores", "intrinsic_vs_pgr") if n in by_name]
    return env.get_template(TEMPLATE).render(
        combine=COMBINE_TEXT.get(data.combine, data.combine), headline=headline_table(data), domain=domain_table(data),
        rank=rank_table(data), replicates=data.replicates,
        anchors=anchor_table(data), intrinsic=intrinsic_table(data) if data.has_intrinsic else None,
        contamination=contamination_table(data) if data.contamination else None,
        ngrams=sorted({r["ngram"] for r in data.contamination}),
        figures=figures, figs=by_name, placed=placed, notes=notes(data),
        analysis_notes=(analysis or {}).get("notes", []), single=inline_from is not None,
        scores=scores_table(data), has_intervals=data.has_intervals, validity=validity_table(data),
        validity_gen=validity_by_generator(data), stage_costs=stage_cost_table(data),
        dataset_costs=dataset_cost_table(data),
        samples=sample_groups(data), samples_per=SAMPLES, sample_chars=SAMPLE_CHARS)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_summary(data: ReportData, figs: list) -> str:
    parts = ["# AgoraBench results", "",
             f"Performance Gap Recovered (PGR, %); a domain's PGR is {COMBINE_TEXT.get(data.combine, data.combine)}. "
             f"{BLANK} = not defined. Figures and details: [index.html](index.html).", "",
             "## Generators (best overall PGR first)", "", markdown_table(*headline_table(data)), ""]
    header, rows = domain_table(data)
    if rows:
        parts += ["## Domain PGR per setting", "", markdown_table(header, rows), ""]
    header, rows = rank_table(data)
    if rows:
        parts += [f"## How sure is the order (share of {data.replicates} bootstrap replicates)", "",
                  markdown_table(header, rows), ""]
    if data.contamination:
        parts += ["## Contamination", "", markdown_table(*contamination_table(data)), ""]
    if data.datasets:
        parts += ["## Valid rate per generator", "", markdown_table(*validity_by_generator(data)), "",
                  "## Cost of each stage", "", markdown_table(*stage_cost_table(data)), ""]
    parts += ["## Anchors", "", markdown_table(*anchor_table(data)), ""]
    found = notes(data) + [f"Figure skipped: {f.title}: {f.reason}." for f in figs if isinstance(f, F.FigureSkipped)]
    if found:
        parts += ["## Notes", "", *(f"- {n}" for n in found), ""]
    return "\n".join(parts)


def write_plot_csvs(data: ReportData, folder: Path) -> dict[str, Path]:
    """Flat CSV files for `dvc plots` (one file per plot; NULL as an empty field, floats in full)."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "pgr_overall": (["generator", "pgr"], [[g["generator"], g["pgr"]] for g in data.generators]),
        "pgr_setting": (["label", "generator", "method", "domain", "pgr"],
                        [[f"{g} | {setting_label(m, d)}", g, m, d, v]
                         for (g, m, d), v in sorted(data.pgr_domain.items())]),
        "cost_pgr": (["generator", "method", "domain", "cost_usd", "pgr"],
                     [[p["generator"], p["method"], p["domain"], p["cost_usd"], p["pgr"]] for p in data.cost_points]),
        # The figure's fine points: one per dataset with a domain PGR and its generator's own scores there.
        "problem_solving_pgr": (["generator", "method", "domain", "problem_solving", "pgr"],
                                [[r["generator"], r["method"], r["domain"], r["problem_solving"], r["pgr"]]
                                 for r in data.intrinsic if r["problem_solving"] is not None and r["pgr"] is not None]),
    }
    written = {}
    for name, (header, rows) in tables.items():
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows([["" if v is None else (repr(v) if isinstance(v, float) else v) for v in r] for r in rows])
        written[name] = write_atomic(folder / f"{name}.csv", buf.getvalue(), "`agora report`")
    return written
