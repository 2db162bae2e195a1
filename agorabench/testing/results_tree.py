"""A small but complete tree of pipeline output files, for the tests of everything downstream of
them: collect, the results database and its views, the report.

It writes the files the pipeline stages write (generation manifests and datasets, student
checkpoints and loss logs, evaluation scores and items, intrinsic summaries), not Parquet or
DuckDB directly, so a test built on it exercises `collect` too.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Sequence

import pandas as pd

from agorabench.config import DOMAINS, METHODS, EvaluationConfig
from agorabench.evaluation.items import EvalItem
from agorabench.evaluation.run import ModelRef, _write_items
from agorabench.generation.plan import dumps_line
from agorabench.models.store import Completion
from agorabench.results.collect import ResultPaths

GENS = ("alpha", "beta")


def write_tree(root: str | Path, generators: Sequence[str] = GENS) -> ResultPaths:
    """Write the files below `root` (ResultPaths().under(root) layout) and return those paths.

    Every generator gets all nine settings: a 3-row dataset with its manifest, a student with
    training metrics and a 2-step loss curve, intrinsic metrics, and scores on its domain's two
    benchmarks; base, reference and each generator are scored on all six. Student and generator
    scores are drawn from one seeded generator, so the same `generators` give the same files.
    """
    paths = ResultPaths().under(root)
    rng = random.Random(1)
    for gen in generators:
        for method in METHODS:
            for domain in DOMAINS:
                base = paths.generated / gen / method
                base.mkdir(parents=True, exist_ok=True)
                rows = [{"id": f"{gen}/{method}/{domain}/{k:06d}", "instruction": f"Q{k} of {domain} | by {gen}",
                         "response": f"A{k}\nline two", "config": f"{gen}-model", "generator": gen, "method": method,
                         "domain": domain, "attempt": k, "seed_ids": [f"s{k}"], "theme": None, "first_word": None,
                         "prompt_sha256": "p", "request_key": f"{gen}{method}{domain}{k}", "input_tokens": 100 + k,
                         "output_tokens": 50 + k, "cost_usd": 0.001} for k in range(3)]
                (base / f"{domain}.jsonl").write_text("".join(dumps_line(r) for r in rows))
                (base / f"{domain}.rejected.jsonl").write_text("")
                manifest = {"generator": gen, "backend": "openai", "model": f"{gen}-model", "domain": domain,
                            "method": method, "num_requested": 3, "num_valid": 3, "complete": True,
                            "shortfall_reason": None, "attempts": 4, "rejections": {"no_answer": 1},
                            "cost_usd": 0.004, "input_tokens": 420, "output_tokens": 210, "prompt_format": "text",
                            "prompt_file": f"{method}_{domain}.txt", "prompt_set_sha256": "x", "sampling": {"t": 1},
                            "seed": 42, "seed_source": "offline", "num_seeds": 10, "seeds_sha256": "y",
                            "versions": {"agorabench": "0"}}
                (base / f"{domain}.manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
                ckpt = paths.checkpoints / gen / method / domain
                ckpt.mkdir(parents=True)
                (ckpt / "student.json").write_text(json.dumps({"base": "tiny", "lora": False, "examples": 3,
                                                               "generated_examples": 3, "seed_examples": 0,
                                                               "training": {"learning_rate": 1e-5}}))
                logs = paths.train_logs / gen / method
                logs.mkdir(parents=True, exist_ok=True)
                (logs / f"{domain}.metrics.json").write_text(json.dumps({"final_loss": 0.5, "first_loss": 2.0,
                                                                         "steps": 2, "wall_s": 1.5}))
                (logs / f"{domain}.loss.csv").write_text("step,epoch,loss,learning_rate\n1,0.5,2.0,1e-05\n2,1.0,0.5,1e-05\n")
                idir = paths.intrinsic / gen / method
                idir.mkdir(parents=True, exist_ok=True)
                pd.DataFrame({"id": [r["id"] for r in rows], "difficulty": [2.0, 3.0, None],
                              "quality": [4.0, 5.0, 3.0], "perplexity": [3.0, 4.0, 5.0]}
                             ).to_parquet(idir / f"{domain}.parquet", index=False)
                (idir / f"{domain}.summary.json").write_text(json.dumps(
                    {"n": 3, "difficulty": 2.5, "quality": 4.0, "reward": None, "perplexity": 4.0,
                     "instruction_diversity": 0.25, "response_diversity": 0.5, "failures": {}}))
    # Evaluation: anchors and generators on all six, each student on its domain's two.
    models = [ModelRef("base", "b", "base", 3), ModelRef("reference", "r", "reference", 0)]
    models += [ModelRef("generator", g, f"generators/{g}", 0) for g in generators]
    models += [ModelRef("student", "s", f"students/{g}/{m}/{d}", 0) for g in generators for m in METHODS for d in DOMAINS]
    for model in models:
        for domain, benches in EvaluationConfig().benchmarks.items():
            if model.kind == "student" and not model.key.endswith("/" + domain):
                continue
            for b in benches:
                n = 4
                if model.kind == "base":
                    correct = [1.0, 0.0, 0.0, 0.0]
                elif model.kind == "reference":
                    correct = [1.0, 1.0, 1.0, 0.0]
                else:
                    correct = [float(rng.random() < 0.6) for _ in range(n)]
                items = [EvalItem(f"{b}-{i}", f"prompt {i}", "ref") for i in range(n)]
                outs = ["" if c is None else f"out {i}" for i, c in enumerate(correct)]
                comps = [Completion(o, "stop", 10, 5 + i, 0.5, 0.0) for i, o in enumerate(outs)]
                rows = [{"extracted": "x", "verdict": "correct" if c else "wrong", "correct": c} for c in correct]
                folder = paths.eval / model.key
                _write_items(folder / f"{b}.parquet", model, b, items, [[{"role": "user", "content": "q"}]] * n,
                             comps, outs, rows, [0] * n)
                scores = {"benchmark": b, "domain": domain, "model": model.key, "kind": model.kind, "spec": model.spec,
                          "primary": "accuracy", "score": sum(correct) / n * 100, "metrics": {"accuracy": sum(correct) / n * 100},
                          "n_items": n, "samples": 1, "fewshot": model.fewshot, "data_version": "1",
                          "items_sha256": "h", "judge": None, "no_answer": 0}
                (folder / f"{b}.scores.json").write_text(json.dumps(scores, indent=2, sort_keys=True))
    return paths
