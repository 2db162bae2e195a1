"""AlpacaEval 2.0: 805 instructions, the model's output judged against GPT-4-Turbo's (gpt4_1106_preview).

Per item the judge sees the instruction and the two outputs and answers [[A]] or [[B]] (our own prompt,
judge_system.txt / judge_user.txt). Judges favour whichever output is shown first or second, so the model's
side is drawn per item from sha256(ctx.seed, item id) and recorded: half the items put it first, with no
second judge call. Outputs identical to the baseline are a tie and empty outputs a loss, both without a
judge call (AlpacaEval does the same for identical outputs).

Metrics (percent):
  win_rate         mean preference for the model (win 1, tie 0.5, loss 0), as AlpacaEval reports it.
  standard_error   standard error of that mean (sample std / sqrt(n)).
  lc_win_rate      length-controlled win rate (PRIMARY), after Dubois et al. 2024 (arXiv:2404.04475):
                   fit   logit P(model preferred) = theta + phi * tanh(d_i / std(d)),
                         d_i = len(model output) - len(baseline output) in characters,
                   then predict with the length term set to zero: LC = sigmoid(theta).
                   Simplification versus upstream's GLM: upstream adds a per-instruction difficulty term
                   (precomputed on the hub) and regularises the fit towards "gamed" baselines (verbose and
                   concise versions of the baseline judged by the same annotator), which anchors phi. Offline
                   we have neither, so phi and theta are fitted from this model's items alone, with a light
                   L2 prior (LC_L2) on both. Consequence: when the model is longer on every single item, length
                   and quality cannot be told apart and LC stays near the raw win rate. When the difference
                   varies in sign, a length-driven preference is explained by phi and LC moves towards 50 %:
                   all the way for a noisy length-driven judge, part of the way for a deterministic
                   "longer wins" rule (a step function, which a logistic curve fits only loosely).

Judge failures (None or an unparseable reply) are kept as rows with verdict "judge_error" and excluded
from every metric, as upstream drops annotations without a preference; summarize() reports their number
(n_judge_error). Counting them as ties would pull every model towards 50 % by an amount that depends on
the judge's failure rate, not on the model. Their "correct" is 0.5 only to keep the field a float.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from agorabench.evaluation.bradley_terry import fit_logistic, fit_logistic_batch
from agorabench.evaluation.context import ScoreContext
# build_messages and fewshot_examples are shared with Arena-Hard; importing them here fulfils the contract.
from agorabench.evaluation.pairwise import (NoVerdict, build_messages, call_judge, check_inputs, clip, fewshot_examples,
                                             is_empty, read_prompt)
from agorabench.evaluation.items import EvalItem

__all__ = [
    "DOMAIN",
    "PRIMARY",
    "bootstrap_scores",
    "build_messages",
    "fewshot_examples",
    "judge_messages",
    "length_controlled_win_rate",
    "model_side",
    "parse_preference",
    "score",
    "summarize",
]

from agorabench.evaluation.benchmarks.alpacaeval import DOMAIN, PRIMARY  # noqa: E402,F401  (declared there)
BASELINE_MODEL = "gpt4_1106_preview"  # the generator of item.reference in the packaged file
LC_L2 = 1.0  # Gaussian prior N(0, 1) on theta and phi: negligible with 805 items unless the data are separable

_HERE = Path(__file__).parent



# ---------------------------------------------------------------------------------------------
# Judging
# ---------------------------------------------------------------------------------------------


def model_side(item_id: str, seed: int) -> str:
    """'A' or 'B': where the model's output is shown for this item. A hash, so the same on every run and
    machine (Python's hash() is salted per process) and independent of item order."""
    digest = hashlib.sha256(f"alpacaeval-side/{seed}/{item_id}".encode()).digest()
    return "A" if digest[0] % 2 == 0 else "B"


def judge_messages(instruction: str, output_a: str, output_b: str) -> list[dict]:
    user = read_prompt(_HERE / "judge_user.txt").format(instruction=instruction, output_a=output_a, output_b=output_b)
    return [{"role": "system", "content": read_prompt(_HERE / "judge_system.txt")}, {"role": "user", "content": user}]


_TAG = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
# The whole reply is just the answer: "A", "b.", "(a)", "[B]", "**A**", "Output (a)", "Answer: B", "Response B is better"
_BARE = re.compile(
    r"(?:(?:the\s+)?(?:better\s+)?(?:answer|output|response)(?:\s+is)?\s*[:\-]?\s*)?"
    r"[(\[]?\s*(a|b|tie)\s*[)\]]?(?:\s+is\s+better)?",
    re.IGNORECASE,
)
# Inside free text only unambiguous mentions count: "Output (a)", "Response (B)", "Response B" (capital).
_MENTION = re.compile(r"(?i:\b(?:output|response)\s*)(?:\(\s*([abAB])\s*\)|([AB])\b)")


def parse_preference(reply: str | None) -> str | None:
    """'A', 'B' or 'tie' from a judge reply; None when there is no answer or it is ambiguous.

    Tags ([[A]]) win over everything else. Conflicting answers ("[[A]] ... [[B]]", "Output (a) ... Output (b)")
    are None rather than a guess: a wrong guess is a silent error, a None is a counted judge_error.
    """
    if not reply or not reply.strip():
        return None
    tags = {t.lower() for t in _TAG.findall(reply)}
    if tags:
        return _canonical(tags.pop()) if len(tags) == 1 else None
    bare = reply.strip().strip("*_`'\" .!:")
    match = _BARE.fullmatch(bare)
    if match:
        return _canonical(match.group(1))
    mentions = {(a or b).lower() for a, b in _MENTION.findall(reply)}
    if len(mentions) == 1:
        return _canonical(mentions.pop())
    return None


def _canonical(letter: str) -> str:
    letter = letter.lower()
    return "tie" if letter == "tie" else letter.upper()


def score(items: list[EvalItem], outputs: list[str], ctx: ScoreContext) -> list[dict]:
    check_inputs("alpacaeval", items, outputs, ctx)
    rows: list[dict] = []
    to_judge: list[int] = []  # row index of every row that needs the judge
    conversations: list[list[dict]] = []
    for item, output in zip(items, outputs):
        if item.reference is None:
            raise ValueError(
                f"alpacaeval item {item.id} has no baseline output in item.reference; load items with the alpacaeval benchmark's load_items"
            )
        output = output or ""
        side = model_side(item.id, ctx.seed)
        row = {
            "id": item.id,
            "extracted": None,
            "correct": 0.5,
            "verdict": "judge_error",
            "preference": None,
            "model_side": side,
            "model_len": len(output),
            "baseline_len": len(item.reference),
            "judge": ctx.judge_name,
            "judge_reply": None,
            "judge_skipped": "",
        }
        if is_empty(output):
            row.update(preference=0.0, correct=0.0, verdict="loss", judge_skipped="empty_output")
        elif output.strip() == item.reference.strip():
            row.update(preference=0.5, correct=0.5, verdict="tie", judge_skipped="identical_output")
        else:
            a, b = (output, item.reference) if side == "A" else (item.reference, output)
            to_judge.append(len(rows))
            conversations.append(judge_messages(item.prompt, clip(a, ctx.judge_max_answer_chars),
                                                clip(b, ctx.judge_max_answer_chars)))
        rows.append(row)

    for i, reply in zip(to_judge, call_judge("alpacaeval", ctx, conversations)):
        row = rows[i]
        choice = parse_preference(reply)
        row["judge_reply"] = reply
        row["extracted"] = choice
        if choice is None:
            continue  # stays a judge_error
        pref = 0.5 if choice == "tie" else float(choice == row["model_side"])
        row.update(preference=pref, correct=pref, verdict={1.0: "win", 0.5: "tie", 0.0: "loss"}[pref])
    return rows


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def length_controlled_win_rate(preference: np.ndarray, delta_len: np.ndarray, l2: float = LC_L2) -> tuple[float, float]:
    """(LC win rate in [0, 1], phi) from per-item preferences in [0, 1] and length differences (model - baseline)."""
    preference = np.asarray(preference, dtype=float)
    delta = np.asarray(delta_len, dtype=float)
    # Scale by the spread of the differences (not centred, as upstream: a model that is longer everywhere keeps
    # positive features); tanh bounds the influence of a few huge outputs.
    std = delta.std(ddof=1) if len(delta) > 1 else 0.0
    x = np.tanh(delta / std) if std > 0 else np.zeros_like(delta)
    X = np.column_stack([np.ones_like(x), x])
    theta, phi = fit_logistic(X, preference, l2=l2)
    return float(1.0 / (1.0 + np.exp(-theta))), float(phi)


def summarize(rows: list[dict]) -> dict[str, float]:
    if not rows:
        raise ValueError("alpacaeval summarize: no rows; score() some items first")
    judged = [r for r in rows if r["preference"] is not None]
    n_error = len(rows) - len(judged)
    if not judged:
        raise NoVerdict(f"alpacaeval: all {len(rows)} judgements failed (verdict judge_error); check the judge")
    pref = np.array([r["preference"] for r in judged], dtype=float)
    delta = np.array([r["model_len"] - r["baseline_len"] for r in judged], dtype=float)
    lc, phi = length_controlled_win_rate(pref, delta)
    n = len(pref)
    return {
        "lc_win_rate": 100.0 * lc,
        "win_rate": 100.0 * float(pref.mean()),
        "standard_error": 100.0 * float(pref.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        "length_coef": phi,
        "n": float(n),
        "n_total": float(len(rows)),
        "n_judge_error": float(n_error),
        "n_wins": float(np.sum(pref == 1.0)),
        "n_losses": float(np.sum(pref == 0.0)),
        "n_ties": float(np.sum(pref == 0.5)),
        "avg_length": float(np.mean([r["model_len"] for r in rows])),
    }


def bootstrap_scores(items: list[list[dict]], counts: np.ndarray) -> np.ndarray:
    """summarize()'s lc_win_rate on bootstrap replicates of the items (agorabench/evaluation/resampling.py):
    counts[r, i] copies of item i in replicate r. Each replicate is summarize() over its draws: the
    length differences scaled by the replicate's own spread, the fit weighted by the counts (a drawn-twice
    item is two rows of the same fit), judge errors left out. NaN where no drawn item has a verdict."""
    first = [rows[0] for rows in items]
    judged = np.array([r["preference"] is not None for r in first])
    pref = np.array([float(r["preference"]) for r in first if r["preference"] is not None])
    delta = np.array([float(r["model_len"] - r["baseline_len"]) for r in first if r["preference"] is not None])
    w = np.asarray(counts, dtype=float)[:, judged]
    n = w.sum(axis=1)
    out = np.full(len(w), np.nan)
    ok = n > 0
    if not ok.any():
        return out
    w, n = w[ok], n[ok]
    mean = np.einsum("bn,n->b", w, delta) / n
    var = np.einsum("bn,bn->b", w, (delta[None, :] - mean[:, None]) ** 2) / np.maximum(n - 1.0, 1.0)
    std = np.where(n > 1, np.sqrt(var), 0.0)  # summarize: std with ddof=1, 0 for a single item
    scale = np.where(std > 0, std, 1.0)
    x = np.where(std[:, None] > 0, np.tanh(delta[None, :] / scale[:, None]), 0.0)
    X = np.stack([np.ones_like(x), x], axis=-1)
    theta = fit_logistic_batch(X, pref, w, l2=LC_L2)[:, 0]
    out[ok] = 100.0 / (1.0 + np.exp(-theta))
    return out
