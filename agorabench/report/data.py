"""Everything the report shows, read once from the results database's views into plain Python.

Only views (and the small `meta`/`domain_benchmarks` tables db.py builds) are read, over a read-only
connection. Every query has an ORDER BY, so the report is the same bytes for the same database.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from agorabench.config import DOMAINS, METHODS
from agorabench.results.db import connect
from agorabench.results.schema import INTRINSIC_METRICS

# How each domain-PGR definition (db.py `combine`) reads in a sentence.
COMBINE_TEXT = {"mean_of_pgr": "the mean of its benchmarks' PGRs",
                "pgr_of_mean": "the PGR of its benchmarks' mean scores"}

# Short method names for table headers and figure ticks (the paper's abbreviations).
METHOD_SHORT = {"instance_generation": "IG", "response_generation": "RG", "quality_enhancement": "QE"}


@dataclass
class ReportData:
    combine: str                                  # domain-PGR definition the database was built with
    methods: list[str]                            # column order: config.METHODS, then any others found
    domains: list[str]
    generators: list[dict]                        # generator_summary rows, best overall PGR first
    pgr_domain: dict[tuple[str, str, str], float | None]   # (generator, method, domain) -> domain PGR
    null_reasons: list[dict]                      # benchmark, reason, students: why some PGRs are NULL
    anchors: list[dict]                           # benchmark, domain, base, reference, gap and its interval
    cost_points: list[dict]                       # one per dataset: generator, method, domain, cost_usd, pgr
    intrinsic: list[dict]                         # intrinsic_summary rows
    loss: list[dict] = field(default_factory=list)  # training_loss rows (generator, method, domain, step, loss)
    untrained: list[tuple[str, str, str]] = field(default_factory=list)  # empty datasets: student = base
    quantity: list[dict] = field(default_factory=list)  # quantity_quality rows of settings with a scaling prefix
    contamination: list[dict] = field(default_factory=list)  # contamination_summary rows (checked datasets)
    # (generator, other) -> share of the bootstrap replicates in which generator's overall PGR is above other's
    rank: dict[tuple[str, str], float] = field(default_factory=dict)
    replicates: int = 0                           # bootstrap replicates behind the intervals (0: none)
    # (generator, method, domain) -> the domain PGR's 95% interval (lo, hi); None where it has none
    pgr_domain_interval: dict[tuple[str, str, str], tuple[float, float] | None] = field(default_factory=dict)

    @property
    def settings(self) -> list[tuple[str, str]]:
        """The (method, domain) columns of the heatmap and the wide table: 9 in the paper's design."""
        return [(m, d) for m in self.methods for d in self.domains]

    @property
    def has_intrinsic(self) -> bool:
        return any(r[m] is not None for r in self.intrinsic for m in INTRINSIC_METRICS)


def setting_label(method: str, domain: str) -> str:
    return f"{METHOD_SHORT.get(method, method)} {domain}"


def load_report_data(db_path: str | Path) -> ReportData:
    """Read the report's data; a missing or unreadable database is a one-line ValueError."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise ValueError(f"results database {db_path} does not exist; run `agora results` first")
    try:
        con = connect(db_path)  # read-only: the report never changes the database
    except duckdb.Error as e:
        raise ValueError(f"results database {db_path} cannot be opened ({_first_line(e)}); "
                         f"rebuild it with `agora results`") from None
    try:
        return _load(con)
    except duckdb.Error as e:
        # Typically a database built by an older agorabench whose views lack a column.
        raise ValueError(f"results database {db_path} lacks what the report reads ({_first_line(e)}); "
                         f"rebuild it with `agora results`") from None
    finally:
        con.close()


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]  # drained: DuckDB 2.0 results stream


def _load(con: duckdb.DuckDBPyConnection) -> ReportData:
    meta = {r["key"]: r["value"] for r in _rows(con, "SELECT key, value FROM meta ORDER BY key")}
    pgr_rows = _rows(con, "SELECT generator, method, domain, pgr, pgr_lo, pgr_hi FROM pgr_domain "
                          "ORDER BY generator, method, domain")
    found_methods = {r["method"] for r in pgr_rows}
    found_domains = {r["domain"] for r in pgr_rows}
    methods = [*METHODS, *sorted(found_methods - set(METHODS))]
    domains = [*DOMAINS, *sorted(found_domains - set(DOMAINS))]

    generators = _rows(con, "SELECT * FROM generator_summary")
    # Best first; NULL overall PGR last; the name breaks ties so the order never depends on the engine.
    generators.sort(key=lambda r: (r["pgr"] is None, -(r["pgr"] or 0.0), r["generator"]))
    for g in generators:
        g["method_pgr"] = {m: g.get(f"pgr_{m}") for m in methods}

    # The point view: the reasons need no interval, and pgr_benchmark would compute every replicate's PGR.
    null_reasons = _rows(con, """
        SELECT benchmark, reason, count(*) AS students FROM pgr_benchmark_point WHERE pgr IS NULL
        GROUP BY benchmark, reason ORDER BY benchmark, reason""")
    anchors = _rows(con, """
        SELECT d.benchmark, d.domain, g.base, g.reference, g.gap, g.gap_lo, g.gap_hi, g.excludes_zero
        FROM domain_benchmarks d LEFT JOIN anchor_gap g ON g.benchmark = d.benchmark
        ORDER BY d.domain, d.position""")
    anchors.sort(key=lambda a: (domains.index(a["domain"]) if a["domain"] in domains else len(domains), a["domain"]))
    cost_points = _rows(con, """
        SELECT generator, method, domain, cost_usd, pgr FROM cost_per_pgr_point ORDER BY generator, method, domain""")
    metric_cols = ", ".join(INTRINSIC_METRICS)
    intrinsic = _rows(con, f"""
        SELECT generator, method, domain, pgr, problem_solving, {metric_cols}, instances, cost_usd
        FROM intrinsic_summary ORDER BY generator, method, domain""")
    loss = _rows(con, "SELECT generator, method, domain, step, loss FROM training_loss "
                      "WHERE loss IS NOT NULL ORDER BY generator, method, domain, step")
    untrained = [(r["generator"], r["method"], r["domain"]) for r in _rows(
        con, "SELECT generator, method, domain FROM training_runs WHERE NOT trained ORDER BY ALL")]
    rank = {(r["generator"], r["other"]): r["p_above"]
            for r in _rows(con, "SELECT generator, other, p_above FROM pgr_rank ORDER BY generator, other")}
    replicates = _rows(con, "SELECT count(DISTINCT replicate) AS n FROM score_replicates")[0]["n"]
    quantity = _rows(con, """
        SELECT q.* FROM quantity_quality q
        WHERE (q.method, q.domain) IN (SELECT method, domain FROM quantity_quality WHERE prefix_size IS NOT NULL)
        ORDER BY q.method, q.domain, q.generator, q.instances, q.dataset""")
    contamination = _rows(con, "SELECT * FROM contamination_summary ORDER BY generator, method, domain")
    return ReportData(
        combine=meta.get("combine", "mean_of_pgr"), methods=methods, domains=domains, generators=generators,
        pgr_domain={(r["generator"], r["method"], r["domain"]): r["pgr"] for r in pgr_rows},
        null_reasons=null_reasons, anchors=anchors, cost_points=cost_points, intrinsic=intrinsic, loss=loss,
        untrained=untrained, quantity=quantity, contamination=contamination, rank=rank, replicates=replicates,
        pgr_domain_interval={(r["generator"], r["method"], r["domain"]): None if r["pgr_lo"] is None
                             else (r["pgr_lo"], r["pgr_hi"]) for r in pgr_rows})


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
