"""Evaluating one model on one benchmark: prompts, answers, scores, files.

Which model (`--model`):
  base                 student.base, few-shot (evaluation.base_fewshot): S_Ø of PGR
  reference            student.reference, zero-shot: S_ref of PGR
  student:G/M/D        the student trained on generator G's METHOD/DOMAIN data, zero-shot
  generator:NAME       a configured generator through its endpoint (the paper's Table 7)
  anything else        a local folder or hub id, zero-shot

Outputs (under evaluation.output_dir, default data/eval/):
  <model key>/<benchmark>.parquet      every item: prompt, output, extracted answer, verdict, timing
  <model key>/<benchmark>.scores.json  the benchmark's metrics, data version and hash, decoding (DVC metrics)
where the model key is "base", "reference", "students/G/M/D", "generators/NAME" or "models/<name>".
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from agorabench.evaluation.pairwise import NoVerdict
from agorabench.config import Params, ParamsError
from agorabench.files import replacing, write_atomic
from agorabench.progress import Progress
from agorabench.models.checkpoints import STUDENT_FILE, student_record, untrained_reason
from agorabench.setting import Setting, student_setting
from agorabench.evaluation import benchmarks as table
from agorabench.evaluation.items import EvalItem
from agorabench.evaluation.records import ITEM_COLUMNS, BenchmarkScores
from agorabench.models.answering import Answerer, Decoding, add_usage, judge_usage, judged_line
from agorabench.models.endpoint import Endpoint, EndpointAnswerer
from agorabench.models.servers import evaluation_engine, local_engine, serves_lora_adapters
from agorabench.generation.validation import count_tokens

log = logging.getLogger(__name__)


def benchmark_module(name: str):
    """The benchmark's task module (build_messages, fewshot_examples, score, summarize); an unknown
    name is a one-line error."""
    try:
        table.declaration(name)
    except ValueError as e:
        raise ParamsError(str(e)) from None
    return importlib.import_module(f"agorabench.evaluation.benchmarks.{name}.task")


@dataclass(frozen=True)
class ModelRef:
    kind: str  # base | reference | student | generator | model
    spec: str  # what to load: a packaged name, a folder, a hub id, or a generator name
    key: str  # folder under evaluation.output_dir
    fewshot: int
    setting: Setting | None = None  # a student's

    @property
    def label(self) -> str:
        return self.key


def resolve_model_ref(params: Params, ref: str) -> ModelRef:
    if ref == "base":
        return ModelRef("base", params.student.base, "base", params.evaluation.base_fewshot)
    if ref == "reference":
        return ModelRef("reference", params.student.reference, "reference", 0)
    if ref.startswith("student:"):
        setting = student_setting(params, ref)
        path = setting.checkpoint(params)
        if not (path / STUDENT_FILE).is_file():
            raise ParamsError(f"{path}: no trained student; run `agora train --generator {setting.name} "
                              f"--domain {setting.domain} --method {setting.method}` first")
        return ModelRef("student", str(path), setting.eval_key, 0, setting)
    if ref.startswith("generator:"):
        name = ref.removeprefix("generator:")
        params.generator(name)
        return ModelRef("generator", name, f"generators/{name}", 0)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", ref.strip("/")).strip("_")
    return ModelRef("model", ref, f"models/{safe}", 0)


def select_items(params: Params, benchmark: str) -> list[EvalItem]:
    """The benchmark's evaluation set (benchmarks.evaluation_set: its test set, less the items offline
    seeds are made of), limited to the first N of a seeded shuffle (a larger N only adds), after leaving
    out prompts over evaluation.max_prompt_tokens."""
    ev = params.evaluation
    items = table.load_items(benchmark, ev, params.seeds.source)
    if ev.max_prompt_tokens is not None:
        tokenizer = params.generation.tokenizer
        items = [it for it in items if count_tokens(it.prompt, tokenizer) <= ev.max_prompt_tokens]
    limit = ev.limits.get(benchmark, ev.limit)
    if limit is not None and limit < len(items):
        seed = params.generation.seed
        items = sorted(items, key=lambda it: hashlib.sha256(f"{seed}:{it.id}".encode()).hexdigest())[:limit]
        items.sort(key=lambda it: it.id)
    return items


def decoding_for(params: Params, benchmark: str) -> Decoding:
    d = params.evaluation.decoding
    domain = table.domains()[benchmark]
    return Decoding(temperature=d.temperature.get(domain, 0.0), top_p=d.top_p, max_new_tokens=d.new_tokens(domain),
                    repetition_penalty=d.repetition_penalty)


def output_paths(params: Params, model: ModelRef, benchmark: str) -> dict[str, Path]:
    folder = Path(params.evaluation.output_dir) / model.key
    return {"items": folder / f"{benchmark}.parquet", "scores": folder / f"{benchmark}.scores.json"}


def _answer(params: Params, model: ModelRef, conversations: list[list[dict]], decoding: Decoding,
            sample_index: int, on_done, endpoints: dict[str, Endpoint] | None) -> tuple[list, dict]:
    """Completions (None where an endpoint kept failing) and where they came from."""
    with answerer_for(params, model, endpoints) as answerer:
        done = answerer.answer_many(conversations, decoding, sample_index, on_done)
        # Chat APIs have no repetition penalty: the scores file records that it was not applied.
        return done, {"generated": answerer.stats.completed, "cached": answerer.stats.cached,
                      "repetition_penalty_applied": not isinstance(answerer, EndpointAnswerer)}


def answerer_for(params: Params, model: ModelRef, endpoints: dict[str, Endpoint] | None = None) -> Answerer:
    """Who answers `model`'s prompts. Students, the anchors and a local generator scored as it generates
    (transformers or vLLM) are answered here with transformers, in batches, or through a vLLM server of
    their model, concurrently (`evaluation.engine`; a generator's own engine), with the paper's decoding,
    repetition penalty included. Any other generator (an API, a remote server, llama.cpp) answers
    through its endpoint, one request at a time as chat APIs do."""
    ev = params.evaluation
    if model.kind == "generator":
        cfg = params.generators[model.spec]
        engine = local_engine(cfg.engine, cfg.model) if cfg.backend == "local" and not cfg.base_url else None
        if engine not in ("transformers", "vllm"):
            return EndpointAnswerer(params, model.spec, endpoints=endpoints)
        # Scored as it generates: its own model and weights. The same model as the reference (the
        # default's Qwen) gets the same requests, so one of the two reads the other's answers.
        path, weights, template, served = cfg.model, cfg.cpu_weights, None, cfg.model
    else:
        # The base and its students answer through the same engine and weights: a student differs from
        # the base by its training only.
        engine = evaluation_engine(ev.engine)
        path, weights = model.spec, ev.cpu_weights
        if model.kind == "reference" and ev.reference_cpu_weights:
            weights = ev.reference_cpu_weights
        template = params.student.chat_template if model.kind in ("base", "student") else None
        served = {"base": params.student.base, "reference": params.student.reference}.get(model.kind)
        if model.kind == "student":
            # A LoRA student (or one trained on nothing) is answered by its base's server (on a CPU, a
            # trained one by a merged copy's: models/served.py); a fully fine-tuned one is a model of
            # its own, which gets a server of its own.
            info = student_record(path)
            served = params.student.base if info is None or not info.trained or info.lora else None
    from agorabench.models.store import RequestStore

    store = RequestStore(params.cache.requests_db)
    if engine == "vllm":
        from agorabench.models.served import ServedModelAnswerer
        from agorabench.models.servers import server_key

        # The server of the model (for a student, of its base: its adapter is loaded into it on a GPU).
        endpoint = (endpoints or {}).get(server_key("vllm", served, weights)) if served else None
        merge_lora = model.kind == "student" and not serves_lora_adapters()
        return ServedModelAnswerer(path, store, endpoint=endpoint, concurrency=ev.batch_size, chat_template=template,
                                   cpu_weights=weights, merge_lora=merge_lora)
    from agorabench.models.in_process import TransformersAnswerer

    return TransformersAnswerer(path, store, batch_size=ev.batch_size, chat_template=template,
                                seed=params.generation.seed, cpu_weights=weights)


def prefetch_answers(params: Params, model_ref: str, benchmarks: list[str], *,
                     allow_code_execution: bool | None = None,
                     endpoints: dict[str, Endpoint] | None = None) -> dict[str, int]:
    """Answer every item of `benchmarks` for a model run in this process, in one batched pass per
    decoding setting, into the request store, where `evaluate` then finds them. Returns, per benchmark,
    how many of its answers the pass generated (the rest were in the store already).

    Why: a batch takes as many decoding steps as its longest answer, and a small model often writes
    up to max_new_tokens. A student's domain has two or three benchmarks with the same decoding, so
    one pass instead of one per benchmark saves a round of decoding: zero-shot SmolLM2 on GSM8K and
    MATH took 35 s instead of 44 on 2 cores (few-shot prompts, ten times longer, gained nothing).
    Generators behind an endpoint are left to `evaluate`."""
    model = resolve_model_ref(params, model_ref)
    ctx = _score_context(params, allow_code_execution)
    # (decoding, sample) -> its (benchmark, conversation) pairs
    groups: dict[tuple[Decoding, int], list[tuple[str, list[dict]]]] = {}
    for benchmark in benchmarks:
        try:
            _check_runnable(params, benchmark, ctx)
        except ParamsError:
            continue  # evaluate() reports it
        _, _, conversations = _prompts(params, model, benchmark)
        samples = params.evaluation.samples if table.domains()[benchmark] == "code" else 1
        for s in range(samples):
            groups.setdefault((decoding_for(params, benchmark), s), []).extend((benchmark, c) for c in conversations)
    with answerer_for(params, model, endpoints) as answerer:  # one model load (or server) for every group
        if isinstance(answerer, EndpointAnswerer):
            return {}  # an endpoint answers one request at a time anyway: evaluate() asks it
        # What the pass will generate, per benchmark: evaluate() then finds every answer in the store, and
        # its own count would call them all stored.
        missing = dict.fromkeys(benchmarks, 0)
        for (decoding, s), pairs in groups.items():
            keys = [answerer.request(c, decoding, s)[1] for _, c in pairs]
            stored = answerer.store.get_many(keys)
            for key, (benchmark, _) in zip(keys, pairs):
                missing[benchmark] += key not in stored
        total = sum(len(pairs) for pairs in groups.values())
        with Progress(f"{model.key} {'+'.join(benchmarks)}", total, unit="answers") as bar:
            for (decoding, s), pairs in groups.items():
                answerer.answer_many([c for _, c in pairs], decoding, s, bar.advance)
        return {b: n for b, n in missing.items() if n}


def _check_runnable(params: Params, benchmark: str, ctx) -> None:
    benchmark_module(benchmark)  # the one-line "unknown benchmark" error
    if table.domains()[benchmark] == "code" and not ctx.allow_code_execution:
        raise ParamsError(f"{benchmark} runs generated code: opt in with --allow-code-execution or "
                          f"evaluation.allow_code_execution: true (it runs only inside the sandbox)")
    if table.judged(benchmark) and not params.evaluation.judge:
        raise ParamsError(f"{benchmark} needs an LLM judge: set evaluation.judge to a generator name")


def _prompts(params: Params, model: ModelRef, benchmark: str):
    """(benchmark module, selected items, one conversation per item) for this model."""
    module = benchmark_module(benchmark)
    items = select_items(params, benchmark)
    shots = module.fewshot_examples(model.fewshot, params.seeds.source) if model.fewshot else []
    conversations = [module.build_messages(item, shots) for item in items]
    if params.student.system_prompt:
        # Students were trained with this system turn; the anchors and the generators get the same
        # prompt, so a generator that is also the reference (the default's Qwen) is answered once.
        conversations = [[{"role": "system", "content": params.student.system_prompt}, *c]
                         if c and c[0]["role"] != "system" else c for c in conversations]
    return module, items, conversations




def _score_context(params: Params, allow_code_execution: bool | None):
    from agorabench.evaluation.context import ScoreContext

    ev = params.evaluation
    return ScoreContext(allow_code_execution=ev.allow_code_execution if allow_code_execution is None
                        else allow_code_execution,
                        sandbox_timeout_s=ev.sandbox_timeout_s, sandbox_workers=ev.sandbox_workers,
                        judge_name=ev.judge or "", judge_reasoning=ev.judge_reasoning,
                        judge_max_answer_chars=ev.judge_max_answer_chars, judge_top_logprobs=ev.judge_top_logprobs,
                        seed=params.generation.seed,
                        pass_k=tuple(ev.pass_k))


def evaluate(params: Params, model_ref: str, benchmark: str, *, allow_code_execution: bool | None = None,
             on_done=None, endpoints: dict[str, Endpoint] | None = None) -> dict:
    """Answer and score every selected item; write the items Parquet and the scores JSON.
    `endpoints`: the servers `agora run` already started for local generators (and judges)."""
    model = resolve_model_ref(params, model_ref)
    ev = params.evaluation
    ctx = _score_context(params, allow_code_execution)
    _check_runnable(params, benchmark, ctx)
    module, items, conversations = _prompts(params, model, benchmark)
    decoding = decoding_for(params, benchmark)
    samples = ev.samples if table.domains()[benchmark] == "code" else 1
    evaluation_set, seeds_left_out = table.evaluation_set(benchmark, ev, params.seeds.source)

    all_items, all_convs, completions, source = [], [], [], {"generated": 0, "cached": 0}
    sample_of = []
    with Progress(f"{model.key} {benchmark}", len(conversations) * samples, unit="answers") as bar:
        def answered(n: int) -> None:
            bar.advance(n)
            if on_done:
                on_done(n)

        for s in range(samples):
            done, info = _answer(params, model, conversations, decoding, s, answered, endpoints)
            all_items += items
            all_convs += conversations
            completions += done
            sample_of += [s] * len(items)
            source = {**info, "generated": source["generated"] + info["generated"],
                      "cached": source["cached"] + info["cached"]}
    outputs = [c.text if c is not None else "" for c in completions]

    judge = None
    verdicts = None  # how the judge's verdicts are read (BenchmarkScores.judge_verdicts)
    usage = None     # what its verdicts cost (BenchmarkScores.judge_usage)
    started = time.monotonic()
    try:
        if table.judged(benchmark):
            judge = EndpointAnswerer(params, ev.judge, endpoints=endpoints)
            judge_fn = judge.judge(Decoding(temperature=0.0, top_p=1.0, max_new_tokens=ev.judge_max_tokens,
                                            repetition_penalty=1.0))
            usage = judge_usage([])  # nothing to judge (every answer empty) costs nothing: zero, not unknown

            def ctx_judge(conversations, **kwargs):
                nonlocal usage
                replies = judge_fn(conversations, **kwargs)
                usage = add_usage(usage, judge_usage(replies))
                return replies

            ctx.judge = ctx_judge
            verdicts = "logprobs" if module.judge_top_logprobs(ctx) and judge.gives_logprobs else "text"
        rows = module.score(all_items, outputs, ctx)
    finally:
        if judge is not None:
            judge.close()
    if judge is not None and judge.stats.completed:  # what `agora run` counts as judging time
        log.info(judged_line(benchmark, len(rows), ev.judge, time.monotonic() - started))
    try:  # Arena-Hard's bootstrap interval: evaluation.bootstrap_rounds resamples.
        metrics = module.summarize(rows, rounds=ev.bootstrap_rounds) if benchmark == "arenahard" else module.summarize(rows)
    except NoVerdict as e:  # the judge gave nothing usable: no score here, the other benchmarks still count
        metrics = {module.PRIMARY: None, "n_total": float(len(rows)), "no_score": str(e)}
        log.warning("%s %s has no score: %s", model.key, benchmark, e)

    primary = ev.primary_metric.get(benchmark, module.PRIMARY)
    if primary not in metrics and "no_score" not in metrics:
        raise ParamsError(f"evaluation.primary_metric: {benchmark} has no metric {primary!r}; use one of "
                          f"{', '.join(sorted(k for k, v in metrics.items() if isinstance(v, float)))}")
    items_table = _items_table(model, benchmark, all_items, all_convs, completions, outputs, rows, sample_of)
    scores = BenchmarkScores(
        benchmark=benchmark, domain=table.domains()[benchmark], model=model.key, kind=model.kind,
        spec=model.spec, primary=primary, score=metrics.get(primary), metrics=metrics,
        n_items=len(items), samples=samples, fewshot=model.fewshot, seed_source=params.seeds.source,
        test_items=len(evaluation_set) + seeds_left_out, seed_items_left_out=seeds_left_out,
        data_version=table.data_version(benchmark, ev, params.seeds.source),
        items_sha256=hashlib.sha256("\n".join(it.id for it in items).encode()).hexdigest(),
        decoding=decoding.as_dict() | {"repetition_penalty_applied": source["repetition_penalty_applied"]},
        judge=ev.judge if table.judged(benchmark) else None,
        judge_reasoning=ev.judge_reasoning if benchmark == "arenahard" else None,
        judge_max_answer_chars=ev.judge_max_answer_chars if table.judged(benchmark) else None,
        judge_verdicts=verdicts,
        judge_fallbacks=int(metrics.get("n_verdict") or 0) if verdicts == "logprobs" else None,
        judge_usage=usage,
        isolation=next((r["isolation"] for r in rows if r.get("isolation")), None),
        no_answer=sum(1 for c in completions if c is None),
        untrained_reason=_untrained(model),
    )
    import pyarrow.parquet as pq

    paths = output_paths(params, model, benchmark)
    # Items and scores are one result: both are written before either replaces its predecessor.
    with replacing(paths["items"], paths["scores"],
                   rerun=f"`agora evaluate --model {model_ref} --benchmark {benchmark}`") as (items_tmp, scores_tmp):
        pq.write_table(items_table, items_tmp, compression="zstd")
        scores_tmp.write_text(scores.to_json())
    return scores.model_dump() | {"run": {"generated": source["generated"], "cached": source["cached"]}}


def _untrained(model: ModelRef) -> str | None:
    """Set when a student's dataset was empty and it is the base model (agorabench.training)."""
    if model.kind != "student":
        return None
    return untrained_reason(model.spec)


def _items_table(model: ModelRef, benchmark: str, items, conversations, completions, outputs, rows, sample_of):
    """The per-item results as an Arrow table (columns ITEM_COLUMNS, which the collector reads)."""
    import pyarrow as pa

    core = ("extracted", "verdict", "correct")
    table = pa.table({
        "model": [model.key] * len(items),
        "benchmark": [benchmark] * len(items),
        "item_id": [it.id for it in items],
        "sample_index": sample_of,
        "prompt": [json.dumps(c, ensure_ascii=False) for c in conversations],
        "output": outputs,
        "extracted": [None if r.get("extracted") is None else str(r.get("extracted")) for r in rows],
        "verdict": [str(r.get("verdict")) for r in rows],
        "correct": [float(r.get("correct") or 0.0) for r in rows],
        "input_tokens": [c.input_tokens if c else None for c in completions],
        "output_tokens": [c.output_tokens if c else None for c in completions],
        "latency_s": [round(c.latency_s, 4) if c else None for c in completions],
        "details": [json.dumps({k: v for k, v in r.items() if k not in core}, sort_keys=True, default=str)
                    for r in rows],
    })
    assert tuple(table.column_names) == ITEM_COLUMNS  # the collector reads these columns
    return table


def benchmarks_for(params: Params, model_ref: str) -> list[str]:
    """A student is evaluated on its domain's benchmarks (plus the extras of that domain);
    the anchors and generators on all of them."""
    ev = params.evaluation
    if model_ref.startswith("student:"):
        domain = student_setting(params, model_ref).domain
        return list(ev.benchmarks.get(domain, [])) + [b for b in ev.extra if table.domains()[b] == domain]
    return [b for names in ev.benchmarks.values() for b in names] + list(ev.extra)


def write_score_summary(params: Params, model_ref: str, results: dict[str, dict]) -> Path:
    """data/scores/<model key>.json: every benchmark's primary score and metrics for one model
    (the DVC metrics file of an evaluate stage; `dvc metrics show` reads it)."""
    model = resolve_model_ref(params, model_ref)
    path = Path(params.evaluation.scores_dir) / f"{model.key}.json"
    summary = {b: {"score": r["score"], "primary": r["primary"], "n_items": r["n_items"], "metrics": r["metrics"]}
               for b, r in sorted(results.items())}
    return write_atomic(path, json.dumps(summary, indent=2, sort_keys=True, default=float) + "\n",
                        f"`agora evaluate --model {model_ref}`")
