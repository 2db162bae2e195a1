"""Write tests/data/alpaca_lc_reference.json: upstream's length-controlled numbers on synthetic annotations.

Runs the alpaca-eval package itself (v0.6.6, a test dependency: pip install -e '.[test]'):

    python tests/data/make_alpaca_lc_reference.py [OUT.json]

The committed JSON came from a scratch venv (alpaca-eval 0.6.6, scikit-learn 1.9.1, pandas 2.3.3, numpy
2.2.6, patsy 1.0.1; its "versions" field says so); the project's own venv (pandas 3.1, numpy 2.4) gives the
same numbers, which tests/test_alpaca_lc.py checks by running the package live through upstream_lc() here.
alpaca_eval imports pkg_resources (for version helpers we never call), which setuptools 81+ no longer
ships; import_upstream() puts an empty module under that name for the time of the import when it is missing.

scikit-learn 1.9.1 assigns cross-validation folds in the order our module does (GroupKFold sorts the
equal-sized groups with a stable sort). Older ones (tried: 1.4.2 and 1.6.1 with numpy 1.26, 1.7.2 with
numpy 2.2) use numpy's unstable sort, which permutes them; with 1.6.1 that picked a different C on two of
the nine fits here and moved LC by up to 0.055 points.

Upstream downloads its gamed-baseline annotations and instruction difficulties (df_gamed.csv) from the
Hugging Face hub; here hf_hub_download is replaced by a function that returns a CSV we write from the
synthetic case, in the layout glm_winrate.py reads. Everything else is the package's own code path:
get_length_controlled_winrate for the per-model GLM (three variants), and for the joint instruction
difficulty the package's fit_LogisticRegressionCV on the design the authors' notebook
(notebooks/instruction_difficulty.ipynb) builds with patsy.

The JSON holds every input (lengths, preferences, instruction numbers, gamed rows) so the test needs
neither this script nor the package.
"""

from __future__ import annotations

import json
import sys
import tempfile
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

OUT = Path(__file__).with_name("alpaca_lc_reference.json")


def import_upstream():
    """alpaca_eval.metrics.glm_winrate (ImportError where the package is not installed)."""
    stub = None
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        stub = sys.modules["pkg_resources"] = types.ModuleType("pkg_resources")
    try:
        from alpaca_eval.metrics import glm_winrate
    finally:
        # The stub only for that import: left in sys.modules it is taken for setuptools' module by
        # anything that later checks for it (pytest's syspath_prepend does, and fails).
        if stub is not None and sys.modules.get("pkg_resources") is stub:
            del sys.modules["pkg_resources"]
    return glm_winrate


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def judge_probability(rng, logit):
    """A logprob judge's soft preference: the true probability seen through noise, some hard, some ties."""
    p = sigmoid(logit + rng.normal(0.0, 1.0, size=len(logit)))
    hard = rng.random(len(p)) < 0.15  # items where all the mass sat on one letter
    p[hard] = (rng.random(hard.sum()) < sigmoid(logit[hard])).astype(float)
    p[rng.random(len(p)) < 0.03] = 0.5
    return np.round(p, 6)


def make_case(seed, n, theta, phi, psi, mean_extra, gamed_phi):
    rng = np.random.default_rng(seed)
    difficulty = np.round(rng.normal(0.0, 1.0, size=n), 6)
    difficulty[0] = 0.0  # upstream's first instruction is the reference level
    baseline_len = rng.integers(300, 3000, size=n)
    model_len = np.maximum(1, baseline_len + rng.normal(mean_extra, 700, size=n).astype(int))
    delta = model_len - baseline_len
    logit = theta + phi * np.tanh(delta / delta.std(ddof=1)) + psi * difficulty
    preference = judge_probability(rng, logit)
    preference[rng.choice(n, size=3, replace=False)] = np.nan  # judge errors

    gamed = {"rewrite": [], "index": [], "preference": [], "rewrite_len": [], "baseline_len": []}  # columns
    for rewrite, scale in (("verbose", 1.6), ("concise", 0.45)):
        rewrite_len = np.maximum(20, (baseline_len * scale + rng.normal(0, 150, size=n)).astype(int))
        d = rewrite_len - baseline_len
        g_logit = gamed_phi * np.tanh(d / d.std(ddof=1)) + 0.3 * difficulty
        g_pref = np.clip(np.round(sigmoid(g_logit + rng.normal(0, 0.8, size=n)), 6), 0, 1)
        gamed["rewrite"] += [rewrite] * n
        gamed["index"] += list(range(n))
        gamed["preference"] += g_pref.tolist()
        gamed["rewrite_len"] += rewrite_len.tolist()
        gamed["baseline_len"] += baseline_len.tolist()
    return {
        "index": list(range(n)),
        "difficulty": difficulty.tolist(),
        "preference": [None if np.isnan(x) else float(x) for x in preference],
        "model_len": model_len.tolist(),
        "baseline_len": baseline_len.tolist(),
        "gamed": gamed,
    }


def write_gamed_csv(case, path):
    rows = pd.DataFrame(case["gamed"])
    difficulty = np.array(case["difficulty"])
    parts = []
    for rewrite, g in rows.groupby("rewrite", sort=False):
        d = g["baseline_len"] - g["rewrite_len"]  # upstream's sign: output_1 (baseline) minus output_2
        parts.append(pd.DataFrame({
            "model": f"gpt4_1106_preview_{rewrite}",
            "index": g["index"].to_numpy(),
            "preference": g["preference"].to_numpy(),
            "std_delta_len": (d / d.std()).to_numpy(),
            "instruction_difficulty": difficulty[g["index"].to_numpy()],
            "not_gamed_baseline": False,
        }))
    pd.concat(parts, ignore_index=True).to_csv(path, index=False)


def upstream_lc(case, glm_name):
    """The package's get_length_controlled_winrate on a case, with the C its cross-validation chose and the
    fitted coefficients (lengths flipped to our model-minus-baseline sign)."""
    glm_winrate = import_upstream()
    annotations = pd.DataFrame({
        "preference": [np.nan if p is None else p + 1.0 for p in case["preference"]],  # [1, 2], 2 = model wins
        "output_1": ["b" * n for n in case["baseline_len"]],
        "output_2": ["m" * n for n in case["model_len"]],
        "index": case["index"],
        "generator_1": "gpt4_1106_preview",
        "generator_2": "synthetic_model",
        "annotator": "synthetic_judge",
    })
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "df_gamed.csv"
        write_gamed_csv(case, csv)
        chosen = []  # the C that cross-validation picked, which the metrics do not return
        fit_cv = glm_winrate.fit_LogisticRegressionCV

        def fit_and_record(*args, **kwargs):
            model = fit_cv(*args, **kwargs)
            chosen.append(float(model.C_[0]))
            return model

        # The hub is not reachable: serve our file. Patched only for this call.
        with mock.patch.object(glm_winrate, "hf_hub_download", lambda **kwargs: str(csv)), \
                mock.patch.object(glm_winrate, "fit_LogisticRegressionCV", fit_and_record):
            metrics = glm_winrate.get_length_controlled_winrate(annotations, glm_name=glm_name, save_weights_dir=tmp,
                                                                 is_warn_extreme_changes=False)
        weights = pd.read_csv(Path(tmp) / glm_name / "baseline_gpt4_1106_preview.csv", index_col=0).iloc[0]
    out = {k: float(v) for k, v in metrics.items()}
    out["length_coef"] = -float(weights["np.tanh(std_delta_len)"])  # flipped to model-minus-baseline lengths
    out["difficulty_coef"] = float(weights.get("instruction_difficulty", 0.0))
    out["model_coef"] = float(weights["not_gamed_baseline.astype(float)"])
    out["penalty_C"] = chosen[0]
    return out


def make_joint_case(seed, n_models, n, n_gamed):
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 1.0, size=n)
    baseline_len = rng.integers(300, 3000, size=n)
    rows = {"model": [], "gamed": [], "index": [], "preference": [], "model_len": [], "baseline_len": []}  # columns
    for m in range(n_models):
        gamed = m >= n_models - n_gamed
        name = f"gamed_{m}" if gamed else f"model_{m}"
        theta = 0.0 if gamed else rng.normal(-0.5, 1.0)
        model_len = np.maximum(0, baseline_len + rng.normal(rng.normal(0, 400), 600, size=n).astype(int))
        model_len[rng.random(n) < 0.02] = 0  # empty outputs: left out of the joint fit
        delta = model_len - baseline_len
        logit = theta + rng.uniform(0.3, 1.5) * np.tanh(delta / delta.std(ddof=1)) + difficulty
        pref = judge_probability(rng, logit)
        rows["model"] += [name] * n
        rows["gamed"] += [bool(gamed)] * n
        rows["index"] += list(range(n))
        rows["preference"] += pref.tolist()
        rows["model_len"] += model_len.tolist()
        rows["baseline_len"] += baseline_len.tolist()
    return {"rows": rows}


def upstream_joint_difficulty(case):
    import patsy

    fit_cv = import_upstream().fit_LogisticRegressionCV
    df = pd.DataFrame(case["rows"])
    df = df[df["model_len"] != 0].reset_index(drop=True)  # the notebook's query("len_2 != 0")
    df["delta_len"] = df["baseline_len"] - df["model_len"]
    df["std_only"] = df["delta_len"] / df.groupby("model")["delta_len"].transform("std")
    df["not_gamed_baseline"] = ~df["gamed"]
    models = list(dict.fromkeys(df["model"]))
    formula = ("C(model, levels=models):np.tanh(std_only) + C(model, levels=models) + C(index)"
               " + not_gamed_baseline.astype(float) - 1")
    X = patsy.dmatrix(formula, df, return_type="dataframe", eval_env=patsy.EvalEnvironment([{"models": models, "np": np}]))
    X["preference"] = df["preference"]
    model = fit_cv(X, "preference", is_ytrue_proba=True, n_splits=5)
    coef = pd.Series(model.coef_[0], index=model.feature_names_in_)
    gamma = {0: 0.0}
    for name, value in coef.items():
        if name.startswith("C(index)[T."):
            gamma[int(name.split("[T.")[1].rstrip("]"))] = float(value)
    return [gamma[i] for i in sorted(gamma)], float(model.C_[0])


def main():
    import alpaca_eval
    import sklearn

    glm_winrate = import_upstream()
    cases = {}
    specs = {
        "longer_model": dict(seed=11, n=240, theta=-0.4, phi=1.3, psi=0.8, mean_extra=500, gamed_phi=1.0),
        "shorter_model": dict(seed=12, n=180, theta=0.6, phi=0.9, psi=1.1, mean_extra=-300, gamed_phi=0.7),
        # longer on almost every item: the model's own rows barely separate length from quality
        "always_longer": dict(seed=13, n=200, theta=-1.0, phi=2.0, psi=0.5, mean_extra=2500, gamed_phi=2.0),
    }
    for name, spec in specs.items():
        case = make_case(**spec)
        case["upstream"] = {glm: upstream_lc(case, glm) for glm in glm_winrate.GLM_INFO}
        cases[name] = case
    joint = make_joint_case(seed=21, n_models=6, n=50, n_gamed=2)
    joint["upstream_difficulty"], joint["upstream_C"] = upstream_joint_difficulty(joint)
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    out.write_text(json.dumps({
        "generated_by": "tests/data/make_alpaca_lc_reference.py",
        "versions": {"alpaca_eval": alpaca_eval.__version__, "sklearn": sklearn.__version__,
                     "pandas": pd.__version__, "numpy": np.__version__},
        "cases": cases,
        "joint": joint,
    }, indent=None, separators=(",", ":")) + "\n")
    for name, case in cases.items():
        for glm, m in case["upstream"].items():
            print(name, glm, {k: round(v, 4) for k, v in m.items() if k in ("win_rate", "length_controlled_winrate", "lc_standard_error")})
    print("joint C", joint["upstream_C"], "gamma[:5]", np.round(joint["upstream_difficulty"][:5], 4))


if __name__ == "__main__":
    main()
