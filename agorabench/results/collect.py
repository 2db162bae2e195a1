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
import hashlib
import json
import math
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from agorabench.config import EvaluationConfig, benchmark_domains
from agorabench.results.schema import INSTANCE_METRICS, INTRINSIC_METRICS, TABLES, Table


@dataclass(frozen=True)
class ResultPaths:
    """Where collect reads from and writes to (relative paths are taken from the working directory)."""

    generated: Path = Path("data/generated")
    checkpoints: Path = Path("data/checkpoints")
    train_logs: Path = Path("data/train")
    eval: Path = Path("data/eval")
    intrinsic: Path = Path("data/intrinsic")
    requests_db: Path = Path(".agora/requests.sqlite")
    out: Path = Path("data/results")

    @classmethod
    def from_params(cls, params, root: str | Path = ".") -> "ResultPaths":
        root = Path(root)
        return cls(
            generated=root / params.generation.output_dir,
            checkpoints=root / params.training.output_dir,
            train_logs=root / params.training.logs_dir,
            eval=root / params.evaluation.output_dir,
            intrinsic=root / params.intrinsic.get("output_dir", "data/intrinsic"),
            requests_db=root / params.cache.requests_db,
            out=root / params.analysis.results_dir,
        )

    def under(self, root: str | Path) -> "ResultPaths":
        """The same layout below another folder (tests, benchmarks)."""
        root = Path(root)
        return replace(self, **{k: root / v for k, v in self.__dict__.items()})


def collect(paths: ResultPaths = ResultPaths(), params=None, include_requests: bool = False) -> dict[str, Path]:
    """Read every result file under `paths` and write one Parquet file per table to paths.out.

    params: the loaded params.yaml (optional): the generators' prices and backends, and which benchmarks
        make up each domain's PGR (evaluation.benchmarks; without params, the schema default).
    include_requests: also export the request store's responses (not deterministic; off by default).
    Returns table name -> Parquet path. Tables with no input are written empty, so the database
    always has every table and its views always work.
    """
    generators_cfg = {} if params is None else {n: g.model_dump() for n, g in params.generators.items()}
    pgr_benchmarks = (params.evaluation if params is not None else EvaluationConfig()).benchmarks
    tables: dict[str, list[dict]] = {}
    tables["datasets"], tables["rejections"], tables["instances"] = _generated(paths.generated)
    tables["training_runs"], tables["training_loss"] = _training(paths.checkpoints, paths.train_logs)
    tables["scores"], tables["eval_items"] = _evaluation(paths.eval)
    tables["intrinsic"], tables["intrinsic_instances"] = _intrinsic(paths.intrinsic)
    tables["generators"] = _generators(tables["datasets"], tables["scores"], generators_cfg)
    tables["domain_benchmarks"] = [{"domain": d, "benchmark": b, "position": i}
                                   for d, names in pgr_benchmarks.items() for i, b in enumerate(names)]
    if include_requests:
        tables["requests"] = _requests(paths.requests_db)

    paths.out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, rows in tables.items():
        written[name] = write_table(name, rows, paths.out / f"{name}.parquet")
    return written


def write_table(name: str, rows: list[dict], path: Path) -> Path:
    """Rows -> Parquet with the table's schema, sorted by its key, written atomically."""
    table = TABLES[name]
    rows = sorted(rows, key=lambda r: tuple(_sortable(r.get(k)) for k in table.key))
    _check_unique(name, table, rows)
    arrow = pa.Table.from_pydict({c: [r.get(c) for r in rows] for c in table.names}, schema=table.arrow_schema())
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(arrow, tmp, **parquet_options(table))
    tmp.replace(path)
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


def _generated(root: Path) -> tuple[list[dict], list[dict], list[dict]]:
    datasets, rejections, instances = [], [], []
    if not root.is_dir():
        return datasets, rejections, instances
    settings = set()
    for p in root.glob("*/*/*.manifest.json"):
        settings.add((p.parent.parent.name, p.parent.name, p.name.removesuffix(".manifest.json")))
    for p in root.glob("*/*/*.jsonl"):
        if not p.name.endswith(".rejected.jsonl"):
            settings.add((p.parent.parent.name, p.parent.name, p.stem))
    for gen, method, domain in sorted(settings):
        base = root / gen / method
        data_path, manifest_path = base / f"{domain}.jsonl", base / f"{domain}.manifest.json"
        rows = _read_jsonl(data_path) if data_path.is_file() else []
        for k, r in enumerate(rows):
            instruction, response = r.get("instruction"), r.get("response")
            if not isinstance(instruction, str) or not isinstance(response, str):
                raise ValueError(f"{data_path}: line {k + 1} lacks a string 'instruction' or 'response'; "
                                 f"re-run `agora generate` for {gen}/{method}/{domain}")
            instances.append({
                "generator": gen, "method": method, "domain": domain, "idx": k, "id": r.get("id"),
                "instruction": instruction, "response": response, "config": r.get("config"),
                "attempt": r.get("attempt"), "seed_ids": r.get("seed_ids"), "theme": r.get("theme"),
                "first_word": r.get("first_word"), "prompt_sha256": r.get("prompt_sha256"),
                "request_key": r.get("request_key"), "input_tokens": r.get("input_tokens"),
                "output_tokens": r.get("output_tokens"), "cost_usd": _float(r.get("cost_usd")),
                "instruction_chars": len(instruction), "response_chars": len(response),
            })
        m = _read_json(manifest_path) if manifest_path.is_file() else {}
        for field, value in (("generator", gen), ("method", method), ("domain", domain)):
            if m.get(field, value) != value:
                raise ValueError(f"{manifest_path}: {field} is {m[field]!r} but the file sits under {value!r}; "
                                 f"move the file or re-run `agora generate`")
        reasons = m.get("rejections") or {}
        if m:
            datasets.append({
                "generator": gen, "method": method, "domain": domain,
                "backend": m.get("backend"), "model": m.get("model"),
                "num_requested": m.get("num_requested"), "num_valid": m.get("num_valid"),
                "complete": m.get("complete"), "shortfall_reason": m.get("shortfall_reason"),
                "attempts": m.get("attempts"), "rejected": sum(reasons.values()),
                "input_tokens": m.get("input_tokens"), "output_tokens": m.get("output_tokens"),
                "cost_usd": _float(m.get("cost_usd")), "prompt_format": m.get("prompt_format"),
                "prompt_file": m.get("prompt_file"), "prompt_set_sha256": m.get("prompt_set_sha256"),
                "seed": m.get("seed"), "seed_source": m.get("seed_source"), "num_seeds": m.get("num_seeds"),
                "seeds_sha256": m.get("seeds_sha256"),
                "data_sha256": _sha256(data_path) if data_path.is_file() else None,
                "sampling": _json(m.get("sampling")), "versions": _json(m.get("versions")),
            })
        else:
            # A dataset without its manifest (copied by hand, or a killed run): keep what the rows say.
            datasets.append({
                "generator": gen, "method": method, "domain": domain, "num_valid": len(rows),
                "input_tokens": sum(r.get("input_tokens") or 0 for r in rows),
                "output_tokens": sum(r.get("output_tokens") or 0 for r in rows),
                "cost_usd": round(sum(_float(r.get("cost_usd")) or 0.0 for r in rows), 10),
                "data_sha256": _sha256(data_path),
            })
        rejections += [{"generator": gen, "method": method, "domain": domain, "reason": reason, "count": n}
                       for reason, n in reasons.items()]
    return datasets, rejections, instances


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _training(checkpoints: Path, logs: Path) -> tuple[list[dict], list[dict]]:
    settings = set()
    if checkpoints.is_dir():
        settings |= {(p.parts[-4], p.parts[-3], p.parts[-2]) for p in checkpoints.glob("*/*/*/student.json")}
    if logs.is_dir():
        settings |= {(p.parent.parent.name, p.parent.name, p.name.removesuffix(".metrics.json"))
                     for p in logs.glob("*/*/*.metrics.json")}
        settings |= {(p.parent.parent.name, p.parent.name, p.name.removesuffix(".loss.csv"))
                     for p in logs.glob("*/*/*.loss.csv")}
    runs, losses = [], []
    for gen, method, domain in sorted(settings):
        student_path = checkpoints / gen / method / domain / "student.json"
        metrics_path = logs / gen / method / f"{domain}.metrics.json"
        loss_path = logs / gen / method / f"{domain}.loss.csv"
        s = _read_json(student_path) if student_path.is_file() else {}
        m = _read_json(metrics_path) if metrics_path.is_file() else {}
        if s or m:
            runs.append({
                "generator": gen, "method": method, "domain": domain, "base": s.get("base"),
                "trained": bool(s.get("trained", m.get("trained", True))), "lora": s.get("lora"),
                "examples": s.get("examples", m.get("examples")), "generated_examples": s.get("generated_examples"),
                "seed_examples": s.get("seed_examples", m.get("seed_examples")),
                "examples_sha256": s.get("examples_sha256"),
                "first_loss": _float(m.get("first_loss")), "final_loss": _float(m.get("final_loss")),
                "train_loss": _float(m.get("train_loss")), "steps": m.get("steps"), "epochs": _float(m.get("epochs")),
                "train_tokens": m.get("train_tokens"), "wall_s": _float(m.get("wall_s")),
                "tokens_per_s": _float(m.get("tokens_per_s")),
                "training_config": _json(s.get("training")), "versions": _json(s.get("versions")),
            })
        if loss_path.is_file():
            with open(loss_path, newline="") as f:
                for line, r in enumerate(csv.DictReader(f), start=2):
                    try:
                        losses.append({"generator": gen, "method": method, "domain": domain,
                                       "step": int(r["step"]), "epoch": _float(r.get("epoch")),
                                       "loss": _float(r.get("loss")), "learning_rate": _float(r.get("learning_rate"))})
                    except (KeyError, TypeError, ValueError):
                        raise ValueError(f"{loss_path}: line {line} is not step,epoch,loss,learning_rate numbers; "
                                         f"re-run `agora train` for {gen}/{method}/{domain}") from None
    return runs, losses


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def model_identity(key: str) -> dict:
    """What a model key says: kind, and for students/generators their generator, method, domain."""
    parts = key.split("/")
    out = {"model": key, "kind": "model", "generator": None, "method": None, "student_domain": None}
    if key in ("base", "reference"):
        out["kind"] = key
    elif parts[0] == "students" and len(parts) == 4:
        out.update(kind="student", generator=parts[1], method=parts[2], student_domain=parts[3])
    elif parts[0] == "generators" and len(parts) == 2:
        out.update(kind="generator", generator=parts[1])
    return out


def _evaluation(root: Path) -> tuple[list[dict], list[dict]]:
    scores, items = [], []
    if not root.is_dir():
        return scores, items
    for p in sorted(root.rglob("*.scores.json")):
        key = p.parent.relative_to(root).as_posix()
        benchmark = p.name.removesuffix(".scores.json")
        s = _read_json(p)
        if s.get("benchmark", benchmark) != benchmark:
            raise ValueError(f"{p}: benchmark is {s['benchmark']!r} but the file is named for {benchmark!r}; "
                             f"rename it or re-run `agora evaluate`")
        score = _float(s.get("score"))
        if s.get("score") is not None and not isinstance(s.get("score"), (int, float)):
            raise ValueError(f"{p}: score {s.get('score')!r} is not a number; re-run `agora evaluate`")
        scores.append({
            **model_identity(key), "benchmark": benchmark,
            "benchmark_domain": s.get("domain") or benchmark_domains().get(benchmark),
            "primary_metric": s.get("primary"), "score": score, "n_items": s.get("n_items"),
            "samples": s.get("samples"), "fewshot": s.get("fewshot"), "judge": s.get("judge"),
            "no_answer": s.get("no_answer"), "data_version": _str(s.get("data_version")),
            "items_sha256": s.get("items_sha256"), "metrics": _json(s.get("metrics")),
        })
    wanted = TABLES["eval_items"].names
    for p in sorted(root.rglob("*.parquet")):
        key = p.parent.relative_to(root).as_posix()
        ident = model_identity(key)
        t = pq.read_table(p)
        cols = t.to_pydict()
        n = t.num_rows
        if "item_id" not in cols:
            raise ValueError(f"{p}: no item_id column; this is not an `agora evaluate` items file")
        for i in range(n):
            row = {c: cols[c][i] for c in wanted if c in cols}
            row.update(ident)
            row["benchmark"] = cols["benchmark"][i] if "benchmark" in cols else p.stem
            row.setdefault("sample_index", 0)
            items.append(row)
    return scores, items


# ---------------------------------------------------------------------------------------------
# Intrinsic metrics
# ---------------------------------------------------------------------------------------------

# Names a summary file may use for a mean (the intrinsic stage's writer is free to pick one).
_MEAN_NAMES = ("{m}", "mean_{m}", "{m}_mean")
_INDEX_NAMES = ("idx", "index", "instance", "instance_index", "instance_idx")


def _intrinsic(root: Path) -> tuple[list[dict], list[dict]]:
    summaries, per_instance = [], []
    if not root.is_dir():
        return summaries, per_instance
    settings = {(p.parent.parent.name, p.parent.name, p.name.removesuffix(".summary.json"))
                for p in root.glob("*/*/*.summary.json")}
    settings |= {(p.parent.parent.name, p.parent.name, p.stem) for p in root.glob("*/*/*.parquet")}
    for gen, method, domain in sorted(settings):
        setting = {"generator": gen, "method": method, "domain": domain}
        summary_path = root / gen / method / f"{domain}.summary.json"
        parquet_path = root / gen / method / f"{domain}.parquet"
        rows = []
        if parquet_path.is_file():
            cols = pq.read_table(parquet_path).to_pydict()
            n = len(next(iter(cols.values()))) if cols else 0
            index_col = next((c for c in _INDEX_NAMES if c in cols), None)
            for i in range(n):
                row = {**setting, "idx": int(cols[index_col][i]) if index_col else i}
                row.update({m: _float(cols[m][i]) if m in cols else None for m in INSTANCE_METRICS})
                rows.append(row)
        per_instance += rows
        summary = _read_json(summary_path) if summary_path.is_file() else {}
        flat = {**summary, **(summary.get("means") or {})} if isinstance(summary.get("means"), dict) else summary
        out = {**setting, "summary": _json(summary) if summary else None}
        for m in INTRINSIC_METRICS:
            value = next((flat[name.format(m=m)] for name in _MEAN_NAMES if name.format(m=m) in flat), None)
            if value is None and m in INSTANCE_METRICS:
                finite = [r[m] for r in rows if r[m] is not None and math.isfinite(r[m])]
                value = sum(finite) / len(finite) if finite else None
            out[m] = _float(value)
        out["instances"] = summary.get("instances", summary.get("n", len(rows) if rows else None))
        summaries.append(out)
    return summaries, per_instance


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
    # Read-only URI: collect must never create or lock the store a running generation writes to.
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        cur = con.execute("SELECT key, backend, model, request, finish_reason, input_tokens, output_tokens, "
                          "latency_s, cost_usd, created_at FROM responses")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Small readers
# ---------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); re-run the stage that wrote it") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}; re-run the stage that wrote it")
    return data


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError as e:
                raise ValueError(f"{path}: line {n} is not valid JSON ({e}); re-run the stage that wrote it") from None
    return rows


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
