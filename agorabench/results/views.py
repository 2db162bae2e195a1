"""The SQL views of the results database, each with its columns documented.

This is the one implementation of PGR (tests/test_results_db.py checks it against a plain-Python
oracle, tests/pgr_oracle.py):

    pgr_benchmark   (student - base) / (reference - base) x 100; NULL when reference <= base or a
                    score is missing
    pgr_domain      mean of the domain's benchmark PGRs (combine="mean_of_pgr", the default), or the
                    PGR of the domain's mean scores (combine="pgr_of_mean"); NULL unless every
                    benchmark of the domain has a value. Both definitions are always available as
                    pgr_domain_mean_of_pgr and pgr_domain_pgr_of_mean; pgr_domain is the one the
                    database was built with (meta.combine), and the averages below read it.
    pgr_method      mean of the 3 domain PGRs; pgr_overall: mean of the 3 method averages. "The 3"
                    are the domains (methods) present anywhere in the results, and a
                    generator missing one, or with a NULL one, gets NULL rather than a shorter mean.

A domain's benchmarks are the table domain_benchmarks (evaluation.benchmarks of the params the results
were collected with). A student counts towards the PGR of its own domain's benchmarks only; extra
benchmarks (ifeval) stay in `scores`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from agorabench.config import METHODS
from agorabench.results.schema import INTRINSIC_METRICS


@dataclass(frozen=True)
class View:
    doc: str
    sql: str  # the SELECT the view is created from
    columns: tuple[tuple[str, str], ...]  # (name, meaning), in the view's column order


# Tables db.py builds itself (not collected): how the database was built.
BUILT_TABLES: dict[str, View] = {
    "meta": View(
        doc="How this database was built.", sql="",
        columns=(("key", "setting name (combine, tables, results_dir, min_gap, history_dir)"), ("value", "its value"))),
}

_PGR_DOMAIN_COLUMNS = (("generator", "generator"), ("method", "generation method"), ("domain", "domain"),
                       ("pgr", "domain PGR, percent (NULL unless all the domain's benchmarks have one)"),
                       ("benchmarks", "benchmarks of the domain with a value"))


def view_definitions(domains: Mapping[str, Sequence[str]], combine: str = "mean_of_pgr",
                     methods: Sequence[str] = METHODS, min_gap: float = 0.0,
                     by: Sequence[str] = ()) -> dict[str, View]:
    """name -> View, in creation order (a view only reads views defined before it). domains: each
    domain's PGR benchmarks (the domain_benchmarks table; generator_summary has a column per benchmark).
    min_gap: PGR is NULL where the reference beats the base by less than this many score points (0: any gap).
    by: columns every table has that split it into separate result sets (("run_id",) for the history:
    each run's PGR from that run's scores alone); each view then starts with them and never mixes rows
    of different values. () for the current run's tables."""
    if combine not in ("mean_of_pgr", "pgr_of_mean"):
        raise ValueError(f"combine={combine!r} is not known; use 'mean_of_pgr' or 'pgr_of_mean'")
    benchmarks = [b for names in domains.values() for b in names]
    gap = repr(float(min_gap))  # a number in the SQL text: DDL takes no parameters
    if float(min_gap) < 0 or gap in ("nan", "inf"):
        raise ValueError(f"min_gap={min_gap!r}: use a finite number of score points >= 0")
    def keys(alias: str = "") -> str:  # the split columns, first in a SELECT or GROUP BY list
        return "".join(f"{alias + '.' if alias else ''}{c}, " for c in by)

    def same(a: str, b: str) -> str:  # join rows of the same run only
        return "".join(f" AND {a}.{c} = {b}.{c}" for c in by)

    whole = f"PARTITION BY {', '.join(by)}" if by else ""  # a window over one run's rows
    lead = tuple((c, "the run (history.runs)") for c in by)

    views: dict[str, View] = {}

    views["pgr_benchmark"] = View(
        doc="PGR of every student on each benchmark of its domain.",
        columns=(*lead, ("generator", "generator of the student's data"), ("method", "generation method"),
                 ("domain", "domain of the data and the benchmark"), ("benchmark", "benchmark"),
                 ("student", "student's score"), ("base", "base model's score (S_0)"),
                 ("reference", "reference model's score (S_ref)"),
                 ("pgr", "(student - base) / (reference - base) x 100; NULL when undefined"),
                 ("reason", "why pgr is NULL (NULL when it is not)")),
        sql=f"""
SELECT {keys("s")}s.generator, s.method, s.student_domain AS domain, s.benchmark,
       s.score AS student, b.score AS base, r.score AS reference,
       CASE WHEN s.score IS NOT NULL AND b.score IS NOT NULL AND r.score IS NOT NULL AND r.score > b.score
                 AND r.score - b.score >= {gap}
            THEN (s.score - b.score) / (r.score - b.score) * 100.0 END AS pgr,
       CASE WHEN s.score IS NULL THEN 'missing student score'
            WHEN b.score IS NULL THEN 'missing base score'
            WHEN r.score IS NULL THEN 'missing reference score'
            WHEN r.score <= b.score THEN 'reference is not above base'
            WHEN r.score - b.score < {gap} THEN 'reference is less than min_gap ({gap}) above base' END AS reason
FROM scores s
JOIN domain_benchmarks d ON d.domain = s.student_domain AND d.benchmark = s.benchmark{same("d", "s")}
LEFT JOIN scores b ON b.kind = 'base' AND b.benchmark = s.benchmark{same("b", "s")}
LEFT JOIN scores r ON r.kind = 'reference' AND r.benchmark = s.benchmark{same("r", "s")}
WHERE s.kind = 'student'""")

    # n = how many benchmarks the domain has; a domain PGR needs all of them.
    domain_size = f"(SELECT {keys()}domain, count(*) AS n FROM domain_benchmarks GROUP BY {keys()}domain)"
    views["pgr_domain_mean_of_pgr"] = View(
        doc="Domain PGR as the mean of its benchmarks' PGR (the default definition).",
        columns=(*lead, *_PGR_DOMAIN_COLUMNS),
        sql=f"""
SELECT {keys("p")}p.generator, p.method, p.domain,
       CASE WHEN count(p.pgr) = any_value(n.n) THEN sum(p.pgr) / any_value(n.n) END AS pgr,
       count(p.pgr) AS benchmarks
FROM pgr_benchmark p JOIN {domain_size} n ON n.domain = p.domain{same("n", "p")}
GROUP BY {keys("p")}p.generator, p.method, p.domain""")
    views["pgr_domain_pgr_of_mean"] = View(
        doc="Domain PGR as the PGR of the mean student, base and reference scores over its benchmarks.",
        columns=(*lead, *_PGR_DOMAIN_COLUMNS),
        sql=f"""
SELECT {keys("p")}p.generator, p.method, p.domain,
       CASE WHEN count(*) = any_value(n.n) AND count(p.student) = count(*) AND count(p.base) = count(*)
                 AND count(p.reference) = count(*) AND avg(p.reference) > avg(p.base)
                 AND avg(p.reference) - avg(p.base) >= {gap}
            THEN (avg(p.student) - avg(p.base)) / (avg(p.reference) - avg(p.base)) * 100.0 END AS pgr,
       count(p.student) AS benchmarks
FROM pgr_benchmark p JOIN {domain_size} n ON n.domain = p.domain{same("n", "p")}
GROUP BY {keys("p")}p.generator, p.method, p.domain""")
    views["pgr_domain"] = View(
        doc=f"Domain PGR by the definition this database was built with (meta.combine; here {combine}).",
        columns=(*lead, *_PGR_DOMAIN_COLUMNS), sql=f"SELECT * FROM pgr_domain_{combine}")
    views["pgr_method"] = View(
        doc="Per-method average: mean of the domain PGRs (NULL if a domain is missing or NULL).",
        columns=(*lead, ("generator", "generator"), ("method", "generation method"),
                 ("pgr", "mean of the domain PGRs, percent"), ("domains", "domains with a value")),
        # The number of domains comes from a window over the same rows rather than a scalar
        # subquery: the subquery expanded the whole pgr_domain chain a second time, and every view
        # reading pgr_method (pgr_overall, pgr_table, generator_summary) paid for it again.
        sql=f"""
SELECT {keys()}generator, method,
       CASE WHEN count(pgr) = any_value(n_domains) THEN avg(pgr) END AS pgr,
       count(pgr) AS domains
FROM (SELECT *, count(DISTINCT domain) OVER ({whole}) AS n_domains FROM pgr_domain)
GROUP BY {keys()}generator, method""")
    views["pgr_overall"] = View(
        doc="The AgoraBench score (Table 3): mean of the method averages (NULL if one is missing or NULL).",
        columns=(*lead, ("generator", "generator"), ("pgr", "mean of the method averages, percent"),
                 ("methods", "methods with a value")),
        # pgr_method has a row for every (generator, method) of pgr_domain, so it has the same
        # methods: counting them there needs no second pass over pgr_domain.
        sql=f"""
SELECT {keys()}generator,
       CASE WHEN count(pgr) = any_value(n_methods) THEN avg(pgr) END AS pgr,
       count(pgr) AS methods
FROM (SELECT *, count(DISTINCT method) OVER ({whole}) AS n_methods FROM pgr_method)
GROUP BY {keys()}generator""")

    # The paper's Table 2 layout, one column per (method, domain) plus the averages.
    cells, cell_docs = [], []
    for m in methods:
        short = "".join(w[0] for w in m.split("_"))  # instance_generation -> ig
        for d in domains:
            cells.append(f"max(d.pgr) FILTER (WHERE d.method = '{m}' AND d.domain = '{d}') AS {short}_{d}")
            cell_docs.append((f"{short}_{d}", f"{m} / {d} domain PGR"))
        cells.append(f"any_value(m.pgr) FILTER (WHERE m.method = '{m}') AS {short}_avg")
        cell_docs.append((f"{short}_avg", f"{m} average"))
    views["pgr_table"] = View(
        doc="Table 2 (+ Table 3's overall): one row per generator, domain PGRs and averages as columns.",
        columns=(*lead, ("generator", "generator"), *cell_docs, ("overall", "pgr_overall.pgr")),
        sql=f"""
SELECT {keys("d")}d.generator, {', '.join(cells)}, any_value(o.pgr) AS overall
FROM pgr_domain d
LEFT JOIN pgr_method m ON m.generator = d.generator AND m.method = d.method{same("m", "d")}
LEFT JOIN pgr_overall o ON o.generator = d.generator{same("o", "d")}
GROUP BY {keys("d")}d.generator""")

    views["cost_dataset"] = View(
        doc="What each dataset cost to generate (every attempt, rejected ones included).",
        columns=(*lead, ("generator", "generator"), ("method", "method"), ("domain", "domain"),
                 ("instances", "valid instances written"), ("attempts", "requests made"),
                 ("input_tokens", "input tokens of all attempts"), ("output_tokens", "output tokens of all attempts"),
                 ("cost_usd", "API cost, USD"), ("cost_per_instance", "cost_usd / instances")),
        sql=f"""
SELECT {keys()}generator, method, domain, num_valid AS instances, attempts, input_tokens, output_tokens, cost_usd,
       cost_usd / NULLIF(num_valid, 0) AS cost_per_instance
FROM datasets""")
    views["cost_per_pgr_point"] = View(
        doc="Generation cost per point of domain PGR, where the PGR is positive.",
        columns=(*lead, ("generator", "generator"), ("method", "method"), ("domain", "domain"),
                 ("cost_usd", "dataset cost, USD"), ("pgr", "domain PGR"),
                 ("cost_per_pgr_point", "cost_usd / pgr (NULL unless pgr > 0)")),
        sql=f"""
SELECT {keys("c")}c.generator, c.method, c.domain, c.cost_usd, p.pgr,
       CASE WHEN p.pgr > 0 THEN c.cost_usd / p.pgr END AS cost_per_pgr_point
FROM cost_dataset c LEFT JOIN pgr_domain p USING ({keys()}generator, method, domain)""")

    views["problem_solving"] = View(
        doc="A generator's own scores on the PGR benchmarks (the paper's Table 7), long format.",
        columns=(*lead, ("generator", "generator"), ("domain", "domain of the benchmark"), ("benchmark", "benchmark"),
                 ("score", "the generator's primary score, percent")),
        sql=f"""
SELECT {keys("s")}s.generator, d.domain, s.benchmark, s.score
FROM scores s JOIN domain_benchmarks d ON d.benchmark = s.benchmark{same("d", "s")}
WHERE s.kind = 'generator'""")
    views["problem_solving_domain"] = View(
        doc="A generator's mean own score over a domain's benchmarks (NULL unless all are scored).",
        columns=(*lead, ("generator", "generator"), ("domain", "domain"),
                 ("problem_solving", "mean score, percent"), ("benchmarks", "benchmarks scored")),
        sql=f"""
SELECT {keys("p")}p.generator, p.domain,
       CASE WHEN count(p.score) = any_value(n.n) THEN avg(p.score) END AS problem_solving,
       count(p.score) AS benchmarks
FROM problem_solving p JOIN {domain_size} n ON n.domain = p.domain{same("n", "p")}
GROUP BY {keys("p")}p.generator, p.domain""")

    bench_cols = ", ".join(f"max(score) FILTER (WHERE benchmark = '{b}') AS score_{b}" for b in benchmarks)
    method_cols = ", ".join(f"max(pgr) FILTER (WHERE method = '{m}') AS pgr_{m}" for m in methods)
    views["generator_summary"] = View(
        doc="Problem solving (Table 7) against data generation (Table 3) and cost, one row per generator.",
        columns=(*lead, ("generator", "generator"),
                 *((f"score_{b}", f"own {b} score") for b in benchmarks),
                 ("problem_solving", f"mean of the {len(benchmarks)} own scores (NULL unless all are there)"),
                 *((f"pgr_{m}", f"{m} average PGR") for m in methods),
                 ("pgr", "overall PGR (pgr_overall)"), ("datasets", "datasets generated"),
                 ("instances", "instances generated"), ("cost_usd", "total generation cost, USD"),
                 ("cost_per_pgr_point", "cost_usd / pgr (NULL unless pgr > 0)")),
        sql=f"""
WITH names AS (SELECT {keys()}generator FROM generators UNION SELECT {keys()}generator FROM pgr_method
               UNION SELECT {keys()}generator FROM problem_solving),
own AS (SELECT {keys()}generator, {bench_cols},
               CASE WHEN count(score) = {len(benchmarks)} THEN avg(score) END AS problem_solving
        FROM problem_solving GROUP BY {keys()}generator),
methods AS (SELECT {keys()}generator, {method_cols} FROM pgr_method GROUP BY {keys()}generator),
cost AS (SELECT {keys()}generator, count(*) AS datasets, sum(instances) AS instances, sum(cost_usd) AS cost_usd
         FROM cost_dataset GROUP BY {keys()}generator)
SELECT {keys("n")}n.generator, {', '.join(f'own.score_{b}' for b in benchmarks)}, own.problem_solving,
       {', '.join(f'methods.pgr_{m}' for m in methods)}, o.pgr,
       coalesce(cost.datasets, 0) AS datasets, cost.instances, cost.cost_usd,
       CASE WHEN o.pgr > 0 THEN cost.cost_usd / o.pgr END AS cost_per_pgr_point
FROM names n
LEFT JOIN own USING ({keys()}generator) LEFT JOIN methods USING ({keys()}generator)
LEFT JOIN pgr_overall o USING ({keys()}generator) LEFT JOIN cost USING ({keys()}generator)""")

    metric_cols = ", ".join(f"i.{m}" for m in INTRINSIC_METRICS)
    setting = f"{keys()}generator, method, domain"
    views["intrinsic_summary"] = View(
        doc="One row per dataset: domain PGR, the generator's problem solving in that domain and the "
            "intrinsic metrics (the input of agorabench.analysis.analyze, i.e. the PCA).",
        columns=(*lead, ("generator", "generator"), ("method", "method"), ("domain", "domain"),
                 ("pgr", "domain PGR"), ("problem_solving", "the generator's own mean score in this domain"),
                 *((m, f"intrinsic: {m}") for m in INTRINSIC_METRICS),
                 ("instances", "valid instances generated"), ("cost_usd", "generation cost, USD")),
        sql=f"""
WITH keys AS (SELECT {setting} FROM datasets UNION SELECT {setting} FROM intrinsic
              UNION SELECT {setting} FROM pgr_domain)
SELECT {keys("k")}k.generator, k.method, k.domain, p.pgr, ps.problem_solving, {metric_cols},
       ds.num_valid AS instances, ds.cost_usd
FROM keys k
LEFT JOIN pgr_domain p USING ({setting})
LEFT JOIN problem_solving_domain ps ON ps.generator = k.generator AND ps.domain = k.domain{same("ps", "k")}
LEFT JOIN intrinsic i USING ({setting})
LEFT JOIN datasets ds USING ({setting})""")

    views["quantity_quality"] = View(
        doc="Quantity against quality (the paper's Fig. 7): every dataset with its size, cost and domain PGR, "
            "scaling prefixes (generator NAME@SIZE, agorabench/generation/scaling.py) under their generator's name.",
        columns=(*lead, ("generator", "the generator that wrote the data"),
                 ("dataset", "the dataset's generator key: NAME, or NAME@SIZE for a scaling prefix"),
                 ("method", "method"), ("domain", "domain"),
                 ("prefix_size", "SIZE of a scaling prefix; NULL for the main dataset"),
                 ("instances", "valid instances"), ("cost_usd", "generation cost of the dataset, USD"),
                 ("pgr", "domain PGR of its student")),
        sql=f"""
SELECT {keys("d")}split_part(d.generator, '@', 1) AS generator, d.generator AS dataset, d.method, d.domain,
       TRY_CAST(nullif(split_part(d.generator, '@', 2), '') AS BIGINT) AS prefix_size,
       d.num_valid AS instances, d.cost_usd, p.pgr
FROM datasets d LEFT JOIN pgr_domain p USING ({setting})
ORDER BY {keys()}generator, method, domain, instances, dataset""")

    views["contamination_summary"] = View(
        doc="Per checked dataset: how many instances overlap the benchmarks' items or copy a seed, and how many "
            "training left out (decontamination.drop; by default none: the paper trains on everything).",
        columns=(("generator", "generator"), ("method", "method"), ("domain", "domain"),
                 ("ngram", "words per shared n-gram that count"), ("instances", "instances checked"),
                 ("flagged", "instances that overlap anything"),
                 ("flagged_pct", "flagged / instances, percent"),
                 ("benchmark_instances", "instances that overlap a benchmark item"),
                 ("seed_instances", "instances that copy a seed (instance generation)"),
                 ("benchmark_items", "distinct benchmark items matched"),
                 ("benchmarks", "the benchmarks matched, comma-separated (NULL: none)"),
                 ("dropped", "instances training left out"),
                 ("current", "the report describes the dataset file collected (false: re-run `agora decontaminate`)")),
        sql="""
WITH m AS (SELECT generator, method, domain,
                  count(DISTINCT idx) FILTER (WHERE source <> 'seeds') AS benchmark_instances,
                  count(DISTINCT idx) FILTER (WHERE source = 'seeds') AS seed_instances,
                  count(DISTINCT (source, item_id)) FILTER (WHERE source <> 'seeds') AS benchmark_items,
                  string_agg(DISTINCT source, ', ' ORDER BY source) FILTER (WHERE source <> 'seeds') AS benchmarks
           FROM contamination_matches GROUP BY generator, method, domain)
SELECT c.generator, c.method, c.domain, c.ngram, c.instances, c.flagged,
       c.flagged * 100.0 / NULLIF(c.instances, 0) AS flagged_pct,
       coalesce(m.benchmark_instances, 0) AS benchmark_instances, coalesce(m.seed_instances, 0) AS seed_instances,
       coalesce(m.benchmark_items, 0) AS benchmark_items, m.benchmarks,
       CASE WHEN c.dropped THEN c.flagged ELSE 0 END AS dropped,
       d.data_sha256 IS NOT DISTINCT FROM c.dataset_sha256 AS current
FROM contamination_checks c
LEFT JOIN m USING (generator, method, domain)
LEFT JOIN datasets d USING (generator, method, domain)""")

    views["instance_stats"] = View(
        doc="Per dataset, computed from the instances themselves (a check on the manifests).",
        columns=(*lead, ("generator", "generator"), ("method", "method"), ("domain", "domain"),
                 ("instances", "rows"), ("mean_instruction_chars", "mean instruction length"),
                 ("mean_response_chars", "mean response length"),
                 ("input_tokens", "input tokens of the kept instances' requests"),
                 ("output_tokens", "output tokens of the kept instances' requests"),
                 ("cost_usd", "cost of the kept instances' requests (rejected attempts excluded)")),
        sql=f"""
SELECT {setting}, count(*) AS instances, avg(instruction_chars) AS mean_instruction_chars,
       avg(response_chars) AS mean_response_chars, sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd
FROM instances GROUP BY {setting}""")
    views["eval_item_stats"] = View(
        doc="Per model and benchmark, computed from the items (a check on scores).",
        columns=(*lead, ("model", "model key"), ("benchmark", "benchmark"), ("items", "distinct items"),
                 ("outputs", "rows (items x samples)"), ("correct_pct", "mean of correct, percent"),
                 ("no_answer", "rows with verdict no_answer"), ("mean_output_tokens", "mean completion tokens")),
        sql=f"""
SELECT {keys()}model, benchmark, count(DISTINCT item_id) AS items, count(*) AS outputs,
       avg(correct) * 100.0 AS correct_pct, count(*) FILTER (WHERE verdict = 'no_answer') AS no_answer,
       avg(output_tokens) AS mean_output_tokens
FROM eval_items GROUP BY {keys()}model, benchmark""")
    return views


# The columns that say which run a row of the history comes from, in the views across runs.
_RUN_COLUMNS = (("run_number", "the run's position among all recorded runs, oldest first (history.runs)"),
                ("run_id", "the run's key (history.runs)"), ("recorded_at", "when the run was recorded, UTC"),
                ("git_rev", "git commit of the run"))
_RUNS_IN_ORDER = "(SELECT run_id, run_number, recorded_at, git_rev FROM history.runs)"


def history_views(domains: Mapping[str, Sequence[str]], methods: Sequence[str] = METHODS) -> dict[str, View]:
    """Views across the recorded runs (schema `history`, where view_definitions(by=("run_id",)) gives
    every view per run): a generator's PGR over the runs, and each generator's latest result.
    domains: as for view_definitions (the columns of generator_summary)."""
    summary = [c for c, _ in view_definitions(domains, methods=methods)["generator_summary"].columns]
    docs = dict(view_definitions(domains, methods=methods)["generator_summary"].columns)
    per_method = [f"pgr_{m}" for m in methods]
    views: dict[str, View] = {}
    views["pgr_over_runs"] = View(
        doc="A generator's overall PGR in every recorded run, oldest first (history.generator_summary).",
        columns=(("generator", "generator"), *_RUN_COLUMNS,
                 ("pgr", "overall PGR in that run"),
                 ("pgr_change", "pgr minus the generator's pgr in its previous run (NULL for its first)"),
                 *((c, docs[c]) for c in per_method),
                 ("problem_solving", docs["problem_solving"]), ("cost_usd", docs["cost_usd"])),
        sql=f"""
SELECT g.generator, r.run_number, g.run_id, r.recorded_at, r.git_rev, g.pgr,
       g.pgr - lag(g.pgr) OVER (PARTITION BY g.generator ORDER BY r.run_number) AS pgr_change,
       {', '.join(f'g.{c}' for c in per_method)}, g.problem_solving, g.cost_usd
FROM history.generator_summary g JOIN {_RUNS_IN_ORDER} r ON r.run_id = g.run_id
ORDER BY g.generator, r.run_number""")
    views["latest_results"] = View(
        doc="Each generator's generator_summary row from the latest recorded run that has it.",
        columns=(("generator", "generator"), *_RUN_COLUMNS,
                 ("runs", "recorded runs that have this generator"),
                 *((c, docs[c]) for c in summary if c != "generator")),
        sql=f"""
SELECT g.generator, r.run_number, g.run_id, r.recorded_at, r.git_rev,
       count(*) OVER (PARTITION BY g.generator) AS runs,
       {', '.join(f'g.{c}' for c in summary if c != 'generator')}
FROM history.generator_summary g JOIN {_RUNS_IN_ORDER} r ON r.run_id = g.run_id
QUALIFY row_number() OVER (PARTITION BY g.generator ORDER BY r.run_number DESC) = 1
ORDER BY g.generator""")
    return views
