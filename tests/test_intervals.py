"""The 95% intervals: each benchmark's replicate scores against its own summarize(), the intervals against closed forms (a Bernoulli mean; paired copies of a
model give zero width), the PGR chain per replicate against a PGR computed here, the ranking of
generators, and determinism. Every check that must pass sits next to a canary that a wrong version
would hit."""
from __future__ import annotations

import functools
import math
import random
import types

import numpy as np
import pytest

from agorabench.config import METHODS
from agorabench.evaluation.benchmarks import NAMES
from agorabench.evaluation.resampling import replicate_scores, resampled_rows, summarize_score, task_module
from agorabench.results.collect import collect, write_table
from agorabench.results.db import build_db
from agorabench.results.replicates import item_counts, score_replicates
from agorabench.testing.results_tree import TREE_REPLICATES, write_tree
from tests.conftest import query

IG, RG, QE = METHODS


# ---------------------------------------------------------------------------------------------
# Each benchmark's replicate scores are its own summarize() on the resampled rows
# ---------------------------------------------------------------------------------------------


def scored_items(benchmark: str, n: int, seed: int = 0) -> list[list[dict]]:
    """n items as the benchmark's score() returns them (the fields its summarize reads), uneven on purpose:
    judge errors, ties, strong verdicts, two Arena-Hard categories, three code samples per item."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        if benchmark in ("gsm8k", "math"):
            c = float(rng.random() < 0.4)
            items.append([{"id": f"{i}", "correct": c, "correct_strict": c * (rng.random() < 0.5),
                           "extracted_by": rng.choice(["result_tag", "boxed"]), "verdict": "x"}])
        elif benchmark == "ifeval":
            follow = [rng.random() < 0.7 for _ in range(rng.randint(1, 3))]
            items.append([{"correct": float(all(follow)), "correct_loose": float(any(follow)),
                           "follow_strict": follow, "follow_loose": follow}])
        elif benchmark in ("mbpp", "humaneval"):
            items.append([{"item_id": f"{benchmark}/{i}", "correct": float(rng.random() < 0.5),
                           "verdict": rng.choice(["correct", "wrong", "timeout", "no_answer"]), "pass_k": [1, 2]}
                          for _ in range(3)])
        elif benchmark == "alpacaeval":
            pref = None if rng.random() < 0.1 else rng.choice([0.0, 0.5, 1.0, 1.0, rng.random()])  # soft: logprobs
            items.append([{"id": f"alpacaeval/{i}", "preference": pref, "model_len": rng.randint(10, 900), "baseline_len": rng.randint(10, 900)}])
        elif benchmark == "arenahard":
            games = []
            for position in ("B", "A"):
                labels = ["A>>B", "A>B", "A=B", "B>A", "B>>A"]
                verdict = None if rng.random() < 0.1 else rng.choice(labels)
                if verdict is None:
                    probs = None  # a failed game
                elif rng.random() < 0.5:
                    probs = {verdict: 1.0}  # a text verdict
                else:  # read from log-probabilities: a soft spread over the labels
                    raw = {v: rng.random() for v in rng.sample(labels, 3)}
                    probs = {v: x / sum(raw.values()) for v, x in raw.items()}
                games.append({"model_position": position, "verdict": verdict, "label_probs": probs})
            verdict = "judge_error" if all(g["label_probs"] is None for g in games) else "win"
            items.append([{"category": rng.choice(["hard_prompt", "creative_writing"]), "games": games,
                           "verdict": verdict, "model_len": 5, "seed": 1}])
        else:
            raise AssertionError(f"no scored_items for {benchmark}: add it here")
    return items


def own_summarize(benchmark: str, items: list[list[dict]]):
    """The benchmark's task module, with Arena-Hard's own inner bootstrap cut to 1 round (only its score
    counts), and AlpacaEval's GLM penalty fixed at the one its point fit on `items` chose (its replicates
    keep it rather than cross-validate it again: alpacaeval/task.py bootstrap_scores)."""
    task = task_module(benchmark)
    if benchmark == "arenahard":
        return types.SimpleNamespace(PRIMARY=task.PRIMARY, summarize=functools.partial(task.summarize, rounds=1))
    if benchmark == "alpacaeval":
        C = task.summarize([r for rows in items for r in rows])["penalty_C"]
        return types.SimpleNamespace(PRIMARY=task.PRIMARY, summarize=functools.partial(task.summarize, C=C))
    return task


@pytest.mark.parametrize("benchmark", NAMES)
def test_replicate_scores_are_the_benchmarks_own_summarize_on_the_resampled_items(benchmark):
    n = 40
    items = scored_items(benchmark, n)
    counts = np.random.default_rng(1).multinomial(n, [1 / n] * n, size=24)
    counts[0] = 1  # the replicate that draws every item once: the point score
    counts[1, : n // 2] = 0  # half the items never drawn
    fast = replicate_scores(task_module(benchmark), items, counts)
    slow = np.array([summarize_score(own_summarize(benchmark, items), resampled_rows(items, c)) for c in counts])
    # Arena-Hard's summarize fits Bradley-Terry with a 1e-6 ridge; the replicate scorer takes the exact share.
    tol = 1e-4 if benchmark == "arenahard" else 1e-9
    assert np.all(np.isfinite(fast)) and np.allclose(fast, slow, rtol=0, atol=tol), np.abs(fast - slow).max()
    task = task_module(benchmark)
    point = task.summarize([r for rows in items for r in rows])[task.PRIMARY]
    assert fast[0] == pytest.approx(point, abs=tol)
    # Canary: the same comparison catches a scorer that pairs counts with the wrong items.
    shuffled = replicate_scores(task_module(benchmark), items, counts[:, ::-1])
    assert not np.allclose(shuffled, slow, rtol=0, atol=tol)


@pytest.mark.parametrize("benchmark, metric", [("alpacaeval", "win_rate"), ("ifeval", "instruction_level_strict")])
def test_a_metric_primary_metric_picks_has_its_own_replicate_scorer(benchmark, metric):
    """evaluation.primary_metric can give a benchmark's PGR another of its metrics (the default: AlpacaEval's
    win rate, IFEval's share of instructions followed). Its replicates are still summarize()'s on the
    resampled rows, computed without summarize(): AlpacaEval's would fit the length-controlled GLM,
    cross-validated, per replicate, which was most of the default's results stage."""
    n = 40
    items = scored_items(benchmark, n)
    counts = np.random.default_rng(3).multinomial(n, [1 / n] * n, size=24)
    counts[0] = 1
    counts[1, : n // 2] = 0
    task = task_module(benchmark)
    slow = np.array([summarize_score(task, resampled_rows(items, c), metric) for c in counts])
    fast = replicate_scores(task, items, counts, metric)
    assert np.all(np.isfinite(fast)) and np.allclose(fast, slow, rtol=0, atol=1e-9), np.abs(fast - slow).max()
    # summarize() is not what ran: without it the module gives the same numbers.
    scorer = getattr(task, f"bootstrap_{metric}")
    no_summarize = types.SimpleNamespace(PRIMARY=task.PRIMARY, **{f"bootstrap_{metric}": scorer})
    assert np.array_equal(replicate_scores(no_summarize, items, counts, metric), fast)
    # Canaries: the PRIMARY's scorer gives other numbers, and so do counts paired with the wrong items.
    assert not np.allclose(replicate_scores(task, items, counts), slow, rtol=0, atol=1e-9)
    assert not np.allclose(replicate_scores(task, items, counts[:, ::-1], metric), slow, rtol=0, atol=1e-9)


def test_a_benchmark_without_a_replicate_scorer_falls_back_to_summarize():
    task = task_module("gsm8k")
    plain = types.SimpleNamespace(PRIMARY=task.PRIMARY, summarize=task.summarize)  # no bootstrap_scores
    items = scored_items("gsm8k", 30)
    counts = np.random.default_rng(2).multinomial(30, [1 / 30] * 30, size=5)
    assert np.allclose(replicate_scores(plain, items, counts), replicate_scores(task, items, counts), atol=1e-9)
    with pytest.raises(ValueError, match=r"replicate counts of shape \(5, 29\) do not match 30 items"):
        replicate_scores(task, items, counts[:, 1:])


# ---------------------------------------------------------------------------------------------
# Closed forms, through collect's replicates and the SQL views
# ---------------------------------------------------------------------------------------------


def bernoulli_items(model: str, benchmark: str, correct: list[float], kind: str, generator=None, method=None,
                    domain=None) -> list[dict]:
    return [{"model": model, "kind": kind, "generator": generator, "method": method, "student_domain": domain,
             "benchmark": benchmark, "item_id": f"{benchmark}-{i:05d}", "sample_index": 0, "verdict": "x",
             "correct": c, "details": None} for i, c in enumerate(correct)]


def results_from_items(tmp_path, items: list[dict], replicates: int = 1000, seed: int = 0):
    """A database whose scores are the means of these items and whose replicates collect's function drew."""
    out = tmp_path / "results"
    out.mkdir(exist_ok=True)
    scores = {}
    for r in items:
        s = scores.setdefault((r["model"], r["benchmark"]), {k: r[k] for k in (
            "model", "kind", "generator", "method", "student_domain", "benchmark")} | {"sum": 0.0, "n": 0})
        s["sum"] += r["correct"]
        s["n"] += 1
    rows = [{**s, "score": 100.0 * s["sum"] / s["n"], "n_items": s["n"], "benchmark_domain": "math",
             "primary_metric": "accuracy"} for s in scores.values()]
    write_table("scores", rows, out / "scores.parquet")
    write_table("score_replicates", score_replicates(items, replicates, seed), out / "score_replicates.parquet")
    write_table("domain_benchmarks", [{"domain": "math", "benchmark": b, "position": i}
                                      for i, b in enumerate(("gsm8k", "math"))], out / "domain_benchmarks.parquet")
    return build_db(out)


def test_the_interval_of_a_bernoulli_mean_is_the_normal_approximation(tmp_path):
    n, p = 2000, 0.3
    correct = [float(i < p * n) for i in range(n)]
    random.Random(5).shuffle(correct)
    db = results_from_items(tmp_path, bernoulli_items("base", "gsm8k", correct, "base"))
    score, lo, hi, defined = query(db, "SELECT score, score_lo, score_hi, score_defined FROM score_interval")[0]
    half = 196.0 * math.sqrt(p * (1 - p) / n)  # 1.96 standard errors, in points
    assert score == pytest.approx(100 * p)
    assert lo == pytest.approx(100 * p - half, abs=0.15 * half) and hi == pytest.approx(100 * p + half, abs=0.15 * half)
    assert defined == 1.0
    # The view's percentiles are numpy's (linear interpolation) over the replicates.
    reps = [s for (s,) in query(db, "SELECT score FROM score_replicates")]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(reps, [2.5, 97.5])), abs=1e-9)
    # Canary: the closed form for a quarter of the items is twice as wide, and the check above would fail it.
    wrong = 196.0 * math.sqrt(p * (1 - p) / (n / 4))
    assert abs(hi - (100 * p + wrong)) > 0.15 * wrong


def test_paired_copies_give_zero_width_and_the_pgr_chain_keeps_its_closed_forms(tmp_path):
    """A reference identical to the base has a gap of exactly 0 in every replicate; a student identical to
    the reference recovers exactly 100 in every replicate, one identical to the base exactly 0."""
    rng = random.Random(7)
    n = 300
    base = {b: [float(rng.random() < 0.3) for _ in range(n)] for b in ("gsm8k", "math")}
    ref = {b: [float(rng.random() < 0.8) for _ in range(n)] for b in ("gsm8k", "math")}
    items = []
    for b in ("gsm8k", "math"):
        items += bernoulli_items("base", b, base[b], "base") + bernoulli_items("reference", b, ref[b], "reference")
        items += bernoulli_items("generators/twin", b, base[b], "generator", "twin")
        for m in METHODS:
            for gen, copy in (("copycat", ref[b]), ("null", base[b])):
                items += bernoulli_items(f"students/{gen}/{m}/math", b, copy, "student", gen, m, "math")
            flipped = list(ref[b])
            flipped[0] = 1.0 - flipped[0]
            items += bernoulli_items(f"students/almost/{m}/math", b, flipped, "student", "almost", m, "math")
    db = results_from_items(tmp_path, items, replicates=300)
    overall = {g: (p, lo, hi, d) for g, p, lo, hi, d in query(
        db, "SELECT generator, pgr, pgr_lo, pgr_hi, pgr_defined FROM pgr_overall")}
    assert overall["copycat"] == (100.0, 100.0, 100.0, 1.0) and overall["null"] == (0.0, 0.0, 0.0, 1.0)
    assert query(db, "SELECT count(*) FROM pgr_benchmark WHERE pgr_lo <> pgr_hi AND generator <> 'almost'") == [(0,)]
    rank = dict(((a, b), p) for a, b, p in query(db, "SELECT generator, other, p_above FROM pgr_rank"))
    assert rank[("copycat", "null")] == 1.0 and rank[("null", "copycat")] == 0.0
    assert rank[("copycat", "almost")] + rank[("almost", "copycat")] == pytest.approx(1.0)
    # A generator's own scores are resampled with the same draws as the base's: identical rows, identical bounds.
    twin = query(db, "SELECT benchmark, score_lo, score_hi FROM problem_solving ORDER BY benchmark")
    anchors = query(db, "SELECT benchmark, score_lo, score_hi FROM score_interval WHERE kind = 'base' ORDER BY benchmark")
    assert twin == anchors
    # Canary: one flipped item of the 300 gives the student a PGR that moves between replicates.
    lo, hi = overall["almost"][1:3]
    assert lo < hi


def test_a_reference_identical_to_the_base_has_a_zero_width_gap_only_when_paired(tmp_path):
    rng = random.Random(11)
    correct = [float(rng.random() < 0.5) for _ in range(400)]
    items = bernoulli_items("base", "gsm8k", correct, "base") + bernoulli_items("reference", "gsm8k", correct, "reference")
    db = results_from_items(tmp_path, items)
    assert query(db, "SELECT gap, gap_lo, gap_hi, gap_defined, excludes_zero FROM anchor_gap") == [
        (0.0, 0.0, 0.0, 1.0, False)]
    # Canary: drawn independently for the two models (not paired), the same gap's interval is wide.
    from agorabench.evaluation.resampling import mean_per_replicate

    values = np.array(correct)
    unpaired = (mean_per_replicate(values, item_counts("gsm8k", 400, 1000, 1))
                - mean_per_replicate(values, item_counts("gsm8k", 400, 1000, 2))) * 100
    lo, hi = np.percentile(unpaired, [2.5, 97.5])
    assert hi - lo > 5.0  # about 2 x 1.96 x sqrt(2 x 0.25 / 400) x 100 = 13.9 points


def test_anchor_gap_flags_a_gap_whose_interval_excludes_zero(tmp_path):
    rng = random.Random(13)
    items = []
    for b, (pb, pr) in {"gsm8k": (0.3, 0.7), "math": (0.5, 0.52)}.items():
        items += bernoulli_items("base", b, [float(rng.random() < pb) for _ in range(300)], "base")
        items += bernoulli_items("reference", b, [float(rng.random() < pr) for _ in range(300)], "reference")
    db = results_from_items(tmp_path, items)
    got = {b: (gap, lo, hi, ex) for b, gap, lo, hi, ex in query(
        db, "SELECT benchmark, gap, gap_lo, gap_hi, excludes_zero FROM anchor_gap")}
    assert got["gsm8k"][3] is True and got["gsm8k"][1] > 0
    assert got["math"][3] is False and got["math"][1] < 0 < got["math"][2]  # canary: a 2-point gap on 300 items


def test_the_pgr_interval_is_the_percentile_of_the_replicates_pgr(tmp_path):
    """The SQL chain per replicate, checked against PGR computed here from the replicate scores (paired:
    replicate r of the student with replicate r of the anchors)."""
    rng = random.Random(17)
    items = []
    for kind, p in (("base", 0.3), ("reference", 0.75)):
        for b in ("gsm8k", "math"):
            items += bernoulli_items(kind, b, [float(rng.random() < p) for _ in range(250)], kind)
    for b in ("gsm8k", "math"):
        items += bernoulli_items(f"students/g/{IG}/math", b, [float(rng.random() < 0.5) for _ in range(250)],
                                 "student", "g", IG, "math")
    db = results_from_items(tmp_path, items, replicates=500)
    reps = {}
    for model, b, r, s in query(db, "SELECT model, benchmark, replicate, score FROM score_replicates"):
        reps.setdefault((model, b), np.zeros(500))[r - 1] = s
    for b in ("gsm8k", "math"):
        st, ba, re_ = reps[(f"students/g/{IG}/math", b)], reps[("base", b)], reps[("reference", b)]
        pgr = (st - ba) / (re_ - ba) * 100
        lo, hi = query(db, f"SELECT pgr_lo, pgr_hi FROM pgr_benchmark WHERE benchmark = '{b}'")[0]
        assert (lo, hi) == pytest.approx(tuple(np.percentile(pgr, [2.5, 97.5])), rel=1e-12)
        # Canary: pairing the student's replicates with other replicates of the anchors gives another interval.
        shifted = (st - np.roll(ba, 1)) / (np.roll(re_, 1) - np.roll(ba, 1)) * 100
        assert (lo, hi) != pytest.approx(tuple(np.percentile(shifted, [2.5, 97.5])), rel=1e-3)
    domain = query(db, "SELECT pgr, pgr_lo, pgr_hi FROM pgr_domain")[0]
    assert domain[1] < domain[0] < domain[2]


# ---------------------------------------------------------------------------------------------
# collect: determinism, the seed, turning it off, bad items
# ---------------------------------------------------------------------------------------------


def test_replicates_are_byte_identical_for_a_seed_and_change_with_it(tmp_path):
    paths = write_tree(tmp_path)
    collect(paths.params)
    first = (paths.out / "score_replicates.parquet").read_bytes()
    (paths.out / "score_replicates.parquet").unlink()
    collect(paths.params)
    assert (paths.out / "score_replicates.parquet").read_bytes() == first
    db = build_db(paths.out)
    assert query(db, "SELECT count(*), count(DISTINCT replicate), min(replicate) FROM score_replicates")[0] == (
        len(query(db, "SELECT * FROM scores")) * TREE_REPLICATES, TREE_REPLICATES, 1)
    # Canary: another seed draws other items.
    reseeded = paths.params.model_copy(update={"analysis": paths.params.analysis.model_copy(update={"bootstrap_seed": 1})})
    collect(reseeded)
    assert (paths.out / "score_replicates.parquet").read_bytes() != first
    # 0 replicates: an empty table, and the views give no interval rather than failing.
    off = paths.params.model_copy(update={"analysis": paths.params.analysis.model_copy(update={"bootstrap_replicates": 0})})
    collect(off)
    db = build_db(paths.out)
    assert query(db, "SELECT count(*), count(pgr), count(pgr_lo) FROM pgr_overall") == [(2, 2, 0)]
    assert query(db, "SELECT count(*) FROM pgr_rank") == [(0,)]


def test_items_without_the_fields_their_score_needs_give_a_one_line_error():
    rows = bernoulli_items("base", "alpacaeval", [1.0, 0.0], "base")  # no preference or lengths in details
    with pytest.raises(ValueError, match=r"data/eval/base/alpacaeval.parquet: its rows lack what alpacaeval's score "
                                         r"needs \(KeyError: 'preference'\); re-run `agora evaluate` for base") as e:
        score_replicates(rows, 10, 0)
    assert "\n" not in str(e.value)
    # Canary: the same rows with the fields give scores.
    for r, pref in zip(rows, (1.0, 0.0)):
        r["details"] = f'{{"preference": {pref}, "model_len": 10, "baseline_len": 12}}'
    assert len(score_replicates(rows, 10, 0)) == 10


def test_item_counts_draw_every_replicate_from_all_items():
    counts = item_counts("gsm8k", 50, 200, 0)
    assert counts.shape == (200, 50) and (counts.sum(axis=1) == 50).all()
    assert 0.2 < (counts == 0).mean() < 0.5  # about e^-1 of the items are left out of a replicate
    assert (item_counts("gsm8k", 50, 200, 0) == counts).all()
    assert not (item_counts("math", 50, 200, 0) == counts).all()  # canary: each benchmark draws its own


def test_another_primary_metric_is_what_the_replicates_score():
    """evaluation.primary_metric {alpacaeval: win_rate}: the replicates are summarize()'s win_rate on each
    replicate's items (the point score on the replicate that draws every item once), not the length-
    controlled rate, which on few items the fit's penalty sets to 50 for every model."""
    task = task_module("alpacaeval")
    items = scored_items("alpacaeval", 12, seed=3)
    counts = np.random.default_rng(4).multinomial(12, [1 / 12] * 12, size=6)
    counts[0] = 1
    rows = [r for rs in items for r in rs]
    win = replicate_scores(task, items, counts, "win_rate")
    assert win[0] == pytest.approx(task.summarize(rows)["win_rate"], abs=1e-9)
    assert np.allclose(win, [summarize_score(task, resampled_rows(items, c), "win_rate") for c in counts], atol=1e-9)
    # Canary: without the metric the replicates are the primary (lc_win_rate), another number.
    assert not np.allclose(replicate_scores(task, items, counts), win, atol=1e-6)


def test_scores_of_another_metric_than_the_params_name_are_refused(tmp_path):
    """A scores file written under another evaluation.primary_metric would mix two metrics in one PGR:
    collect names the file and says to re-run the evaluation."""
    tree = write_tree(tmp_path / "tree")
    collect(tree.params)  # canary: the tree's own params agree with its score files
    ev = tree.params.evaluation.model_copy(update={"primary_metric": {"alpacaeval": "win_rate"}})
    with pytest.raises(ValueError, match=r"alpacaeval\.scores\.json scores lc_win_rate, but evaluation\.primary_metric "
                                         r"asks for win_rate; re-run `agora evaluate`"):
        collect(tree.params.model_copy(update={"evaluation": ev}))
