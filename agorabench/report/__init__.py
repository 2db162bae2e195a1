"""The report of a results database: the analysis (analysis.json) and the HTML page with its figures.

May import: config, files, results, analysis.
"""
from __future__ import annotations

import json
from pathlib import Path

from agorabench.files import write_atomic
from agorabench.report.page import write_report


def build_report(params, single_file: str | Path | None = None) -> tuple[Path, str]:
    """What the report stage writes: under analysis.report_dir analysis.json, the page, and the offline
    template of `dvc plots show` (plots/dvc_template.html); the PGR metrics file for DVC in
    analysis.results_dir; given single_file, the page with its figures inside as that one file too.
    Returns the page's path and, when the analysis could not run (too few datasets for a PCA, say), why."""
    from agorabench.analysis import features_from_db, quantity_quality_from_db, run_analysis
    from agorabench.report.dvc_plots import write_template
    from agorabench.results.db import build_db
    from agorabench.results.metrics import METRICS_FILE, write_metrics

    cfg = params.analysis
    # With the history's views (the page does not read them: the report stays a function of its DVC
    # deps), so that `agora sql` finds the database up to date.
    db = build_db(cfg.results_dir, combine=cfg.combine, min_gap=cfg.min_gap, history_dir=cfg.history_dir)
    try:
        analysis = run_analysis(features_from_db(db), standardize=cfg.standardize, top_k=cfg.top_k, source=str(db),
                                loading_average=cfg.loading_average)
    except ValueError as e:  # the report explains what is missing
        analysis, why = None, str(e)
    else:
        why = ""
        analysis["quantity_quality"] = quantity_quality_from_db(db)
    out = Path(cfg.report_dir)
    write_atomic(out / "analysis.json", json.dumps(analysis if analysis is not None else {"skipped": why},
                                                   indent=2, sort_keys=True, allow_nan=False) + "\n", "`agora report`")
    write_metrics(db, Path(cfg.results_dir) / METRICS_FILE)
    write_template(out / "plots" / "dvc_template.html")
    return write_report(db, out, analysis=analysis, single_file=single_file), why


__all__ = ["build_report", "write_report"]
