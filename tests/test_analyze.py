"""`agora analyze`: the JSON contract over a features file (CSV = Parquet), a planted relationship it must
find (and a shuffled one it must not), one-line errors, and the features frame built from the results
database. Each check that must pass sits next to a canary that a wrong version would trip."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from agorabench.analysis import features_from_db, format_analysis, load_features, run_analysis
from agorabench.config import DOMAINS, METHODS
from tests.pgr_oracle import DOMAIN_BENCHMARKS
from agorabench.results.collect import collect, write_table
from agorabench.results.db import build_db, connect
from agorabench.testing.results_tree import write_tree
from test_results_db import BASE, REFERENCE, anchors, score_row


def planted_frame(n_generators: int = 12, seed: int = 0) -> pd.DataFrame:
    """pgr = 2 * problem_solving + noise, with two unrelated intrinsic features."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_generators):
        solve = rng.uniform(30, 80)
        for method in METHODS:
            for domain in DOMAINS:
                ps = solve + rng.normal(scale=4.0)
                rows.append({"generator": f"gen{g}", "method": method, "domain": domain, "problem_solving": ps,
                             "difficulty": rng.uniform(1, 5), "perplexity": rng.lognormal(1.0, 0.3),
                             "pgr": 2.0 * ps + rng.normal(scale=2.0)})
    return pd.DataFrame(rows)


def without_source(result: dict) -> str:
    return json.dumps({k: v for k, v in result.items() if k != "source"}, sort_keys=True, allow_nan=False)


def test_csv_and_parquet_give_the_same_json(tmp_path):
    df = planted_frame()
    df.to_csv(tmp_path / "f.csv", index=False)
    df.to_parquet(tmp_path / "f.parquet", index=False)
    from_csv = run_analysis(load_features(tmp_path / "f.csv"), source=str(tmp_path / "f.csv"))
    from_parquet = run_analysis(load_features(tmp_path / "f.parquet"), source=str(tmp_path / "f.parquet"))
    assert without_source(from_csv) == without_source(from_parquet)  # bit for bit, not approximately
    assert from_csv["source"].endswith("f.csv") and from_parquet["source"].endswith("f.parquet")
    # Canary: one changed PGR changes the JSON, so the equality above is not vacuous.
    df.loc[5, "pgr"] += 1e-9
    df.to_csv(tmp_path / "g.csv", index=False)
    assert without_source(run_analysis(load_features(tmp_path / "g.csv"))) != without_source(from_parquet)


def test_json_contract_keys_and_ranges():
    result = run_analysis(planted_frame())
    text = json.dumps(result, allow_nan=False)  # strict JSON: no NaN anywhere
    out = json.loads(text)
    ratios = out["pca"]["explained_variance_ratio"]
    assert isinstance(ratios, list) and len(ratios) == 3 and sum(ratios) == pytest.approx(1.0)
    assert ratios == sorted(ratios, reverse=True)
    assert set(out["pca"]["loadings"]) == {"PC1", "PC2", "PC3"}
    assert set(out["pca"]["loadings"]["PC1"]) == {"difficulty", "perplexity", "problem_solving"}
    for name in ("coarse", "fine", "pca_top5"):
        reg = out["regression"][name]
        assert 0.0 <= reg["r2"] <= 1.0 and 0.0 <= reg["p_value"] <= 1.0, name
    assert out["regression"]["coarse"]["n"] == 12 and out["regression"]["fine"]["n"] == 108
    assert out["pca"]["k"] == 3  # top_k=5 asks for more components than the 3 features give
    text = format_analysis(result)
    assert "R^2" in text and "PC1" in text and "problem_solving" in text
    # Canary: standardize is honoured (raw units give different explained variances).
    raw = run_analysis(planted_frame(), standardize=False)
    assert raw["pca"]["explained_variance_ratio"][0] > ratios[0] + 0.1


def test_planted_relationship_is_found_and_a_shuffled_one_is_not():
    df = planted_frame()
    out = run_analysis(df)
    assert out["regression"]["coarse"]["r2"] > 0.97 and out["regression"]["coarse"]["p_value"] < 1e-6
    assert out["regression"]["fine"]["r2"] > 0.95
    assert out["regression"]["fine"]["coef"]["problem_solving"] == pytest.approx(2.0, abs=0.1)
    # Canary: PGR shuffled over the rows breaks the link, and the R^2 says so.
    shuffled = df.assign(pgr=np.random.default_rng(1).permutation(df["pgr"].to_numpy()))
    bad = run_analysis(shuffled)
    assert bad["regression"]["fine"]["r2"] < 0.1 and bad["regression"]["coarse"]["r2"] < 0.5
    assert bad["regression"]["fine"]["p_value"] > 0.01


def test_bad_tables_give_one_line_errors_naming_the_column(tmp_path):
    df = planted_frame()
    df.drop(columns="problem_solving").to_csv(tmp_path / "bad.csv", index=False)
    cases = [
        (lambda: load_features(tmp_path / "bad.csv"), r"bad\.csv lacks column 'problem_solving'"),
        (lambda: run_analysis(df.drop(columns="pgr"), source="mine.parquet"), r"mine\.parquet: column 'pgr' is missing"),
        (lambda: run_analysis(df.assign(judge="gpt-4o"), source="f.csv"), r"f\.csv: column 'judge' is not numeric"),
        (lambda: run_analysis(df.assign(flag=True), source="f.csv"), r"column 'flag' is not numeric"),
        (lambda: run_analysis(df.assign(pgr=np.nan), source="f.csv"), r"column 'pgr' has no values"),
        (lambda: run_analysis(df.iloc[:0], source="f.csv"), r"f\.csv: the features table has no rows"),
        (lambda: run_analysis(df[df.generator == "gen0"], source="f.csv"),
         r"f\.csv: 1 generator\(s\) .* needs at least 2"),
        (lambda: run_analysis(df.groupby("generator").head(1).head(2), source="f.csv"),
         r"f\.csv: 2 row\(s\) are too few"),
    ]
    for call, pattern in cases:
        with pytest.raises(ValueError, match=pattern) as err:
            call()
        assert "\n" not in str(err.value)
    # Canary: the same table with the text column dropped is fine, so the error above is about that column.
    assert run_analysis(df.assign(judge="gpt-4o").drop(columns="judge"))["n_rows"] == 108
    # A feature with no values at all is left out with a note instead of emptying the table.
    out = run_analysis(df.assign(reward=np.nan))
    assert "reward" not in out["features"] and any("reward" in n for n in out["notes"])


def test_two_generators_leave_out_the_coarse_regression_and_keep_the_rest():
    """The embedded default has 2 generators: the fine regression and the PCA run, the coarse one is None
    with a note, and the text says it is left out."""
    two = planted_frame()[lambda d: d.generator.isin(["gen0", "gen1"])]
    out = run_analysis(two, source="f.csv")
    json.dumps(out, allow_nan=False)
    assert out["n_generators"] == 2 and out["regression"]["coarse"] is None
    assert any("coarse regression left out: it needs 3 generator means, there are 2" in n for n in out["notes"])
    assert out["regression"]["fine"]["n"] == 18 and out["regression"]["fine"]["r2"] > 0.9
    assert out["regression"]["pca_top5"]["n"] == 18 and out["pca"]["k"] == 3 and "PC1" in out["pca"]["loadings"]
    text = format_analysis(out)
    assert "coarse: left out (it needs 3 generator means; there are 2)" in text and "fine   n=18" in text
    # Canary: with 3 generators the coarse regression is back, and the text prints its n instead.
    three = run_analysis(planted_frame()[lambda d: d.generator.isin(["gen0", "gen1", "gen2"])])
    assert three["regression"]["coarse"]["n"] == 3 and not any("left out" in n for n in three["notes"])
    assert "coarse n=3" in format_analysis(three) and "left out" not in format_analysis(three)


def test_too_few_rows_shrink_k_with_a_note():
    rows = planted_frame().groupby("generator").head(1).head(4)  # 4 rows fit at most 2 components
    out = run_analysis(rows, top_k=3)
    assert out["pca"]["k"] == 2 and set(out["regression"]["pca_top5"]["p_values"]) == {"intercept", "PC1", "PC2"}
    assert any("top 2 component(s), not 3: 4 rows fit at most 2" in n for n in out["notes"])
    # Canary: with enough rows k is what was asked, and no note says otherwise.
    full = run_analysis(planted_frame(), top_k=3)
    assert full["pca"]["k"] == 3 and not any("component(s), not" in n for n in full["notes"])


def test_features_from_db_on_the_collected_fixture(tmp_path):
    paths = write_tree(tmp_path)
    collect(paths.params)
    db = build_db(paths.out)
    frame = features_from_db(db)
    assert list(frame.columns) == ["generator", "method", "domain", "pgr", "problem_solving", "difficulty",
                                   "quality", "reward", "perplexity", "instruction_diversity", "response_diversity"]
    assert len(frame) == 18 and frame["pgr"].notna().all() and frame["problem_solving"].notna().all()
    assert frame["reward"].isna().all() and frame["reward"].dtype == float  # the summaries have reward: null
    assert (frame["difficulty"] == 2.5).all() and (frame["instruction_diversity"] == 0.25).all()
    con = connect(db)
    try:
        pgr = {tuple(r[:3]): r[3] for r in con.execute("SELECT generator, method, domain, pgr FROM pgr_domain").fetchall()}
        own = dict(con.execute("SELECT benchmark, score FROM scores WHERE model = 'generators/alpha'").fetchall())
    finally:
        con.close()
    for r in frame.itertuples():
        assert r.pgr == pytest.approx(pgr[(r.generator, r.method, r.domain)])
    alpha = frame[frame.generator == "alpha"].groupby("domain")["problem_solving"].first()
    for domain, benches in DOMAIN_BENCHMARKS.items():
        assert alpha[domain] == pytest.approx(np.mean([own[b] for b in benches]))
    # Canary: problem solving is the domain's, not the generator's overall mean (which would be constant).
    assert alpha.nunique() > 1
    # Two generators (the embedded default's number): no coarse regression, the rest runs; one generator is an
    # error naming the database.
    out = run_analysis(frame, source=str(db))
    assert out["regression"]["coarse"] is None and out["regression"]["fine"]["n"] == 18
    with pytest.raises(ValueError, match=r"agora\.duckdb: 1 generator\(s\)"):
        run_analysis(frame[frame.generator == "alpha"], source=str(db))
    with pytest.raises(ValueError, match="does not exist"):
        features_from_db(tmp_path / "none.duckdb")


def test_features_from_db_end_to_end_finds_what_drives_pgr(tmp_path):
    """Four generators x 9 settings in the database; PGR follows response quality, not problem solving."""
    rng = np.random.default_rng(5)
    scores, intrinsic = anchors(), []
    for g in range(4):
        gen = f"gen{g}"
        scores += [score_row("generator", b, 40 + 8 * g + rng.normal(), gen) for b in BASE]
        for method in METHODS:
            for domain in DOMAINS:
                quality = rng.uniform(1, 5)
                target = 10 * quality + rng.normal(scale=1.0)  # domain PGR, percent
                for b in DOMAIN_BENCHMARKS[domain]:
                    student = BASE[b] + target / 100 * (REFERENCE[b] - BASE[b])
                    scores.append(score_row("student", b, student, gen, method, domain))
                intrinsic.append({"generator": gen, "method": method, "domain": domain, "instances": 10,
                                  "difficulty": rng.uniform(1, 5), "quality": quality, "reward": None,
                                  "perplexity": rng.lognormal(1.0, 0.3), "instruction_diversity": rng.uniform(),
                                  "response_diversity": rng.uniform()})
    out = tmp_path / "results"
    out.mkdir()
    write_table("scores", scores, out / "scores.parquet")
    write_table("intrinsic", intrinsic, out / "intrinsic.parquet")
    result = run_analysis(features_from_db(build_db(out)))
    assert result["n_rows"] == 36 and result["n_generators"] == 4
    assert "reward" not in result["features"] and "quality" in result["features"]
    assert result["regression"]["pca_top5"]["r2"] > 0.9
    # Canary: problem solving does not drive PGR here, and the fine regression does not pretend it does.
    assert result["regression"]["fine"]["r2"] < 0.3
