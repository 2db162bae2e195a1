"""The decontaminate stage at the paper's scale: one 10,000-instance dataset against every benchmark's items.

CPU seconds, in one fresh process:
  1. the benchmarks' items, loaded by their own loaders (cached per process)
  2. the benchmark index (every item of every benchmark, prompts and answers) and the setting's seed index,
     each built once per process
  3. check_dataset on 10,000 instances
  4. the whole stage's work, decontaminate_setting: read the dataset file (typed records), check it,
     write its report and drop list (the indexes are built by then)
and, as the baseline, the least any n-gram check must do on the same rows: normalise both texts and form
their n-grams, with no hashing and no look-up. check / baseline says what the look-ups add on top.

The instances are real human text of generated-data length (the math instance-generation seeds, cycled to
10,000, each with a first word of its own so they are not the seed set itself), checked as a math
response-generation dataset, whose seeds are another set.

Then the false-positive rate on clean text: each seed set is cut in two halves by a hash of the seed ids;
one half plays the seeds the generator saw (their n-grams are ignored, as check_dataset does with the real
seeds), the other half is checked as if it were generated. Seeds hold no benchmark prompt (load_seeds
decontaminates their instructions), so what is flagged is house style shared by a benchmark's seed and
eval parts, or coincidence.

    python benchmarks/decontamination_speed.py [--instances 10000] [--ngram 13]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing it

from agorabench import decontamination as D  # noqa: E402
from agorabench.config import DecontaminationConfig, Params  # noqa: E402
from agorabench.evaluation.benchmarks import NAMES, load_items  # noqa: E402
from agorabench.evaluation.items import ngrams, normalize_text  # noqa: E402
from agorabench.generation.seeds import load_seeds  # noqa: E402
from agorabench.setting import Setting  # noqa: E402
from agorabench.testing.datasets import instances, write_instances  # noqa: E402


def timed(fn):
    """(result, CPU seconds): CPU time, so that other work on a shared machine does not count; the
    check is single-threaded, so on an idle machine its wall time is the same."""
    t = time.process_time()
    out = fn()
    return out, time.process_time() - t


def dataset(n: int) -> list[dict]:
    seeds = load_seeds("math", "instance_generation")
    return [{"id": f"perf/{i:06d}", "instruction": f"Variant{i} {seeds[i % len(seeds)].instruction}",
             "response": seeds[i % len(seeds)].response} for i in range(n)]


def speed(n: int, ngram: int) -> None:
    _, t_items = timed(lambda: [load_items(name) for name in NAMES])
    items = sum(len(load_items(name)) for name in NAMES)
    index, t_bench = timed(lambda: D.benchmark_index(ngram))
    seeds, t_seeds = timed(lambda: D.seed_index("math", "response_generation", "offline", ngram))
    rows = dataset(n)
    words = sum(len(normalize_text(r["instruction"] + " " + r["response"]).split()) for r in rows)
    config = DecontaminationConfig(ngram=ngram)
    flagged, t_check = timed(lambda: D.check_dataset(rows, domain="math", method="response_generation", config=config))
    # row by row, each row's n-grams dropped before the next, as check_dataset does
    _, t_floor = timed(lambda: sum(len(ngrams(normalize_text(r[f]).split(), ngram, numbers=True))
                                   for r in rows for f in D.FIELDS))
    with tempfile.TemporaryDirectory() as tmp:
        params = Params.model_validate({"generators": {"g": {"backend": "openai", "model": "m"}},
                                        "generation": {"output_dir": tmp}, "decontamination": {"ngram": ngram}})
        setting = Setting("g", "response_generation", "math")
        write_instances(setting.dataset(params)["data"], instances(
            "g", "response_generation", "math", [(r["instruction"], r["response"]) for r in rows]))
        _, t_stage = timed(lambda: D.decontaminate_setting(params, setting))
    print(f"benchmark items: {items:,} in {len(NAMES)} benchmarks, loaded in {t_items:.2f} s (their own loaders)")
    print(f"benchmark index: {t_bench:.2f} s, {len(index.refs):,} texts, {len(index.grams):,} {ngram}-grams")
    print(f"seed index (math/response_generation): {t_seeds:.2f} s, {len(seeds.refs):,} texts")
    print(f"check_dataset: {n:,} instances ({words:,} words) in {t_check:.2f} s, {len(flagged)} flagged")
    print(f"decontaminate_setting (read the file, check, write report and drop list): {t_stage:.2f} s")
    print(f"baseline (normalise + n-grams only): {t_floor:.2f} s; check / baseline = {t_check / t_floor:.2f}")
    total = t_items + t_bench + t_seeds + t_stage
    print(f"the stage's work in a fresh process (items, indexes, decontaminate_setting): {total:.2f} s")


def false_positives(ngram: int) -> None:
    config = DecontaminationConfig(ngram=ngram, against=["benchmarks"])
    real_seed_index = D.seed_index
    try:
        for domain in ("math", "code", "general"):
            for method in ("instance_generation", "quality_enhancement"):
                seeds = load_seeds(domain, method)
                shown = [s for s in seeds if hashlib.sha256(s.id.encode()).digest()[0] % 2 == 0]
                rows = [{"id": s.id, "instruction": s.instruction, "response": s.response}
                        for s in seeds if hashlib.sha256(s.id.encode()).digest()[0] % 2 == 1]
                flagged = {}
                for label, seen in (("without", []), ("with", shown)):
                    index = D.Index(ngram)
                    for s in seen:
                        index.add(D.Ref(D.SEEDS, s.id, "instruction"), s.instruction, exact=True)
                        index.add(D.Ref(D.SEEDS, s.id, "response"), s.response, exact=False)
                    D.seed_index = lambda *args, index=index, **kw: index
                    flagged[label] = len(D.check_dataset(rows, domain=domain, method=method, config=config))
                pct = {k: 100 * v / max(len(rows), 1) for k, v in flagged.items()}
                print(f"{domain}/{method}: {len(rows)} held-out seeds flagged: {flagged['without']} "
                      f"({pct['without']:.1f} %) counting every benchmark n-gram, {flagged['with']} "
                      f"({pct['with']:.1f} %) ignoring the other half's")
    finally:
        D.seed_index = real_seed_index


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--ngram", type=int, default=13)
    args = ap.parse_args()
    speed(args.instances, args.ngram)
    false_positives(args.ngram)
