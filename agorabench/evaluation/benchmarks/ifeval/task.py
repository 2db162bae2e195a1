"""IFEval: 541 prompts with instructions a program can check ("no commas", "at least 300 words", ...).

Judge-free. The checker classes and the strict/loose evaluation functions are upstream's, imported
from ``llm-eval-framework`` (``eval_framework.tasks.ifeval``, a copy of Google's IFEval code).

One difference from upstream, on purpose: upstream counts sentences with nltk's *trained* English
Punkt model (``nltk.data.load("tokenizers/punkt/english.pickle")``, and ``nltk.word_tokenize`` loads
``punkt_tab``). No package ships that data and we never download it. While scoring we therefore swap,
in upstream's ``instructions_util`` module only, the sentence tokenizer for an *untrained*
``PunktSentenceTokenizer`` that knows a short list of common English abbreviations (ours, below),
and ``word_tokenize`` for the same splitter followed by nltk's Treebank-style word tokenizer (what
upstream ``word_tokenize`` does after sentence splitting). The trained model has learned many more
abbreviations and collocations, so sentence counts can differ on rarer abbreviations ("Gen. Lee"),
initials and the like; the "number_sentences" instruction (52 of 541 prompts) is the one that can be
affected, and "capital_word_frequency" (25) only through tokenization at sentence ends.

langdetect (language and case instructions) is random unless seeded: we seed it (0) while scoring,
so the same response always gets the same verdict; upstream leaves it unseeded. So is an argument
upstream draws at random where the item's value does not suit it (check_response): seeded per item.

Metrics (0-100): prompt-level strict (PRIMARY: all instructions of a prompt followed), prompt-level
loose, instruction-level strict and loose (pooled over all instructions). "Loose" is upstream's: an
instruction counts as followed if any of 8 variants of the response follows it (as is, without
asterisks, without its first line, without its last line, without both, and combinations).
"""

from __future__ import annotations

import contextlib
import random
import threading
from typing import Iterator, Sequence

import langdetect
import nltk
import numpy as np
from eval_framework.tasks.ifeval import evaluation, instructions_util

from agorabench.evaluation.context import ScoreContext
from agorabench.evaluation.resampling import mean_correct, mean_per_replicate
from agorabench.evaluation.items import EvalItem

from agorabench.evaluation.benchmarks.ifeval import DOMAIN, PRIMARY  # noqa: E402,F401  (declared there)


def build_messages(item: EvalItem, fewshot: Sequence[tuple[str, str]] = ()) -> list[dict]:
    # IFEval prompts already say everything: they are sent as they are, as upstream does.
    messages: list[dict] = []
    for prompt, response in fewshot:
        messages.append({"role": "user", "content": prompt})
        messages.append({"role": "assistant", "content": response})
    messages.append({"role": "user", "content": item.prompt})
    return messages


# Hand-written demos (our own prompts, not IFEval items). Each lists the IFEval checks it satisfies,
# so the tests can prove every demo response passes them.
FEWSHOT_DEMOS: tuple[dict, ...] = (
    {
        "prompt": "Describe a lighthouse at night in three short points. Format them as a markdown list "
        "where each line starts with an asterisk and a space.",
        "response": "* A pale beam turns slowly over the black water.\n"
        "* Waves crash on the rocks at the foot of the tower.\n"
        "* The keeper climbs the spiral stairs to trim the lamp.",
        "instruction_id_list": ["detectable_format:number_bullet_lists"],
        "kwargs": [{"num_bullets": 3}],
    },
    {
        "prompt": "Write a two-sentence note that invites a neighbour to a garden party on Sunday. "
        "Use only lowercase letters, no capitals anywhere.",
        "response": "hi sam, we are having a small garden party this sunday afternoon and would love for you "
        "to come by. bring nothing but yourself, there will be plenty of lemonade and cake.",
        "instruction_id_list": ["change_case:english_lowercase"],
        "kwargs": [{}],
    },
    {
        "prompt": "Why does the sky look blue? Answer in fewer than four sentences and without a single comma.",
        "response": "Sunlight holds every colour of visible light. The gases of the air scatter short blue "
        "waves far more than long red ones. That scattered blue light reaches our eyes from every part "
        "of the sky.",
        "instruction_id_list": ["length_constraints:number_sentences", "punctuation:no_comma"],
        "kwargs": [{"relation": "less than", "num_sentences": 4}, {}],
    },
    {
        "prompt": "Invent a title for a poem about falling leaves and write its opening two lines. Put the "
        "title between double angle brackets like <<this>>, and finish with the words "
        '"Shall I write the rest?" and nothing after them.',
        "response": "<<The Slow Letting Go>>\n\nThe maple lets its red coins fall,\n"
        "and the path keeps every one.\n\nShall I write the rest?",
        "instruction_id_list": ["detectable_format:title", "startend:end_checker"],
        "kwargs": [{}, {"end_phrase": "Shall I write the rest?"}],
    },
)


def fewshot_examples(k: int, seed_source: str = "offline") -> list[tuple[str, str]]:
    """The first k of our hand-written demos (IFEval has no training split)."""
    if k > len(FEWSHOT_DEMOS):
        raise ValueError(f"fewshot k={k} is more than the {len(FEWSHOT_DEMOS)} IFEval demos; use a smaller k")
    return [(d["prompt"], d["response"]) for d in FEWSHOT_DEMOS[:k]]


# ---------------------------------------------------------------------------------------------
# Running upstream's checkers without nltk data
# ---------------------------------------------------------------------------------------------

# Lower-case abbreviation types, without their final period, as PunktParameters stores them.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "etc", "e.g", "i.e", "cf", "al",
    "approx", "fig", "no", "vol", "ch", "sec", "inc", "ltd", "co", "corp", "dept", "est", "gov", "jan", "feb",
    "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "a.m", "p.m",
}  # fmt: skip


def _sentence_splitter() -> nltk.tokenize.PunktSentenceTokenizer:
    params = nltk.tokenize.punkt.PunktParameters()
    params.abbrev_types = set(_ABBREVIATIONS)
    return nltk.tokenize.PunktSentenceTokenizer(params)


_SPLITTER = _sentence_splitter()
_WORDS = nltk.tokenize.NLTKWordTokenizer()


def _word_tokenize(text: str, language: str = "english", preserve_line: bool = False) -> list[str]:
    # Same shape as nltk.word_tokenize, with our splitter in place of the downloaded Punkt model.
    sentences = [text] if preserve_line else _SPLITTER.tokenize(text)
    return [token for sentence in sentences for token in _WORDS.tokenize(sentence)]


class _NltkWithoutPunkt:
    """Stands in for the ``nltk`` module inside ``instructions_util``: everything is nltk's except word_tokenize."""

    word_tokenize = staticmethod(_word_tokenize)

    def __getattr__(self, name: str):
        return getattr(nltk, name)


_PATCH_LOCK = threading.RLock()


@contextlib.contextmanager
def punkt_free_checkers() -> Iterator[None]:
    """While inside, upstream's checkers need no nltk data and langdetect is deterministic.

    Patches attributes of upstream's ``instructions_util`` module only (not nltk itself) and restores
    them on exit; a re-entrant lock keeps concurrent callers from restoring each other's patches.
    """
    with _PATCH_LOCK:
        saved = (instructions_util._get_sentence_tokenizer, instructions_util.nltk, langdetect.DetectorFactory.seed)
        instructions_util._get_sentence_tokenizer = lambda: _SPLITTER
        instructions_util.nltk = _NltkWithoutPunkt()
        langdetect.DetectorFactory.seed = 0
        try:
            yield
        finally:
            instructions_util._get_sentence_tokenizer, instructions_util.nltk, langdetect.DetectorFactory.seed = saved


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def _input_example(item: EvalItem) -> evaluation.InputExample:
    ids = item.extra.get("instruction_id_list")
    kwargs = item.extra.get("kwargs")
    if not ids or kwargs is None or len(ids) != len(kwargs):
        raise ValueError(f"item {item.id}: extra needs equally long instruction_id_list and kwargs; use eval_items")
    # Some IFEval copies fill every unused argument with None; upstream's build_description wants them absent.
    clean = [{k: v for k, v in kw.items() if v is not None} for kw in kwargs]
    return evaluation.InputExample(key=item.id, instruction_id_list=list(ids), prompt=item.prompt, kwargs=clean)


def check_response(item: EvalItem, response: str) -> tuple[list[bool], list[bool]]:
    """(strict, loose) followed-or-not per instruction of `item`, by upstream's evaluation functions.

    Upstream's build_description draws a random value for an argument the item leaves out or gives
    in a form it rejects (letter_frequency's letter "#" in one IFEval prompt: a random letter on each
    call). Python's `random` is therefore seeded from the item id before each of the two checks and
    restored after: the same response gets the same verdict in every run, and strict and loose check
    the same letter (unseeded, loose came out below strict for that prompt)."""
    example = _input_example(item)
    with punkt_free_checkers():
        state = random.getstate()
        try:
            random.seed(f"ifeval {item.id}")
            strict = evaluation.test_instruction_following_strict(example, {item.prompt: response})
            random.seed(f"ifeval {item.id}")
            loose = evaluation.test_instruction_following_loose(example, {item.prompt: response})
        finally:
            random.setstate(state)
    return list(strict.follow_instruction_list), list(loose.follow_instruction_list)


def score(items: list[EvalItem], outputs: list[str], ctx: ScoreContext) -> list[dict]:
    if len(items) != len(outputs):
        raise ValueError(f"score: {len(items)} items but {len(outputs)} outputs; pass one output per item")
    rows = []
    for item, output in zip(items, outputs):
        response = output or ""
        strict, loose = check_response(item, response)
        if not response.strip():
            verdict = "no_answer"
        else:
            verdict = "correct" if all(strict) else "wrong"
        rows.append(
            {
                "id": item.id,
                "extracted": response,  # the whole response is what the instructions constrain
                "instruction_id_list": list(item.extra["instruction_id_list"]),
                "follow_strict": strict,
                "follow_loose": loose,
                "correct": float(all(strict)),
                "correct_loose": float(all(loose)),
                "verdict": verdict,
            }
        )
    return rows


def summarize(rows: list[dict]) -> dict[str, float]:
    if not rows:
        raise ValueError("summarize: no rows; score at least one item first")
    n = len(rows)
    strict = [ok for r in rows for ok in r["follow_strict"]]
    loose = [ok for r in rows for ok in r["follow_loose"]]
    return {
        "prompt_level_strict": 100.0 * sum(r["correct"] for r in rows) / n,
        "prompt_level_loose": 100.0 * sum(r["correct_loose"] for r in rows) / n,
        "instruction_level_strict": 100.0 * sum(strict) / len(strict),
        "instruction_level_loose": 100.0 * sum(loose) / len(loose),
        "n": float(n),
    }


def bootstrap_scores(items: list[list[dict]], counts):
    """summarize()'s prompt_level_strict on bootstrap replicates of the items (evaluation/resampling.py)."""
    return mean_correct(items, counts)


def bootstrap_instruction_level_strict(items: list[list[dict]], counts):
    """summarize()'s instruction_level_strict on bootstrap replicates of the items (the default's IFEval
    metric): the instructions followed over the instructions given, on the drawn prompts. A prompt's
    share weighted by its instructions is that ratio, so it is mean_per_replicate's weighted mean."""
    given = np.array([float(len(rows[0]["follow_strict"])) for rows in items])
    followed = np.array([float(sum(rows[0]["follow_strict"])) for rows in items])
    return 100.0 * mean_per_replicate(followed / given, np.asarray(counts) * given[None, :])
