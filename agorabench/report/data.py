"""Everything the report shows, read once from the results database's views into plain Python.

Views are read, and a few collected tables where no view summarises them (scores, datasets and their
rejections, the first instances of each dataset, training wall times, evaluation latencies),
over a read-only connection. Every query has an ORDER BY, so the report is the same bytes for the same
database. Views that only some databases have (score_interval) are looked up first, never assumed.
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
    anchors: list[dict]                           # benchmark, domain, base, reference, gap, its interval, in_pgr
    cost_points: list[dict]                       # one per dataset: generator, method, domain, cost_usd, pgr
    intrinsic: list[dict]                         # intrinsic_summary rows
    judges: list[dict] = field(default_factory=list)  # intrinsic_judges rows: each judge's means per dataset
    loss: list[dict] = field(default_factory=list)  # training_loss rows (generator, method, domain, step, loss)
    untrained: list[tuple[str, str, str]] = field(default_factory=list)  # empty datasets: student = base
    # of those, the ones whose every instance decontamination.drop left out
    contaminated_only: list[tuple[str, str, str]] = field(default_factory=list)
    # empty instance-generation datasets: the student trained on the seed demos alone (IG always adds them)
    seeds_only: list[tuple[str, str, str]] = field(default_factory=list)
    quantity: list[dict] = field(default_factory=list)  # quantity_quality rows of settings with a scaling prefix
    contamination: list[dict] = field(default_factory=list)  # contamination_summary rows (checked datasets)
    benchmarks: list[str] = field(default_factory=list)     # domain_benchmarks order, then any other scored one
    scores: list[dict] = field(default_factory=list)        # one per model and benchmark, with score_lo/score_hi
    has_intervals: bool = False                              # the database has the score_interval view
    datasets: list[dict] = field(default_factory=list)      # cost_dataset + datasets columns, one per dataset
    intrinsic_models: list[dict] = field(default_factory=list)  # intrinsic: runs, instances, seconds (0 or 1 row)
    rejections: list[dict] = field(default_factory=list)    # generator, method, domain, reason, count
    samples: list[dict] = field(default_factory=list)       # the first SAMPLES instances of every dataset
    training: list[dict] = field(default_factory=list)      # training_runs: generator, method, domain, wall_s, ...
    eval_time: list[dict] = field(default_factory=list)     # per model: items, answer seconds, tokens
    judging: list[dict] = field(default_factory=list)       # per judged stage kind: runs, requests, tokens, USD, s
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


# Instances shown per dataset, and the characters kept of each text.
SAMPLES = 2
SAMPLE_CHARS = 400


def setting_label(method: str, domain: str) -> str:
    return f"{METHOD_SHORT.get(method, method)} {domain}"


KIND_ORDER = {"base": 0, "reference": 1, "generator": 2, "student": 3}


def model_label(r: dict) -> str:
    """How a scored model reads in a table row or on a figure's axis."""
    if r["kind"] == "base":
        return "base (S₀)"
    if r["kind"] == "reference":
        return "reference (S_ref)"
    if r["kind"] == "generator":
        return f"generator {r['generator']}"
    if r["kind"] == "student":
        return f"student {r['generator']} {setting_label(r['method'], r['student_domain'])}"
    return r["model"]


def scored_models(data: ReportData) -> list[dict]:
    """One entry per scored model: label, kind, generator and {benchmark: score row}; anchors first, then
    the generators themselves, then the students by generator, method and domain."""
    models: dict[str, dict] = {}
    for r in data.scores:
        m = models.setdefault(r["model"], {"label": model_label(r), "kind": r["kind"], "generator": r["generator"],
                                           "key": r, "scores": {}})
        m["scores"][r["benchmark"]] = r

    def rank(m: dict) -> tuple:
        r = m["key"]
        method = data.methods.index(r["method"]) if r["method"] in data.methods else 99
        domain = data.domains.index(r["student_domain"]) if r["student_domain"] in data.domains else 99
        return KIND_ORDER.get(m["kind"], 9), r["generator"] or "", method, domain, r["model"]

    return sorted(models.values(), key=rank)


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
    # PGR's benchmarks first (one line each, scored or not), then the extras the anchors were scored on:
    # their gap is reported too, though no PGR divides by it.
    anchors = _rows(con, """
        SELECT d.benchmark, d.domain, g.base, g.reference, g.gap, g.gap_lo, g.gap_hi, g.excludes_zero,
               true AS in_pgr, d.position
        FROM domain_benchmarks d LEFT JOIN anchor_gap g ON g.benchmark = d.benchmark
        UNION ALL
        SELECT g.benchmark, g.domain, g.base, g.reference, g.gap, g.gap_lo, g.gap_hi, g.excludes_zero,
               false AS in_pgr, NULL AS position
        FROM anchor_gap g WHERE g.benchmark NOT IN (SELECT benchmark FROM domain_benchmarks)""")
    anchors.sort(key=lambda a: (not a["in_pgr"], domains.index(a["domain"]) if a["domain"] in domains else len(domains),
                                a["domain"] or "", a["position"] or 0, a["benchmark"]))
    cost_points = _rows(con, """
        SELECT generator, method, domain, cost_usd, pgr FROM cost_per_pgr_point ORDER BY generator, method, domain""")
    metric_cols = ", ".join(INTRINSIC_METRICS)
    intrinsic = _rows(con, f"""
        SELECT generator, method, domain, pgr, problem_solving, {metric_cols}, instances, cost_usd
        FROM intrinsic_summary ORDER BY generator, method, domain""")
    judges = _rows(con, "SELECT generator, method, domain, judge, position, difficulty, quality "
                        "FROM intrinsic_judges ORDER BY generator, method, domain, position")
    loss = _rows(con, "SELECT generator, method, domain, step, loss FROM training_loss "
                      "WHERE loss IS NOT NULL ORDER BY generator, method, domain, step")
    # Students without generated training data: untrained (no valid instance, or every one dropped as
    # contaminated), or trained on an empty instance-generation dataset's seeds alone.
    no_data = _rows(con, """
        SELECT generator, method, domain, trained, dropped_examples > 0 AS all_dropped
        FROM training_runs LEFT JOIN datasets USING (generator, method, domain)
        WHERE NOT trained OR num_valid = 0 ORDER BY generator, method, domain""")
    untrained = [(r["generator"], r["method"], r["domain"]) for r in no_data if not r["trained"]]
    contaminated_only = [(r["generator"], r["method"], r["domain"]) for r in no_data
                         if not r["trained"] and r["all_dropped"]]
    seeds_only = [(r["generator"], r["method"], r["domain"]) for r in no_data if r["trained"]]
    rank = {(r["generator"], r["other"]): r["p_above"]
            for r in _rows(con, "SELECT generator, other, p_above FROM pgr_rank ORDER BY generator, other")}
    replicates = _rows(con, "SELECT count(DISTINCT replicate) AS n FROM score_replicates")[0]["n"]
    quantity = _rows(con, """
        SELECT q.* FROM quantity_quality q
        WHERE (q.method, q.domain) IN (SELECT method, domain FROM quantity_quality WHERE prefix_size IS NOT NULL)
        ORDER BY q.method, q.domain, q.generator, q.instances, q.dataset""")
    contamination = _rows(con, "SELECT * FROM contamination_summary ORDER BY generator, method, domain")

    views = {r["view_name"] for r in _rows(con, "SELECT view_name FROM duckdb_views() ORDER BY ALL")}
    # score_interval (bootstrap intervals) exists only in databases built by an agorabench that has it.
    has_intervals = "score_interval" in views and {"model", "benchmark", "score_lo", "score_hi"} <= {
        r["column_name"] for r in _rows(con, "SELECT column_name FROM information_schema.columns "
                                             "WHERE table_name = 'score_interval' ORDER BY ALL")}
    interval = ("LEFT JOIN score_interval i USING (model, benchmark)" if has_intervals else "")
    bounds = "i.score_lo, i.score_hi" if has_intervals else "NULL::DOUBLE AS score_lo, NULL::DOUBLE AS score_hi"
    scores = _rows(con, f"""
        SELECT s.model, s.kind, s.generator, s.method, s.student_domain, s.benchmark, s.benchmark_domain, s.score,
               {bounds}
        FROM scores s {interval} ORDER BY s.model, s.benchmark""")
    listed = _rows(con, "SELECT benchmark, domain, position FROM domain_benchmarks ORDER BY domain, position")
    listed.sort(key=lambda r: (domains.index(r["domain"]) if r["domain"] in domains else len(domains), r["domain"]))
    order = list(dict.fromkeys(r["benchmark"] for r in listed))
    benchmarks = [*order, *sorted({r["benchmark"] for r in scores} - set(order))]
    datasets = _rows(con, """
        SELECT c.generator, c.method, c.domain, d.num_requested, c.instances AS num_valid, c.attempts, d.rejected,
               c.input_tokens, c.output_tokens, c.cost_usd, d.latency_s
        FROM cost_dataset c JOIN datasets d USING (generator, method, domain) ORDER BY generator, method, domain""")
    rejections = _rows(con, "SELECT generator, method, domain, reason, count FROM rejections ORDER BY ALL")
    samples = _rows(con, f"""
        SELECT generator, method, domain, idx, instruction, response, instruction_chars, response_chars
        FROM instances WHERE idx < {SAMPLES} ORDER BY generator, method, domain, idx""")
    training = _rows(con, "SELECT generator, method, domain, trained, wall_s, train_tokens, steps FROM training_runs "
                          "ORDER BY generator, method, domain")
    eval_time = _rows(con, """
        SELECT model, any_value(kind) AS kind, count(*) AS items, sum(latency_s) AS seconds,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
        FROM eval_items GROUP BY model ORDER BY model""")
    # What the judges cost, per stage kind: a sum is NULL (unknown) unless every row has its part.
    known = "CASE WHEN count({0}) = count(*) THEN sum({0}) END AS {1}"
    judging = [r for r in _rows(con, " UNION ALL ".join(
        f"SELECT '{stage}' AS stage, count(*) AS runs, " + ", ".join(
            known.format(f"{prefix}{c}", c) for c in ("requests", "input_tokens", "output_tokens", "cost_usd",
                                                      "latency_s"))
        + f" FROM {source}"
        for stage, prefix, source in (("intrinsic", "", "intrinsic_judges"),
                                      ("evaluation", "judge_", "scores WHERE judge IS NOT NULL")))) if r["runs"]]

    # The intrinsic stage's own models (reward, perplexity, embeddings): their compute time.
    intrinsic_models = _rows(con, "SELECT count(*) AS runs, sum(instances) AS instances, "
                                  + known.format("compute_s", "seconds") + " FROM intrinsic")
    intrinsic_models = [r for r in intrinsic_models if r["runs"]]

    def paper_order(r: dict) -> tuple:  # generator, then method and domain in the paper's order
        return (r["generator"], methods.index(r["method"]) if r["method"] in methods else 99,
                domains.index(r["domain"]) if r["domain"] in domains else 99, r["method"], r["domain"])

    for rows in (datasets, samples):
        rows.sort(key=lambda r: (*paper_order(r), r.get("idx", 0)))
    return ReportData(
        combine=meta.get("combine", "mean_of_pgr"), methods=methods, domains=domains, generators=generators,
        pgr_domain={(r["generator"], r["method"], r["domain"]): r["pgr"] for r in pgr_rows},
        null_reasons=null_reasons, anchors=anchors, cost_points=cost_points, intrinsic=intrinsic, judges=judges, loss=loss,
        untrained=untrained, contaminated_only=contaminated_only, seeds_only=seeds_only, quantity=quantity,
        contamination=contamination, benchmarks=benchmarks, scores=scores,
        has_intervals=has_intervals, intrinsic_models=intrinsic_models, datasets=datasets, rejections=rejections,
        samples=samples, training=training,
        eval_time=eval_time, judging=judging, rank=rank, replicates=replicates,
        pgr_domain_interval={(r["generator"], r["method"], r["domain"]): None if r["pgr_lo"] is None
                             else (r["pgr_lo"], r["pgr_hi"]) for r in pgr_rows})


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
