"""Projected requests, tokens and cost of a run, before any request is sent.

Prompt tokens come from building the real first prompts of each setting. Output tokens and the
acceptance rate come from this generator's history in the request store when there is one;
otherwise the assumptions are printed with the numbers (one answer per instance, and answers of a
quarter of max_tokens) next to the worst case (every attempt used, every answer at max_tokens).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agorabench.models.endpoint import estimate_tokens
from agorabench.config import Params, ParamsError
from agorabench.generation.plan import SettingPlan, load_setting_seeds
from agorabench.generation.prompting import load_prompt_set
from agorabench.models.store import RequestStore


@dataclass(frozen=True)
class Estimate:
    generator: str
    domain: str
    method: str
    num: int
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    worst_cost_usd: float
    basis: str


def estimate_setting(params: Params, generator: str, domain: str, method: str, num: int | None = None) -> Estimate:
    g = params.generation
    cfg = params.generator(generator)
    num = num or g.num_instances
    prompts = load_prompt_set(g.prompt_dir, g.num_fewshot)
    note = ""
    try:
        seeds = load_setting_seeds(params, domain, method)
    except ParamsError:  # hub seeds without a network: offline seeds have the same shape
        offline = params.model_copy(update={"seeds": params.seeds.model_copy(update={"source": "offline"})})
        seeds, note = load_setting_seeds(offline, domain, method), " (prompts sized with offline seeds)"
    plan = SettingPlan(generator=generator, gen_cfg=cfg, domain=domain, method=method, prompts=prompts,
                       seeds=seeds, num=min(num, 64), params=params)
    sample = plan.next_batch()
    prompt_tokens = sum(estimate_tokens(m["content"]) for a in sample for m in a.messages) / max(1, len(sample))
    max_out = plan.sampling.get("max_tokens", 1024)
    mean_out, basis = None, "assumed: 1 attempt per instance, answers of max_tokens/4"
    if Path(params.cache.requests_db).exists():
        store = RequestStore(params.cache.requests_db)
        mean_out = store.mean_output_tokens(cfg.backend, cfg.model)
        store.close()
        if mean_out:
            basis = f"assumed: 1 attempt per instance; answers of {mean_out:.0f} tokens (this model's history)"
    out_tokens = mean_out or max_out / 4
    attempts_max = num * g.max_attempts_per_instance
    cost = (num * prompt_tokens * cfg.price_in_per_mtok + num * out_tokens * cfg.price_out_per_mtok) / 1e6
    worst = attempts_max * (prompt_tokens * cfg.price_in_per_mtok + max_out * cfg.price_out_per_mtok) / 1e6
    return Estimate(generator, domain, method, num, num, int(num * prompt_tokens), int(num * out_tokens),
                    cost, worst, basis + note)
