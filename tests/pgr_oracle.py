"""A test oracle for Performance Gap Recovered: the same definitions as the SQL views of
agorabench/results/views.py (the one implementation the product uses), written again in plain pandas
so tests can compare the two on the same scores.
Performance Gap Recovered (PGR): the AgoraBench score of a data generator.

    PGR(G, B) = (score_B(student) - score_B(base)) / (score_B(reference) - score_B(base)) x 100

The student is the base model fine-tuned on G's data; the reference is the instruction-tuned
sibling of the base (Llama-3.1-8B -> Llama-3.1-8B-Instruct in the paper). 0 % means "no gain over
the base", 100 % "as good as the reference"; values outside [0, 100] are legitimate and kept.

Averaging follows the paper exactly (docs/paper.md §5, checked against its Tables 2 and 3):

    benchmark PGR -> domain PGR (mean of the domain's two benchmarks' PGR, or optionally the PGR of
    the mean scores) -> method average (mean of the 3 domain PGRs) -> overall (mean of the 3 method
    averages).

A benchmark where the reference does not beat the base (or, with min_gap, beats it by less than
that many points) has no gap to recover: its PGR is NaN with a reason, never a huge or sign-flipped number, and the averages above it are NaN too (unless
`partial=True`). Every such case is reported as a one-line warning returned alongside the tables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import pandas as pd

from agorabench.config import DOMAINS, METHODS, EvaluationConfig

# Each domain is scored on two benchmarks (docs/paper.md §5): the schema default of evaluation.benchmarks.
DOMAIN_BENCHMARKS: dict[str, tuple[str, ...]] = {d: tuple(b) for d, b in EvaluationConfig().benchmarks.items()}

Combine = Literal["mean_of_pgr", "pgr_of_mean"]


def pgr(student: float, base: float, reference: float, min_gap: float = 0.0) -> tuple[float, str | None]:
    """PGR in percent and None, or (NaN, reason) when it is undefined: no gap between base and reference,
    or one under `min_gap` score points (then PGR would be the student's noise divided by the anchors')."""
    values = {"student": student, "base": base, "reference": reference}
    missing = [name for name, v in values.items() if v is None or not math.isfinite(float(v))]
    if missing:
        return math.nan, f"missing {', '.join(missing)} score"
    gap = float(reference) - float(base)
    if gap <= 0:
        # A zero or negative gap would divide by zero or flip the sign of every student's PGR.
        return math.nan, f"reference ({float(reference):g}) is not above base ({float(base):g})"
    if gap < min_gap:
        return math.nan, (f"reference ({float(reference):g}) is only {gap:.3g} points above base ({float(base):g}), "
                          f"under min_gap {min_gap:g}")
    return (float(student) - float(base)) / gap * 100.0, None


@dataclass
class PGRResult:
    """Tables of one PGR computation. Every frame is long-format with a `pgr` column (percent)."""

    per_benchmark: pd.DataFrame  # generator, method, domain, benchmark, student, base, reference, pgr, reason
    per_domain: pd.DataFrame  # generator, method, domain, pgr
    per_method: pd.DataFrame  # generator, method, pgr  (mean of the domain PGRs)
    overall: pd.DataFrame  # generator, pgr  (mean of the method averages)
    combine: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-serialisable (NaN becomes None)."""
        return {
            "combine": self.combine,
            "warnings": list(self.warnings),
            "per_benchmark": _records(self.per_benchmark),
            "per_domain": _records(self.per_domain),
            "per_method": _records(self.per_method),
            "overall": _records(self.overall),
        }

    def table(self) -> pd.DataFrame:
        """The paper's Table 2 layout: one row per generator, (method, domain|avg) columns, plus overall."""
        return pgr_table(self.per_domain, self.per_method, self.overall)


def compute_pgr(
    scores: pd.DataFrame,
    base: Mapping[str, float],
    reference: Mapping[str, float],
    combine: Combine = "mean_of_pgr",
    partial: bool = False,
    domains: Mapping[str, Sequence[str]] = DOMAIN_BENCHMARKS,
    min_gap: float = 0.0,
) -> PGRResult:
    """PGR at every level from the students' benchmark scores.

    scores: one row per trained student and benchmark, columns generator, method, benchmark, score
        (any consistent scale, e.g. percent). A `domain` column is optional and checked if present.
    base, reference: benchmark -> score of the base model and of the reference model.
    combine: "mean_of_pgr" (default: PGR per benchmark, then their mean) or "pgr_of_mean" (PGR of
        the domain's mean student/base/reference scores; the paper does not say which it used).
    partial: average whatever finite values exist instead of returning NaN for an incomplete set.
    min_gap: PGR is NaN where the reference beats the base by less than this (score points; 0: any gap).
    """
    if combine not in ("mean_of_pgr", "pgr_of_mean"):
        raise ValueError(f"combine={combine!r} is not known; use 'mean_of_pgr' or 'pgr_of_mean'")
    _require_columns(scores, ("generator", "method", "benchmark", "score"), "scores")
    if scores.empty:
        raise ValueError("scores: the table has no rows; evaluate at least one student first")
    domain_of = {b: d for d, benches in domains.items() for b in benches}
    unknown = sorted(set(scores["benchmark"]) - set(domain_of))
    if unknown:
        raise ValueError(
            f"scores: benchmark {unknown[0]!r} belongs to no domain; use one of {', '.join(sorted(domain_of))}"
        )
    df = scores.copy()
    df["domain_of_benchmark"] = df["benchmark"].map(domain_of)
    if "domain" in df.columns:
        bad = df[df["domain"] != df["domain_of_benchmark"]]
        if len(bad):
            row = bad.iloc[0]
            raise ValueError(
                f"scores: row with domain {row['domain']!r} has benchmark {row['benchmark']!r}, which is a "
                f"{row['domain_of_benchmark']!r} benchmark; fix the domain column or drop it"
            )
    df["domain"] = df["domain_of_benchmark"]
    try:
        df["score"] = pd.to_numeric(df["score"]).astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"scores: column 'score' must be numeric (NaN for a missing score): {exc}") from None
    dup = df.duplicated(["generator", "method", "benchmark"])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(
            f"scores: two rows for generator={row['generator']!r} method={row['method']!r} "
            f"benchmark={row['benchmark']!r}; keep one score per student and benchmark"
        )
    for name, table in (("base", base), ("reference", reference)):
        absent = sorted(set(df["benchmark"]) - set(table))
        if absent:
            raise ValueError(f"{name} scores lack benchmark {absent[0]!r}; add {name}[{absent[0]!r}]")

    warnings: list[str] = []
    for bench in sorted(set(df["benchmark"])):
        _, reason = pgr(0.0, base[bench], reference[bench], min_gap)
        if reason:
            warnings.append(f"{bench}: PGR undefined (NaN) for every student: {reason}")

    # Per-benchmark PGR is reported whatever `combine` is: it is what a reader checks first.
    rows = []
    for r in df.itertuples(index=False):
        value, reason = pgr(r.score, base[r.benchmark], reference[r.benchmark], min_gap)
        if reason and reason.startswith("missing"):
            warnings.append(f"{r.generator}/{r.method}/{r.benchmark}: PGR undefined (NaN): {reason}")
        rows.append({
            "generator": r.generator, "method": r.method, "domain": r.domain, "benchmark": r.benchmark,
            "student": float(r.score), "base": float(base[r.benchmark]),
            "reference": float(reference[r.benchmark]), "pgr": value, "reason": reason,
        })
    per_benchmark = pd.DataFrame(
        rows, columns=["generator", "method", "domain", "benchmark", "student", "base", "reference", "pgr", "reason"]
    )

    domain_rows = []
    for (gen, method, domain), group in per_benchmark.groupby(["generator", "method", "domain"], sort=False):
        where = f"{gen}/{method}/{domain}"
        expected = list(domains[domain])
        have = group.set_index("benchmark")
        present = [b for b in expected if b in have.index]
        lacking = [b for b in expected if b not in have.index]
        what = f"{where}: domain PGR" + (f" (no score for {', '.join(lacking)})" if lacking else "")
        if combine == "mean_of_pgr":
            value = _mean([have.at[b, "pgr"] for b in present], partial, what, len(expected), warnings)
        elif lacking and not partial:
            warnings.append(f"{what} is NaN")
            value = math.nan
        else:
            if lacking:
                warnings.append(f"{what} uses {len(present)} of {len(expected)} benchmarks")
            cols = ("student", "base", "reference")
            means = {col: sum(have.at[b, col] for b in present) / len(present) for col in cols}
            value, reason = pgr(**means, min_gap=min_gap)
            if reason:
                warnings.append(f"{where}: domain PGR undefined (NaN): {reason}")
        domain_rows.append({"generator": gen, "method": method, "domain": domain, "pgr": value})
    per_domain = pd.DataFrame(domain_rows, columns=["generator", "method", "domain", "pgr"])

    per_method, overall, more = average_pgr(per_domain, partial=partial)
    return PGRResult(per_benchmark, per_domain, per_method, overall, combine, warnings + more)


def average_pgr(per_domain: pd.DataFrame, partial: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Method averages (mean of domain PGRs) and overall averages (mean of method averages).

    per_domain: columns generator, method, domain, pgr. The expected domains and methods are those
    that occur anywhere in the table, so a generator missing a setting gets NaN (or, with
    partial=True, the mean of what it has) and a warning, instead of a quietly shorter average.
    Returns (per_method, overall, warnings).
    """
    _require_columns(per_domain, ("generator", "method", "domain", "pgr"), "per_domain")
    warnings: list[str] = []
    domains = _ordered(per_domain["domain"], DOMAINS)
    methods = _ordered(per_domain["method"], METHODS)
    if set(domains) != set(DOMAINS):
        warnings.append(f"method averages cover only {', '.join(domains)} (the paper averages {', '.join(DOMAINS)})")
    if set(methods) != set(METHODS):
        warnings.append(f"overall averages cover only {', '.join(methods)} (the paper averages {', '.join(METHODS)})")

    n_nan = int(per_domain["pgr"].isna().sum())
    if n_nan:
        effect = "left out of the averages (partial=True)" if partial else "so the averages over them are NaN"
        warnings.append(f"{n_nan} domain PGR value(s) are NaN, {effect}")

    method_rows = []
    for (gen, method), group in per_domain.groupby(["generator", "method"], sort=False):
        by_domain = dict(zip(group["domain"], group["pgr"]))
        values = [by_domain[d] for d in domains if d in by_domain]
        value = _mean(values, partial, f"{gen}/{method}: method average", len(domains), warnings)
        method_rows.append({"generator": gen, "method": method, "pgr": value})
    per_method = pd.DataFrame(method_rows, columns=["generator", "method", "pgr"])

    overall_rows = []
    for gen, group in per_method.groupby("generator", sort=False):
        value = _mean(list(group["pgr"]), partial, f"{gen}: overall average", len(methods), warnings)
        overall_rows.append({"generator": gen, "pgr": value})
    overall = pd.DataFrame(overall_rows, columns=["generator", "pgr"])
    return per_method, overall, warnings


def pgr_table(per_domain: pd.DataFrame, per_method: pd.DataFrame, overall: pd.DataFrame) -> pd.DataFrame:
    """Wide table like the paper's Table 2 (plus Table 3's overall column), rows in input order."""
    wide = per_domain.pivot_table(index="generator", columns=["method", "domain"], values="pgr", dropna=False,
                                  sort=False)
    avg = per_method.pivot_table(index="generator", columns="method", values="pgr", dropna=False, sort=False)
    for method in avg.columns:
        wide[(method, "avg")] = avg[method]
    methods = _ordered(per_domain["method"], METHODS)
    domains = _ordered(per_domain["domain"], DOMAINS)
    wide = wide[[(m, d) for m in methods for d in [*domains, "avg"] if (m, d) in wide.columns]]
    wide[("overall", "avg")] = overall.set_index("generator")["pgr"]
    generators = list(dict.fromkeys(per_domain["generator"]))
    return wide.loc[generators]


# ---------------------------------------------------------------------------------------------


def _mean(values: list[float], partial: bool, what: str, expected: int, warnings: list[str]) -> float:
    """Mean of `values` when all `expected` are there and finite; else NaN, or with `partial` the
    mean of the finite ones. Missing values are warned about here; NaN values were warned about
    where they arose, so plain NaN propagation adds no line (it would repeat at every level)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if len(finite) == expected:
        return sum(finite) / expected
    missing = expected - len(values)
    if partial and finite:
        warnings.append(f"{what} averages {len(finite)} of {expected} values (the rest missing or NaN)")
        return sum(finite) / len(finite)
    if missing:
        warnings.append(f"{what} is NaN: {missing} of its {expected} values are missing")
    return math.nan


def _ordered(values: pd.Series, canonical: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(values))
    return [v for v in canonical if v in present] + [v for v in present if v not in canonical]


def _require_columns(df: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    for col in columns:
        if col not in df.columns:
            raise ValueError(f"{name}: column {col!r} is missing; expected columns {', '.join(columns)}")


def _records(df: pd.DataFrame) -> list[dict]:
    out = []
    for rec in df.to_dict(orient="records"):
        out.append({k: _plain(v) for k, v in rec.items()})
    return out


def _plain(v):
    """numpy scalars -> Python, NaN -> None (strict JSON has no NaN)."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
