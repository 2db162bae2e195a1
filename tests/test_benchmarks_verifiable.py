"""GSM8K, MATH and IFEval scoring: extraction, equivalence, checkers and metrics.

Every behaviour that must hold sits next to a canary that must fail (a wrong answer scored wrong,
a violating response that fails, upstream's punkt path that raises without data).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from types import SimpleNamespace

from agorabench.evaluation.benchmarks.gsm8k import task as gsm8k
from agorabench.evaluation.benchmarks.ifeval import task as ifeval
from agorabench.evaluation.benchmarks.math import task as mathbench
from agorabench.evaluation.context import ScoreContext
from agorabench.evaluation.items import EvalItem, find_eval_overlap, last_boxed
from agorabench.evaluation.benchmarks import load_items as load_eval_items

CTX = ScoreContext()


def _item(reference: str, item_id: str = "t/0", **extra) -> EvalItem:
    return EvalItem(item_id, "question?", reference, extra)


# ---------------------------------------------------------------------------------------------
# Shared extraction (GSM8K and MATH)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output, expected",
    [
        ("So [RESULT] 3 [/RESULT] wait, no.\n[RESULT] 5 [/RESULT]", ("5", "result_tag")),  # several tags: the last
        ("[RESULT] [RESULT] 7 [/RESULT]", ("7", "result_tag")),  # the opening tag nearest the close
        ("[RESULT] 4 [/RESULT] then [RESULT]  [/RESULT]", ("4", "result_tag")),  # an empty pair is skipped
        ("The answer is \\boxed{\\frac{1}{2}}.", ("\\frac{1}{2}", "boxed")),  # nested braces
        ("\\boxed{2} then \\boxed{\\sqrt{\\frac{a}{b}}}", ("\\sqrt{\\frac{a}{b}}", "boxed")),
        ("It costs 1,250,000 dollars.", ("1250000", "last_number")),  # thousands separators
        ("Temperature fell to -12 then to -3.5 degrees.", ("-3.5", "last_number")),  # negative decimals
        ("Pages 10-15 were read.", ("15", "last_number")),  # a range's dash is not a minus sign
        ("[RESULT] 42", ("42", "last_number")),  # unclosed tag: not a tag answer
        ("no digits here", (None, None)),
    ],
)
def test_extract_answer(output, expected):
    assert gsm8k.extract_answer(output) == expected


def test_extract_answer_without_last_number_fallback():
    assert gsm8k.extract_answer("It is 12.", allow_last_number=False) == (None, None)
    assert gsm8k.extract_answer("[RESULT] 12 [/RESULT]", allow_last_number=False) == ("12", "result_tag")


@pytest.mark.parametrize(
    "text, value",
    [("$1,200.00", "1200"), ("70.00", "70"), ("70.", "70"), ("-0", "0"), ("\u22127 apples", "-7"), (".5 cups", "0.5")],
)
def test_number_normalization(text, value):
    assert gsm8k.canonical_number(gsm8k.to_number(text)) == value


# ---------------------------------------------------------------------------------------------
# GSM8K
# ---------------------------------------------------------------------------------------------


def test_gsm8k_score_verdicts_strict_and_flexible():
    items = [_item("18", "g/0"), _item("18", "g/1"), _item("1,200", "g/2"), _item("18", "g/3"), _item("-4", "g/4")]
    outputs = [
        "9 * 2 = 18\n[RESULT] $18.00 [/RESULT]",  # tag, with $ and decimals
        "She makes 18 dollars, so 18 in all.",  # last number only: flexible yes, strict no
        "Total \\boxed{1200}.",  # boxed, gold with a thousands separator
        "[RESULT] 19 [/RESULT] though 18 appears later",  # canary: a wrong tag answer is wrong
        "I cannot tell.",
    ]
    rows = gsm8k.score(items, outputs, CTX)
    assert [r["verdict"] for r in rows] == ["correct", "correct", "correct", "wrong", "no_answer"]
    assert [r["correct"] for r in rows] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert [r["correct_strict"] for r in rows] == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert [r["extracted_by"] for r in rows] == ["result_tag", "last_number", "boxed", "result_tag", None]
    assert rows[0]["pred_number"] == "18" and rows[2]["gold"] == "1200"

    summary = gsm8k.summarize(rows)
    assert summary["accuracy"] == pytest.approx(60.0)
    assert summary["accuracy_strict"] == pytest.approx(40.0)
    assert summary["result_tag_rate"] == pytest.approx(40.0)
    assert summary["n"] == 5
    assert gsm8k.PRIMARY in summary


def test_gsm8k_bad_input_raises_one_line_errors():
    with pytest.raises(ValueError, match="outputs"):
        gsm8k.score([_item("1")], [], CTX)
    with pytest.raises(ValueError, match="reference"):
        gsm8k.score([_item("many")], ["1"], CTX)
    with pytest.raises(ValueError, match="no rows"):
        gsm8k.summarize([])


def test_gsm8k_fewshot_are_seed_items_in_result_format():
    demos = gsm8k.fewshot_examples(5)
    assert len(demos) == 5 and demos == gsm8k.fewshot_examples(5)  # deterministic
    eval_prompts = {item.prompt for item in load_eval_items("gsm8k")}
    for question, answer in demos:
        assert question not in eval_prompts
        assert "<<" not in answer and "####" not in answer
        assert answer.endswith("[/RESULT]") and gsm8k.result_tag(answer) is not None
    # the demo answer scores correct against the demo's own gold (so it teaches the right format)
    assert gsm8k.score([_item("20")], [demos[0][1]], CTX)[0]["correct_strict"] == 1.0
    with pytest.raises(ValueError, match="smaller k"):
        gsm8k.fewshot_examples(10_000)


def test_build_messages_puts_demos_before_the_question():
    item = load_eval_items("gsm8k")[0]
    messages = gsm8k.build_messages(item, gsm8k.fewshot_examples(2))
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert item.prompt in messages[-1]["content"] and "[RESULT]" in messages[-1]["content"]
    assert gsm8k.build_messages(item) == messages[-1:]


# ---------------------------------------------------------------------------------------------
# MATH
# ---------------------------------------------------------------------------------------------

EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"),
    ("\\frac{1}{2}", "\\dfrac12"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("(1, 3]", "(1,3]"),
    ("(-\\infty, 0) \\cup (1, \\infty)", "(-\\infty,0)\\cup(1,\\infty)"),
    ("3", "x=3"),
    ("\\text{(C)}", "(C)"),
    ("\\text{Evelyn}", "Evelyn"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "$(3, \\pi/2)$"),
    ("90^\\circ", "90"),
    ("\\$32,\\!348", "32348"),
]
NOT_EQUIVALENT = [
    ("\\frac{1}{2}", "0.6"),
    ("2\\sqrt{2}", "\\sqrt{6}"),
    ("(1, 3]", "[1,3]"),
    ("3", "x=4"),
    ("\\frac{14}{3}", "\\frac{14}{3}+1"),  # a part of the answer must not match on its own
    ("\\text{(C)}", "(D)"),
    ("\\text{Evelyn}", "\\text{Navin}"),
]


def test_math_equivalence_accepts_equal_forms_and_rejects_wrong_ones():
    got_equal = [mathbench.is_equivalent(g, p) for g, p in EQUIVALENT]
    got_wrong = [mathbench.is_equivalent(g, p) for g, p in NOT_EQUIVALENT]
    assert got_equal == [True] * len(EQUIVALENT)
    assert got_wrong == [False] * len(NOT_EQUIVALENT)


def test_math_score_and_summarize():
    items = [_item("\\frac{1}{2}", "m/0", level=1), _item("2\\sqrt{2}", "m/1"), _item("12", "m/2"), _item("5", "m/3")]
    outputs = [
        "... so the probability is one half.\n[RESULT] 0.5 [/RESULT]",
        "Hence $\\boxed{\\sqrt{8}}$.",
        "The count is 12",  # flexible only
        "[RESULT] 6 [/RESULT]",  # canary
    ]
    rows = mathbench.score(items, outputs, CTX)
    assert [r["verdict"] for r in rows] == ["correct", "correct", "correct", "wrong"]
    assert [r["correct_strict"] for r in rows] == [1.0, 1.0, 0.0, 0.0]
    assert rows[0]["level"] == 1
    summary = mathbench.summarize(rows)
    assert summary["accuracy"] == pytest.approx(75.0)
    assert summary["accuracy_strict"] == pytest.approx(50.0)
    assert summary["timeouts"] == 0 and summary["n"] == 4
    assert mathbench.score([_item("1")], [""], CTX)[0]["verdict"] == "no_answer"


def test_math_scoring_works_from_a_worker_thread():
    # Canary: math-verify's own signal timeout refuses to run outside the main thread...
    from math_verify import parse, verify

    def raw():
        return verify(parse("$\\frac{1}{2}$", parsing_timeout=None), parse("$0.5$", parsing_timeout=None))

    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(ValueError, match="thread"):
            pool.submit(raw).result()
        # ...while our scorer, which runs it in a child process, gives the main-thread answers.
        items = [_item("\\frac{1}{2}"), _item("3")]
        rows = pool.submit(mathbench.score, items, ["[RESULT] 0.5 [/RESULT]", "\\boxed{4}"], CTX).result()
    assert threading.current_thread() is threading.main_thread()
    assert [r["verdict"] for r in rows] == ["correct", "wrong"]


def test_math_hard_timeout_kills_and_restarts_the_child():
    checker = mathbench.EquivalenceChecker(hard_timeout_s=0.0001)  # far below one math-verify call
    try:
        assert checker.check("x^2+2x+1", "(x+1)^2") is None  # timed out
        assert checker._proc is None  # killed, so no late reply can answer the next question
        checker.hard_timeout_s = 60.0
        assert checker.check("x^2+2x+1", "(x+1)^2") is True  # a fresh child answers
        assert checker.check("x^2+2x+1", "(x+1)^3") is False
    finally:
        checker.close()


def test_math_items_full_and_math500():
    math500 = load_eval_items("math")
    full = list(mathbench.full_items())
    assert len(math500) == 500 and len(full) == 5000
    assert len({item.id for item in full}) == 5000
    assert sum(item.extra["in_math500"] for item in full) == 500
    assert all(item.reference for item in full)
    assert full[0].reference == last_boxed(full[0].extra["solution"])
    with pytest.raises(ValueError, match="math500"):
        load_eval_items("math", SimpleNamespace(math_subset="train"))


def test_math_fewshot_outside_math500():
    demos = mathbench.fewshot_examples(8)
    in_500 = {item.prompt for item in load_eval_items("math")}
    assert len(demos) == 8 and len({q for q, _ in demos}) == 8
    for problem, answer in demos:
        assert problem not in in_500
        assert gsm8k.result_tag(answer) == last_boxed(answer.rsplit("[RESULT]", 1)[0])
    messages = mathbench.build_messages(load_eval_items("math")[0], demos[:1])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]


# ---------------------------------------------------------------------------------------------
# IFEval
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_nltk_data(tmp_path, monkeypatch):
    """No punkt anywhere nltk looks: NLTK_DATA and nltk.data.path point at an empty folder."""
    import nltk

    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    return tmp_path


def _ifeval(key: int) -> EvalItem:
    return next(item for item in load_eval_items("ifeval") if item.id == f"ifeval/{key}")


def test_upstream_punkt_path_needs_data_that_we_do_not_have(no_nltk_data):
    # Canary: this is what upstream's checkers would call, and it fails offline.
    import nltk
    from eval_framework.tasks.ifeval import instructions_util

    with pytest.raises(LookupError):
        instructions_util._get_sentence_tokenizer.__wrapped__()  # bypass its lru_cache
    with pytest.raises(LookupError):
        nltk.word_tokenize("One sentence. Two sentences.")
    # ours runs the sentence-count check without that data
    item = _ifeval(1268)  # "less than 6 sentences"
    assert ifeval.check_response(item, "I slept. I walked. I wrote it down.") == ([True], [True])
    assert ifeval.check_response(item, "One. Two. Three. Four. Five. Six. Seven.") == ([False], [False])
    # and the patch is scoped: upstream's module is restored afterwards
    assert instructions_util.nltk is nltk
    with pytest.raises(LookupError):
        instructions_util._get_sentence_tokenizer.__wrapped__()


@pytest.mark.parametrize(
    "key, compliant, violating",
    [
        (1001, "Good morrow dear traveller. First we sail to Tokyo.", "Good morrow, dear traveller."),
        (1128, "It is negative.\nIs there anything else I can help with?", "It is negative. Anything else?"),
        (
            1287,  # exactly 3 bullets and all lowercase
            "* he married the heiress\n* the crown came with her\n* so the river flows",
            "* He married the heiress\n* the crown came with her\n* so the river flows",
        ),
        (
            1314,  # all-caps words: at least 1 and fewer than 11 (uses word_tokenize)
            "AVOCADO is not a fish. SALMON is.",
            "AVOCADO IS NOT A FISH BUT SALMON IS A FISH THAT SWIMS UPSTREAM.",
        ),
    ],
)
def test_ifeval_compliant_passes_and_violating_fails(no_nltk_data, key, compliant, violating):
    item = _ifeval(key)
    rows = ifeval.score([item, item], [compliant, violating], CTX)
    assert rows[0]["verdict"] == "correct" and rows[0]["correct"] == 1.0
    assert rows[1]["verdict"] == "wrong" and rows[1]["correct"] == 0.0


def test_ifeval_loose_forgives_a_preamble_line_and_asterisks():
    item = _ifeval(1019)  # all lowercase
    response = "Sure! Here is my question:\nwhat are the two boys playing with?"
    (row,) = ifeval.score([item], [response], CTX)
    assert row["follow_strict"] == [False] and row["follow_loose"] == [True]
    (empty,) = ifeval.score([item], [""], CTX)
    assert empty["verdict"] == "no_answer" and empty["follow_loose"] == [False]


def test_ifeval_an_argument_upstream_draws_at_random_gives_one_verdict(monkeypatch):
    """IFEval prompt 1129 asks for 6 "!"; upstream's letter_frequency takes letters only and draws a
    random letter instead, on every call. Seeded per item, the verdict is the same on every call and
    run, strict and loose check the same letter, and the caller's random state is left as it was."""
    import random

    item = EvalItem(id="ifeval/1129", prompt="Pitch an ice cream. Use 6 or more exclamation marks \"!\".",
                    reference=None, extra={"instruction_id_list": ["keywords:letter_frequency"],
                                           "kwargs": [{"let_relation": "at least", "letter": "!", "let_frequency": 6}]})
    # Each letter a-e six times: whichever of those is drawn is there; others are not.
    response = "Sunnis! " + " ".join(["aaaaaa bbbbbb cccccc dddddd eeeeee"] * 1)

    def verdicts(n: int) -> set:
        out = set()
        for k in range(n):
            random.seed(k)  # a different caller state each time
            before = random.getstate()
            strict, loose = ifeval.check_response(item, response)
            out.add((tuple(strict), tuple(loose)))
            assert random.getstate() == before
        return out

    seen = verdicts(30)
    assert len(seen) == 1
    (strict, loose), = seen
    assert all(lo or not st for st, lo in zip(strict, loose))  # loose never below strict
    # canary: without the per-item seed the same response gets both verdicts
    real_seed = random.seed
    monkeypatch.setattr(random, "seed", lambda *a, **k: real_seed(*a, **k) if a and isinstance(a[0], int) else None)
    assert len(verdicts(30)) > 1


def test_ifeval_summarize_on_hand_made_rows():
    rows = [
        {"correct": 1.0, "correct_loose": 1.0, "follow_strict": [True, True], "follow_loose": [True, True]},
        {"correct": 0.0, "correct_loose": 1.0, "follow_strict": [True, False], "follow_loose": [True, True]},
        {"correct": 0.0, "correct_loose": 0.0, "follow_strict": [False], "follow_loose": [False]},
        {"correct": 1.0, "correct_loose": 1.0, "follow_strict": [True], "follow_loose": [True]},
    ]
    assert ifeval.summarize(rows) == {
        "prompt_level_strict": 50.0,
        "prompt_level_loose": 75.0,
        "instruction_level_strict": 100.0 * 4 / 6,
        "instruction_level_loose": 100.0 * 5 / 6,
        "n": 4.0,
    }
    assert ifeval.PRIMARY == "prompt_level_strict"


def test_ifeval_fewshot_demos_follow_their_own_instructions(no_nltk_data):
    demos = ifeval.fewshot_examples(len(ifeval.FEWSHOT_DEMOS))
    spoil = [  # one violation per demo, for the canary
        lambda r: r.split("\n", 1)[1],  # 2 bullets instead of 3
        lambda r: r.capitalize(),  # a capital letter
        lambda r: r.replace("Sunlight", "Sunlight, as you know,"),  # a comma
        lambda r: r + " Thanks!",  # words after the end phrase
    ]
    assert len(spoil) == len(demos)
    for demo, (prompt, response), bad in zip(ifeval.FEWSHOT_DEMOS, demos, spoil):
        extra = {"instruction_id_list": demo["instruction_id_list"], "kwargs": demo["kwargs"]}
        item = EvalItem("demo", prompt, None, extra)
        strict, _ = ifeval.check_response(item, response)
        assert all(strict), (prompt, strict)
        assert not all(ifeval.check_response(item, bad(response))[0]), prompt  # canary
        assert find_eval_overlap(prompt + "\n" + response) is None  # not an IFEval item in disguise
    with pytest.raises(ValueError, match="smaller k"):
        ifeval.fewshot_examples(len(ifeval.FEWSHOT_DEMOS) + 1)


def test_ifeval_bad_item_raises():
    with pytest.raises(ValueError, match="instruction_id_list"):
        ifeval.score([EvalItem("x", "p", None, {})], ["r"], CTX)
