"""Logistic regression and the Bradley-Terry model, in numpy, for the judged benchmarks.

Bradley-Terry: player i has a log-strength theta_i and P(i beats j) = sigmoid(theta_i - theta_j). Fitting
it is a logistic regression whose design row for a battle (a, b) is +1 at a and -1 at b. One strength is
fixed at 0 (the anchor, e.g. the baseline model) because only differences are identified.

A tie is a soft label of 0.5 (half a win for each side). Chatbot Arena and Arena-Hard get the same
likelihood by counting every battle twice and a tie once as a win for each side.

Both fits are small (2 to a few dozen parameters), so a damped Newton method is exact and fast; it
avoids a scipy/sklearn dependency and makes the regularisation explicit.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free form of 1 / (1 + exp(-z))


def _neg_log_likelihood(X: np.ndarray, y: np.ndarray, w: np.ndarray, sample_weight: np.ndarray, l2: np.ndarray) -> float:
    z = X @ w
    # -[y log p + (1-y) log(1-p)] = log(1 + e^z) - y z, computed stably with logaddexp
    return float(sample_weight @ (np.logaddexp(0.0, z) - y * z) + 0.5 * (l2 * w) @ w)


def fit_logistic(
    X: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray | None = None,
    l2: float | np.ndarray = 0.0,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> np.ndarray:
    """Weights w minimising sum_i s_i * logloss(y_i, sigmoid(X_i w)) + 0.5 * sum_k l2_k w_k^2.

    y may be soft (any value in [0, 1]). No intercept is added: put a column of ones in X for one.
    l2 is one penalty for every weight or one per weight. With l2 = 0 and separable data the optimum is
    at infinity; the iteration then stops at max_iter with large weights (probabilities near 0 or 1).
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n, d = X.shape
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    l2v = np.broadcast_to(np.asarray(l2, dtype=float), (d,))
    w = np.zeros(d)
    loss = _neg_log_likelihood(X, y, w, s, l2v)
    for _ in range(max_iter):
        p = _sigmoid(X @ w)
        grad = X.T @ (s * (p - y)) + l2v * w
        hess = (X * (s * p * (1.0 - p))[:, None]).T @ X + np.diag(l2v)
        # lstsq instead of solve: the Hessian is singular when a player never appears in a resample
        step = np.linalg.lstsq(hess + 1e-12 * np.eye(d), grad, rcond=None)[0]
        # Damped step: halve until the loss does not increase (plain Newton can overshoot on logistic loss).
        t = 1.0
        while t > 1e-8:
            w_new = w - t * step
            new_loss = _neg_log_likelihood(X, y, w_new, s, l2v)
            if new_loss <= loss + 1e-12:
                break
            t *= 0.5
        else:
            break  # no descent direction left: converged as far as floats allow
        converged = abs(loss - new_loss) < tol * max(1.0, abs(loss))
        w, loss = w_new, new_loss
        if converged:
            break
    return w


def fit_logistic_batch(
    X: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray,
    l2: float | np.ndarray = 0.0,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> np.ndarray:
    """fit_logistic for B problems at once: X (B, n, d), y (n,) or (B, n), sample_weight (B, n) -> w (B, d).

    The same objective, damped Newton steps and stopping rule as fit_logistic, each problem stopping on
    its own. For the bootstrap replicates of a fit (one weighting of the same rows per replicate), where
    a Python loop over fit_logistic would take seconds. Sums are einsum's, not BLAS matrix products, so
    the result does not depend on the BLAS library or its threads.
    """
    X = np.asarray(X, dtype=float)
    b, n, d = X.shape
    y = np.broadcast_to(np.asarray(y, dtype=float), (b, n))
    s = np.asarray(sample_weight, dtype=float)
    l2v = np.broadcast_to(np.asarray(l2, dtype=float), (d,))

    def loss_of(w: np.ndarray, idx: np.ndarray) -> np.ndarray:
        z = np.einsum("bnd,bd->bn", X[idx], w)
        return np.einsum("bn,bn->b", s[idx], np.logaddexp(0.0, z) - y[idx] * z) + 0.5 * np.einsum("bd,d,bd->b", w, l2v, w)

    w = np.zeros((b, d))
    everyone = np.arange(b)
    loss = loss_of(w, everyone)
    active = everyone
    for _ in range(max_iter):
        if len(active) == 0:
            break
        Xa, wa = X[active], w[active]
        p = _sigmoid(np.einsum("bnd,bd->bn", Xa, wa))
        grad = np.einsum("bnd,bn->bd", Xa, s[active] * (p - y[active])) + l2v * wa
        hess = np.einsum("bnd,bn,bne->bde", Xa, s[active] * p * (1.0 - p), Xa) + np.diag(l2v)
        # pinv, as fit_logistic's lstsq: the Hessian is singular when l2 = 0 and a column is all zeros
        step = np.einsum("bde,be->bd", np.linalg.pinv(hess + 1e-12 * np.eye(d)), grad)
        # Damped step per problem: halve its t until its loss does not increase.
        t = np.ones(len(active))
        new_w, new_loss = wa.copy(), loss[active].copy()
        accepted = np.zeros(len(active), dtype=bool)
        pending = np.arange(len(active))
        while len(pending):
            cand = wa[pending] - t[pending, None] * step[pending]
            cand_loss = loss_of(cand, active[pending])
            ok = cand_loss <= loss[active[pending]] + 1e-12
            new_w[pending[ok]], new_loss[pending[ok]] = cand[ok], cand_loss[ok]
            accepted[pending[ok]] = True
            pending = pending[~ok]
            t[pending] *= 0.5
            pending = pending[t[pending] > 1e-8]
        old = loss[active]
        converged = np.abs(old - new_loss) < tol * np.maximum(1.0, np.abs(old))
        w[active[accepted]] = new_w[accepted]
        loss[active[accepted]] = new_loss[accepted]
        # A problem with no descent left, or converged, is done (as fit_logistic's two breaks).
        active = active[accepted & ~converged]
    return w


def fit_bradley_terry(
    player_a: np.ndarray,
    player_b: np.ndarray,
    outcome: np.ndarray,
    n_players: int,
    anchor: int = 0,
    weights: np.ndarray | None = None,
    l2: float = 1e-6,
) -> np.ndarray:
    """Log-strengths theta (natural-log scale, theta[anchor] = 0) from battles a vs b.

    outcome[k] is 1 when a won battle k, 0 when b won, 0.5 for a tie. weights repeat a battle (Arena-Hard
    counts a decisive verdict 3 times). The tiny default l2 only keeps strengths finite when a player
    won (or lost) every battle; it moves a realistic fit by far less than a rounding digit.
    """
    player_a = np.asarray(player_a, dtype=int)
    player_b = np.asarray(player_b, dtype=int)
    outcome = np.asarray(outcome, dtype=float)
    if not (len(player_a) == len(player_b) == len(outcome)):
        raise ValueError("fit_bradley_terry: player_a, player_b and outcome must have the same length")
    if len(outcome) == 0:
        raise ValueError("fit_bradley_terry: no battles to fit")
    if np.any(player_a == player_b):
        raise ValueError("fit_bradley_terry: a battle needs two different players (player_a == player_b somewhere)")
    if np.any((outcome < 0) | (outcome > 1)):
        raise ValueError("fit_bradley_terry: outcome must be in [0, 1] (1 = a wins, 0.5 = tie, 0 = b wins)")
    X = np.zeros((len(outcome), n_players))
    rows = np.arange(len(outcome))
    X[rows, player_a] += 1.0
    X[rows, player_b] -= 1.0
    free = [i for i in range(n_players) if i != anchor]  # the anchor's column is dropped: theta_anchor = 0
    theta = np.zeros(n_players)
    theta[free] = fit_logistic(X[:, free], outcome, sample_weight=weights, l2=l2)
    return theta


def win_probability(theta_i: float, theta_j: float) -> float:
    """P(i beats j) under Bradley-Terry (a tie counted as half a win)."""
    return float(_sigmoid(np.asarray(theta_i - theta_j)))


def bootstrap_bradley_terry(
    player_a: np.ndarray,
    player_b: np.ndarray,
    outcome: np.ndarray,
    n_players: int,
    anchor: int = 0,
    rounds: int = 100,
    seed: int = 42,
) -> np.ndarray:
    """(rounds, n_players) log-strengths, each fitted on battles resampled with replacement."""
    if rounds < 1:
        raise ValueError(f"bootstrap rounds must be >= 1, got {rounds}")
    player_a, player_b, outcome = (np.asarray(v) for v in (player_a, player_b, outcome))
    rng = np.random.default_rng(seed)
    n = len(outcome)
    out = np.empty((rounds, n_players))
    for r in range(rounds):
        idx = rng.integers(0, n, size=n)
        out[r] = fit_bradley_terry(player_a[idx], player_b[idx], outcome[idx], n_players, anchor)
    return out
