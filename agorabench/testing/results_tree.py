"""A small but complete tree of pipeline output files, for the tests of everything downstream of
them: collect, the results database and its views, the report.

It writes the files the pipeline stages write, with the stages' own records (generation manifests
and datasets, student checkpoints and loss logs, evaluation scores and items, intrinsic summaries),
not Parquet or DuckDB directly, so a test built on it exercises `collect` too.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow.parquet as pq

from agorabench.config import EvaluationConfig, Params
from agorabench.evaluation.items import EvalItem
from agorabench.evaluation.resampling import task_module
from agorabench.evaluation.records import BenchmarkScores
from agorabench.evaluation.run import ModelRef, _items_table
from agorabench.generation.records import (ContaminationMatch, ContaminationReport, DatasetManifest, DropList,
                                           FlaggedInstance, Instance, write_contamination, write_dataset)
from agorabench.intrinsic.records import IntrinsicSummary
from agorabench.models.checkpoints import STUDENT_FILE, StudentRecord
from agorabench.models.store import Completion
from agorabench.setting import Setting, settings
from agorabench.training.records import TrainingMetrics

GENS = ("alpha", "beta")
TREE_REPLICATES = 50


@dataclass(frozen=True)
class Tree:
    """The params that describe the tree (every folder under its root) and those folders."""

    params: Params
    out: Path
    generated: Path
    checkpoints: Path
    train_logs: Path
    eval: Path
    intrinsic: Path
    requests_db: Path


def tree_params(root: str | Path, generators: Sequence[str] = GENS, scaling: dict | None = None) -> Params:
    """Params whose generators are `generators` (all nine settings each) and whose outputs live under `root`."""
    root = Path(root)
    return Params.model_validate({
        "generators": {g: {"backend": "openai", "model": f"{g}-model", "price_in_per_mtok": 1.0,
                           "price_out_per_mtok": 2.0} for g in generators},
        "benchmark_generators": list(generators),
        "generation": {"output_dir": str(root / "data/generated")},
        "training": {"output_dir": str(root / "data/checkpoints"), "logs_dir": str(root / "data/train")},
        "evaluation": {"output_dir": str(root / "data/eval"), "scores_dir": str(root / "data/scores"),
                       "generators": list(generators)},
        "intrinsic": {"output_dir": str(root / "data/intrinsic")},
        "cache": {"requests_db": str(root / ".agora/requests.sqlite")},
        # 50 bootstrap replicates, not 1000: AlpacaEval's replicates are a GLM fit each (alpacaeval/task.py).
        "analysis": {"results_dir": str(root / "data/results"), "history_dir": str(root / "data/history"),
                     "bootstrap_replicates": TREE_REPLICATES},
        "scaling": scaling or {},
    })


def write_tree(root: str | Path, generators: Sequence[str] = GENS, scaling: dict | None = None) -> Tree:
    """Write the files of `tree_params(root, generators, scaling)` and return the tree.

    Every setting gets a 3-row dataset with its manifest and contamination report, a student with
    training metrics and a 2-step loss curve, intrinsic metrics (scaling prefixes have none, as in the
    pipeline), and scores on its domain's two benchmarks; base, reference and each generator are scored
    on all six. Student and generator scores are drawn from one seeded generator, so the same arguments
    give the same files.
    """
    params = tree_params(root, generators, scaling)
    rng = random.Random(1)
    for s in settings(params):
        gen, method, domain = s.name, s.method, s.domain
        rows = [Instance(id=f"{gen}/{method}/{domain}/{k:06d}", instruction=f"Q{k} of {domain} | by {gen}",
                         response=f"A{k}\nline two", config=f"{gen}-model", generator=gen, method=method,
                         domain=domain, attempt=k, seed_ids=[f"s{k}"], theme=None, first_word=None,
                         prompt_sha256="p", request_key=f"{gen}{method}{domain}{k}", input_tokens=100 + k,
                         output_tokens=50 + k, cost_usd=0.001) for k in range(3)]
        manifest = DatasetManifest(
            generator=gen, backend="openai", model=f"{s.generator}-model", domain=domain, method=method,
            num_requested=3, num_valid=3, complete=True, shortfall_reason=None, attempts=4,
            rejections={"no_answer": 1}, cost_usd=0.004, input_tokens=420, output_tokens=210, latency_s=2.0,
            prompt_format="text",
            prompt_file=f"{method}_{domain}.txt", prompt_set_sha256="x", sampling={"t": 1}, seed=42,
            seed_source="offline", num_seeds=10, seeds_sha256="y", versions={"agorabench": "0"})
        write_dataset(s.dataset(params), rows, [], manifest)
        _write_contamination(params, s)
        ckpt = s.checkpoint(params)
        ckpt.mkdir(parents=True)
        (ckpt / STUDENT_FILE).write_text(StudentRecord(
            generator=gen, method=method, domain=domain, trained=True, base="tiny", base_path="tiny", lora=False,
            system_prompt=None, dataset=str(s.dataset(params)["data"]), generated_examples=3, seed_examples=0,
            examples=3, examples_sha256="e", training={"learning_rate": 1e-5}).to_json())
        logs = s.train_logs(params)
        logs["metrics"].parent.mkdir(parents=True, exist_ok=True)
        logs["metrics"].write_text(TrainingMetrics(
            trained=True, final_loss=0.5, first_loss=2.0, train_loss=1.0, steps=2, epochs=1.0, examples=3,
            seed_examples=0, wall_s=1.5, train_tokens=100, tokens_per_s=66.7).to_json())
        logs["loss"].write_text("step,epoch,loss,learning_rate\n1,0.5,2.0,1e-05\n2,1.0,0.5,1e-05\n")
        if s.size is None:
            paths = s.intrinsic(params)
            paths["parquet"].parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"id": [r.id for r in rows], "difficulty": [2.0, 3.0, None],
                          "quality": [4.0, 5.0, 3.0], "perplexity": [3.0, 4.0, 5.0]}
                         ).to_parquet(paths["parquet"], index=False)
            paths["summary"].write_text(IntrinsicSummary(
                generator=gen, method=method, domain=domain, n=3, metrics=["difficulty", "quality", "perplexity"],
                dataset_sha256="d", failures={}, models={}, difficulty=2.5, quality=4.0, reward=None, perplexity=4.0,
                perplexity_token_level=None, instruction_diversity=0.25, response_diversity=0.5,
                seconds={"perplexity": 0.75, "diversity": 0.25}, config={}).to_json())
    # Evaluation: anchors and generators on all six, each student on its domain's two.
    models = [ModelRef("base", "b", "base", 3), ModelRef("reference", "r", "reference", 0)]
    models += [ModelRef("generator", g, f"generators/{g}", 0) for g in generators]
    models += [ModelRef("student", "s", s.eval_key, 0, s) for s in settings(params)]
    for model in models:
        for domain, benches in EvaluationConfig().benchmarks.items():
            if model.kind == "student" and model.setting.domain != domain:
                continue
            for b in benches:
                n = 4
                if model.kind == "base":
                    correct = [1.0, 0.0, 0.0, 0.0]
                elif model.kind == "reference":
                    correct = [1.0, 1.0, 1.0, 0.0]
                else:
                    correct = [float(rng.random() < 0.6) for _ in range(n)]
                if b == "alpacaeval":
                    # Upstream's length-controlled GLM picks its penalty by 5-fold cross-validation, and on 4
                    # items it penalises every model to exactly 50: 5 copies of the pattern let it fit.
                    n, correct = 5 * n, 5 * correct
                items = [EvalItem(f"{b}-{i}", f"prompt {i}", "ref") for i in range(n)]
                outs = ["" if c is None else f"out {i}" for i, c in enumerate(correct)]
                comps = [Completion(o, "stop", 10, 5 + i, 0.5, 0.0) for i, o in enumerate(outs)]
                rows = [score_row(b, f"{b}-{i}", c) for i, c in enumerate(correct)]
                folder = Path(params.evaluation.output_dir) / model.key
                folder.mkdir(parents=True, exist_ok=True)
                pq.write_table(_items_table(model, b, items, [[{"role": "user", "content": "q"}]] * n,
                                            comps, outs, rows, [0] * n), folder / f"{b}.parquet", compression="zstd")
                # The benchmark's own summary of those rows, as `agora evaluate` writes it.
                task = task_module(b)
                metrics = task.summarize(rows, rounds=10) if b == "arenahard" else task.summarize(rows)
                score = metrics[task.PRIMARY]
                (folder / f"{b}.scores.json").write_text(BenchmarkScores(
                    benchmark=b, domain=domain, model=model.key, kind=model.kind, spec=model.spec, primary=task.PRIMARY,
                    score=score, metrics=metrics, n_items=n, samples=1, fewshot=model.fewshot,
                    seed_source="offline", test_items=n, seed_items_left_out=0, data_version="1", items_sha256="h",
                    decoding={}, judge=None, judge_reasoning=None,
                    judge_max_answer_chars=None, isolation=None, no_answer=0, untrained_reason=None).to_json())
    return tree(params)


def _write_contamination(params: Params, s: Setting) -> None:
    """A decontaminate report: the first generator's math datasets hold one GSM8K prompt (instance 0) and
    its instance-generation datasets a copied seed (instance 1, also matching a MATH answer); the rest are clean."""
    flagged = []
    if s.generator == GENS[0] and s.domain == "math":
        flagged.append(FlaggedInstance(idx=0, id=f"{s.name}/{s.method}/{s.domain}/000000", matches=[
            ContaminationMatch(source="gsm8k", item_id="gsm8k/7", item_field="prompt", field="instruction",
                               kind="exact", ngram=None)]))
    if s.generator == GENS[0] and s.method == "instance_generation":
        flagged.append(FlaggedInstance(idx=1, id=f"{s.name}/{s.method}/{s.domain}/000001", matches=[
            ContaminationMatch(source="math", item_id="math/3", item_field="answer", field="response",
                               kind="ngram", ngram=" ".join(["w"] * 13)),
            ContaminationMatch(source="seeds", item_id="s1", item_field="instruction", field="instruction",
                               kind="exact", ngram=None)]))
    by_source: dict[str, int] = {}
    for entry in flagged:
        for source in {m.source for m in entry.matches}:
            by_source[source] = by_source.get(source, 0) + 1
    data = s.dataset(params)["data"]
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    report = ContaminationReport(
        generator=s.name, method=s.method, domain=s.domain, dataset_sha256=sha, ngram=13,
        against=["benchmarks", "seeds"], benchmarks={"gsm8k": "v1"}, seed_source="offline", num_seeds=10,
        seed_copies_checked=s.method == "instance_generation", num_instances=3, num_flagged=len(flagged),
        flagged_by_source=dict(sorted(by_source.items())), dropped=False, flagged=flagged)
    write_contamination(s.contamination(params), report, DropList(dataset_sha256=sha, drop=False, ids=[]))


def score_row(benchmark: str, item_id: str, correct: float) -> dict:
    """The row a benchmark's score() returns for an item answered right (1.0) or wrong (0.0): the fields
    its summarize() reads, so that the scores and their bootstrap replicates are the benchmark's own."""
    verdict = "correct" if correct else "wrong"
    if benchmark == "alpacaeval":
        # Lengths that differ in sign across items, so the length-controlled fit has something to fit.
        return {"id": item_id, "extracted": "A", "correct": correct, "verdict": "win" if correct else "loss",
                "preference": correct, "model_side": "A", "model_len": 90 + 10 * int(item_id[-1]), "baseline_len": 100}
    if benchmark == "arenahard":
        first, second = ("B>A", "A>B") if correct else ("A>B", "B>A")  # the model is B in game 1, A in game 2
        games = [{"model_position": pos, "verdict": v, "judge_reply": f"[[{v}]]", "label_probs": {v: 1.0},
                  "verdict_source": "verdict", "model_outcome": correct, "strong": 0.0}
                 for pos, v in (("B", first), ("A", second))]
        return {"id": item_id, "category": "hard_prompt", "baseline": "base", "extracted": f"{first} / {second}",
                "correct": correct, "verdict": "win" if correct else "loss", "games": games, "model_len": 10,
                "baseline_len": 10, "judge": "j", "judge_skipped": "", "seed": 42}
    if benchmark in ("mbpp", "humaneval"):
        return {"id": item_id, "item_id": item_id, "extracted": "x", "extracted_by": "python_block",
                "correct": correct, "verdict": verdict, "pass_k": [1]}
    return {"id": item_id, "extracted": "x", "extracted_by": "result_tag", "correct": correct,
            "correct_strict": correct, "verdict": verdict}


def tree(params: Params) -> Tree:
    """The folders of a tree's params."""
    return Tree(params, Path(params.analysis.results_dir), Path(params.generation.output_dir),
                Path(params.training.output_dir), Path(params.training.logs_dir), Path(params.evaluation.output_dir),
                Path(params.intrinsic.output_dir), Path(params.cache.requests_db))


__all__ = ["GENS", "Setting", "Tree", "tree", "tree_params", "write_tree"]
