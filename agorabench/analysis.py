"""What makes a good data generator: regressions and PCA over (generator, setting) points
(docs/paper.md §3.3), and the quantity-versus-cost view of the scaling runs (docs/paper.md §6.4).

Input of `analyze`: one row per generator and setting (the paper has 6 x 9 = 54) with columns
generator, method, domain, pgr (the domain PGR, percent), problem_solving (the generator's own mean
score on that domain's two benchmarks) and any numeric intrinsic features (instruction difficulty,
response quality, perplexity, diversity, ...).

Choices the paper leaves open, made here:
- Features are z-scored by default (standardize=True, ddof=0). The paper's features live on
  unrelated scales (a 1-5 judge score, a perplexity, a cosine distance), so an unscaled PCA would be
  a PCA of whichever has the largest units. ddof does not matter for anything reported: scaling
  every column by the same factor changes neither the eigenvectors, the explained-variance ratios,
  nor any R^2 or p-value (those are invariant to rescaling a regressor).
- "Loadings" are the unit-length eigenvectors (principal axes); each component's sign is fixed so
  that its largest-magnitude loading is positive, which makes the output deterministic.
- mean |loading| and its share (percent, summing to 100), the paper's Table 4: averaged over all
  components by default, as the paper's section 5.2 defines Table 4's loading strength (a feature's
  loadings in magnitude, averaged over every principal component); loading_average="top_k" averages over the top-k
  components that enter the regression instead. The output names which ("pca.loading_average").
- Several intrinsic judges (intrinsic.judges): each judge's difficulty and quality are features of
  their own, named difficulty:JUDGE and quality:JUDGE (judge_features), so the paper's two judges give
  its 9 features. With one judge they stay difficulty and quality.
- Fewer generators than the paper's 6: the coarse regression needs 3 generator means, so with 2
  (the embedded default) it is None and a note says why; the fine regression and the PCA still run.
  Too few rows for top_k components shrink k (with a note) down to 1; 1 generator is an error.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

REQUIRED_COLUMNS = ("generator", "method", "domain", "pgr", "problem_solving")
ID_COLUMNS = ("generator", "method", "domain")
MIN_COARSE_GENERATORS = 3  # fewer generator means cannot test a slope
LOADING_AVERAGES = ("all", "top_k")  # what a feature's mean |loading| is averaged over


def load_features(path: str | Path) -> pd.DataFrame:
    """Read the per-(generator, setting) table from .csv or .parquet and check its columns."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"features file {path} does not exist; write it first (CSV or Parquet)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # pandas 3.1's parser reads a float written by pandas back bit for bit (tests/test_analyze.py
        # checks it), so a CSV and a Parquet of one table give the same analysis. The names stay text
        # even where they look like numbers.
        df = pd.read_csv(path, dtype={c: str for c in ID_COLUMNS})
    elif suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    else:
        raise ValueError(f"features file {path} has suffix {suffix!r}; use .csv or .parquet")
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise ValueError(f"features file {path} lacks column {col!r}; required: {', '.join(REQUIRED_COLUMNS)}")
    return df


# ---------------------------------------------------------------------------------------------
# Building blocks: OLS and PCA on plain arrays
# ---------------------------------------------------------------------------------------------


def ols(y: np.ndarray, X: np.ndarray, names: Sequence[str]) -> dict:
    """Ordinary least squares of y on X plus an intercept, with the classical (homoskedastic) tests.

    Returns r2, adj_r2, f_stat, p_value (overall F-test: all slopes zero), n, and per term
    ("intercept" and each name) coef, se, t, p (two-sided t-test with n - k - 1 degrees of freedom).
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float).reshape(len(y), -1)
    n, k = X.shape
    if len(names) != k:
        raise ValueError(f"ols: {len(names)} names for {k} regressor columns")
    dof = n - k - 1
    if dof < 1:
        raise ValueError(f"ols: {n} rows are too few for {k} regressor(s) plus intercept; need at least {k + 2}")
    sst = float(((y - y.mean()) ** 2).sum())
    if sst == 0:
        raise ValueError("ols: the response is constant, so R^2 is undefined")
    design = np.column_stack([np.ones(n), X])
    if np.linalg.matrix_rank(design) < k + 1:
        raise ValueError(f"ols: the regressors {', '.join(names)} are collinear (or constant); drop one")
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    sse = float(resid @ resid)
    r2 = 1.0 - sse / sst
    sigma2 = sse / dof
    se = np.sqrt(np.diag(sigma2 * np.linalg.inv(design.T @ design)))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = beta / se
        f_stat = (r2 / k) / ((1.0 - r2) / dof)
    p_coef = 2.0 * stats.t.sf(np.abs(t), dof)
    p_value = float(stats.f.sf(f_stat, k, dof))
    terms = ["intercept", *names]
    return {
        "n": int(n),
        "r2": r2,
        "adj_r2": 1.0 - (1.0 - r2) * (n - 1) / dof,
        "f_stat": float(f_stat),
        "p_value": p_value,
        "coef": dict(zip(terms, beta.tolist())),
        "se": dict(zip(terms, se.tolist())),
        "t": dict(zip(terms, t.tolist())),
        "p_values": dict(zip(terms, p_coef.tolist())),
    }


def pca(X: np.ndarray, standardize: bool = True) -> dict:
    """PCA of the rows of X by SVD of the centred (optionally z-scored, ddof=0) matrix.

    Returns explained_variance_ratio (n_components,), components (n_components, n_features; unit
    rows, sign fixed so each row's largest-|value| entry is positive) and scores (n, n_components).
    Components with numerically zero variance (beyond the rank of the data) are dropped.
    """
    X = np.asarray(X, dtype=float)
    Z = X - X.mean(axis=0)
    if standardize:
        std = Z.std(axis=0)  # ddof=0; see the module docstring for why it does not matter
        if np.any(std == 0):
            raise ValueError("pca: a constant column cannot be standardised; drop it first")
        Z = Z / std
    _, s, vt = np.linalg.svd(Z, full_matrices=False)
    keep = s > s[0] * 1e-10 if len(s) and s[0] > 0 else np.zeros(len(s), dtype=bool)
    s, vt = s[keep], vt[keep]
    # Deterministic signs: the largest-magnitude loading of each component is positive.
    pivot = np.abs(vt).argmax(axis=1)
    signs = np.sign(vt[np.arange(len(vt)), pivot])
    vt = vt * signs[:, None]
    total = float((Z**2).sum())
    return {
        "explained_variance_ratio": (s**2 / total) if total > 0 else s * 0,
        "components": vt,
        "scores": Z @ vt.T,
    }


# ---------------------------------------------------------------------------------------------
# The analysis of docs/paper.md §3.3
# ---------------------------------------------------------------------------------------------


def analyze(
    df: pd.DataFrame, features: Sequence[str] | None = None, standardize: bool = True, top_k: int = 5,
    loading_average: str = "all",
) -> dict:
    """Problem-solving regressions, PCA of the features and the PGR-on-top-k-components regression.

    features: intrinsic feature columns; None = every numeric column except pgr. problem_solving is
        always added (the paper's PCA includes it as the ninth feature).
    Rows with a NaN in pgr, problem_solving or a used feature are dropped; constant features are
    dropped; both are reported in "notes". Returns a JSON-serialisable dict (NaN -> None).
    With 2 generators regression.coarse is None (it needs 3 generator means) and a note says so; the
    fine regression and the PCA still run. Fewer rows than top_k + 2 shrink k, with a note. 1 generator,
    or fewer than 3 rows, is an error.
    loading_average: "all" (the paper's Table 4) or "top_k": the components each feature's mean |loading|
        and share are averaged over.
    """
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise ValueError(f"analyze: column {col!r} is missing; required: {', '.join(REQUIRED_COLUMNS)}")
    if top_k < 1:
        raise ValueError(f"analyze: top_k={top_k} must be at least 1")
    if loading_average not in LOADING_AVERAGES:
        raise ValueError(f"analyze: loading_average={loading_average!r} is not known; use one of "
                         f"{', '.join(LOADING_AVERAGES)}")
    if features is None:
        features = [c for c in df.columns
                    if c not in (*ID_COLUMNS, "pgr") and pd.api.types.is_numeric_dtype(df[c])
                    and not pd.api.types.is_bool_dtype(df[c])]
    # problem_solving always goes in, last, after the intrinsic features.
    features = [*dict.fromkeys(f for f in features if f != "problem_solving"), "problem_solving"]
    for col in features:
        if col not in df.columns:
            raise ValueError(f"analyze: feature column {col!r} is missing; pass features= names present in the table")
        if not pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]):
            raise ValueError(f"analyze: feature column {col!r} is not numeric; convert it or leave it out")
    if not pd.api.types.is_numeric_dtype(df["pgr"]):
        raise ValueError("analyze: column 'pgr' is not numeric; write NaN for a missing PGR")
    notes: list[str] = []

    data = df[[*ID_COLUMNS, "pgr", *features]].copy()
    finite = np.isfinite(data[["pgr", *features]].to_numpy(dtype=float)).all(axis=1)
    n_dropped = int((~finite).sum())
    if n_dropped:
        # Name a few, so that e.g. a generator without problem-solving scores is easy to spot.
        names = ["/".join(map(str, r)) for r in data.loc[~finite, list(ID_COLUMNS)].head(3).itertuples(index=False)]
        more = ", ..." if n_dropped > len(names) else ""
        notes.append(f"dropped {n_dropped} row(s) with NaN/inf in pgr, problem_solving or a feature "
                     f"({', '.join(names)}{more})")
    data = data[finite].reset_index(drop=True)

    constant = [c for c in features if data[c].nunique() <= 1]
    if "problem_solving" in constant:
        raise ValueError("analyze: problem_solving is constant over the rows; the regressions need it to vary")
    for c in constant:
        notes.append(f"dropped constant feature {c!r}")
    features = [c for c in features if c not in constant]

    n = len(data)
    n_generators = int(data["generator"].nunique())
    if n_generators < 2:
        raise ValueError(f"analyze: {n_generators} generator(s) after dropping NaN rows; the analysis compares "
                         f"generators, so it needs at least 2 (3 for the coarse regression)")
    if n < 3:  # a slope and an intercept, plus one degree of freedom for the test
        raise ValueError(f"analyze: {n} row(s) are too few to regress pgr on problem_solving or on a component; "
                         f"need at least 3")

    # Coarse: one point per generator (its mean PGR against its mean problem-solving score). Two means
    # always lie on a line (R^2 = 1, no test), so below 3 generators it is left out, not reported.
    if n_generators < MIN_COARSE_GENERATORS:
        coarse = None
        notes.append(f"coarse regression left out: it needs {MIN_COARSE_GENERATORS} generator means, "
                     f"there are {n_generators}; the fine regression and the PCA use every (generator, setting) row")
    else:
        counts = data["generator"].value_counts()
        if counts.nunique() > 1:
            notes.append(f"generators have {counts.min()} to {counts.max()} settings; coarse means are over unequal sets")
        per_gen = data.groupby("generator", sort=False)[["pgr", "problem_solving"]].mean()
        coarse = ols(per_gen["pgr"].to_numpy(), per_gen["problem_solving"].to_numpy(), ["problem_solving"])
        coarse["points"] = {g: {"pgr": r.pgr, "problem_solving": r.problem_solving} for g, r in per_gen.iterrows()}
    # Fine: one point per generator and setting.
    fine = ols(data["pgr"].to_numpy(), data["problem_solving"].to_numpy(), ["problem_solving"])

    p = pca(data[features].to_numpy(dtype=float), standardize=standardize)
    n_comp = len(p["explained_variance_ratio"])
    k = min(top_k, n_comp)
    # The regression on k components needs n >= k + 2 rows; fewer rows shrink k (with a note) down to 1.
    if n - k - 1 < 1:
        notes.append(f"PGR regressed on the top {n - 2} component(s), not {k}: {n} rows fit at most {n - 2}")
        k = n - 2
    names = [f"PC{i + 1}" for i in range(n_comp)]
    loadings = {names[i]: dict(zip(features, p["components"][i].tolist())) for i in range(n_comp)}
    averaged = n_comp if loading_average == "all" else k
    mean_abs = np.abs(p["components"][:averaged]).mean(axis=0)
    share = mean_abs / mean_abs.sum() * 100.0
    pca_reg = ols(data["pgr"].to_numpy(), p["scores"][:, :k], names[:k])

    out = {
        "n_rows": n,
        "n_dropped": n_dropped,
        "n_generators": n_generators,
        "features": features,
        "standardize": standardize,
        "notes": notes,
        "pca": {
            "k": k,
            "explained_variance_ratio": p["explained_variance_ratio"].tolist(),
            "loadings": loadings,
            "loading_average": loading_average,  # mean_abs_loading and share: over "all" or the "top_k"
            "loading_components": averaged,        # how many components they average over
            "mean_abs_loading": dict(zip(features, mean_abs.tolist())),
            "share": dict(zip(features, share.tolist())),  # percent of the summed mean |loading|
        },
        "regression": {"coarse": coarse, "fine": fine, "pca_top5": pca_reg},
    }
    return _jsonable(out)


# ---------------------------------------------------------------------------------------------
# `agora analyze`: a features table (a file, or built from the results database) -> JSON / text
# ---------------------------------------------------------------------------------------------


def features_from_db(db_path: str | Path = "data/results/agora.duckdb") -> pd.DataFrame:
    """The analysis input from our own results: one row per dataset (generator, method, domain) with its
    domain PGR (view pgr_domain), the generator's problem-solving score in that domain (the mean of its
    own scores on the domain's benchmarks, view problem_solving_domain) and the dataset-level intrinsic
    metrics (table intrinsic). All three are joined in the view intrinsic_summary; its instances and
    cost_usd columns are left out because they are not properties of the data's quality. With two or
    more judges (table intrinsic_judges) each judge's difficulty and quality are columns of their own.

    Rows lacking a PGR or a problem-solving score (a dataset without a trained student, a scaling run
    whose generator name has no own scores) are kept here; run_analysis drops and names them.
    """
    import duckdb

    from agorabench.results.db import connect
    from agorabench.results.schema import INTRINSIC_METRICS

    cols = ", ".join([*ID_COLUMNS, "pgr", "problem_solving", *INTRINSIC_METRICS])
    con = connect(db_path)  # raises a one-line ValueError when the file is missing
    try:
        frame = con.sql(f"SELECT {cols} FROM intrinsic_summary ORDER BY generator, method, domain").df()
        judges = con.sql("SELECT generator, method, domain, judge, position, difficulty, quality "
                         "FROM intrinsic_judges").df()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise ValueError(f"results database {db_path} has no usable intrinsic_summary view or intrinsic_judges "
                         f"table ({first}); rebuild it with `agora results`") from None
    finally:
        con.close()
    # DuckDB gives NULL-only DOUBLE columns as object columns of None: make every metric a float.
    for col in ("pgr", "problem_solving", *INTRINSIC_METRICS):
        frame[col] = pd.to_numeric(frame[col]).astype(float)
    return judge_features(frame, judges)


def judge_feature(metric: str, judge: str) -> str:
    """The feature column of one judge's metric when there are several judges."""
    return f"{metric}:{judge}"


def judge_features(frame: pd.DataFrame, judges: pd.DataFrame) -> pd.DataFrame:
    """With two or more judges (rows of the intrinsic_judges table), the difficulty and quality columns
    become one column per judge and metric (judge_feature), in the order of intrinsic.judges: the
    paper's PCA has each judge's two scores as features. With one judge or none, the frame as it is."""
    names = judges.sort_values("position").drop_duplicates("judge")["judge"].tolist() if len(judges) else []
    if len(names) < 2:
        return frame
    keys = list(ID_COLUMNS)
    out = frame
    for metric in ("difficulty", "quality"):
        for judge in names:
            mine = judges.loc[judges["judge"] == judge, [*keys, metric]]
            out = out.merge(mine.rename(columns={metric: judge_feature(metric, judge)}), on=keys, how="left")
    # Each judge's columns take the place of the one-judge column, so the features keep their order.
    order = []
    for col in frame.columns:
        if col in ("difficulty", "quality"):
            order += [judge_feature(col, j) for j in names]
        else:
            order.append(col)
    out = out[order]
    for col in order:
        if col not in frame.columns:  # DuckDB gives NULL-only columns as objects of None
            out[col] = pd.to_numeric(out[col]).astype(float)
    return out


def run_analysis(features: pd.DataFrame, standardize: bool = True, top_k: int = 5,
                 source: str = "features table", loading_average: str = "all") -> dict:
    """`agora analyze`: check the table, then `analyze` it with every numeric column as a feature.

    features: columns generator, method, domain, pgr, problem_solving and any number of numeric
        feature columns (every other column must be numeric: a stray text column is an error rather
        than silently left out). A feature column with no value at all (e.g. no reward model was run)
        is left out with a note; rows with a missing value are dropped by `analyze`, with a note.
    source: the file or database the table came from; every error message starts with it.
    Returns analyze()'s JSON-safe dict plus "source", with "pca.explained_variance_ratio",
    "pca.loadings", and "regression.{coarse,fine,pca_top5}" each holding "r2" and "p_value"
    (pca_top5 keeps its name for any top_k; the k used is "pca.k"). "regression.coarse" is None
    with fewer than 3 generators; "notes" then says why.
    """
    if len(features) == 0:
        raise ValueError(f"{source}: the features table has no rows; it needs one row per generator and setting")
    for col in REQUIRED_COLUMNS:
        if col not in features.columns:
            raise ValueError(f"{source}: column {col!r} is missing; required: {', '.join(REQUIRED_COLUMNS)} "
                             f"plus numeric feature columns")
    numeric = [c for c in features.columns if c not in ID_COLUMNS]
    for col in numeric:
        dtype = features[col].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            raise ValueError(f"{source}: column {col!r} is not numeric (dtype {dtype}); convert it to numbers "
                             f"(NaN for a missing value) or drop the column")
    notes: list[str] = []
    for col in ("pgr", "problem_solving"):
        if features[col].isna().all():
            raise ValueError(f"{source}: column {col!r} has no values; the analysis needs it in every row")
    empty = [c for c in numeric if c not in ("pgr", "problem_solving") and features[c].isna().all()]
    if empty:
        notes.append(f"left out feature(s) with no values: {', '.join(empty)}")
    try:
        result = analyze(features.drop(columns=empty), features=None, standardize=standardize, top_k=top_k,
                         loading_average=loading_average)
    except ValueError as exc:
        # analyze/ols/pca prefix their own name; the user needs the file's instead.
        message = str(exc)
        for prefix in ("analyze: ", "ols: ", "pca: "):
            message = message.removeprefix(prefix)
        raise ValueError(f"{source}: {message}") from None
    result["notes"] = notes + result["notes"]
    return {"source": str(source), **result}


def format_analysis(result: dict) -> str:
    """run_analysis()'s dict as plain text for the terminal."""

    def num(v, spec: str = ".3f") -> str:
        return "n/a" if v is None else format(v, spec)

    def p(v) -> str:
        return "n/a" if v is None else (f"{v:.2e}" if v < 1e-3 else f"{v:.3f}")

    reg, pc = result["regression"], result["pca"]
    feats = result["features"]
    scale = "z-scored" if result["standardize"] else "raw units"
    lines = [f"Analysis of {result.get('source', 'features')}: {result['n_rows']} rows, "
             f"{result['n_generators']} generators, {len(feats)} features ({scale})"]
    lines += [f"  note: {n}" for n in result["notes"]]
    lines += ["", "PGR against the generator's problem-solving score"]
    for name, what in (("coarse", "generator means"), ("fine", "generator x setting")):
        r = reg[name]
        if r is None:
            lines.append(f"  {name}: left out (it needs {MIN_COARSE_GENERATORS} generator means; "
                         f"there are {result['n_generators']})")
            continue
        lines.append(f"  {name:<7}n={r['n']:<4}{'(' + what + ')':<22}R^2 = {num(r['r2'])}  p = {p(r['p_value'])}  "
                     f"slope = {num(r['coef']['problem_solving'], '.3g')}")

    names = list(pc["loadings"])
    lines += ["", "PCA: explained variance (%)",
              "  " + "  ".join(f"{n} {v * 100:.1f}" for n, v in zip(names, pc["explained_variance_ratio"]))]
    shown = names[: pc["k"]]
    width = max(len("feature"), *(len(f) for f in feats))
    lines += ["", f"Loadings of the top {pc['k']} components; mean |loading| and its share {loading_basis(pc)}",
              "  " + f"{'feature':<{width}}" + "".join(f"{n:>8}" for n in shown) + f"{'mean|l|':>9}{'share%':>8}"]
    for f in feats:
        cells = "".join(f"{num(pc['loadings'][n][f], '.3f'):>8}" for n in shown)
        lines.append("  " + f"{f:<{width}}" + cells + f"{num(pc['mean_abs_loading'][f]):>9}{num(pc['share'][f], '.1f'):>8}")

    top = reg["pca_top5"]
    lines += ["", f"PGR on the top {pc['k']} component scores: n={top['n']}  R^2 = {num(top['r2'])}  "
                  f"adj. R^2 = {num(top['adj_r2'])}  F = {num(top['f_stat'], '.2f')}  p = {p(top['p_value'])}"]
    lines += [f"  {n:<5} coef = {num(top['coef'][n], '.3g'):>9}  p = {p(top['p_values'][n])}" for n in shown]
    lines += format_quantity_quality(result.get("quantity_quality"))
    return "\n".join(lines)


def loading_basis(pca: dict) -> str:
    """What an analysis' mean |loading| is averaged over, in words (the text output and the report)."""
    n = pca.get("loading_components", pca["k"])
    if pca.get("loading_average", "top_k") == "all":
        return f"over all {n} components (the paper's Table 4; analysis.loading_average)"
    return f"over the top {n} components (analysis.loading_average: top_k; the paper's Table 4 averages over all)"


def format_quantity_quality(qq: dict | None) -> list[str]:
    """quantity_quality_from_db()'s dict as text lines (none when there is no scaling study)."""
    if not qq:
        return []
    lines = ["", "Quantity against quality (scaling prefixes NAME@SIZE; target: the best full-size dataset's PGR)"]
    for setting, r in qq.items():
        if "skipped" in r:
            lines.append(f"  {setting}: {r['skipped']}")
            continue
        best = r["cheapest_reaching_target"]
        lines.append(f"  {setting}: target PGR {r['target_pgr']:.1f}; cheapest reaching it: "
                     + (f"{best['generator']} with {best['size']:.0f} instances, ${best['cost']:.4f}" if best else "none"))
        for gen, g in r["generators"].items():
            pts = ", ".join(f"{pt['size']:.0f} -> {pt['pgr']:.1f} (${pt['cost']:.4f})" for pt in g["points"])
            lines.append(f"    {gen}: {pts}")
    return lines


# ---------------------------------------------------------------------------------------------
# Quantity versus quality (docs/paper.md §6.4): more data from a cheap generator vs less from a dear one
# ---------------------------------------------------------------------------------------------


def nested_subsets(n_total: int, sizes: Sequence[int], seed: int | None = 0) -> dict[int, list[int]]:
    """Index sets of the given sizes, each contained in every larger one, deterministic in `seed`.

    They are prefixes of one permutation of range(n_total) (seed=None: of range(n_total) itself,
    which is what the paper did: its 10K and 25K sets are prefixes of the 50K set). Indices are
    returned sorted so that a subset keeps the order of the generated file.
    """
    if n_total < 1:
        raise ValueError(f"nested_subsets: n_total={n_total} must be positive")
    for s in sizes:
        if int(s) != s or not 1 <= s <= n_total:
            raise ValueError(f"nested_subsets: size {s} must be an integer in 1..{n_total}")
    order = np.arange(n_total) if seed is None else np.random.default_rng(seed).permutation(n_total)
    return {int(s): sorted(order[: int(s)].tolist()) for s in sorted(set(sizes))}


def cost_quality(rows: pd.DataFrame | Sequence[dict], target_pgr: float) -> dict:
    """Per generator, PGR against data size and against generation cost, and where a target is met.

    rows: columns generator, size (instances), cost (e.g. USD to generate them), pgr (percent); one
    row per generator and size. Returns {"generators": {g: {"points", "pgr_vs_size", "pgr_vs_cost",
    "cheapest_reaching_target"}}, "cheapest_reaching_target": the cheapest row over all generators,
    "target_pgr"}; a cheapest entry is None where nothing reaches the target.
    """
    df = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.copy()
    for col in ("generator", "size", "cost", "pgr"):
        if col not in df.columns:
            raise ValueError(f"cost_quality: column {col!r} is missing; required: generator, size, cost, pgr")
    for col in ("size", "cost", "pgr"):
        if not pd.api.types.is_numeric_dtype(df[col]):
            raise ValueError(f"cost_quality: column {col!r} must be numeric")
    if (df["cost"] < 0).any() or (df["size"] <= 0).any():
        raise ValueError("cost_quality: cost must be >= 0 and size > 0 in every row")
    dup = df.duplicated(["generator", "size"])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(f"cost_quality: two rows for generator={row['generator']!r} size={row['size']}; keep one")

    def cheapest(frame: pd.DataFrame) -> dict | None:
        ok = frame[frame["pgr"] >= target_pgr]
        if ok.empty:
            return None
        # Ties in cost go to the higher PGR, then the smaller set.
        best = ok.sort_values(["cost", "pgr", "size"], ascending=[True, False, True]).iloc[0]
        return {"generator": best["generator"], "size": best["size"], "cost": best["cost"], "pgr": best["pgr"]}

    out: dict = {"target_pgr": target_pgr, "generators": {}}
    for gen, group in df.groupby("generator", sort=False):
        group = group.sort_values("size")
        out["generators"][gen] = {
            "points": group[["size", "cost", "pgr"]].to_dict(orient="records"),
            "pgr_vs_size": group[["size", "pgr"]].to_numpy().tolist(),
            "pgr_vs_cost": group.sort_values("cost")[["cost", "pgr"]].to_numpy().tolist(),
            "cheapest_reaching_target": cheapest(group),
        }
    out["cheapest_reaching_target"] = cheapest(df)
    return _jsonable(out)


def quantity_quality_from_db(db_path: str | Path) -> dict | None:
    """The scaling study on our own results (agorabench/generation/scaling.py): per setting with scaling prefixes,
    `cost_quality` over every dataset of that setting, with the best PGR of a main (full-size) dataset
    as the target: can more data from a cheaper generator match the best generator's data? None when
    the results hold no scaling prefix. Datasets without a cost (no prices) count as free; without a
    PGR, they are left out.
    """
    from agorabench.results.db import connect

    con = connect(db_path)
    try:
        frame = con.sql("SELECT * FROM quantity_quality").df()
    finally:
        con.close()
    if frame.empty or frame["prefix_size"].isna().all():
        return None
    out = {}
    for (method, domain), group in frame.groupby(["method", "domain"], sort=True):
        if group["prefix_size"].isna().all():
            continue
        rows = group[group["pgr"].notna()].copy()
        rows["size"] = rows["instances"].astype(float)
        rows["cost"] = pd.to_numeric(rows["cost_usd"]).fillna(0.0).astype(float)
        rows["pgr"] = rows["pgr"].astype(float)
        # A main dataset as large as one of its own prefixes: keep the prefix (the scaling series).
        rows = rows.sort_values("prefix_size", na_position="first").drop_duplicates(["generator", "size"], keep="last")
        if rows.empty:
            out[f"{method}/{domain}"] = {"skipped": "no scored student in this setting yet"}
            continue
        main = rows.loc[rows["prefix_size"].isna(), "pgr"]
        target = float(main.max() if not main.empty else rows["pgr"].max())
        out[f"{method}/{domain}"] = cost_quality(rows[["generator", "size", "cost", "pgr"]], target)
    return out or None


def _jsonable(obj):
    """numpy scalars/arrays -> Python; NaN/inf -> None (strict JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (str, int)) else k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
