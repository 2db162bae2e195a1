"""The report's figures, each written as PNG and SVG with byte-identical output for identical data.

Figures are built on matplotlib.figure.Figure directly (no pyplot), so nothing here touches global
state or picks a GUI backend; saving goes through the Agg renderer. What makes the files
reproducible (DVC tracks them, so a re-run with unchanged data must not show a change):
- SVG: no <dc:date> (metadata Date=None) and a fixed `svg.hashsalt`, from which matplotlib derives
  the ids of clip paths and glyphs that would otherwise be random per process;
- PNG: no Software entry (it names the matplotlib version, irrelevant to the content);
- fixed sizes, dpi and font, and data arrive sorted.
Each function returns a Figure record, or a FigureSkipped saying why there is nothing to draw.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D

from agorabench.files import replacing
from agorabench.report.data import METHOD_SHORT, ReportData, scored_models, setting_label
from agorabench.results.schema import INTRINSIC_METRICS

STYLE = {
    "svg.hashsalt": "agorabench-report",
    "svg.fonttype": "path",        # glyphs as paths: the SVG looks the same without our fonts installed
    "font.family": "DejaVu Sans",  # shipped with matplotlib, so every machine renders the same glyphs
    "font.size": 9.0,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
DPI = 100
PNG_METADATA = {"Software": None}
SVG_METADATA = {"Date": None}
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


@dataclass
class Figure:
    name: str      # file stem under figures/
    title: str
    caption: str
    png: str       # paths relative to the report folder
    svg: str


@dataclass
class FigureSkipped:
    name: str
    title: str
    reason: str


@contextlib.contextmanager
def style() -> Iterator[None]:
    with matplotlib.rc_context(STYLE):
        yield


def save(fig: MplFigure, folder: Path, name: str) -> tuple[str, str]:
    """Write folder/name.png and folder/name.svg; return their paths relative to folder's parent."""
    with replacing(folder / f"{name}.png", folder / f"{name}.svg", rerun="`agora report`") as (png, svg):
        fig.savefig(png, format="png", dpi=DPI, metadata=PNG_METADATA)
        # The SVG keeps the layout the PNG's drawing computed: laying the figure out again took about
        # a quarter of each SVG's time and moved nothing.
        fig.set_layout_engine("none")
        fig.savefig(svg, format="svg", metadata=SVG_METADATA)
    return f"{folder.name}/{name}.png", f"{folder.name}/{name}.svg"


def generator_colors(names: Sequence[str]) -> dict[str, tuple]:
    """One stable colour per generator: position in the sorted names, cycling through tab10."""
    cmap = matplotlib.colormaps["tab10"]
    return {g: cmap(i % 10) for i, g in enumerate(sorted(set(names)))}


# ---------------------------------------------------------------------------------------------
# The figures
# ---------------------------------------------------------------------------------------------


def pgr_heatmap(data: ReportData, folder: Path) -> Figure | FigureSkipped:
    title = "Domain PGR per generator and setting"
    rows = [g["generator"] for g in data.generators if any(k[0] == g["generator"] for k in data.pgr_domain)]
    if not rows:
        return FigureSkipped("pgr_heatmap", title, "no student has been scored yet, so there is no PGR to show")
    settings = data.settings
    untrained, seeds_only = set(data.untrained), set(data.seeds_only)
    values = np.array([[_nan(data.pgr_domain.get((g, m, d))) for m, d in settings] for g in rows])
    n_null = int(np.isnan(values).sum())
    limit = float(np.nanmax(np.abs(values))) if n_null < values.size else 1.0
    limit = max(limit, 1.0)
    # Symmetric colour scale around 0: blue = the student gained, red = it got worse than the base.
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="white")
    fig = MplFigure(figsize=(10.0, 1.6 + 0.42 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=Normalize(-limit, limit), aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(len(settings)), [setting_label(m, d).replace(" ", "\n") for m, d in settings])
    ax.set_yticks(range(len(rows)), rows)
    for k in range(1, len(data.methods)):  # separate the three methods
        ax.axvline(k * len(data.domains) - 0.5, color="black", linewidth=1.2)
    for i in range(len(rows)):
        for j in range(len(settings)):
            v = values[i, j]
            cell = (rows[i], *settings[j])
            mark = "*" if cell in untrained else "\u2020" if cell in seeds_only else ""
            if not math.isnan(v):
                ax.text(j, i, f"{v:.1f}{mark}", ha="center", va="center", fontsize=8,
                        color="white" if abs(v) > 0.6 * limit else "black")
    fig.colorbar(im, ax=ax, label="PGR (%)", shrink=0.9)
    caption = ("Each cell: the domain PGR of the student trained on that generator's data for one method "
               "(IG instance generation, RG response generation, QE quality enhancement) and domain.")
    if untrained:
        caption += (" *: no training data there (no valid instance, or every one left out as contaminated), so "
                    "the student is the untrained base model (PGR near 0 by construction).")
    if seeds_only:
        caption += (" \u2020: the generator wrote no valid instance there, so the student trained on the seed "
                    "demos alone.")
    if n_null:
        caption += (f" {n_null} blank cell(s): no PGR there (a missing score, or a benchmark whose reference "
                    f"is not above the base; see the notes below).")
    png, svg = save(fig, folder, "pgr_heatmap")
    return Figure("pgr_heatmap", title, caption, png, svg)


def cost_vs_pgr(data: ReportData, folder: Path) -> Figure | FigureSkipped:
    title = "Generation cost against domain PGR"
    points = [p for p in data.cost_points if p["cost_usd"] is not None and p["pgr"] is not None]
    if not points:
        return FigureSkipped("cost_vs_pgr", title, "no dataset has both a recorded cost and a PGR")
    log_x = _spans_decades([p["cost_usd"] for p in points])
    colors = generator_colors([p["generator"] for p in points])
    markers = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(data.methods)}
    fig = MplFigure(figsize=(8.0, 4.8), layout="constrained")
    ax = fig.add_subplot()
    groups: dict[tuple[str, str], list[dict]] = {}
    for p in points:  # one scatter call per generator and method: far fewer artists to lay out
        groups.setdefault((p["generator"], p["method"]), []).append(p)
    for (gen, method), ps in groups.items():
        ax.scatter([p["cost_usd"] for p in ps], [p["pgr"] for p in ps], color=colors[gen],
                   marker=markers.get(method, "o"), s=36, edgecolors="black", linewidths=0.4)
    if log_x:
        ax.set_xscale("log")
    ax.axhline(0.0, color="gray", linewidth=0.8)
    ax.set_xlabel("cost of generating the dataset (USD" + (", log scale)" if log_x else ")"))
    ax.set_ylabel("domain PGR (%)")
    handles = [Line2D([], [], linestyle="", marker="o", color=c, label=g) for g, c in colors.items()]
    handles += [Line2D([], [], linestyle="", marker=mk, color="gray", label=METHOD_SHORT.get(m, m))
                for m, mk in markers.items()]
    # Beside the axes: "best" placement tests every point and would also hide some of them.
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    skipped = len(data.cost_points) - len(points)
    caption = "One point per generated dataset; colour = generator, marker = method."
    if skipped:
        caption += f" {skipped} dataset(s) left out: no cost or no PGR."
    png, svg = save(fig, folder, "cost_vs_pgr")
    return Figure("cost_vs_pgr", title, caption, png, svg)


def quantity_vs_pgr(data: ReportData, folder: Path) -> Figure | FigureSkipped:
    """The scaling study (the paper's Fig. 7): domain PGR against dataset size, one panel per setting,
    one line per generator through its nested prefixes; full-size datasets of other generators as points."""
    title = "Quantity against quality: PGR by dataset size"
    points = [q for q in data.quantity if q["pgr"] is not None]
    if not points:
        reason = ("no scaling study in the results (set scaling.generators and scaling.sizes in params.yaml)"
                  if not data.quantity else "no scaling prefix has a scored student yet")
        return FigureSkipped("quantity_vs_pgr", title, reason)
    settings = sorted({(q["method"], q["domain"]) for q in points},
                      key=lambda s: (data.methods.index(s[0]) if s[0] in data.methods else 99, s[1]))
    colors = generator_colors([q["generator"] for q in points])
    fig = MplFigure(figsize=(min(4.0 * len(settings), 12.0) + 1.6, 3.8), layout="constrained")
    axes = fig.subplots(1, len(settings), squeeze=False)[0]
    for ax, (method, domain) in zip(axes, settings):
        mine = [q for q in points if (q["method"], q["domain"]) == (method, domain)]
        for gen in sorted({q["generator"] for q in mine}):
            series = sorted((q for q in mine if q["generator"] == gen), key=lambda q: q["instances"])
            ax.plot([q["instances"] for q in series], [q["pgr"] for q in series], color=colors[gen],
                    marker="o", markersize=5, linewidth=1.2 if len(series) > 1 else 0)
        if _spans_decades([q["instances"] for q in mine]):
            ax.set_xscale("log")
        ax.axhline(0.0, color="gray", linewidth=0.8)
        ax.set_title(setting_label(method, domain))
        ax.set_xlabel("instances")
    axes[0].set_ylabel("domain PGR (%)")
    handles = [Line2D([], [], marker="o", color=c, label=g) for g, c in colors.items()]
    axes[-1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    caption = ("Lines: a generator's nested prefixes (NAME@SIZE, the same data cut at each size) and its "
               "full dataset; single points: other generators' datasets. Costs are in the results "
               "database (view quantity_quality) and in `agora analyze`.")
    png, svg = save(fig, folder, "quantity_vs_pgr")
    return Figure("quantity_vs_pgr", title, caption, png, svg)


def problem_solving_vs_pgr(data: ReportData, folder: Path) -> Figure | FigureSkipped:
    """The paper's problem-solving question at both grains (agorabench/analysis.py): fine, one small point
    per dataset (its domain PGR against the generator's own score in that domain); coarse, one large
    point per generator (the mean of its datasets). Each regression line is drawn only where the
    analysis defines it: fine from 2 generators, coarse from 3."""
    from agorabench.analysis import MIN_COARSE_GENERATORS, ols

    title = "Problem solving against data generation"
    fine = [r for r in data.intrinsic if r["problem_solving"] is not None and r["pgr"] is not None]
    if not fine:
        return FigureSkipped("problem_solving_vs_pgr", title,
                             "no dataset has both a domain PGR and its generator's own scores in that domain")
    gens = sorted({r["generator"] for r in fine})
    colors = generator_colors(gens)
    mine = {g: [r for r in fine if r["generator"] == g] for g in gens}
    means = {g: (float(np.mean([r["problem_solving"] for r in rs])), float(np.mean([r["pgr"] for r in rs])))
             for g, rs in mine.items()}
    fig = MplFigure(figsize=(6.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for g in gens:
        ax.scatter([r["problem_solving"] for r in mine[g]], [r["pgr"] for r in mine[g]], color=colors[g], s=14,
                   alpha=0.7, linewidths=0)
    for g in gens:
        ax.scatter(*means[g], color=colors[g], s=90, edgecolors="black", linewidths=0.8, zorder=3)
        ax.annotate(g, means[g], textcoords="offset points", xytext=(6, 5), fontsize=7)
    caption = ("Small points: one per dataset (generator x setting), its domain PGR against the generator's own "
               "mean score on that domain's benchmarks. Large points: each generator's mean over its datasets.")
    handles = [Line2D([], [], linestyle="", marker="o", color=c, label=g) for g, c in colors.items()]

    def fit_line(x: np.ndarray, y: np.ndarray, what: str, **line) -> dict | None:
        try:
            fit = ols(y, x[:, None], ["problem_solving"])
        except ValueError as e:  # e.g. every point has the same score
            nonlocal caption
            caption += f" No {what} regression: {str(e).removeprefix('ols: ')}."
            return None
        xs = np.linspace(x.min(), x.max(), 2)
        ax.plot(xs, fit["coef"]["intercept"] + fit["coef"]["problem_solving"] * xs, color="black", linewidth=1.0,
                **line)
        handles.append(Line2D([], [], color="black", linewidth=1.0, label=f"{what}, R² = {fit['r2']:.2f}", **line))
        return fit

    if len(gens) >= 2:
        fit = fit_line(np.array([r["problem_solving"] for r in fine]), np.array([r["pgr"] for r in fine]), "fine",
                       linestyle=":")
        if fit:
            caption += (f" Dotted: fine least-squares line over the datasets (R² = {fit['r2']:.2f}, "
                        f"p = {fit['p_value']:.3g}, n = {fit['n']}).")
    else:
        caption += " No fine regression: it compares generators, and there is 1."
    if len(gens) >= MIN_COARSE_GENERATORS:
        x, y = np.array([means[g][0] for g in gens]), np.array([means[g][1] for g in gens])
        fit = fit_line(x, y, "coarse", linestyle="--")
        if fit:
            caption += (f" Dashed: least-squares line through the generator means (coarse regression, "
                        f"R² = {fit['r2']:.2f}, p = {fit['p_value']:.3g}, n = {fit['n']}).")
    else:
        caption += (f" Coarse regression left out: it needs {MIN_COARSE_GENERATORS} generator means, "
                    f"there are {len(gens)}.")
    ax.axhline(0.0, color="gray", linewidth=0.8)
    ax.set_xlabel("problem solving: the generator's mean own score in the domain (%)")
    ax.set_ylabel("domain PGR (%)")
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    png, svg = save(fig, folder, "problem_solving_vs_pgr")
    return Figure("problem_solving_vs_pgr", title, caption, png, svg)


def pca_loadings(analysis: dict | None, folder: Path, why_missing: str = "") -> Figure | FigureSkipped:
    from agorabench.analysis import loading_basis

    title = "PCA loadings of the data-quality features"
    if not analysis or not analysis.get("pca", {}).get("loadings"):
        return FigureSkipped("pca_loadings", title, why_missing or "no analysis was given")
    pca = analysis["pca"]
    features = list(analysis["features"])
    components = list(pca["loadings"])[: pca["k"]]
    ratios = pca["explained_variance_ratio"]
    fig = MplFigure(figsize=(8.0, 4.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(components)
    cmap = matplotlib.colormaps["tab10"]
    for i, pc in enumerate(components):
        offsets = np.arange(len(features)) - 0.4 + width * (i + 0.5)
        loads = [pca["loadings"][pc][f] or 0.0 for f in features]
        ax.bar(offsets, loads, width=width, color=cmap(i % 10), label=f"{pc} ({ratios[i] * 100:.1f}% of variance)")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(features)), [f.replace("_", "\n") for f in features])
    ax.set_ylabel("loading")
    ax.legend(fontsize=7, loc="best")
    reg = analysis.get("regression", {}).get("pca_top5") or {}
    caption = (f"Loadings of the top {len(components)} principal components over {analysis['n_rows']} datasets "
               f"({'z-scored' if analysis.get('standardize', True) else 'raw'} features).")
    if pca.get("mean_abs_loading"):
        # Table 4 of the paper: each feature's mean |loading| and its share; say what it is averaged over.
        shares = ", ".join(f"{f} {pca['mean_abs_loading'][f]:.3f} ({pca['share'][f]:.1f}%)"
                           for f in features if pca["mean_abs_loading"].get(f) is not None)
        caption += f" Mean |loading| (share) {loading_basis(pca)}: {shares}."
    if reg.get("r2") is not None:
        caption += f" PGR regressed on these components: R² = {reg['r2']:.2f}, p = {reg['p_value']:.3g}."
    png, svg = save(fig, folder, "pca_loadings")
    return Figure("pca_loadings", title, caption, png, svg)


def loss_curves(data: ReportData, folder: Path) -> Figure | FigureSkipped:
    title = "Training loss of the students"
    if not data.loss:
        return FigureSkipped("loss_curves", title, "the database holds no training loss logs")
    colors = generator_colors([r["generator"] for r in data.loss])
    curves: dict[tuple[str, str, str], tuple[list, list]] = {}
    for r in data.loss:
        xs, ys = curves.setdefault((r["method"], r["domain"], r["generator"]), ([], []))
        xs.append(r["step"])
        ys.append(r["loss"])
    methods = [m for m in data.methods if any(k[0] == m for k in curves)]
    domains = [d for d in data.domains if any(k[1] == d for k in curves)]
    # Fixed margins instead of constrained layout: on a 3 x 3 grid that layout engine alone costs seconds.
    height = 2.4 * len(methods) + 0.8
    fig = MplFigure(figsize=(10.0, height))
    fig.subplots_adjust(left=0.07, right=0.98, top=1 - 0.35 / height, bottom=0.95 / height, hspace=0.5, wspace=0.22)
    axes = fig.subplots(len(methods), len(domains), squeeze=False)
    for i, m in enumerate(methods):
        for j, d in enumerate(domains):
            ax = axes[i][j]
            for g in colors:
                if (m, d, g) in curves:
                    ax.plot(*curves[(m, d, g)], color=colors[g], linewidth=1.0, label=g)
            ax.set_title(setting_label(m, d), fontsize=9)
            if i == len(methods) - 1:
                ax.set_xlabel("step")
            if j == 0:
                ax.set_ylabel("loss")
    handles = [Line2D([], [], color=c, label=g) for g, c in colors.items()]
    fig.legend(handles=handles, loc="lower center", ncols=min(len(handles), 6), fontsize=8, frameon=False)
    png, svg = save(fig, folder, "loss_curves")
    return Figure("loss_curves", title, "Training loss per logged step; one panel per setting, one line per "
                  "generator.", png, svg)


def benchmark_scores(data: ReportData, folder: Path) -> Figure | FigureSkipped:
    """Small multiples, one panel per benchmark: every model scored on it, one row each, with the
    base and reference as vertical lines. Error bars only where the database has score_interval."""
    title = "Scores per benchmark"
    models = scored_models(data)
    benches = [b for b in data.benchmarks if any(b in m["scores"] for m in models)]
    if not benches:
        return FigureSkipped("benchmark_scores", title, "no model has been scored yet")
    colors = generator_colors([m["generator"] for m in models if m["generator"]])
    cols = min(3, len(benches))
    nrows = math.ceil(len(benches) / cols)
    most = max(sum(b in m["scores"] for m in models) for b in benches)
    panel_h = 0.6 + 0.16 * most
    fig = MplFigure(figsize=(4.2 * cols, panel_h * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    bars = 0
    for ax, b in zip(axes, benches):
        mine = [m for m in models if b in m["scores"]]
        ys = np.arange(len(mine))[::-1]  # the first model at the top
        # One errorbar (or plot) call per colour and marker, not per model: at the paper's 99 students
        # a call per point made this figure most of the report's time.
        groups: dict[tuple, list[tuple[float, dict]]] = {}
        for y, m in zip(ys, mine):
            r = m["scores"][b]
            if m["kind"] in ("base", "reference") and r["score"] is not None:  # None: its judge gave no verdict
                ax.axvline(r["score"], color="gray" if m["kind"] == "base" else "black", linewidth=0.8,
                           linestyle="--" if m["kind"] == "base" else "-")
            color = colors.get(m["generator"], "black")
            marker = "s" if m["kind"] == "generator" else "D" if m["kind"] in ("base", "reference") else "o"
            has_bar = r["score_lo"] is not None and r["score_hi"] is not None
            groups.setdefault((color, marker, has_bar), []).append((y, r))
        for (color, marker, has_bar), points in groups.items():
            y = [p[0] for p in points]
            x = np.array([p[1]["score"] for p in points], dtype=float)
            if has_bar:
                # a percentile interval need not hold the point score (a skewed bootstrap): clip at the point
                bars += len(points)
                lo = np.array([p[1]["score_lo"] for p in points], dtype=float)
                hi = np.array([p[1]["score_hi"] for p in points], dtype=float)
                ax.errorbar(x, y, xerr=[np.maximum(0.0, x - lo), np.maximum(0.0, hi - x)], fmt=marker,
                            color=color, markersize=4, elinewidth=0.9, capsize=2)
            else:
                ax.plot(x, y, marker, color=color, markersize=4)
        ax.set_yticks(ys, [m["label"] for m in mine], fontsize=6)
        ax.set_xlim(-2, 102)
        ax.set_title(b, fontsize=9)
        ax.set_xlabel("score (%)", fontsize=7)
    for ax in axes[len(benches):]:
        ax.set_visible(False)
    caption = ("Each panel: the primary score of every model evaluated on that benchmark; dashed line the base "
               "student, solid line the reference, squares the generators themselves, circles the students "
               "(coloured by the generator of their data).")
    caption += (f" Bars: 95% bootstrap intervals ({bars} of them)." if bars else
                " No intervals: the results database has no score_interval view.")
    png, svg = save(fig, folder, "benchmark_scores")
    return Figure("benchmark_scores", title, caption, png, svg)


def intrinsic_correlations(data: ReportData) -> dict[str, tuple[float | None, int]]:
    """metric -> (Pearson r with domain PGR or None when undefined, datasets with both), for every
    intrinsic metric someone computed."""
    out = {}
    for metric in INTRINSIC_METRICS:
        pts = [(r[metric], r["pgr"]) for r in data.intrinsic if r[metric] is not None and r["pgr"] is not None]
        if not pts:
            continue
        x, y = np.array(pts, dtype=float).T
        r = float(np.corrcoef(x, y)[0, 1]) if len(pts) >= 3 and x.std() > 0 and y.std() > 0 else None
        out[metric] = (r, len(pts))
    return out


def intrinsic_vs_pgr(data: ReportData, folder: Path) -> Figure | FigureSkipped:
    """Small multiples: each intrinsic metric against the domain PGR, one point per dataset."""
    title = "Intrinsic metrics against PGR"
    corr = intrinsic_correlations(data)
    if not corr:
        return FigureSkipped("intrinsic_vs_pgr", title, "no dataset has both an intrinsic metric and a PGR")
    colors = generator_colors([r["generator"] for r in data.intrinsic])
    cols = min(3, len(corr))
    nrows = math.ceil(len(corr) / cols)
    fig = MplFigure(figsize=(3.6 * cols + 1.4, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax, metric in zip(axes, corr):
        for g, c in colors.items():
            pts = [r for r in data.intrinsic if r["generator"] == g and r[metric] is not None and r["pgr"] is not None]
            ax.scatter([r[metric] for r in pts], [r["pgr"] for r in pts], color=c, s=16, linewidths=0)
        ax.axhline(0.0, color="gray", linewidth=0.8)
        ax.set_xlabel(metric.replace("_", " "))
        ax.set_ylabel("domain PGR (%)")
    for ax in axes[len(corr):]:
        ax.set_visible(False)
    handles = [Line2D([], [], linestyle="", marker="o", color=c, label=g) for g, c in colors.items()]
    fig.legend(handles=handles, fontsize=7, loc="outside right upper")
    parts = [f"{m} r = {r:.2f} (n = {n})" if r is not None else f"{m} r undefined (n = {n})"
             for m, (r, n) in corr.items()]
    caption = ("One panel per intrinsic metric, one point per dataset (colour = generator). Pearson correlation "
               "with domain PGR: " + "; ".join(parts) + ".")
    png, svg = save(fig, folder, "intrinsic_vs_pgr")
    return Figure("intrinsic_vs_pgr", title, caption, png, svg)


def _spans_decades(values: Sequence[float]) -> bool:
    """Whether an axis wants a log scale: only when the values span orders of magnitude (a log axis
    cannot show zero)."""
    return min(values) > 0 and max(values) / min(values) >= 20


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)
