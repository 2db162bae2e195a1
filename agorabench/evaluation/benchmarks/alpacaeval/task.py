"""AlpacaEval 2.0: 805 instructions, the model's output judged against GPT-4-Turbo's (gpt4_1106_preview).

Per item the judge sees the instruction and the two outputs and answers [[A]] or [[B]] (our own prompt,
judge_system.txt / judge_user.txt). Judges favour whichever output is shown first or second, so the model's
side is drawn per item from sha256(ctx.seed, item id) and recorded: half the items put it first, with no
second judge call. Outputs identical to the baseline are a tie and empty outputs a loss, both without a
judge call (AlpacaEval does the same for identical outputs).

Preference per item (preference_source in each row says which one it used):
  logprobs   the judge's token log-probabilities at the verdict slot (pairwise.verdict_slot: the letter of
             its first [[A]]/[[B]] tag), P(model's label) / (P(A) + P(B)), in [0, 1]: how AlpacaEval 2.0's
             weighted_alpaca_eval_gpt4_turbo annotator reads its judge (there: the probability of the one
             output token naming each answer). Asked for with ctx.judge_top_logprobs > 0.
  verdict    the parsed [[A]]/[[B]] text: 1 or 0 (0.5 for a tie), when the judge gave no usable
             log-probabilities (a backend without them, or no label among the slot's alternatives): the
             fallback, counted in summarize()'s n_verdict.

Metrics (percent), from length_controlled.length_controlled_win_rate (that module has the model):
  win_rate         mean preference for the model, as AlpacaEval reports it; standard_error its sample sem.
  lc_win_rate      length-controlled win rate (PRIMARY), Dubois et al. 2024 (arXiv:2404.04475). Which of
                   upstream's GLM variants was fitted is in lc_glm: with instruction difficulties and gamed
                   baseline annotations passed to summarize() the leaderboard's length_controlled_v1; with
                   neither (the default, offline: both live on the Hugging Face hub)
                   length_controlled_minimal, logit = theta + phi * tanh(d/sd), LC = sigmoid(theta).
                   Without the gamed rows the fit can hardly tell length from quality when the model is
                   longer on (nearly) every item: there upstream's L1 fit (and ours) may set theta to 0,
                   give the whole preference to length, and LC is exactly 50.

Judge failures (None, or a reply with neither a usable verdict slot nor a parseable verdict) are kept as
rows with verdict "judge_error" and preference None. Like upstream's annotations without a preference they
are left out of the win rate and of the GLM's fit, but still count where upstream counts them: in the sd of
the length differences and in the average of LC's per-item predictions (which only differ between items
with instruction difficulties). summarize() reports their number (n_judge_error). Counting them as ties
would pull every model towards 50 % by an amount that depends on the judge's failure rate, not on the
model. Their "correct" is 0.5 only to keep the field a float.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from agorabench.evaluation.benchmarks.alpacaeval.length_controlled import GamedBaseline, length_controlled_win_rate
from agorabench.evaluation.context import ScoreContext
# build_messages and fewshot_examples are shared with Arena-Hard; importing them here fulfils the contract.
from agorabench.evaluation.pairwise import (NoVerdict, alternatives, build_messages, call_judge, check_inputs, clip,
                                             fewshot_examples, is_empty, read_prompt, verdict_slot)
from agorabench.evaluation.items import EvalItem
from agorabench.evaluation.resampling import mean_per_replicate

__all__ = [
    "DOMAIN",
    "PRIMARY",
    "Preference",
    "bootstrap_scores",
    "bootstrap_win_rate",
    "build_messages",
    "fewshot_examples",
    "judge_messages",
    "judge_top_logprobs",
    "logprob_preference",
    "model_side",
    "parse_preference",
    "score",
    "summarize",
]

from agorabench.evaluation.benchmarks.alpacaeval import DOMAIN, PRIMARY  # noqa: E402,F401  (declared there)
BASELINE_MODEL = "gpt4_1106_preview"  # the generator of item.reference in the packaged file

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



# A label token at the verdict slot. Accepted: the letter alone, in either case, with whitespace and with
# the brackets or parentheses that tokenizers glue to it: "A", " A", "a", "[[A", "A]]", "[[ b", "(B)".
# Why these: vocabularies have separate tokens for "A", " A" and "[[A", and whichever the judge samples they
# all name the same verdict, so their probabilities add up. Lower case counts because parse_preference
# accepts "[[a]]" as A; at the slot right after "[[" an "a" is the label, not the article. (Upstream's
# labels are "m" and "M", told apart only by case, so upstream matches tokens exactly; ours differ by letter.)
# Not accepted: anything else ("Both", "As", "tie", "**"): the preference is renormalised over the two
# labels, as upstream renormalises over its two.
_LABEL_TOKEN = re.compile(r"[\[(]*\s*([AaBb])\s*[\])]*")


def _label_of(token: str) -> str | None:
    match = _LABEL_TOKEN.fullmatch(token.strip())
    return match.group(1).upper() if match else None


class Preference(NamedTuple):
    win_prob: float | None  # P(the model's output is preferred), in [0, 1]; None: the judge gave none
    source: str  # "logprobs", "verdict" or "none"


def _logsumexp(values: list[float]) -> float:
    if not values:
        return -math.inf
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def logprob_preference(
    top_logprobs: Sequence[tuple[str, float]] | Sequence[dict] | None,
    model_side: str,
    verdict: str | None = None,
) -> Preference:
    """The model's win probability from the judge's top log-probabilities at the verdict slot.

    top_logprobs: (token, logprob) pairs, or dicts with "token" and "logprob" as an OpenAI-compatible
    top_logprobs entry has them, at the slot (pairwise.verdict_slot finds it). model_side: "A" or "B",
    where the model's output was shown. The result is P(model's label) / (P(A) + P(B)), each label's
    probability summed over its token variants; a label missing from the list has probability 0 (as
    upstream's parser treats it). When neither label is in the list, or there is no list, it falls back
    to verdict (parse_preference's "A", "B" or "tie": 1, 0 or 0.5), and to None when there is no verdict
    either. Preference.source says which was used.
    """
    if model_side not in ("A", "B"):
        raise ValueError(f"logprob_preference: model_side must be 'A' or 'B', got {model_side!r}")
    mass: dict[str, list[float]] = {"A": [], "B": []}
    for entry in top_logprobs or ():
        token, logprob = (entry["token"], entry["logprob"]) if isinstance(entry, dict) else entry
        if not isinstance(token, str) or not isinstance(logprob, (int, float)) or math.isnan(logprob):
            raise ValueError(f"logprob_preference: a top_logprobs entry must be (token str, logprob float), got {entry!r}")
        label = _label_of(token)
        if label is not None:
            mass[label].append(float(logprob))
    if mass["A"] or mass["B"]:
        other = "B" if model_side == "A" else "A"
        log_odds = _logsumexp(mass[model_side]) - _logsumexp(mass[other])
        return Preference(0.5 * (1.0 + math.tanh(0.5 * log_odds)), "logprobs")  # sigmoid; +-inf give 1 or 0
    if verdict in ("A", "B", "tie"):
        return Preference(0.5 if verdict == "tie" else float(verdict == model_side), "verdict")
    return Preference(None, "none")


def judge_top_logprobs(ctx: ScoreContext) -> int:
    """The top log-probabilities score() asks the judge for: always ctx's (AlpacaEval's verdict is the
    reply's first tag, as its authors read it)."""
    return ctx.judge_top_logprobs


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
            "preference_source": "none",
            "model_side": side,
            "model_len": len(output),
            "baseline_len": len(item.reference),
            "judge": ctx.judge_name,
            "judge_reply": None,
            "judge_skipped": "",
        }
        if is_empty(output):
            row.update(preference=0.0, preference_source="no_judge", correct=0.0, verdict="loss",
                       judge_skipped="empty_output")
        elif output.strip() == item.reference.strip():
            row.update(preference=0.5, preference_source="no_judge", correct=0.5, verdict="tie",
                       judge_skipped="identical_output")
        else:
            a, b = (output, item.reference) if side == "A" else (item.reference, output)
            to_judge.append(len(rows))
            conversations.append(judge_messages(item.prompt, clip(a, ctx.judge_max_answer_chars),
                                                clip(b, ctx.judge_max_answer_chars)))
        rows.append(row)

    for i, reply in zip(to_judge, call_judge("alpacaeval", ctx, conversations, judge_top_logprobs(ctx))):
        row = rows[i]
        choice = parse_preference(reply.text)
        row["judge_reply"] = reply.text
        row["extracted"] = choice
        slot = verdict_slot(reply.logprobs, choice) if reply.logprobs else None
        top = alternatives(reply.logprobs[slot]) if slot is not None else None
        pref, source = logprob_preference(top, row["model_side"], choice)
        if pref is None:
            continue  # stays a judge_error
        if top is not None:
            row["label_logprobs"] = {t: lp for t, lp in top if _label_of(t) is not None}
        verdict = "win" if pref > 0.5 else "loss" if pref < 0.5 else "tie"
        row.update(preference=pref, preference_source=source, correct=pref, verdict=verdict)
    return rows


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def summarize(
    rows: list[dict],
    difficulty: dict[str, float] | None = None,
    gamed: GamedBaseline | None = None,
    C: float | None = None,
) -> dict[str, float | str]:
    """Win rate and length-controlled win rate of score()'s rows.

    difficulty (instruction difficulty by item id, from length_controlled.instruction_difficulty() over
    every model this judge scored, or upstream's) and gamed (length_controlled.gamed_baseline or
    read_upstream_gamed) select upstream's fuller GLM; without them the minimal one. lc_glm names it.
    C fixes the GLM's L1 penalty (None: cross-validated, as upstream; penalty_C says which was used).
    n_logprobs and n_verdict count the judgements read from the log-probabilities and from the text.
    """
    if not rows:
        raise ValueError("alpacaeval summarize: no rows; score() some items first")
    n_error = sum(r["preference"] is None for r in rows)
    if n_error == len(rows):
        raise NoVerdict(f"alpacaeval: all {len(rows)} judgements failed (verdict judge_error); check the judge")
    pref = np.array([np.nan if r["preference"] is None else r["preference"] for r in rows], dtype=float)
    lc = length_controlled_win_rate(
        pref,
        [r["model_len"] for r in rows],
        [r["baseline_len"] for r in rows],
        instruction=[r["id"] for r in rows],
        difficulty=difficulty,
        gamed=gamed,
        C=C,
    )
    sources = [r.get("preference_source", "verdict") for r in rows]
    return {
        "lc_win_rate": lc["lc_win_rate"],
        "lc_standard_error": lc["lc_standard_error"],
        "win_rate": lc["win_rate"],
        "standard_error": lc["standard_error"],
        "discrete_win_rate": lc["discrete_win_rate"],
        "lc_glm": lc["lc_glm"],
        "length_coef": lc["length_coef"],
        "difficulty_coef": lc["difficulty_coef"],
        "model_coef": lc["model_coef"],
        "penalty_C": lc["penalty_C"],
        "n": lc["n_total"],
        "n_total": float(len(rows)),
        "n_judge_error": float(n_error),
        "n_wins": lc["n_wins"],
        "n_losses": lc["n_wins_base"],
        "n_ties": lc["n_draws"],
        "n_logprobs": float(sources.count("logprobs")),
        "n_verdict": float(sources.count("verdict")),
        "avg_length": float(np.mean([r["model_len"] for r in rows])),
    }


def bootstrap_win_rate(items: list[list[dict]], counts: np.ndarray) -> np.ndarray:
    """summarize()'s win_rate on bootstrap replicates of the items (evaluation/resampling.py): 100 x the
    mean preference over the drawn items that have a verdict; NaN where none has. No GLM: summarize()
    would fit and cross-validate one per replicate only to report it beside the plain win rate."""
    pref = np.array([np.nan if rows[0]["preference"] is None else float(rows[0]["preference"]) for rows in items])
    judged = ~np.isnan(pref)
    return 100.0 * mean_per_replicate(pref[judged], np.asarray(counts)[:, judged])


def bootstrap_scores(items: list[list[dict]], counts: np.ndarray) -> np.ndarray:
    """summarize()'s lc_win_rate on bootstrap replicates of the items (agorabench/evaluation/resampling.py):
    counts[r, i] copies of item i in replicate r; NaN where no drawn item has a verdict.

    Each replicate is summarize() on its draws (the items repeated in order, as resampling.resampled_rows
    lays them out: the same sd of the length differences, the same GLM, the minimal one as summarize()
    fits it without difficulties or gamed rows) with one difference: the L1 penalty C is the one the
    point fit (every item once) chose by cross-validation, not chosen again per replicate. Choosing it
    again costs 41 fits per replicate instead of one (about 20 ms for 805 items, 20 s per model at 1000
    replicates; the test tree's collect took 25 s instead of 2), and
    keeping the tuning fixed is the usual bootstrap of a penalised fit. The replicate that draws every
    item once is summarize()'s score exactly."""
    first = [rows[0] for rows in items]
    pref = np.array([np.nan if r["preference"] is None else float(r["preference"]) for r in first])
    model_len = np.array([float(r["model_len"]) for r in first])
    baseline_len = np.array([float(r["baseline_len"]) for r in first])
    out = np.full(len(counts), np.nan)
    if np.all(np.isnan(pref)):
        return out  # no verdict at all: summarize has no score on any replicate
    C = length_controlled_win_rate(pref, model_len, baseline_len)["penalty_C"]
    # Replicates that draw the same multiset get the same fit: with few items (tests, small runs) most do.
    unique, which = np.unique(np.asarray(counts, dtype=np.int64), axis=0, return_inverse=True)
    scores = np.full(len(unique), np.nan)
    for k, row in enumerate(unique):
        p = np.repeat(pref, row)
        if np.all(np.isnan(p)):
            continue  # nothing drawn, or only judge errors: summarize has no score either
        scores[k] = length_controlled_win_rate(p, np.repeat(model_len, row), np.repeat(baseline_len, row),
                                               C=C)["lc_win_rate"]
    return scores[np.ravel(which)]
