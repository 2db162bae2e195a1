"""Outside datasets as if a generator had written them: `agora import` and the generate stage of an import.

Owns reading an outside dataset (JSON Lines or JSON, Parquet, a `datasets` save_to_disk folder; a Hub
dataset is saved as Parquet first), recognising which of its columns hold the instruction and the
response, and writing it as one setting's dataset: the files of Setting.dataset, as typed records
(generation/records.py). An import is declared under `imports:` in params (config.ImportConfig), so
dvc.yaml's import stages train, evaluate and score it like a generator's dataset, and its generate
stage (write_import) reads the source and calls no model.

Every row goes through generation's validator for the setting; a row that fails is a Rejection with
its reason, as a rejected generation is. What an import cannot know (cost, tokens, prompts, seeds) is
null in its manifest, never 0; its backend is "import" and `source` says where the data came from.

May import: config, setting, records, files, generation.
"""
from __future__ import annotations

import hashlib
import io
import re
from datetime import date, datetime
from pathlib import Path

import orjson

from agorabench.config import ImportConfig, Params, ParamsError, check_setting
from agorabench.files import file_sha256, replacing, write_atomic
from agorabench.generation.plan import package_versions
from agorabench.generation.records import (
    DatasetManifest,
    Instance,
    Rejection,
    write_dataset,
)
from agorabench.generation.validation import validate
from agorabench.setting import import_setting

BACKEND = "import"

# (instruction column, response column) of common layouts, tried in this order.
PAIR_LAYOUTS = (
    ("instruction", "response"),     # AgoraBench's own export, Magpie
    ("instruction", "generation"),   # distilabel's TextGeneration
    ("instruction", "output"),       # Alpaca (its optional "input" is the instruction's context)
    ("inputs", "generations"),       # DataDreamer's ProcessWithPrompt and FewShotPrompt steps
    ("prompt", "completion"),        # TRL's prompt-completion
    ("prompt", "response"),
    ("question", "answer"),          # GSM8K and many QA sets
    ("problem", "solution"),         # MATH
)
CHAT_COLUMNS = ("messages", "conversations", "conversation")
USER_ROLES = ("user", "human")
ASSISTANT_ROLES = ("assistant", "gpt", "bot", "model")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
FILE_TYPES = ".jsonl, .json or .parquet file, or a datasets save_to_disk folder"
COLUMN_FIELDS = ("instruction_column", "response_column", "messages_column", "input_column")


class SourceError(ParamsError):
    """A one-line, user-facing error about an outside dataset: unreadable, empty, or its columns unknown."""


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------




def _sha256_folder(folder: Path) -> str:
    """One hash of a folder: its files' relative paths and hashes, in path order."""
    lines = [f"{p.relative_to(folder).as_posix()}\0{file_sha256(p)}\n"
             for p in sorted(folder.rglob("*")) if p.is_file()]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _json_rows(path: Path) -> list[dict]:
    data = path.read_bytes()
    if data.lstrip()[:1] == b"[":  # one JSON array of objects
        try:
            rows = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise SourceError(f"{path}: not valid JSON ({e}); fix the file or write it as JSON Lines") from None
    else:  # JSON Lines, whatever the suffix: `datasets`' to_json (so DataDreamer's export_to_json) writes them
        rows = []
        for n, line in enumerate(data.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(orjson.loads(line))
                except orjson.JSONDecodeError as e:
                    raise SourceError(f"{path}: line {n} is not valid JSON ({e}); fix or remove that line") from None
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise SourceError(f"{path}: row {bad + 1} is a {type(rows[bad]).__name__}, not an object; "
                          f"give one JSON object per row")
    return rows


def read_rows(source: str | Path, split: str = "train") -> tuple[list[dict], dict]:
    """(rows, provenance) of a local source: a .jsonl/.json or .parquet file or a `datasets`
    save_to_disk folder (`split` picks one split of a folder that holds several). The provenance
    names the format and the sha256 of the file, or of the folder's files."""
    path = Path(source)
    if path.is_dir():
        if not ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
            raise SourceError(f"{path}: a folder, but not one datasets' save_to_disk wrote (no dataset_info.json "
                              f"or dataset_dict.json); give a {FILE_TYPES}")
        from datasets import DatasetDict, load_from_disk

        data = load_from_disk(str(path))
        if isinstance(data, DatasetDict):
            if split not in data:
                raise SourceError(f"{path}: no split {split!r} (splits: {', '.join(data)}); pass --split with one of them")
            data = data[split]
        return data.to_list(), {"format": "save_to_disk", "sha256": _sha256_folder(path)}
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json"):
            rows, fmt = _json_rows(path), suffix[1:]
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            rows, fmt = pq.read_table(path).to_pylist(), "parquet"
        else:
            raise SourceError(f"{path}: unknown format {suffix or '(no suffix)'!r}; give a {FILE_TYPES}")
        return rows, {"format": fmt, "sha256": file_sha256(path)}
    raise SourceError(f"{source}: no such file or folder; give a {FILE_TYPES}, or a Hub dataset id ORG/NAME")


def save_hub_dataset(hub_id: str, dest: Path, *, subset: str | None = None, split: str = "train") -> Path:
    """Download one split of a Hub dataset and save it as Parquet at `dest` (needs the network)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise SourceError(f"{hub_id}: not a local file, and the Hub is offline (agora's default); run with "
                          f"AGORA_ONLINE=1 to download it, or pass a local file")
    from datasets import load_dataset

    try:
        data = load_dataset(hub_id, subset, split=split)
    except Exception as e:  # not found, gated, no such split or config: the library says which
        first = str(e).splitlines()[0] if str(e) else ""
        raise SourceError(f"{hub_id}: could not load it from the Hub ({type(e).__name__}: {first}); check the id, "
                          f"--subset, --split and HF_TOKEN") from None
    with replacing(dest, rerun=f"`agora import {hub_id}`") as (tmp,):  # a killed download is never taken for a source
        data.to_parquet(str(tmp))
    return dest


def _jsonable(v):
    """A source value as plain JSON (Parquet and `datasets` can hold dates and bytes)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)


# ---------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------


def detect_columns(columns: list[str], source: str, given: dict[str, str | None]) -> dict[str, str | None]:
    """The ImportConfig column fields for a source with these columns. `given` holds the columns the
    user named (by field); without them the first known layout present is used (PAIR_LAYOUTS, then a
    chat column). A named column the source lacks is a one-line error naming its flag."""
    have = set(columns)
    listed = ", ".join(columns)
    for field, col in given.items():
        if col is not None and col not in have:
            raise SourceError(f"{source}: no column {col!r} (columns: {listed}); pass {_flag(field)} with one of them")
    out = dict.fromkeys(COLUMN_FIELDS)
    if given.get("messages_column"):
        if given.get("instruction_column") or given.get("response_column") or given.get("input_column"):
            raise SourceError(f"{source}: pass --messages-column, or --instruction-column and --response-column, "
                              f"not both")
        return {**out, "messages_column": given["messages_column"]}
    ins, res = given.get("instruction_column"), given.get("response_column")
    if ins or res:
        if not (ins and res):
            missing = "--response-column" if ins else "--instruction-column"
            raise SourceError(f"{source}: pass {missing} too (columns: {listed})")
        return {**out, "instruction_column": ins, "response_column": res, "input_column": given.get("input_column")}
    for ins, res in PAIR_LAYOUTS:
        if ins in have and res in have:
            context = given.get("input_column") or ("input" if (ins, res) == ("instruction", "output")
                                                    and "input" in have else None)
            return {**out, "instruction_column": ins, "response_column": res, "input_column": context}
    for col in CHAT_COLUMNS:
        if col in have:
            return {**out, "messages_column": col}
    raise SourceError(f"{source}: cannot tell which columns hold the instruction and the response (columns: "
                      f"{listed}); pass --instruction-column and --response-column, or --messages-column")


def _turn(message) -> tuple[str | None, object]:
    """(role, content) of one chat message: {"role", "content"} or ShareGPT's {"from", "value"}."""
    if not isinstance(message, dict):
        return None, None
    role = message.get("role", message.get("from"))
    return (role.lower() if isinstance(role, str) else None), message.get("content", message.get("value"))


def first_exchange(messages) -> tuple[object, object] | None:
    """The first user turn and the assistant turn right after it, or None."""
    if not isinstance(messages, list):
        return None
    turns = [_turn(m) for m in messages]
    for k, (role, content) in enumerate(turns[:-1]):
        if role in USER_ROLES:
            next_role, answer = turns[k + 1]
            return (content, answer) if next_role in ASSISTANT_ROLES else None
    return None


def _text(value, roles: tuple[str, ...]) -> str | None:
    """A cell as text: a string, or (TRL's conversational prompt/completion) the first turn of a
    list of messages whose role is one of `roles`."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for m in value:
            role, content = _turn(m)
            if role in roles and isinstance(content, str):
                return content
    return None


def extract(row: dict, cfg: ImportConfig) -> tuple[str, str] | tuple[None, tuple[str, str]]:
    """(instruction, response) of one source row, or (None, (reason, detail)) when it has none."""
    if cfg.messages_column:
        pair = first_exchange(row.get(cfg.messages_column))
        if pair is None:
            return None, ("no_chat_exchange", f"{cfg.messages_column!r} has no user turn followed by an assistant turn")
        instruction, response = (v if isinstance(v, str) else None for v in pair)
    else:
        instruction = _text(row.get(cfg.instruction_column), USER_ROLES)
        response = _text(row.get(cfg.response_column), ASSISTANT_ROLES)
        context = row.get(cfg.input_column) if cfg.input_column else None
        if instruction and isinstance(context, str) and context.strip():
            instruction = instruction.rstrip() + "\n\n" + context.strip()
    instruction, response = (instruction or "").strip(), (response or "").strip()
    if not instruction:
        return None, ("empty_instruction", "no instruction text in this row")
    if not response:
        return None, ("empty_response", "no response text in this row")
    return instruction, response


# ---------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------


def build_import(params: Params, name: str) -> tuple[list[Instance], list[Rejection], DatasetManifest]:
    """The files of imports.NAME's dataset, from its source: every row validated as generation validates
    an answer. A source with no row, without a configured column, or without one valid row is a
    one-line error. Calls no model and writes nothing."""
    setting = import_setting(params, name)
    cfg = params.imports[name]
    rows, provenance = read_rows(cfg.source, cfg.split)
    if not rows:
        raise SourceError(f"{cfg.source}: no rows; give a file with data")
    columns = list(dict.fromkeys(k for r in rows for k in r))  # JSON rows need not share their keys
    for field in COLUMN_FIELDS:
        col = getattr(cfg, field)
        if col is not None and col not in columns:
            raise SourceError(f"{cfg.source}: no column {col!r} (columns: {', '.join(columns)}); set "
                              f"imports.{name}.{field} to one of them (or run `agora import` again)")
    g = params.generation
    method, domain = setting.method, setting.domain
    kept: list[Instance] = []
    rejected: list[Rejection] = []
    read = 0
    for i, row in enumerate(rows):
        if cfg.limit is not None and len(kept) >= cfg.limit:
            break
        read += 1
        instruction, verdict = extract(row, cfg)
        if instruction is not None:
            response = verdict
            verdict = validate(method, domain, instruction, response, max_tokens=g.max_instance_tokens,
                               tokenizer=g.tokenizer, strict_format=cfg.strict_format)
        if verdict is None:
            # attempt: the row's index in the source, so an instance can be traced back to its row
            kept.append(Instance(
                id=f"{name}/{method}/{domain}/{len(kept):06d}", instruction=instruction, response=response,
                config=cfg.model, generator=name, method=method, domain=domain, attempt=i, seed_ids=[],
                theme=None, first_word=None, prompt_sha256=None, request_key=None, input_tokens=None,
                output_tokens=None, cost_usd=None))
        else:
            rejected.append(Rejection(
                attempt=i, reason=verdict[0], detail=verdict[1],
                raw=orjson.dumps(_jsonable(row), option=orjson.OPT_SORT_KEYS).decode(), finish_reason=None,
                seed_ids=[], request_key=None, input_tokens=None, output_tokens=None, cost_usd=None))
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    if not kept:
        top = max(reasons, key=reasons.get)
        fix = ("check --method/--domain, or pass --no-strict-format to keep rows without the domain's format"
               if top in ("math_result_tags", "code_fences", "code_banned_phrase") else
               "check the column flags (--instruction-column, --response-column, --messages-column)")
        raise SourceError(f"{cfg.source}: none of its {read} rows is a valid {method}/{domain} instance "
                          f"({', '.join(f'{k}: {n}' for k, n in sorted(reasons.items()))}); {fix}")
    requested = cfg.limit if cfg.limit is not None else len(rows)
    complete = len(kept) >= requested
    manifest = DatasetManifest(
        generator=name, backend=BACKEND, model=cfg.model, domain=domain, method=method,
        num_requested=requested, num_valid=len(kept), complete=complete,
        shortfall_reason=None if complete else f"{len(rejected)} of {read} source rows failed validation",
        attempts=read, rejections=dict(sorted(reasons.items())),
        # An import does not know what its data cost: null, never 0.
        cost_usd=None, input_tokens=None, output_tokens=None, prompt_format=None, prompt_file=None,
        prompt_set_sha256=None, sampling=None, seed=None, seed_source=None, num_seeds=None, seeds_sha256=None,
        versions=package_versions(),
        source={"path": cfg.source, "origin": cfg.origin, **provenance, "split": cfg.split,
                "columns": {f: getattr(cfg, f) for f in COLUMN_FIELDS if getattr(cfg, f)},
                "strict_format": cfg.strict_format,
                "validator": {"max_tokens": g.max_instance_tokens, "tokenizer": g.tokenizer}},
    )
    return kept, rejected, manifest


def write_import(params: Params, name: str) -> DatasetManifest:
    """The generate stage of imports.NAME: its dataset's three files (Setting.dataset), from its source."""
    kept, rejected, manifest = build_import(params, name)
    write_dataset(import_setting(params, name).dataset(params), kept, rejected, manifest)
    return manifest


def check_import(params: Params, name: str, method: str, domain: str) -> None:
    """`agora generate` of an import must name its one setting."""
    cfg = params.imports[name]
    if (method, domain) != (cfg.method, cfg.domain):
        raise ParamsError(f"imports.{name} is the {cfg.method}/{cfg.domain} dataset; run `agora generate "
                          f"--generator {name} --method {cfg.method} --domain {cfg.domain}`")


def _uniform(rows: list[dict], column: str) -> str | None:
    """The value of `column` when every row has the same string there (distilabel's model_name)."""
    values = {r.get(column) if isinstance(r.get(column), str) else None for r in rows}
    return values.pop() if len(values) == 1 else None


def resolve_import(params: Params, source: str, name: str, *, method: str, domain: str,
                   columns: dict[str, str | None] | None = None, split: str = "train", subset: str | None = None,
                   limit: int | None = None, model: str | None = None, strict_format: bool = True) -> ImportConfig:
    """What `agora import` registers: the ImportConfig of an outside dataset, its columns recognized
    unless given. A Hub id is downloaded first and saved as Parquet under data/imports/ (beside
    generation.output_dir), which becomes the source. Every row is read and validated, so a source,
    a column or a setting that is wrong is a one-line error before anything is registered."""
    check_setting(domain, method)
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ParamsError(f"--as {name!r}: a name may use letters, digits, '-' and '_' only")
    if name in params.generators:
        raise ParamsError(f"--as {name}: {name!r} is a generator in params; give the import a name of its own")
    if limit is not None and limit < 1:
        raise ParamsError(f"--limit {limit}: give a positive number of instances")
    origin = None
    if not Path(source).exists() and HUB_ID.match(source) and Path(source).suffix.lower() not in (
            ".jsonl", ".json", ".parquet"):
        origin = source
        dest = Path(params.generation.output_dir).parent / "imports" / f"{name}.parquet"
        source, split = str(save_hub_dataset(source, dest, subset=subset, split=split)), "train"
    rows, _ = read_rows(source, split)
    if not rows:
        raise SourceError(f"{source}: no rows; give a file with data")
    found = detect_columns(list(dict.fromkeys(k for r in rows for k in r)), source, columns or {})
    cfg = ImportConfig(source=str(source), method=method, domain=domain, split=split, limit=limit,
                       model=model or _uniform(rows, "model_name"), origin=origin, strict_format=strict_format,
                       **found)
    build_import(with_import(params, name, cfg), name)  # its errors (no valid row), before anything is written
    return cfg


def with_import(params: Params, name: str, cfg: ImportConfig) -> Params:
    """params with imports.NAME set to cfg."""
    return params.model_copy(update={"imports": {**params.imports, name: cfg}})


def register_import(params_file: str | Path, name: str, cfg: ImportConfig) -> None:
    """Write imports.NAME into the params file, keeping its comments and layout (ruamel's round trip)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line the user wrote
    # null as `null`, as the file spells it (ruamel writes an empty value)
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    path = Path(params_file)
    doc = yaml.load(path.read_text(encoding="utf-8"))
    # The fields that differ from their defaults, the required ones first.
    entry = CommentedMap((k, v) for k, v in cfg.model_dump().items()
                         if k in ("source", "method", "domain") or v != ImportConfig.model_fields[k].default)
    if not isinstance(doc.get("imports"), CommentedMap):
        doc["imports"] = CommentedMap()
    doc["imports"].fa.set_block_style()  # `imports: {}` would otherwise stay on one line
    doc["imports"][name] = entry
    text = io.StringIO()
    yaml.dump(doc, text)
    write_atomic(path, text.getvalue(), rerun=f"`agora import SOURCE --as {name}`")


def describe(manifest: DatasetManifest) -> str:
    """One line on an imported dataset, for the CLI."""
    rejected = ", ".join(f"{k} {n}" for k, n in manifest.rejections.items()) or "none"
    return (f"{manifest.generator} {manifest.method} {manifest.domain}: {manifest.num_valid} instances from "
            f"{manifest.attempts} rows of {manifest.source['path']} (rejected: {rejected}); cost unknown, no model called")
