"""The benchmarks: one folder each, and every table of benchmarks derived from those folders.

A folder NAME/ is a benchmark. Its __init__.py declares, and imports nothing heavy:
    DOMAIN       math | code | general: whose students it scores and which domain PGR it feeds
    PRIMARY      the metric PGR uses (a key of what task.summarize returns), percent
    JUDGED       whether it needs an LLM judge (evaluation.judge)
    DATA         the package file its items come from (items.PackageData: names the exact data version)
    load_items(ev=None) -> [EvalItem]   the items evaluated under an `evaluation` config (None: all)
    data_version(ev=None) -> str        (optional) the exact data when it is not DATA's alone
Its task.py holds the rest: build_messages, fewshot_examples, score, summarize (evaluation/run.py
imports it; nothing here does, so what depends on the table does not depend on the scorers).

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


@functools.lru_cache(maxsize=None)
def _all_items(name: str) -> tuple:
    return tuple(declaration(name).load_items(None))


def load_items(name: str, ev=None) -> list:
    """The benchmark's items under the `evaluation` config `ev` (None: every item it has)."""
    return list(_all_items(name)) if ev is None else declaration(name).load_items(ev)


def data_version(name: str, ev=None) -> str:
    """The exact data a benchmark's items come from (for the scores file): its own data_version when it
    declares one, else its DATA file's version."""
    decl = declaration(name)
    return decl.data_version(ev) if hasattr(decl, "data_version") else decl.DATA.version()


def fewshot_turns(render: Callable[[str], str], question: str,
                  fewshot: Sequence[tuple[str, str]] = ()) -> list[dict]:
    """Demos as earlier user/assistant turns, then the question; every user turn rendered alike."""
    messages: list[dict] = []
    for demo_question, demo_answer in fewshot:
        messages.append({"role": "user", "content": render(demo_question)})
        messages.append({"role": "assistant", "content": demo_answer})
    messages.append({"role": "user", "content": render(question)})
    return messages
