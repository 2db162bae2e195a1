"""All enabled intrinsic metrics of one generated dataset (docs/paper.md §3.1).

Input:  data/generated/GEN/METHOD/DOMAIN.jsonl (generation.py)
Output: data/intrinsic/GEN/METHOD/DOMAIN.parquet       one row per instance, every per-instance value
        data/intrinsic/GEN/METHOD/DOMAIN.summary.json  dataset means, diversities, failure counts

Per-instance results are cached in intrinsic.cache_db (cache.py), so re-running, or adding a dataset
or a metric, computes only what is missing. Each model is loaded only when it has something to do,
and a judge's endpoint is opened only when some of its judgements are not cached.

Dataset-level numbers (summary):
  difficulty, quality   mean judge score over the items the judge scored (failures counted apart), of
                        the first of intrinsic.judges; `judges` holds each judge's (the PCA's features);
                        judge_verdicts says how scores were read ("logprobs" or "text"), and with
                        "logprobs" judge_fallbacks counts per metric the scores read from the text
  reward                mean reward-model score
  perplexity            mean of the per-item perplexities (as the official code reports it);
                        perplexity_token_level = exp(total NLL / total response tokens) is given too
  *_diversity           mean pairwise cosine distance of the embeddings (diversity.py)
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from pathlib import Path
from typing import Callable

from agorabench.evaluation.context import JudgeFn
from agorabench.config import Params, check_setting
from agorabench.files import replacing
from agorabench.intrinsic.cache import ResultCache, result_key
from agorabench.config import JUDGE_METRICS, IntrinsicConfig
from agorabench.models import chat_template
from agorabench.models.answering import judged_line
from agorabench.progress import Progress
from agorabench.generation.records import read_instances
from agorabench.intrinsic.records import IntrinsicSummary, judge_column
from agorabench.setting import Setting
from agorabench.intrinsic.diversity import Embedder, diversity, sentence_embedder

Log = Callable[[str], None]
# What a stage is doing (which metric, how many items, how long the judge took): INFO through the
# `agorabench` loggers, which the CLI prints to stderr (-v / -q set the level); `agora run` reads the
# judge's line (pipeline/run.py, stage_seconds).
logger = logging.getLogger(__name__)



def resolve_device(device: str) -> str:
    """intrinsic.device: "auto" is cuda when available, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def _cached_or_computed(cache: ResultCache, metric: str, keys: list[str], compute, cacheable,
                        timed: bool = False) -> tuple[list[dict], int]:
    """Results for every key: cached ones from the cache, the rest from compute(indices) (stored when
    cacheable(result)). Duplicate keys are computed once. Returns (results, number computed).
    timed: each fresh result gets "seconds", its share of compute's wall time, cached with it (so a
    re-run books a result at what it took when computed; see compute_seconds)."""
    found = cache.get_many(keys)
    todo: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k not in found and k not in todo:
            todo[k] = i
    if todo:
        started = time.monotonic()
        fresh = compute(list(todo.values()))
        if timed:
            share = (time.monotonic() - started) / len(todo)
            fresh = [{**r, "seconds": round(share, 6)} for r in fresh]
        cache.put_many(metric, [(k, r) for k, r in zip(todo, fresh) if cacheable(r)])
        found.update(zip(todo, fresh))
    return [found[k] for k in keys], len(todo)


def compute_seconds(keys: list[str], results: list[dict]) -> float | None:
    """What a metric's results took to compute, each distinct one once (a repeated instance was computed
    once); None when a result does not say (cached before times were kept)."""
    distinct = dict(zip(keys, results))
    times = [r.get("seconds") for r in distinct.values()]
    return None if any(t is None for t in times) else round(sum(times), 3)


def intrinsic_for_dataset(params: Params, generator: str, domain: str, method: str, judge: JudgeFn | None = None,
                          *, config: IntrinsicConfig | None = None, judge_name: str | None = None,
                          judges: dict[str, JudgeFn] | None = None,
                          embed: Embedder | None = None, embed_name: str | None = None,
                          log: Log | None = None, endpoints: dict | None = None) -> dict:
    """Compute, cache and write every enabled metric of one dataset; returns the summary dict.
    `endpoints`: the servers `agora run` already started for local generators (the judges').

    judge: a JudgeFn to use instead of opening intrinsic.judges's endpoints (tests, or the lead's flow
    sharing one session); judge_name then names it in the cache keys and the summary. judges: several
    of them, {name: JudgeFn} in order, instead of both.
    embed / embed_name: the same for the sentence embedder.
    """
    from agorabench.models.in_process import model_identity

    log = log or logger.info
    check_setting(domain, method)
    if config is not None:
        params = params.model_copy(update={"intrinsic": config})
    cfg = params.intrinsic
    if judge is not None and not judge_name:
        raise ValueError("intrinsic_for_dataset: a judge function was given without a name; pass judge_name "
                         "(it keys the cache) or set intrinsic.judges")
    if judge is not None and judges is not None:
        raise ValueError("intrinsic_for_dataset: pass judge (one) or judges (several), not both")
    # (name, function or None: opened from params when something is not cached), in order.
    if judges is not None:
        judge_list: list[tuple[str, JudgeFn | None]] = list(judges.items())
    elif judge is not None:
        judge_list = [(judge_name, judge)]
    else:
        judge_list = [(name, None) for name in cfg.judges]
    for name, fn in judge_list:
        if fn is None and name not in params.generators:
            raise ValueError(f"intrinsic.judges lists {name!r}, which is not under generators "
                             f"(declared: {', '.join(params.generators)})")
    metrics = cfg.enabled(have_judge=bool(judge_list))
    if embed is not None and not embed_name:
        raise ValueError("intrinsic_for_dataset: an embedder was given without embed_name; "
                         "pass one (it keys the cache)")

    setting = Setting(generator, method, domain)
    path = setting.dataset(params)["data"]
    if not path.is_file():
        raise ValueError(f"{path}: no generated dataset; run `agora generate --generator {generator} "
                         f"--domain {domain} --method {method}` first")
    rows = read_instances(path, setting.label)
    pairs = [(r.instruction, r.response) for r in rows]
    device = resolve_device(cfg.device) if rows else "cpu"  # no rows, no model: spare the torch import
    table: dict[str, list] = {"id": [r.id for r in rows]}
    summary: dict = {"generator": generator, "method": method, "domain": domain, "n": len(rows),
                     "metrics": list(metrics), "dataset_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                     "computed": {}, "failures": {}, "models": {}, "seconds": {}}
    sessions: list = []
    with ResultCache(cfg.cache_db) as cache:  # opened before the first line: a bad cache is the only one printed
        log(f"intrinsic {generator}/{method}/{domain}: {len(rows)} instances, metrics {', '.join(metrics) or 'none'}")
        try:
            # --- LLM judges: difficulty (instruction only) and quality (instruction + response) -------
            kinds = [m for m in JUDGE_METRICS if m in metrics]
            per_judge = []
            for position, (name, fn) in enumerate(judge_list if kinds else []):
                per_judge.append(_judge_dataset(params, name, fn, position, kinds, domain, pairs, table, summary,
                                                cache, sessions, log, endpoints))
            if per_judge:
                first = per_judge[0]
                for kind in kinds:
                    summary[kind] = first[kind]
                    summary["failures"][kind] = first["failures"][kind]
                summary["models"]["judge"] = first["model"]
                summary["judge_verdicts"] = first["verdicts"]
                summary["judge_fallbacks"] = first["fallbacks"]
                summary["judges"] = per_judge

            # --- reward model -----------------------------------------------------------------------
            if "reward" in metrics:
                from agorabench.intrinsic.reward import rewards

                settings = {"model": model_identity(cfg.reward_model), "max_length": cfg.reward_max_length}
                keys = [result_key("reward", settings, instruction=i, response=r) for i, r in pairs]

                def compute(idx):
                    log(f"  reward: scoring {len(idx)} with {cfg.reward_model}")
                    return rewards(cfg.reward_model, [pairs[i] for i in idx], batch_size=cfg.reward_batch_size,
                                   max_length=cfg.reward_max_length, device=device,
                                   trust_remote_code=cfg.trust_remote_code)

                res, computed = _cached_or_computed(cache, "reward", keys, compute, lambda r: True, timed=True)
                summary["seconds"]["reward"] = compute_seconds(keys, res)
                table["reward"] = [r["reward"] for r in res]
                table["reward_truncated"] = [r["truncated"] for r in res]
                summary["reward"] = _mean(table["reward"])
                summary["computed"]["reward"] = computed
                summary["failures"]["reward"] = {"truncated": sum(table["reward_truncated"])}
                summary["models"]["reward"] = cfg.reward_model

            # --- perplexity under the base student ------------------------------------------------------
            if "perplexity" in metrics:
                from agorabench.intrinsic.perplexity import perplexities

                model = cfg.perplexity_model or params.student.base
                settings = {"model": model_identity(model), "system_prompt": params.student.system_prompt,
                            "chat_template": chat_template.digest(params.student.chat_template),
                            "max_length": cfg.perplexity_max_length}
                keys = [result_key("perplexity", settings, instruction=i, response=r) for i, r in pairs]

                def compute(idx):
                    log(f"  perplexity: scoring {len(idx)} with {model}")
                    return perplexities(model, [pairs[i] for i in idx], system_prompt=params.student.system_prompt,
                                        chat_template=params.student.chat_template,
                                        batch_size=cfg.perplexity_batch_size, max_length=cfg.perplexity_max_length,
                                        device=device)

                res, computed = _cached_or_computed(cache, "perplexity", keys, compute, lambda r: True, timed=True)
                summary["seconds"]["perplexity"] = compute_seconds(keys, res)
                for col in ("perplexity", "nll_sum", "response_tokens"):
                    table[col] = [r[col] for r in res]
                table["perplexity_truncated"] = [r["truncated"] for r in res]
                table["perplexity_verdict"] = [r["verdict"] for r in res]
                summary["perplexity"] = _mean(table["perplexity"])
                tokens = sum(r["response_tokens"] for r in res if r["nll_sum"] is not None)
                nll = sum(r["nll_sum"] for r in res if r["nll_sum"] is not None)
                summary["perplexity_token_level"] = math.exp(nll / tokens) if tokens else None
                summary["computed"]["perplexity"] = computed
                summary["failures"]["perplexity"] = {
                    "truncated": sum(table["perplexity_truncated"]),
                    "too_long": table["perplexity_verdict"].count("too_long")}
                summary["models"]["perplexity"] = model

            # --- diversity: a dataset-level number, cached per list of texts ----------------------------
            if "diversity" in metrics:
                name = embed_name or cfg.embedding_model
                embedder = embed or sentence_embedder(cfg.embedding_model, batch_size=cfg.embedding_batch_size,
                                                      device=device, trust_remote_code=cfg.trust_remote_code)
                computed, side_keys, side_results = 0, [], []
                for side, texts in (("instruction", [i for i, _ in pairs]), ("response", [r for _, r in pairs])):
                    digest = hashlib.sha256("\0".join(hashlib.sha256(t.encode()).hexdigest()
                                                      for t in texts).encode()).hexdigest()
                    key = result_key("diversity", {"model": name}, texts_sha256=digest)

                    def compute(_idx, texts=texts, side=side):
                        log(f"  diversity: embedding {len(texts)} {side}s with {name}")
                        value, per_item = diversity(embedder, texts)
                        return [{"diversity": value,
                                 "per_item": [None if math.isnan(x) else float(x) for x in per_item]}]

                    (res,), n = _cached_or_computed(cache, "diversity", [key], compute, lambda r: True,
                                                    timed=True)
                    computed += n
                    side_keys.append(key)
                    side_results.append(res)
                    summary[f"{side}_diversity"] = res["diversity"]
                    table[f"{side}_distance"] = res["per_item"]
                summary["computed"]["diversity"] = computed
                summary["seconds"]["diversity"] = compute_seconds(side_keys, side_results)
                summary["models"]["embedding"] = name
        finally:
            for session in sessions:
                session.close()

    for key in ("difficulty", "quality", "reward", "perplexity", "perplexity_token_level",
                "instruction_diversity", "response_diversity", "judge_verdicts", "judge_fallbacks", "judges"):
        summary.setdefault(key, None)
    summary["config"] = cfg.model_dump()
    # "computed" says what this run had to compute rather than read from the cache: a fact of the run,
    # not of the dataset, so it stays out of the file; a forced `dvc repro` then writes the same bytes.
    record = IntrinsicSummary.model_validate({k: v for k, v in summary.items() if k != "computed"})
    write_outputs(setting.intrinsic(params), table, record)
    return summary


def _judge_dataset(params: Params, name: str, judge: JudgeFn | None, position: int, kinds: list[str], domain: str,
                   pairs: list[tuple[str, str]], table: dict, summary: dict, cache: ResultCache, sessions: list,
                   log: Log, endpoints: dict | None) -> dict:
    """One judge's difficulty and quality of every instance: cached verdicts first, the rest asked.
    Fills its Parquet columns (judge_column) and summary["computed"]; returns its JudgeSummary dict.
    The cache key names the judge, not its position, so a judge added later re-uses the others' verdicts."""
    from agorabench.intrinsic.judge import judge_scores, prompt_version
    from agorabench.models.answering import add_usage, judge_usage

    cfg = params.intrinsic
    judge_model = params.generators[name].model if name in params.generators else name
    settings = {"judge": name, "judge_model": judge_model, "prompts": prompt_version(cfg.judge_reasoning),
                "temperature": cfg.judge_temperature, "max_tokens": cfg.judge_max_tokens}
    # The prompt style and the reading key the cache too (a text verdict is not a logprob one);
    # only when they differ from the paper's, so judgements cached before they existed still count.
    if not cfg.judge_reasoning:
        settings["reasoning"] = False
    if cfg.judge_top_logprobs:
        settings["top_logprobs"] = cfg.judge_top_logprobs
    out = {"judge": name, "model": judge_model, "difficulty": None, "quality": None, "failures": {},
           "verdicts": "logprobs" if cfg.judge_top_logprobs else "text", "fallbacks": None, "usage": None}
    for kind in kinds:
        keys = [result_key(kind, settings, domain=domain, instruction=i,
                           response=r if kind == "quality" else None) for i, r in pairs]

        def compute(idx, kind=kind):
            nonlocal judge
            if judge is None:  # opened only now: a fully cached run starts no server
                from agorabench.models.answering import Decoding
                from agorabench.models.endpoint import EndpointAnswerer

                session = EndpointAnswerer(params, name, endpoints=endpoints)
                sessions.append(session)
                judge = session.judge(Decoding(temperature=cfg.judge_temperature, max_new_tokens=cfg.judge_max_tokens))
            log(f"  {kind}: judging {len(idx)} with {name}")
            started = time.monotonic()
            # A paper-size dataset takes the judge hours: a line every 30 s (a bar on a terminal) meanwhile.
            with Progress(f"  {kind} by {name}", len(idx), unit="judged") as bar:
                scores = judge_scores(kind, domain, [pairs[i] for i in idx], judge, cfg.judge_batch_size,
                                      on_done=bar.advance, reasoning=cfg.judge_reasoning,
                                      top_logprobs=cfg.judge_top_logprobs)
            log("  " + judged_line(kind, len(idx), name, time.monotonic() - started))
            return scores

        res, computed = _cached_or_computed(cache, kind, keys, compute, lambda r: r["verdict"] == "ok")
        def col(column: str) -> str:
            return judge_column(column, name, position)

        table[col(kind)] = [r["score"] for r in res]
        table[col(f"{kind}_verdict")] = [r["verdict"] for r in res]
        table[col(f"{kind}_raw")] = [r["raw"] for r in res]
        # Results cached before sources were recorded were all read from the text.
        table[col(f"{kind}_source")] = [r.get("source", "text") if r["score"] is not None else None for r in res]
        out[kind] = _mean(table[col(kind)])
        summary["computed"][col(kind)] = computed
        verdicts = table[col(f"{kind}_verdict")]
        out["failures"][kind] = {v: verdicts.count(v) for v in ("judge_error", "parse_error")}
        if cfg.judge_top_logprobs:
            out["fallbacks"] = {**(out["fallbacks"] or {}), kind: table[col(f"{kind}_source")].count("text")}
        # What this metric's verdicts cost, cached ones at their price when asked; verdicts cached before
        # costs were kept make it unknown (None). A failed request recorded no cost, and a repeated
        # instance was asked once.
        asked = {k: r for k, r in zip(keys, res) if r["verdict"] != "judge_error"}
        out["usage"] = add_usage(out["usage"], judge_usage(list(asked.values())))
    return out


def write_outputs(paths: dict[str, Path], table: dict[str, list], summary: IntrinsicSummary) -> None:
    import pandas as pd

    rerun = f"`agora intrinsic --generator {summary.generator} --domain {summary.domain} --method {summary.method}`"
    # One result: both files are written before either replaces its predecessor.
    with replacing(paths["parquet"], paths["summary"], rerun=rerun) as (parquet, summary_tmp):
        pd.DataFrame(table).to_parquet(parquet, index=False)
        summary_tmp.write_text(summary.to_json(ensure_ascii=False), encoding="utf-8")


__all__ = ["intrinsic_for_dataset", "write_outputs"]
