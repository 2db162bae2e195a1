"""The length-controlled AlpacaEval 2.0 win rate, as the alpaca-eval package (v0.6.6) computes it.

Source of the facts: Dubois, Galambosi, Liang and Hashimoto, "Length-Controlled AlpacaEval: A Simple Way to
Debias Automatic Evaluators" (arXiv:2404.04475, 2024), and the package's metrics/glm_winrate.py, whose
behaviour this module reproduces with its own code (numpy and scipy, no sklearn or patsy).

The model. For one model m against the fixed baseline b, the judge's preference on instruction i (the
probability that m's output is preferred, soft labels allowed) is fitted by a logistic GLM without intercept

    logit P(m beats b on i) = theta + phi * tanh(d_i / sd(d)) + psi * gamma_i

    d_i      = len(output of m) - len(output of b), in characters; sd is the sample std over m's items
               (not centred: a model that is longer everywhere keeps positive features).
    gamma_i  = the instruction's difficulty, a fixed number per instruction (see below).
    theta    = the model's quality with the length difference removed.

The length-controlled win rate asks what the judge would prefer had both outputs the same length: the
fitted GLM is evaluated with the length term at zero and averaged over m's instructions,

    LC = 100 * mean_i sigmoid(theta + psi * gamma_i).

Upstream's lc_standard_error is 100 * the standard error of the mean of those per-instruction predictions
(sample std / sqrt(n)). It measures how much the predictions vary across instructions, not the sampling
error of LC; without a difficulty term every prediction is the same and it is 0. We report it as upstream
does, under the same name.

Instruction difficulty. gamma is estimated ONCE, jointly on many models' annotations by the same judge:
a GLM with a bias and a length slope per model plus one coefficient per instruction (the first instruction
fixed at 0); gamma_i is instruction i's coefficient. It is then held fixed while each model's own GLM is
fitted (theta, phi and psi are per model). Upstream ships gamma for the 805 instructions (fitted on the
leaderboard's models, early 2024); instruction_difficulty() fits it the same way on whatever models we
evaluated. Fitting gamma on one model's annotations alone would make it absorb that model's preferences.

Regularisation against gaming the baseline. The fit also sees annotations of the baseline's own outputs
rewritten to be verbose and rewritten to be concise (the "gamed" baselines), each judged against the
original. Those rows have no theta term (a rewrite of the baseline is by definition as good as the
baseline), so they can only be explained by the length and difficulty terms: they anchor phi and psi.
Each gamed row has sample weight lambda / 2 with lambda = 0.2 (two rewrites share lambda), a model row 1.

Estimation. Every fit (per model and joint) is an L1-penalised logistic regression on soft labels, no
intercept: minimise sum_i w_i * logloss(p_i, sigmoid(x_i . beta)) + |beta|_1 / C (upstream: sklearn's
liblinear; here our own proximal Newton method, _fit_l1). C is picked from 10 values log-spaced between
1e-4 and 1e4 by 5-fold cross-validation on the weighted log loss (mean over the held-out rows of
w_i * logloss), the first best C wins, and the model is refitted on all rows with it. Folds: row r of n
(gamed rows first, then the model's judged rows) is held out in fold (n - 1 - r) % 5, the assignment
scikit-learn's GroupKFold makes when every group is one row (as of sklearn 1.9.1; older versions permute
equal-sized groups by an unstable sort, which can pick another C and move LC by a few hundredths of a
point). Where the held-out loss is flat across the largest Cs (differences of ~1e-6), solver precision
decides which C wins (liblinear stops at tol 1e-4, we solve to convergence): on the reference cases in
tests/data, 7 of 9 fits pick upstream's C and LC agrees to 0.0074 points or better.

Upstream names three variants; which one applies follows from what the caller has:
    length_controlled_v1       difficulty and gamed rows  (what the AlpacaEval 2.0 leaderboard reports)
    length_controlled_noreg    difficulty, no gamed rows
    length_controlled_minimal  neither: logit = theta + phi * tanh(...), LC = sigmoid(theta)
Upstream's gamed annotations and difficulties live on the Hugging Face hub (tatsu-lab/alpaca_eval,
df_gamed.csv); read_upstream_gamed() reads that file where a run can download it.

A model row whose preference is NaN (judge error) counts for sd(d) and the LC average but not for the
fit, as in upstream. Departures, all at edges upstream does not reach: when every length difference is
equal (sd = 0) the length feature is 0 instead of a division by zero; with fewer than 5 judged rows (upstream
raises) each fold holds out one row, and a single row is fitted at the weakest penalty without validation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

__all__ = [
    "CS",
    "N_FOLDS",
    "REG_LAMBDA",
    "GamedBaseline",
    "gamed_baseline",
    "instruction_difficulty",
    "length_controlled_win_rate",
    "read_upstream_gamed",
]

CS = np.logspace(-4, 4, 10)  # inverse L1 strengths searched (sklearn's default grid for Cs=10)
N_FOLDS = 5
REG_LAMBDA = 0.2  # weight of the gamed rows per instruction, relative to the model's row (lambda / 2 per rewrite)
_EPS = 1e-15  # probabilities are clipped to [eps, 1 - eps] in the cross-validated log loss


# ---------------------------------------------------------------------------------------------
# L1-penalised logistic regression on soft labels, with the cross-validated choice of C
# ---------------------------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _objective(X, p: np.ndarray, w: np.ndarray, lam: float, beta: np.ndarray) -> float:
    z = X @ beta
    return float(w @ (np.logaddexp(0.0, z) - p * z)) + lam * float(np.abs(beta).sum())


def _fit_l1(X, p: np.ndarray, w: np.ndarray, C: float, start: np.ndarray | None = None, max_iter: int = 200) -> np.ndarray:
    """beta minimising sum_i w_i [log(1 + e^z_i) - p_i z_i] + |beta|_1 / C, with z = X beta.

    Proximal Newton (the method liblinear uses for this problem): around the current beta the loss is
    replaced by its second-order expansion, that L1-penalised quadratic is minimised exactly
    (_lasso_quadratic), and the step is backtracked until the true objective falls enough. It stops when the smallest
    subgradient is ~0, i.e. at the optimum (to 1e-8 relative). That matters: the cross-validated losses of
    the largest Cs differ by ~1e-6, so a solver that stops early picks C by its own error (L-BFGS-B on a
    u - v split did, and missed the optimum by up to 0.02 in the objective). start (the solution at the
    previous C) only saves iterations: the problem is convex, the optimum the same.
    """
    lam = 1.0 / C
    beta = np.zeros(X.shape[1]) if start is None else start.copy()
    f = _objective(X, p, w, lam, beta)
    tol = 1e-8 * max(1.0, float(w.sum()))  # on the gradient, a sum over rows; ~float precision of the loss
    for _ in range(max_iter):
        s = _sigmoid(X @ beta)
        g = np.asarray(X.T @ (w * (s - p))).ravel()
        if np.max(np.abs(_smallest_subgradient(g, beta, lam))) <= tol:
            break
        h = w * s * (1.0 - s)
        H = X.T @ (X.multiply(h[:, None]) if scipy.sparse.issparse(X) else X * h[:, None])
        H = H.toarray() if scipy.sparse.issparse(H) else np.asarray(H)
        # A tiny ridge on the model of the loss (not on the objective) makes the subproblem strictly convex
        # where columns are collinear (the joint fit's not_gamed column is the sum of the models' columns);
        # along such a direction the loss is flat and the penalty alone then decides, as it should.
        H = H + 1e-9 * max(float(np.diag(H).max()), 1e-12) * np.eye(len(H))
        step = _lasso_quadratic(g, H, beta, lam, tol)
        decrease = float(g @ step) + lam * float(np.abs(beta + step).sum() - np.abs(beta).sum())
        if decrease >= 0:
            break  # the model of the objective sees no descent left
        t = 1.0
        while t > 1e-12:
            f_new = _objective(X, p, w, lam, beta + t * step)
            if f_new <= f + 1e-4 * t * decrease:
                break
            t *= 0.5
        else:
            break  # no descent left at float precision
        beta, f = beta + t * step, f_new
    return beta


def _smallest_subgradient(g: np.ndarray, beta: np.ndarray, lam: float) -> np.ndarray:
    # Where beta_j = 0 the penalty's subgradient spans [-lam, lam] and absorbs that much of the gradient.
    return np.where(beta != 0, g + lam * np.sign(beta), np.sign(g) * np.maximum(np.abs(g) - lam, 0.0))


def _lasso_quadratic(g: np.ndarray, H: np.ndarray, beta: np.ndarray, lam: float, tol: float) -> np.ndarray:
    """step minimising g.step + step' H step / 2 + lam |beta + step|_1 (H positive definite).

    Feature-sign search (Lee et al. 2007) in x = beta + step, minimising q(x) = x'Hx/2 + c.x + lam |x|_1
    with c = g - H beta: guess the sign of every coefficient (a zero that the gradient pushes off zero
    gets the sign it is pushed to), solve the quadratic on those signs exactly, and move towards that
    solution only as far as the point on the way with the lowest q (a coefficient whose sign would change
    stops at zero). Exact in finitely many steps, where coordinate descent crawls on the nearly collinear
    columns this GLM has (a model longer on every item makes tanh(d / sd) almost constant).
    """
    c = g - H @ beta
    x = beta.copy()

    def q(v: np.ndarray) -> float:
        return float(0.5 * v @ H @ v + c @ v + lam * np.abs(v).sum())

    current = q(x)
    for _ in range(10 * len(x) + 100):
        grad = H @ x + c
        nonzero = x != 0
        violation = np.where(nonzero, -np.inf, np.abs(grad) - lam)  # > 0: a zero the gradient pushes off
        pushed = violation > tol
        if not pushed.any() and np.all(np.abs(grad[nonzero] + lam * np.sign(x[nonzero])) <= tol):
            break  # optimal: every nonzero balanced, every zero held by the penalty
        # Push every violating zero at once. If that does not descend, first settle the nonzeros on their
        # signs, then push only the worst zero: from a point optimal on its signs that always descends.
        tries = [pushed, np.zeros(len(x), dtype=bool), np.arange(len(x)) == np.argmax(violation)]
        moved = False
        for push in tries:
            sign = np.sign(x)
            sign[push] = -np.sign(grad[push])
            moved_to = _best_point_towards(x, sign, H, c, lam, q, current)
            if moved_to is not None:
                x, current = moved_to
                moved = True
                break
        if not moved:
            break  # nothing on the way improves: as good as floats allow
    return x - beta


def _best_point_towards(x, sign, H, c, lam, q, current):
    """(x', q(x')) on the segment from x to the minimiser of the quadratic on the signs given, at the
    lowest q among its end and the points where a coefficient reaches zero; None if none is below current."""
    A = np.flatnonzero(sign)
    target = np.linalg.solve(H[np.ix_(A, A)], -(c[A] + lam * sign[A]))
    start = x[A]
    crossing = np.flatnonzero((start != 0) & (np.sign(target) != sign[A]))
    best = None
    for t, i in [(1.0, None)] + [(start[i] / (start[i] - target[i]), i) for i in crossing]:
        candidate = x.copy()
        candidate[A] = start + t * (target - start)
        if i is not None:
            candidate[A[i]] = 0.0  # where this coefficient's sign would change
        candidate[A[candidate[A] * sign[A] < 0]] = 0.0  # never past zero: stay on the guessed signs
        value = q(candidate)
        if value < current:
            best, current = (candidate, value), value
    return best


def _weighted_logloss(p: np.ndarray, q: np.ndarray, w: np.ndarray) -> float:
    q = np.clip(q, _EPS, 1.0 - _EPS)
    return float(-np.mean(w * (p * np.log(q) + (1.0 - p) * np.log(1.0 - q))))


def _fit_cv(X, p: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """(beta, C): C chosen from CS by N_FOLDS-fold cross-validated log loss, then refitted on all rows."""
    n = len(p)
    # Upstream cannot split fewer than 5 rows (sklearn raises); we hold out one row per fold down to 2 rows
    # and fit a single row at the weakest penalty.
    n_folds = min(N_FOLDS, n)
    if n_folds < 2:
        return _fit_l1(X, p, w, float(CS[-1])), float(CS[-1])
    fold = (n - 1 - np.arange(n)) % n_folds
    total = np.zeros(len(CS))  # sum over folds of -logloss, as sklearn's LogisticRegressionCV ranks C
    for k in range(n_folds):
        train, test = fold != k, fold == k
        X_train, X_test = X[np.flatnonzero(train)], X[np.flatnonzero(test)]
        beta = None
        for j, C in enumerate(CS):
            beta = _fit_l1(X_train, p[train], w[train], C, start=beta)
            total[j] -= _weighted_logloss(p[test], _sigmoid(X_test @ beta), w[test])
    C = float(CS[int(np.argmax(total))])  # argmax: the first (smallest) C among equals
    return _fit_l1(X, p, w, C), C


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _as_1d(name: str, values, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"length control: {name} must be a 1-D sequence, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(f"length control: {name} has {len(arr)} entries but preference has {n}; pass one per item")
    return arr


def _check_preference(name: str, p: np.ndarray) -> None:
    judged = p[~np.isnan(p)]
    if np.any((judged < 0) | (judged > 1)):
        raise ValueError(f"length control: {name} must be win probabilities in [0, 1] (NaN for a judge error)")


def _length_feature(model_len: np.ndarray, baseline_len: np.ndarray) -> np.ndarray:
    delta = model_len - baseline_len
    sd = float(np.std(delta, ddof=1)) if len(delta) > 1 else 0.0
    return np.tanh(delta / sd) if sd > 0 else np.zeros_like(delta)


def _difficulty_of(instruction: Sequence[str], difficulty: Mapping[str, float]) -> np.ndarray:
    missing = [i for i in instruction if i not in difficulty]
    if missing:
        raise ValueError(
            f"length control: no difficulty for instruction {missing[0]!r} ({len(missing)} missing);"
            " fit it with instruction_difficulty() on annotations that cover every instruction"
        )
    return np.array([difficulty[i] for i in instruction], dtype=float)


@dataclass(frozen=True)
class GamedBaseline:
    """Judged rewrites of the baseline (verbose, concise) against the baseline: the rows that regularise.

    preference      P(rewrite preferred over the baseline), in [0, 1].
    length_feature  tanh((len(rewrite) - len(baseline)) / sd), sd over that rewrite's rows, as for a model.
    difficulty      gamma of each row's instruction.
    """

    preference: np.ndarray
    length_feature: np.ndarray
    difficulty: np.ndarray


def gamed_baseline(
    rewrite: Sequence[str],
    preference: Sequence[float],
    rewrite_len: Sequence[float],
    baseline_len: Sequence[float],
    instruction: Sequence[str],
    difficulty: Mapping[str, float],
) -> GamedBaseline:
    """GamedBaseline from raw annotations; rewrite names the rewrite of each row ("verbose", "concise"), so
    that each rewrite's length differences are scaled by their own sd, as a model's are."""
    p = _as_1d("gamed preference", preference)
    n = len(p)
    _check_preference("gamed preference", p)
    if np.isnan(p).any():
        raise ValueError("length control: gamed preference has NaN; drop the rewrites the judge failed on")
    rewrite_len = _as_1d("gamed rewrite_len", rewrite_len, n)
    baseline_len = _as_1d("gamed baseline_len", baseline_len, n)
    rewrite = np.asarray(rewrite, dtype=object)
    if len(rewrite) != n or len(instruction) != n:
        raise ValueError(f"length control: gamed rewrite and instruction need {n} entries each, one per row")
    feature = np.zeros(n)
    for name in dict.fromkeys(rewrite):
        rows = rewrite == name
        feature[rows] = _length_feature(rewrite_len[rows], baseline_len[rows])
    return GamedBaseline(p, feature, _difficulty_of(list(instruction), difficulty))


def read_upstream_gamed(path: str | Path, instruction_id: str = "alpacaeval/{:04d}") -> tuple[GamedBaseline, dict[str, float]]:
    """(gamed rows, difficulty by instruction id) from upstream's df_gamed.csv (hub: tatsu-lab/alpaca_eval).

    Upstream's columns, as glm_winrate.py reads them: index (instruction number), preference (in [0, 1],
    P(rewrite wins)), std_delta_len (len(baseline) - len(rewrite), already divided by its sd; we flip its
    sign to our model-minus-baseline convention), instruction_difficulty. instruction_id turns the number
    into our item id. Written from how upstream uses the file; not yet run against the real one (no network).
    """
    import pandas as pd

    df = pd.read_csv(path)
    needed = ["index", "preference", "std_delta_len", "instruction_difficulty"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected upstream's df_gamed.csv with {needed}")
    gamed = GamedBaseline(
        preference=df["preference"].to_numpy(dtype=float),
        length_feature=np.tanh(-df["std_delta_len"].to_numpy(dtype=float)),
        difficulty=df["instruction_difficulty"].to_numpy(dtype=float),
    )
    first = df.drop_duplicates("index")
    difficulty = {instruction_id.format(int(i)): float(g) for i, g in zip(first["index"], first["instruction_difficulty"])}
    return gamed, difficulty


# ---------------------------------------------------------------------------------------------
# The per-model length-controlled win rate
# ---------------------------------------------------------------------------------------------


def length_controlled_win_rate(
    preference: Sequence[float],
    model_len: Sequence[float],
    baseline_len: Sequence[float],
    instruction: Sequence[str] | None = None,
    difficulty: Mapping[str, float] | None = None,
    gamed: GamedBaseline | None = None,
    reg_lambda: float = REG_LAMBDA,
    C: float | None = None,
) -> dict[str, float | str]:
    """Win rates of one model against the baseline (percent), upstream's get_length_controlled_winrate.

    One entry per item of the model, in any order: preference = P(model's output preferred) in [0, 1]
    (0.5 a tie, NaN a judge error: kept for sd(d) and the LC average, left out of the fit and the raw win
    rate), model_len and baseline_len = the two outputs' lengths in characters (whole outputs, not what
    the judge was shown), instruction = the item's id (needed with difficulty). difficulty (gamma by
    instruction id) and gamed select the variant; see the module docstring. reg_lambda = 0 with gamed
    given is the noreg variant. C: the L1 penalty, fixed, instead of upstream's cross-validated choice
    (the bootstrap replicates of task.bootstrap_scores reuse the point fit's C); None, the default: chosen
    by cross-validation as upstream does.

    Returns lc_win_rate, lc_standard_error, win_rate, standard_error, discrete_win_rate (a win above 0.5,
    a tie at exactly 0.5), n_wins, n_wins_base, n_draws, n_total (judged), n_items, the coefficients
    (length_coef phi, difficulty_coef psi, model_coef theta), penalty_C and lc_glm (the variant's name).
    """
    p = _as_1d("preference", preference)
    n_items = len(p)
    _check_preference("preference", p)
    model_len = _as_1d("model_len", model_len, n_items)
    baseline_len = _as_1d("baseline_len", baseline_len, n_items)
    judged = ~np.isnan(p)
    if not judged.any():
        raise ValueError("length control: every preference is NaN (judge errors); nothing to fit")

    length = _length_feature(model_len, baseline_len)
    columns = [length]
    if difficulty is not None:
        if instruction is None or len(instruction) != n_items:
            raise ValueError("length control: with difficulty, pass instruction: one id per item, aligned with preference")
        gamma = _difficulty_of(list(instruction), difficulty)
        columns.append(gamma)
    else:
        gamma = np.zeros(n_items)
    X = np.column_stack(columns + [np.ones(n_items)])  # [length, (difficulty), model]
    y, w = p[judged], np.ones(int(judged.sum()))
    X_fit = X[judged]

    use_gamed = gamed is not None and reg_lambda > 0
    if use_gamed:
        if difficulty is None:
            raise ValueError("length control: gamed rows need difficulty as well (upstream has no such variant)")
        g = len(gamed.preference)
        X_gamed = np.column_stack([gamed.length_feature, gamed.difficulty, np.zeros(g)])  # no model term
        X_fit = np.vstack([X_gamed, X_fit])  # gamed rows first, as upstream concatenates them
        y = np.concatenate([gamed.preference, y])
        w = np.concatenate([np.full(g, reg_lambda / 2.0), w])

    if C is None:
        beta, C = _fit_cv(X_fit, y, w)
    else:
        beta, C = _fit_l1(X_fit, y, w, float(C)), float(C)
    phi, theta = float(beta[0]), float(beta[-1])
    psi = float(beta[1]) if difficulty is not None else 0.0

    predicted = _sigmoid(theta + psi * gamma)  # length term at zero, one prediction per item
    glm = "length_controlled_v1" if use_gamed else (
        "length_controlled_noreg" if difficulty is not None else "length_controlled_minimal")

    pj = p[judged]
    n = len(pj)
    decided = np.where(pj == 0.5, 0.5, np.round(pj))  # a tie stays a tie; else the nearer side wins
    return {
        "lc_win_rate": 100.0 * float(predicted.mean()),
        "lc_standard_error": 100.0 * float(predicted.std(ddof=1) / np.sqrt(n_items)) if n_items > 1 else float("nan"),
        "win_rate": 100.0 * float(pj.mean()),
        "standard_error": 100.0 * float(pj.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        "discrete_win_rate": 100.0 * float(decided.mean()),
        "n_wins": float(np.sum(pj > 0.5)),
        "n_wins_base": float(np.sum(pj < 0.5)),
        "n_draws": float(np.sum(pj == 0.5)),
        "n_total": float(n),
        "n_items": float(n_items),
        "length_coef": phi,
        "difficulty_coef": psi,
        "model_coef": theta,
        "penalty_C": C,
        "lc_glm": glm,
    }


# ---------------------------------------------------------------------------------------------
# Instruction difficulty: one joint fit over every model's annotations
# ---------------------------------------------------------------------------------------------


def instruction_difficulty(
    model: Sequence[str],
    preference: Sequence[float],
    model_len: Sequence[float],
    baseline_len: Sequence[float],
    instruction: Sequence[str],
    gamed_models: Sequence[str] = (),
) -> dict[str, float]:
    """gamma by instruction id, from the annotations of many models against the same baseline and judge.

    One entry per (model, item) annotation; model names the model. The joint GLM, as upstream fitted it:
        logit P = bias_m + phi_m * tanh(d / sd_m) + gamma_i + kappa * not_gamed_m
    (sd_m over model m's rows; gamma of the first instruction in sorted order fixed at 0; not_gamed_m is 1
    except for the models named in gamed_models, the baseline rewrites). Rows with a NaN preference or an
    empty model output are left out, as upstream's fit left them out. Same L1 fit and choice of C as the
    per-model GLM, all rows weight 1. The instructions' ids sort as they should (zero-padded numbers).
    Cost: 51 fits of ~2 x models + 805 coefficients; 8 s for 5 models x 805 items, 19 s for 20 models on
    the 2-core development VM (2026-12-03).
    """
    p = _as_1d("preference", preference)
    n = len(p)
    _check_preference("preference", p)
    model_len = _as_1d("model_len", model_len, n)
    baseline_len = _as_1d("baseline_len", baseline_len, n)
    model = np.asarray(model, dtype=object)
    instruction = np.asarray(instruction, dtype=object)
    if len(model) != n or len(instruction) != n:
        raise ValueError(f"instruction_difficulty: model and instruction need {n} entries each, one per annotation")
    keep = ~np.isnan(p) & (model_len > 0)
    p, model_len, baseline_len, model, instruction = p[keep], model_len[keep], baseline_len[keep], model[keep], instruction[keep]
    n = len(p)

    models = list(dict.fromkeys(model))
    instructions = sorted(set(instruction))
    if len(models) < 2:
        raise ValueError("instruction_difficulty: needs annotations of at least 2 models; one model's alone would"
                         " make gamma absorb that model's preferences")
    m_pos = {m: k for k, m in enumerate(models)}
    i_pos = {ins: k for k, ins in enumerate(instructions)}
    m_idx = np.array([m_pos[m] for m in model], dtype=int)
    i_idx = np.array([i_pos[i] for i in instruction], dtype=int)

    length = np.zeros(n)
    for k in range(len(models)):
        rows = m_idx == k
        length[rows] = _length_feature(model_len[rows], baseline_len[rows])
    gamed_set = set(gamed_models)
    not_gamed = np.array([m not in gamed_set for m in model], dtype=float)

    # Columns: length slope per model | bias per model | gamma per instruction but the first | not_gamed
    n_m, n_i = len(models), len(instructions)
    rows = np.arange(n)
    blocks = [
        scipy.sparse.csr_matrix((length, (rows, m_idx)), shape=(n, n_m)),
        scipy.sparse.csr_matrix((np.ones(n), (rows, m_idx)), shape=(n, n_m)),
        scipy.sparse.csr_matrix((np.ones(n), (rows, i_idx)), shape=(n, n_i))[:, 1:],
        scipy.sparse.csr_matrix(not_gamed[:, None]),
    ]
    X = scipy.sparse.hstack(blocks, format="csr")
    beta, _ = _fit_cv(X, p, np.ones(n))
    gamma = np.concatenate([[0.0], beta[2 * n_m: 2 * n_m + n_i - 1]])
    return {ins: float(g) for ins, g in zip(instructions, gamma)}
