"""Turn the pipeline's output files into the Parquet tables of data/results/.

Deterministic by construction, so DVC can track the Parquet: the same input files give
byte-identical Parquet files. That needs (1) the fixed column order and types of schema.TABLES,
(2) rows sorted by each table's key, (3) nothing that depends on when or where collect ran (no
timestamps, no absolute paths, no pandas index metadata), and (4) one fixed writer configuration.
The only exception is the optional `requests` table (latencies and store times), written only when
asked for.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from agorabench.config import Params, benchmark_domains
from agorabench.evaluation.records import ITEM_COLUMNS, BenchmarkScores
from agorabench.evaluation.resampling import task_module
from agorabench.files import file_sha256, replacing
from agorabench.generation.records import (
    read_contamination,
    read_instances,
    read_manifest,
    read_rejections,
)
from agorabench.intrinsic.records import INSTANCE_COLUMNS, IntrinsicSummary
from agorabench.models.checkpoints import STUDENT_FILE, StudentRecord
from agorabench.models.store import open_store
from agorabench.records import read_record
from agorabench.results.replicates import score_replicates
from agorabench.results.schema import INTRINSIC_METRICS, TABLES, Table
from agorabench.setting import Setting, settings
from agorabench.training.records import LOSS_COLUMNS, TrainingMetrics


def collect(params: Params, include_requests: bool = False) -> dict[str, Path]:
    """Read every result file of the pipeline `params` describes and write one Parquet file per table
    to analysis.results_dir.

    The files are found from params alone: each setting's (Setting paths), the anchors' and the
    evaluated generators'. A stage that has not run yet leaves its rows out; a file that does not
    match its record (a half-written or hand-edited one) is a one-line error naming it.
    include_requests: also export the request store's responses (not deterministic; off by default).
    Returns table name -> Parquet path. Tables with no input are written empty, so the database
    always has every table and its views always work.
    """
    ev = params.evaluation
    every = settings(params)
    tables: dict[str, list[dict]] = {}
    tables["datasets"], tables["rejections"], tables["instances"] = _generated(params, every)
    tables["contamination_checks"], tables["contamination_matches"] = _contamination(params, every)
    tables["training_runs"], tables["training_loss"] = _training(params, every)
    models = ["base", "reference", *(s.eval_key for s in every), *(f"generators/{g}" for g in ev.generators)]
    tables["scores"], tables["eval_items"] = _evaluation(Path(ev.output_dir), models)
    a = params.analysis
    # A score file written under another evaluation.primary_metric would mix two metrics in one PGR.
    for r in tables["scores"]:
        wanted = ev.primary_metric.get(r["benchmark"], task_module(r["benchmark"]).PRIMARY)
        if r["primary_metric"] != wanted:
            raise ValueError(f"{ev.output_dir}/{r['model']}/{r['benchmark']}.scores.json scores {r['primary_metric']}, "
                             f"but evaluation.primary_metric asks for {wanted}; re-run `agora evaluate` (dvc repro does)")
    tables["score_replicates"] = score_replicates(tables["eval_items"], a.bootstrap_replicates, a.bootstrap_seed,
                                                  ev.output_dir, ev.primary_metric)
    tables["intrinsic"], tables["intrinsic_instances"], tables["intrinsic_judges"] = _intrinsic(
        params, [s for s in every if s.size is None])
    generators_cfg = {n: g.model_dump() for n, g in params.generators.items()}
    tables["generators"] = _generators(tables["datasets"], tables["scores"], generators_cfg)
    tables["domain_benchmarks"] = [{"domain": d, "benchmark": b, "position": i}
                                   for d, names in ev.benchmarks.items() for i, b in enumerate(names)]
    if include_requests:
        tables["requests"] = _requests(Path(params.cache.requests_db))

    out = Path(params.analysis.results_dir)
    arrows = {name: arrow_table(name, rows) for name, rows in tables.items()}  # every check before any write
    written = {name: out / f"{name}.parquet" for name in arrows}
    # All tables are written before any replaces its predecessor: a disk that fills up leaves the
    # previous set whole, never a mix of old and new tables.
    with replacing(*written.values(), rerun="`agora results`") as tmps:
        for (name, arrow), tmp in zip(arrows.items(), tmps):
            pq.write_table(arrow, tmp, **parquet_options(TABLES[name]))
    return written


def arrow_table(name: str, rows: list[dict]) -> pa.Table:
    """Rows -> an Arrow table with the table's schema, sorted by its key (duplicate keys are an error)."""
    table = TABLES[name]
    rows = sorted(rows, key=lambda r: tuple(_sortable(r.get(k)) for k in table.key))
    _check_unique(name, table, rows)
    return pa.Table.from_pydict({c: [r.get(c) for r in rows] for c in table.names}, schema=table.arrow_schema())


def write_table(name: str, rows: list[dict], path: Path) -> Path:
    """Rows -> Parquet with the table's schema, sorted by its key, written atomically."""
    with replacing(path, rerun="`agora results`") as (tmp,):
        pq.write_table(arrow_table(name, rows), tmp, **parquet_options(TABLES[name]))
    return path


ROW_GROUP_ROWS = 122_880  # DuckDB's row-group size (its unit of parallel scanning)


def parquet_options(table: Table) -> dict[str, Any]:
    """The one fixed writer configuration of the results Parquet (keyword arguments of pq.write_table).

    zstd for the text columns, which hold nearly all the bytes (instructions, responses, outputs);
    snappy for the numbers and flags: they are a small share of a file, zstd barely shrinks them,
    and every aggregate decompresses them (on benchmarks/analysis_scale.py's synthetic set, DuckDB's
    instance-level aggregates read ~15% faster and pandas' a few percent, for ~2% more bytes).
    Dictionary encoding and statistics on.

    Row groups of ROW_GROUP_ROWS rows: DuckDB scans a Parquet file one row group per thread, and
    pyarrow's default of 1Mi rows left a 1.26M-row table in two groups of 1,048,576 and 211,424
    rows, so on 2 threads one did 83% of the scan. With DuckDB's own row-group size the
    instance-level aggregates of benchmarks/analysis_scale.py take ~25% less time (~5% more bytes).
    Files under that many rows are written exactly as before.
    """
    return {"compression": {c.name: "zstd" if c.type in ("str", "str[]") else "snappy" for c in table.columns},
            "use_dictionary": True, "write_statistics": True, "row_group_size": ROW_GROUP_ROWS}


def _sortable(v: Any) -> tuple:
    # NULLs last; the flag keeps None from ever being compared with a value.
    return (v is None, "" if v is None else v)


def _check_unique(name: str, table: Table, rows: list[dict]) -> None:
    for a, b in zip(rows, rows[1:]):
        if all(a.get(k) == b.get(k) for k in table.key):
            where = ", ".join(f"{k}={a.get(k)!r}" for k in table.key)
            raise ValueError(f"results table {name}: two rows with {where}; remove the duplicate result file")


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def _generated(params: Params, every: list[Setting]) -> tuple[list[dict], list[dict], list[dict]]:
    datasets, rejections, instances = [], [], []
    for s in every:
        paths = s.dataset(params)
        if not paths["manifest"].is_file():  # written last: without it the dataset is not finished
            continue
        gen, method, domain = s.name, s.method, s.domain
        m = read_manifest(paths["manifest"], s.label)
        for field, value in (("generator", gen), ("method", method), ("domain", domain)):
            if getattr(m, field) != value:
                raise ValueError(f"{paths['manifest']}: {field} is {getattr(m, field)!r} but the file sits under "
                                 f"{value!r}; move the file or re-run `agora generate`")
        rows = read_instances(paths["data"], s.label)
        if len(rows) != m.num_valid:  # whole lines lost (a copy cut at a line's end) or another run's data
            raise ValueError(f"{paths['data']}: {len(rows)} instances but its manifest says {m.num_valid}; the "
                             f"file is incomplete or not the manifest's: re-run `agora generate` for {s.label}")
        for k, r in enumerate(rows):
            instances.append({
                "generator": gen, "method": method, "domain": domain, "idx": k, "id": r.id,
                "instruction": r.instruction, "response": r.response, "config": r.config,
                "attempt": r.attempt, "seed_ids": r.seed_ids, "theme": r.theme,
                "first_word": r.first_word, "prompt_sha256": r.prompt_sha256,
                "request_key": r.request_key, "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens, "cost_usd": _float(r.cost_usd),
                "instruction_chars": len(r.instruction), "response_chars": len(r.response),
            })
        read_rejections(paths["rejected"], s.label)  # checked, as the other two files are
        datasets.append({
            "generator": gen, "method": method, "domain": domain,
            "backend": m.backend, "model": m.model,
            "num_requested": m.num_requested, "num_valid": m.num_valid,
            "complete": m.complete, "shortfall_reason": m.shortfall_reason,
            "attempts": m.attempts, "rejected": sum(m.rejections.values()),
            "input_tokens": m.input_tokens, "output_tokens": m.output_tokens,
            "cost_usd": _float(m.cost_usd), "latency_s": _float(m.latency_s), "prompt_format": m.prompt_format,
            "prompt_file": m.prompt_file, "prompt_set_sha256": m.prompt_set_sha256,
            "seed": m.seed, "seed_source": m.seed_source, "num_seeds": m.num_seeds,
            "seeds_sha256": m.seeds_sha256, "data_sha256": file_sha256(paths["data"]),
            "sampling": _json(m.sampling), "versions": _json(m.versions),
        })
        rejections += [{"generator": gen, "method": method, "domain": domain, "reason": reason, "count": n}
                       for reason, n in m.rejections.items()]
    return datasets, rejections, instances


def _contamination(params: Params, every: list[Setting]) -> tuple[list[dict], list[dict]]:
    checks, matches = [], []
    for s in every:
        path = s.contamination(params)["report"]
        if not path.is_file():
            continue
        r = read_contamination(path, s.label)
        setting = {"generator": s.name, "method": s.method, "domain": s.domain}
        for field, value in setting.items():
            if getattr(r, field) != value:
                raise ValueError(f"{path}: {field} is {getattr(r, field)!r} but the file sits under {value!r}; "
                                 f"move the file or re-run `agora decontaminate`")
        checks.append({
            **setting, "ngram": r.ngram, "against": list(r.against), "seed_copies_checked": r.seed_copies_checked,
            "instances": r.num_instances, "flagged": r.num_flagged, "dropped": r.dropped,
            "dataset_sha256": r.dataset_sha256, "benchmarks": _json(r.benchmarks), "seed_source": r.seed_source,
            "num_seeds": r.num_seeds,
        })
        matches += [{**setting, "idx": entry.idx, "id": entry.id, **m.model_dump()}
                    for entry in r.flagged for m in entry.matches]
    return checks, matches


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _training(params: Params, every: list[Setting]) -> tuple[list[dict], list[dict]]:
    runs, losses = [], []
    for st in every:
        gen, method, domain = st.name, st.method, st.domain
        student_path = st.checkpoint(params) / STUDENT_FILE
        logs = st.train_logs(params)
        s = read_record(StudentRecord, student_path, "`agora train`") if student_path.is_file() else None
        m = read_record(TrainingMetrics, logs["metrics"], "`agora train`") if logs["metrics"].is_file() else None
        if s is not None or m is not None:
            runs.append({
                "generator": gen, "method": method, "domain": domain, "base": s and s.base,
                "trained": s.trained if s is not None else m.trained, "lora": s and s.lora,
                "examples": s.examples if s is not None else m.examples,
                "generated_examples": s and s.generated_examples, "dropped_examples": s and s.dropped_examples,
                "seed_examples": s.seed_examples if s is not None else m.seed_examples,
                "examples_sha256": s and s.examples_sha256,
                "first_loss": _float(m and m.first_loss), "final_loss": _float(m and m.final_loss),
                "train_loss": _float(m and m.train_loss), "steps": m and m.steps, "epochs": _float(m and m.epochs),
                "train_tokens": m and m.train_tokens, "wall_s": _float(m and m.wall_s),
                "tokens_per_s": _float(m and m.tokens_per_s),
                "training_config": _json(s and s.training), "versions": _json(s and s.versions),
            })
        if logs["loss"].is_file():
            with open(logs["loss"], newline="") as f:
                for line, r in enumerate(csv.DictReader(f), start=2):
                    try:
                        losses.append({"generator": gen, "method": method, "domain": domain,
                                       "step": int(r["step"]), "epoch": _float(r.get("epoch")),
                                       "loss": _float(r.get("loss")), "learning_rate": _float(r.get("learning_rate"))})
                    except (KeyError, TypeError, ValueError):
                        raise ValueError(f"{logs['loss']}: line {line} is not {','.join(LOSS_COLUMNS)} numbers; "
                                         f"re-run `agora train` for {st.label}") from None
    return runs, losses


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def model_identity(key: str) -> dict:
    """The scores table's columns that say whose a model key is (keys are written by Setting.eval_key
    and the anchors' and generators' names: this reads back what those wrote, for the table)."""
    parts = key.split("/")
    out = {"model": key, "kind": "model", "generator": None, "method": None, "student_domain": None}
    if key in ("base", "reference"):
        out["kind"] = key
    elif parts[0] == "students" and len(parts) == 4:
        out.update(kind="student", generator=parts[1], method=parts[2], student_domain=parts[3])
    elif parts[0] == "generators" and len(parts) == 2:
        out.update(kind="generator", generator=parts[1])
    return out


def _evaluation(root: Path, models: list[str]) -> tuple[list[dict], list[dict]]:
    scores, items = [], []
    for key in models:
        folder = root / key
        if not folder.is_dir():
            continue
        for p in sorted(folder.glob("*.scores.json")):
            s = read_record(BenchmarkScores, p, f"`agora evaluate --model {key}`")
            benchmark = p.name.removesuffix(".scores.json")
            if s.benchmark != benchmark:
                raise ValueError(f"{p}: benchmark is {s.benchmark!r} but the file is named for {benchmark!r}; "
                                 f"rename it or re-run `agora evaluate`")
            scores.append({
                **model_identity(key), "benchmark": benchmark,
                "benchmark_domain": s.domain or benchmark_domains().get(benchmark),
                "primary_metric": s.primary, "score": _float(s.score), "n_items": s.n_items,
                "samples": s.samples, "fewshot": s.fewshot, "judge": s.judge,
                **{f"judge_{k}": v for k, v in _usage(s.judge_usage).items()},
                "no_answer": s.no_answer, "data_version": _str(s.data_version),
                "items_sha256": s.items_sha256, "metrics": _json(s.metrics),
            })
            items += _items(folder / f"{benchmark}.parquet", key)
    return scores, items


def _items(path: Path, key: str) -> list[dict]:
    if not path.is_file():
        return []
    t = pq.read_table(path)
    if tuple(t.column_names) != ITEM_COLUMNS:
        raise ValueError(f"{path}: columns {t.column_names} are not an `agora evaluate` items file's; re-run it")
    cols = t.to_pydict()
    wanted = TABLES["eval_items"].names
    ident = model_identity(key)
    rows = []
    for i in range(t.num_rows):
        row = {c: cols[c][i] for c in wanted if c in cols}
        row.update(ident)
        row["benchmark"] = cols["benchmark"][i]
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Intrinsic metrics
# ---------------------------------------------------------------------------------------------

def _intrinsic(params: Params, every: list[Setting]) -> tuple[list[dict], list[dict], list[dict]]:
    summaries, per_instance, per_judge = [], [], []
    for s in every:
        paths = s.intrinsic(params)
        if not paths["summary"].is_file():
            continue
        setting = {"generator": s.name, "method": s.method, "domain": s.domain}
        summary = read_record(IntrinsicSummary, paths["summary"], f"`agora intrinsic` for {s.label}")
        rows = []
        if paths["parquet"].is_file():
            cols = pq.read_table(paths["parquet"]).to_pydict()
            n = len(cols["id"])
            for i in range(n):
                row = {**setting, "idx": i}
                row.update({m: _float(cols[m][i]) if m in cols else None for m in INSTANCE_COLUMNS})
                rows.append(row)
        per_instance += rows
        out = {**setting, "summary": _json(summary.model_dump())}
        out.update({m: _float(getattr(summary, m)) for m in INTRINSIC_METRICS})
        out["instances"] = summary.n
        out["compute_s"] = _compute_seconds(summary)
        summaries.append(out)
        per_judge += [{**setting, "position": i + 1, **j} for i, j in enumerate(_judges(summary))]
    return summaries, per_instance, per_judge


def _judges(summary: IntrinsicSummary) -> list[dict]:
    """The summary's judges as intrinsic_judges rows (less the setting); a summary written before
    there were several judges gives its one judge from the top-level fields."""
    def failures(f: dict) -> int:
        return sum(int(n) for kind in ("difficulty", "quality") for n in (f.get(kind) or {}).values())

    if summary.judges is not None:
        return [{"judge": j.judge, "model": j.model, "difficulty": _float(j.difficulty),
                 "quality": _float(j.quality), "failures": failures(j.failures), "verdicts": j.verdicts,
                 **_usage(j.usage)}
                for j in summary.judges]
    if "judge" not in summary.models:
        return []
    judge = (summary.config.get("judges") or [summary.config.get("judge")])[0]
    return [{"judge": judge or summary.models["judge"], "model": summary.models["judge"],
             "difficulty": _float(summary.difficulty), "quality": _float(summary.quality),
             "failures": failures({k: v for k, v in summary.failures.items() if isinstance(v, dict)}),
             "verdicts": summary.judge_verdicts or "text", **_usage(None)}]


def _usage(usage: dict | None) -> dict:
    """A judge's usage (models/answering.py judge_usage) as columns; NULL where not recorded."""
    usage = usage or {}
    return {"requests": usage.get("requests"), "input_tokens": usage.get("input_tokens"),
            "output_tokens": usage.get("output_tokens"), "cost_usd": _float(usage.get("cost_usd")),
            "latency_s": _float(usage.get("latency_s"))}


def _compute_seconds(summary: IntrinsicSummary) -> float | None:
    """The model metrics' compute time (summary `seconds`), summed; NULL when any part is unknown or no
    model metric ran (nothing to time is not a time of 0)."""
    if not summary.seconds or None in summary.seconds.values():
        return None
    return round(sum(summary.seconds.values()), 3)


# ---------------------------------------------------------------------------------------------
# Generators and the request store
# ---------------------------------------------------------------------------------------------


def _generators(datasets: list[dict], scores: list[dict], cfg: dict[str, dict]) -> list[dict]:
    names = {d["generator"] for d in datasets} | {s["generator"] for s in scores if s["kind"] == "generator"}
    rows = []
    for name in names:
        mine = [d for d in datasets if d["generator"] == name]
        c = cfg.get(name) or cfg.get(name.partition("@")[0], {})  # NAME@SIZE: a scaling prefix of NAME
        rows.append({
            "generator": name,
            "backend": next((d["backend"] for d in mine if d.get("backend")), c.get("backend")),
            "model": next((d["model"] for d in mine if d.get("model")), c.get("model")),
            "price_in_per_mtok": c.get("price_in_per_mtok"), "price_out_per_mtok": c.get("price_out_per_mtok"),
            "datasets": len(mine),
            "evaluated_benchmarks": sum(1 for s in scores if s["kind"] == "generator" and s["generator"] == name),
        })
    return rows


def _requests(db_path: Path) -> list[dict]:
    if not db_path.is_file():
        raise ValueError(f"{db_path}: no request store; run generation first or collect without include_requests")
    # Read-only: collect must never create or lock the store a running generation writes to.
    store = open_store(db_path, read_only=True)
    try:
        with store.use() as db:
            cur = db.execute("SELECT key, backend, model, request, finish_reason, input_tokens, output_tokens, "
                             "latency_s, cost_usd, created_at FROM responses")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------
# Small readers
# ---------------------------------------------------------------------------------------------




def _json(v: Any) -> str | None:
    # Sorted keys: the same dict always gives the same string (and so the same Parquet bytes).
    return None if v is None else json.dumps(v, sort_keys=True, ensure_ascii=False, default=str)


def _float(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    # NaN/inf mean "no value" in every result file; SQL's NULL says that, NaN would sort above everything.
    return v if math.isfinite(v) else None


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def iter_parquet(out: Path) -> Iterable[tuple[str, Path]]:
    """(table name, path) of the collected tables present in `out`, in schema order."""
    for name in TABLES:
        p = out / f"{name}.parquet"
        if p.is_file():
            yield name, p
