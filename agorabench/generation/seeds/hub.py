"""The paper's seed sets, loaded from the Hugging Face hub with ``datasets.load_dataset``.

Needs a network (and, for LIMA, a hub token of an account that accepted its terms). Every loader
also takes ``data_files=`` (a local JSON/JSONL/Parquet/CSV file or list of files with the same
columns) so it can be run offline on a small file; extra keyword arguments (``cache_dir=``,
``revision=``, ``token=``...) go to ``load_dataset``.

Formatting is the same as offline (``agorabench.generation.seeds.offline``): math IG responses end with
"[RESULT] <answer> [/RESULT]", code IG responses are ```python fenced blocks, RG seeds keep only the
instruction. Every loader decontaminates against the evaluation items (``decontaminate=False``
turns that off), recording its counts under "hub:<name>" in ``decontamination_report()``.

The paper's seed sets are those of docs/paper.md §1.1:

| setting      | paper seed                    | hub id used here (columns)                                         |
|--------------|-------------------------------|--------------------------------------------------------------------|
| math IG      | GSM8K train + MATH train      | openai/gsm8k "main" (question, answer); EleutherAI/hendrycks_math, one config per subject (problem, solution, type) |
| math RG      | Magpie-Reasoning (math)       | Magpie-Align/Magpie-Reasoning-V1-150K, task_category == "Math" (instruction) |
| math QE      | WebInstruct, math subset      | TIGER-Lab/WebInstructSub (orig_question, orig_answer), math by ``is_math`` |
| code IG      | MBPP train + xP3x             | google-research-datasets/mbpp "full" train (text, code, test_list, task_id) |
| code RG      | Magpie-Reasoning (code)       | Magpie-Align/Magpie-Reasoning-V1-150K, task_category == "Coding & Debugging" |
| code QE      | CoNaLa                        | neulab/conala data/conala-mined.json (intent, snippet, id)         |
| general IG   | LIMA                          | GAIR/lima train.jsonl (conversations: list of str, source)         |
| general RG   | Magpie(-Pro)                  | Magpie-Align/Magpie-Pro-300K-Filtered (instruction / conversations) |
| general QE   | WebInstruct, non-math subset  | TIGER-Lab/WebInstructSub, not ``is_math``                          |

Uncertain, to check on a machine with a network:
  * Hub ids and column names come from dataset cards and memory, not from a download here.
    MATH: "hendrycks/competition_math" was taken down; EleutherAI/hendrycks_math is the usual mirror.
    Magpie-Reasoning: the 150K set is published as "...-V1-150K" (older name "Magpie-Reasoning-150K");
    the task_category labels "Math" / "Coding & Debugging" are Magpie's own taxonomy.
  * GAIR/lima and neulab/conala are script datasets, which datasets>=3 no longer runs, so their
    raw files are read through hf:// paths with the json builder (conala-mined.json is assumed to
    be JSON Lines, which the json builder reads either way).
  * The paper's xP3x share of the 874 code IG seeds is unspecified and left out (MBPP train = 374).
  * The paper classified WebInstruct with GPT-4o-mini (docs/paper.md §1.1); that output is unreleased, so
    ``looks_like_math`` is a keyword/markup heuristic. Pass ``is_math=`` for a better classifier.
  * The paper dropped seeds longer than 4,096 Llama-3 tokens; no tokenizer is assumed here.
  * The paper's own IG seed files are on the hub as Augmentation-Scaling-Laws/math-seed-data
    (14,856 rows, seen); the code-/general- names follow the same pattern but were not seen
    (docs/paper.md §8): ``load_published_ig_seeds`` reads them.
RG/QE seeds are a deterministic 10K sample: the rows are shuffled with a fixed seed
(``datasets.Dataset.shuffle(seed=SAMPLE_SEED)``) and taken in that order until 10K survive
filtering and decontamination.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from agorabench.evaluation.items import MATH_SUBJECTS, as_list
from agorabench.generation.seeds import SeedExample, check_setting, decontaminate as _decontaminate
from agorabench.generation.seeds.offline import fenced_python, gsm8k_answer_to_target, math_solution_to_target, mbpp_instruction

SAMPLE_SEED = 42
SAMPLE_SIZE = 10_000  # RG and QE seed-set size in the paper

LIMA_FILES = "hf://datasets/GAIR/lima/train.jsonl"
CONALA_MINED_FILES = "hf://datasets/neulab/conala/data/conala-mined.json"
MAGPIE_REASONING = "Magpie-Align/Magpie-Reasoning-V1-150K"
MAGPIE_PRO = "Magpie-Align/Magpie-Pro-300K-Filtered"
MAGPIE_CATEGORY = {"math": "Math", "code": "Coding & Debugging"}
WEBINSTRUCT = "TIGER-Lab/WebInstructSub"


def _dataset(path: str | None, name: str | None = None, split: str = "train", data_files=None, **load_kwargs):
    """A ``datasets.Dataset``: from the hub, or from local/hf:// ``data_files`` with a generic builder."""
    from datasets import load_dataset  # imported here: `datasets` is slow to import and only hub loads need it

    if data_files is None:
        return load_dataset(path, name, split=split, **load_kwargs)
    first = str(data_files if isinstance(data_files, (str, Path)) else list(data_files)[0])
    builder = "parquet" if first.endswith(".parquet") else "csv" if first.endswith(".csv") else "json"
    files = [str(f) for f in data_files] if isinstance(data_files, (list, tuple)) else str(data_files)
    return load_dataset(builder, data_files={split: files}, split=split, **load_kwargs)


def _finish(seeds: Iterable[SeedExample], label: str, decontaminate: bool, limit: int | None) -> list[SeedExample]:
    if decontaminate:
        return _decontaminate(seeds, f"hub:{label}", limit=limit, source="hub")
    out = []
    for seed in seeds:
        if limit is not None and len(out) >= limit:
            break
        out.append(seed)
    return out


def _shuffled(ds) -> Iterator[dict]:
    # A fixed-seed shuffle of the whole set, iterated lazily: a deterministic sample without
    # materializing millions of rows.
    return iter(ds.shuffle(seed=SAMPLE_SEED))


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# S_Ø's few-shot demos
# ---------------------------------------------------------------------------------------------

# Where the few-shot demos of the base model come from when the seeds come from the hub: splits that are
# never evaluated (with hub seeds the whole GSM8K, MATH and MBPP test sets are). MBPP's "prompt" split
# (task ids 1-10) is the one its authors set aside for few-shot prompts.
FEWSHOT_SPLITS = {
    "gsm8k": ("openai/gsm8k", "main", "train"),
    "math": ("EleutherAI/hendrycks_math", None, "train"),
    "mbpp": ("google-research-datasets/mbpp", "full", "prompt"),
}


def fewshot_docs(benchmark: str) -> list[dict]:
    """Rows of the split FEWSHOT_SPLITS names for `benchmark`, in file order; MATH's rows carry their
    "subject" (one hub config per subject, MATH_SUBJECTS order)."""
    path, name, split = FEWSHOT_SPLITS[benchmark]
    try:
        if benchmark == "math":
            return [{**row, "subject": subject} for subject in MATH_SUBJECTS
                    for row in _dataset(path, subject, split)]
        return [dict(row) for row in _dataset(path, name, split)]
    except Exception as e:  # offline, HF_HUB_OFFLINE=1, a renamed dataset: all mean "not from here"
        reason = " ".join(str(e).split())[:200]
        raise ConnectionError(f"seeds.source: hub: the base model's few-shot demos come from {path} ({split} split), "
                              f"which could not be loaded ({type(e).__name__}: {reason}); it needs a network, "
                              f"or set evaluation.base_fewshot: 0 or seeds.source: offline") from None


# ---------------------------------------------------------------------------------------------
# Instance generation
# ---------------------------------------------------------------------------------------------


def load_gsm8k_train(
    path: str = "openai/gsm8k", name: str | None = "main", split: str = "train", data_files=None,
    decontaminate: bool = True, **load_kwargs,
) -> list[SeedExample]:
    ds = _dataset(path, name, split, data_files, **load_kwargs)

    def rows():
        for i, row in enumerate(ds):
            response = gsm8k_answer_to_target(row["answer"])
            if response:
                yield SeedExample(f"gsm8k/{split}/{i:04d}", row["question"], response, "gsm8k")

    return _finish(rows(), "gsm8k_train", decontaminate, None)


def load_math_train(
    path: str = "EleutherAI/hendrycks_math", subjects: tuple[str, ...] = MATH_SUBJECTS, split: str = "train",
    data_files=None, decontaminate: bool = True, **load_kwargs,
) -> list[SeedExample]:
    """MATH train (7,500). On the hub one config per subject; a local file has a ``type`` column instead."""
    if data_files is not None:
        ds = _dataset(None, None, split, data_files, **load_kwargs)
        parts = [(None, ds)]
    else:
        parts = [(subject, _dataset(path, subject, split, None, **load_kwargs)) for subject in subjects]

    def rows():
        for subject, ds in parts:
            for i, row in enumerate(ds):
                subj = subject or re.sub(r"\W+", "_", str(row.get("type") or "unknown").lower()).strip("_")
                response = math_solution_to_target(row["solution"])
                if response:
                    yield SeedExample(f"math/{split}/{subj}/{i:04d}", row["problem"], response, "math")

    return _finish(rows(), "math_train", decontaminate, None)


def load_mbpp_train(
    path: str = "google-research-datasets/mbpp", name: str | None = "full", split: str = "train",
    data_files=None, decontaminate: bool = True, **load_kwargs,
) -> list[SeedExample]:
    ds = _dataset(path, name, split, data_files, **load_kwargs)

    def rows():
        for row in ds:
            tests = as_list(row["test_list"])
            if tests:
                instruction = mbpp_instruction(row["text"], tests[0])
                yield SeedExample(f"mbpp/{int(row['task_id'])}", instruction, fenced_python(row["code"]), "mbpp")

    return _finish(rows(), "mbpp_train", decontaminate, None)


def load_lima(
    data_files=LIMA_FILES, split: str = "train", decontaminate: bool = True, **load_kwargs
) -> list[SeedExample]:
    """LIMA's single-turn pairs: the first user turn and the first answer of each conversation."""
    ds = _dataset(None, None, split, data_files, **load_kwargs)

    def rows():
        for i, row in enumerate(ds):
            turns = row["conversations"]
            if len(turns) >= 2 and turns[0].strip() and turns[1].strip():
                yield SeedExample(f"lima/{split}/{i:04d}", turns[0].strip(), turns[1].strip(), "lima")

    return _finish(rows(), "lima", decontaminate, None)


def load_published_ig_seeds(
    domain: str, path: str | None = None, data_files=None, decontaminate: bool = True, **load_kwargs
) -> list[SeedExample]:
    """The paper's own IG seed files ({config, instruction, response}), already in the target format."""
    check_setting(domain, "instance_generation")
    ds = _dataset(path or f"Augmentation-Scaling-Laws/{domain}-seed-data", None, "train", data_files, **load_kwargs)
    seeds = (
        SeedExample(f"{domain}-seed-data/{i:05d}", row["instruction"], row["response"], row.get("config") or domain)
        for i, row in enumerate(ds)
    )
    return _finish(seeds, f"published_{domain}_seed_data", decontaminate, None)


# ---------------------------------------------------------------------------------------------
# Response generation (instructions only)
# ---------------------------------------------------------------------------------------------


def _magpie_instruction(row: dict) -> str:
    if row.get("instruction"):
        return row["instruction"]
    for turn in row.get("conversations") or []:  # some Magpie sets only have ShareGPT-style turns
        if turn.get("from") in ("human", "user"):
            return turn.get("value") or ""
    return ""


def load_magpie(
    domain: str, path: str | None = None, split: str = "train", data_files=None, limit: int | None = SAMPLE_SIZE,
    decontaminate: bool = True, **load_kwargs,
) -> list[SeedExample]:
    """10K Magpie instructions: Magpie-Reasoning math/code by ``task_category``, Magpie-Pro for general."""
    check_setting(domain, "response_generation")
    default = MAGPIE_PRO if domain == "general" else MAGPIE_REASONING
    ds = _dataset(path or default, None, split, data_files, **load_kwargs)
    category = MAGPIE_CATEGORY.get(domain)

    def rows():
        for row in _shuffled(ds):
            if category and row.get("task_category") != category:
                continue
            instruction = _magpie_instruction(row).strip()
            if instruction:
                key = row.get("uuid") or row.get("conversation_id") or _short_hash(instruction)
                yield SeedExample(f"magpie_{domain}/{key}", instruction, "", f"magpie_{domain}")

    return _finish(rows(), f"magpie_{domain}", decontaminate, limit)


# ---------------------------------------------------------------------------------------------
# Quality enhancement (raw pairs)
# ---------------------------------------------------------------------------------------------

_MATH_MARKUP = re.compile(r"\$|\\frac|\\sqrt|\\int|\\sum|\\lim|\^\{?\d|\d\s*[-+*/=]\s*\d")
_MATH_WORDS = re.compile(
    r"\b(solve|equation|integral|derivative|polynomial|probability|matrix|vector|theorem|prove|"
    r"factor|simplify|calculate|compute|evaluate|function|limit|series|triangle|angle|fraction|"
    r"percent|algebra|geometry|calculus|logarithm|inequality|prime|integer)s?\b",
    re.IGNORECASE,
)


def looks_like_math(question: str, answer: str = "") -> bool:
    """Crude stand-in for the paper's GPT-4o-mini math/other classification (unreleased).

    Math when the question has math markup and a math word, or two distinct math words.
    Expect physics/chemistry calculations to land on the math side.
    """
    words = {w.lower() for w in _MATH_WORDS.findall(question)}
    return len(words) >= 2 or (bool(words) and bool(_MATH_MARKUP.search(question)))


def load_webinstruct(
    domain: str, path: str = WEBINSTRUCT, split: str = "train", data_files=None, limit: int | None = SAMPLE_SIZE,
    is_math: Callable[[str, str], bool] = looks_like_math, decontaminate: bool = True, **load_kwargs,
) -> list[SeedExample]:
    """10K raw web Q/A pairs (the ``orig_*`` columns, before MAmmoTH2's refinement), math or non-math."""
    if domain not in ("math", "general"):
        raise ValueError(f"WebInstruct seeds exist for domain 'math' or 'general', not {domain!r}")
    ds = _dataset(path, None, split, data_files, **load_kwargs)
    want_math = domain == "math"

    def rows():
        for row in _shuffled(ds):
            question = (row.get("orig_question") or row.get("question") or "").strip()
            answer = (row.get("orig_answer") or row.get("answer") or "").strip()
            if question and answer and is_math(question, answer) == want_math:
                key = row.get("index")
                key = key if key is not None else _short_hash(question)
                yield SeedExample(f"webinstruct/{key}", question, answer, f"webinstruct_{domain}")

    return _finish(rows(), f"webinstruct_{domain}", decontaminate, limit)


def load_conala(
    data_files=CONALA_MINED_FILES, split: str = "train", limit: int | None = SAMPLE_SIZE,
    decontaminate: bool = True, **load_kwargs,
) -> list[SeedExample]:
    """10K CoNaLa (intent, snippet) pairs; mined by default (the curated train set has only 2,379)."""
    ds = _dataset(None, None, split, data_files, **load_kwargs)

    def rows():
        for row in _shuffled(ds):
            intent = (row.get("rewritten_intent") or row.get("intent") or "").strip()
            snippet = row.get("snippet") or ""
            if intent and snippet.strip():
                key = row.get("id") or row.get("question_id") or _short_hash(intent + snippet)
                yield SeedExample(f"conala/{key}", intent, snippet, "conala")

    return _finish(rows(), "conala", decontaminate, limit)


# ---------------------------------------------------------------------------------------------


def build(domain: str, method: str) -> list[SeedExample]:
    """The paper's seed set of one setting (needs the network)."""
    check_setting(domain, method)
    if method == "instance_generation":
        if domain == "math":
            return load_gsm8k_train() + load_math_train()
        return load_mbpp_train() if domain == "code" else load_lima()
    if method == "response_generation":
        return load_magpie(domain)
    return load_conala() if domain == "code" else load_webinstruct(domain)
