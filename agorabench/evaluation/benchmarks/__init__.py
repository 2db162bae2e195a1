"""The benchmarks: one folder each, and every table of benchmarks derived from those folders.

A folder NAME/ is a benchmark. Its __init__.py declares, and imports nothing heavy:
    DOMAIN       math | code | general: whose students it scores and which domain PGR it feeds
    PRIMARY      the metric PGR uses (a key of what task.summarize returns), percent
    JUDGED       whether it needs an LLM judge (evaluation.judge)
    DATA         the package file its items come from (items.PackageData: names the exact data version)
    load_items(ev=None, seed_source="offline") -> [EvalItem]
                 its standard test set (the version `ev` picks; None: every packaged item it has)
    data_version(ev=None, seed_source="offline") -> str   (optional) the exact data, when not DATA's alone
    offline_seed_ids() -> frozenset[str]   (optional) its items the offline seeds are made of
Its task.py holds the rest: build_messages, fewshot_examples(k, seed_source), score, summarize
(evaluation/run.py imports it; nothing here does, so what depends on the table does not depend on the
scorers).

The evaluation set is the standard test set, minus the items the seeds are made of when the seeds come
from that same test set: the offline seeds take a quarter of the GSM8K and MBPP test sets and the MATH
test problems outside MATH-500, because no package ships those train splits. Hub seeds come from
train splits, so with `seeds.source: hub` every benchmark runs on its whole test set (leave_out_seeds).

Adding a benchmark is adding a folder; NAMES, domains() and everything that lists benchmarks
(params validation, the evaluation stage, decontamination of seeds, the dry-run plan) read it from
here. Which benchmarks make up a domain's PGR is evaluation.benchmarks in params.yaml.

May import: evaluation.items (declarations); task modules also the rest of evaluation, generation.seeds.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Callable, Sequence

NAMES: tuple[str, ...] = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg))


def declaration(name: str):
    """The folder's __init__ module: DOMAIN, PRIMARY, JUDGED, load_items, data_version."""
    if name not in NAMES:
        raise ValueError(f"unknown benchmark {name!r}; allowed: {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}")


@functools.cache
def domains() -> dict[str, str]:
    """benchmark -> its domain."""
    return {name: declaration(name).DOMAIN for name in NAMES}


def judged(name: str) -> bool:
    return declaration(name).JUDGED


SEED_SOURCES = ("offline", "hub")  # seeds.source


def seed_item_ids(name: str, seed_source: str) -> frozenset[str]:
    """Ids of the benchmark's test items that the seeds (and S_Ø's few-shot demos) are made of: only
    the offline seeds come from test sets; the hub's come from train splits and use none."""
    if seed_source not in SEED_SOURCES:
        raise ValueError(f"unknown seed source {seed_source!r}; allowed: {', '.join(SEED_SOURCES)}")
    decl = declaration(name)
    if seed_source == "hub" or not hasattr(decl, "offline_seed_ids"):
        return frozenset()
    return decl.offline_seed_ids()


def leave_out_seeds(items: Sequence, seed_ids: frozenset[str]) -> list:
    """The evaluation set: `items` (a standard test set) without the ones seeds are made of."""
    return [item for item in items if item.id not in seed_ids]


def evaluation_set(name: str, ev=None, seed_source: str = "offline") -> tuple[list, int]:
    """(the benchmark's evaluation set, how many seed items were left out of its test set) under the
    `evaluation` config `ev` (None: every packaged item it may evaluate), seeds from `seed_source`."""
    test_set = declaration(name).load_items(ev, seed_source)
    items = leave_out_seeds(test_set, seed_item_ids(name, seed_source))
    return items, len(test_set) - len(items)


@functools.lru_cache(maxsize=None)
def _all_items(name: str, seed_source: str) -> tuple:
    return tuple(evaluation_set(name, None, seed_source)[0])


def load_items(name: str, ev=None, seed_source: str = "offline") -> list:
    """The benchmark's evaluation set (see evaluation_set)."""
    return list(_all_items(name, seed_source)) if ev is None else evaluation_set(name, ev, seed_source)[0]


def data_version(name: str, ev=None, seed_source: str = "offline") -> str:
    """The exact data a benchmark's test set comes from (for the scores file): its own data_version when
    it declares one, else its DATA file's version."""
    decl = declaration(name)
    return decl.data_version(ev, seed_source) if hasattr(decl, "data_version") else decl.DATA.version()


def fewshot_turns(render: Callable[[str], str], question: str,
                  fewshot: Sequence[tuple[str, str]] = ()) -> list[dict]:
    """Demos as earlier user/assistant turns, then the question; every user turn rendered alike."""
    messages: list[dict] = []
    for demo_question, demo_answer in fewshot:
        messages.append({"role": "user", "content": render(demo_question)})
        messages.append({"role": "assistant", "content": demo_answer})
    messages.append({"role": "user", "content": render(question)})
    return messages
