"""Quantity against quality: the paper's scaling study (App. B.1, Fig. 7), driven by `scaling:` in params.

A generator in `scaling.generators` writes one larger dataset per setting (the largest of
`scaling.sizes`, under `scaling.output_dir`). Each size then becomes a dataset of its own: the first
N instances, written under generation.output_dir as the generator "NAME@N" (the paper's 10K and 25K
sets are prefixes of its 50K set). A configured generator name can never contain "@", so these
names never collide, and everything downstream (training, evaluation, PGR, cost, the report)
treats "gpt-4o-mini@50000" as one more generator: `generator_summary` puts it next to "gpt-4o",
which is the paper's comparison ("50K instances of GPT-4o-mini beat 10K of GPT-4o").

A prefix is priced by what producing it took: its own instances plus every rejected attempt made
before its last instance's attempt (attempts are numbered in the order they were made).
"""
from __future__ import annotations

from agorabench.config import Params, ParamsError, check_setting
from agorabench.generation.records import read_instances, read_manifest, read_rejections, write_dataset
from agorabench.setting import Setting


def scaling_num(params: Params, generator: str, method: str) -> int:
    """How many instances the scaling run of this generator and method generates: the largest size."""
    s = params.scaling
    if generator not in s.generators or method not in s.methods:
        raise ParamsError(f"scaling: {generator} {method} is not in the scaling study; add it to "
                          f"scaling.generators / scaling.methods")
    return max(s.sizes)


def write_prefix(params: Params, generator: str, domain: str, method: str, size: int) -> dict:
    """Write the first `size` instances of the scaling dataset as the dataset of NAME@size; return its manifest."""
    check_setting(domain, method)
    if size not in params.scaling.sizes:
        raise ParamsError(f"--size {size}: not one of scaling.sizes {params.scaling.sizes}")
    prefix = Setting(generator, method, domain, size)
    src = prefix.scaling_source(params)
    if not src["manifest"].is_file():
        raise ParamsError(f"{src['manifest']}: no scaling dataset; run `agora generate --generator {generator} "
                          f"--domain {domain} --method {method} --scaling` first")
    label = prefix.full_size().label
    source = read_manifest(src["manifest"], label)
    rows = read_instances(src["data"], label)[:size]  # generation writes data and rejections with the manifest
    # The attempts this prefix needed: up to its last instance's, or all of them if it fell short.
    cutoff = max((r.attempt for r in rows), default=-1) if len(rows) == size else float("inf")
    rejected = [r for r in read_rejections(src["rejected"], label) if r.attempt <= cutoff]
    name = prefix.name
    rows = [r.model_copy(update={"id": f"{name}/{method}/{domain}/{k:06d}", "generator": name})
            for k, r in enumerate(rows)]
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    complete = len(rows) == size

    def total(field: str, digits: int | None = None):
        value = (sum(getattr(r, field) or 0 for r in rows) + sum(getattr(r, field) or 0 for r in rejected))
        return round(value, digits) if digits else value

    manifest = source.model_copy(update={
        "generator": name, "num_requested": size, "num_valid": len(rows), "complete": complete,
        "shortfall_reason": None if complete else (source.shortfall_reason or "the scaling run fell short"),
        "attempts": len(rows) + len(rejected), "rejections": dict(sorted(reasons.items())),
        "cost_usd": total("cost_usd", 8), "input_tokens": total("input_tokens"),
        "output_tokens": total("output_tokens"),
        # Instances carry no latency (it would make a regenerated dataset differ byte for byte and train again),
        # so the prefix's share of the time is unknown.
        "latency_s": None,
        "subset_of": {"generator": generator, "path": str(src["data"]), "num_valid": source.num_valid,
                      "cost_usd": source.cost_usd},
    })
    write_dataset(prefix.dataset(params), rows, rejected, manifest, ensure_ascii=True)
    return manifest.model_dump()
