"""The pipeline's datasets as one Hugging Face dataset repository: `agora export` (and its push).

Owns the Hub layout of AgoraBench's datasets:

    README.md                        the dataset card: YAML front matter in the Hub's card format
                                     (license, task_categories, tags, configs with their data_files,
                                     dataset_info) and one section per config, made from the manifests
                                     and, when there is one, the results database (PGR, intrinsic metrics)
    data/CONFIG/train-00000-of-00001.parquet
                                     one config per GENERATOR/METHOD/DOMAIN
    manifests/CONFIG.json            each dataset's manifest as its stage wrote it (provenance a program
                                     can read; not data, so no config lists it)

A config is named GENERATOR--METHOD--DOMAIN. It becomes a folder and a URL part on the Hub, so "/" is
out, while "-" and "_" occur inside the parts (Qwen2.5-7B, instance_generation); a double dash is the
Hub's own way of flattening a path (its cache names folders models--ORG--NAME), and no method or
domain holds one, so splitting from the right gives the three parts back.

`messages` is the conversation the student is trained on (training.conversation): a system turn of
student.system_prompt when it is set, the instruction as the user turn, the response as the assistant
turn. `instruction` and `response` are the instance as it is.

Which datasets there are comes from params (setting.settings), as for the results collector.
"""
from __future__ import annotations

import math
from pathlib import Path

from agorabench.config import Params
from agorabench.files import replacing, replacing_dir
from agorabench.generation.records import read_instances, read_manifest
from agorabench.results.db import connect
from agorabench.setting import Setting, settings as all_settings
from agorabench.training.sft import conversation

CONFIG_SEP = "--"
CARD_FILE = "README.md"
SPLIT = "train"
INTRINSIC_COLUMNS = ("difficulty", "quality", "reward", "perplexity", "instruction_diversity", "response_diversity")

# The exported columns, in order: the text, its chat form, then provenance (the dataset's Instance
# fields; Instance.config, the generator's model, is called `model` here, so it is not taken for a Hub config).
COLUMNS = ("instruction", "response", "messages", "id", "generator", "model", "method", "domain",
           "request_key", "prompt_sha256", "seed_ids", "attempt", "theme", "first_word",
           "input_tokens", "output_tokens", "cost_usd")


def features():
    from datasets import Features, List, Value

    text = Value("string")
    return Features({
        "instruction": text, "response": text, "messages": List({"role": text, "content": text}),
        "id": text, "generator": text, "model": text, "method": text, "domain": text,
        "request_key": text, "prompt_sha256": text, "seed_ids": List(text), "attempt": Value("int64"),
        "theme": text, "first_word": text, "input_tokens": Value("int64"), "output_tokens": Value("int64"),
        "cost_usd": Value("float64"),
    })


def config_name(s: Setting) -> str:
    return CONFIG_SEP.join((s.name, s.method, s.domain))


def pick_settings(params: Params, wanted: list[str] | None) -> list[Setting]:
    """The settings to export: those of params whose dataset exists (wanted: GENERATOR/METHOD/DOMAIN labels)."""
    present = [s for s in all_settings(params) if s.dataset(params)["data"].is_file()]
    if not present:
        raise ValueError(f"{params.generation.output_dir}: no dataset of the settings in params; run `agora run`, "
                         f"`agora generate` or `agora import` first")
    if not wanted:
        return present
    by_label = {s.label: s for s in present}
    for label in wanted:
        if label not in by_label:
            raise ValueError(f"--setting {label}: no such dataset; give GENERATOR/METHOD/DOMAIN of one of: "
                             f"{', '.join(by_label)}")
    return [s for s in present if s.label in wanted]


def read_results(db_path: str | Path) -> dict[tuple[str, str, str], dict]:
    """(generator, method, domain) -> {"pgr", "pgr_benchmarks", intrinsic metrics...} from the views
    pgr_domain and intrinsic_summary of a results database, opened read-only."""
    import duckdb

    path = Path(db_path)
    if not path.is_file():
        raise ValueError(f"{path}: no results database; run `agora results` first, or export without results")
    con = connect(path)  # a locked or unreadable file is a one-line StorageError (results.db)
    try:
        out: dict[tuple[str, str, str], dict] = {}
        for g, m, d, pgr, n in con.execute("SELECT generator, method, domain, pgr, benchmarks FROM pgr_domain").fetchall():
            out.setdefault((g, m, d), {}).update(pgr=pgr, pgr_benchmarks=n)
        cols = ", ".join(INTRINSIC_COLUMNS)
        for g, m, d, *values in con.execute(f"SELECT generator, method, domain, {cols} FROM intrinsic_summary").fetchall():
            out.setdefault((g, m, d), {}).update(zip(INTRINSIC_COLUMNS, values))
    except duckdb.Error as e:
        raise ValueError(f"{path}: {str(e).splitlines()[0]}; rebuild it with `agora results`") from None
    finally:
        con.close()
    return out


def _columns(rows, system_prompt: str | None) -> dict[str, list]:
    """The exported columns of a dataset's instances (by column, so a dataset with no rows keeps its schema)."""
    out: dict[str, list] = {c: [] for c in COLUMNS}
    for r in rows:
        chat = conversation(r.instruction, r.response, system_prompt)
        row = {**r.model_dump(), "model": r.config, "messages": chat["prompt"] + chat["completion"]}
        for c in COLUMNS:
            out[c].append(row[c])
    return out


def export_datasets(params: Params, out_dir: str | Path, *, settings: list[str] | None = None,
                    results_db: str | Path | None = None, license: str = "other",
                    pretty_name: str = "AgoraBench datasets", repo_id: str | None = None) -> Path:
    """Write the pipeline's datasets as one Hugging Face dataset repository folder at out_dir.

    settings: which datasets, as GENERATOR/METHOD/DOMAIN labels (default: every one that exists).
    results_db: an agora.duckdb (results.db); its domain PGR and intrinsic metrics go into the card.
    license: the card's license; "other" by default, since generated text falls under each
        generator's terms of use, which the card names per config.
    repo_id: the Hub id the card's example loads (default: a placeholder ORG/NAME).
    In out_dir only README.md, data/ and manifests/ are replaced: a clone of the Hub repository
    (.git, .gitattributes) or a hand-written file there survives. Returns out_dir.
    """
    from datasets import Dataset
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    out_dir = Path(out_dir).resolve()
    picked = pick_settings(params, settings)
    results = read_results(results_db) if results_db is not None else {}
    system_prompt = params.student.system_prompt
    entries = []
    rerun = "`agora export`"
    bars_were_off = are_progress_bars_disabled()
    disable_progress_bars()  # a bar per config is noise; restored below
    # Each owned part is written beside its predecessor and swapped in only once all of them are
    # written (files.replacing_dir / replacing): a failed export, or a full disk, leaves the previous
    # export as it was, and a kill leaves each part whole. The card is swapped in last: it lists data/.
    try:
        with (replacing(out_dir / CARD_FILE, rerun=rerun) as (card,),
              replacing_dir(out_dir / "manifests", rerun) as manifests,
              replacing_dir(out_dir / "data", rerun) as data):
            for s in picked:
                name, paths = config_name(s), s.dataset(params)
                rows = read_instances(paths["data"], s.label)
                manifest = read_manifest(paths["manifest"], s.label) if paths["manifest"].is_file() else None
                entry = {"config": name, "setting": s, "rows": len(rows), "manifest": manifest,
                         "results": results.get((s.name, s.method, s.domain))}
                if manifest is not None:
                    (manifests / f"{name}.json").write_text(manifest.to_json(ensure_ascii=False), encoding="utf-8")
                if rows:  # `datasets` cannot load a split without rows: an empty dataset gets no config
                    ds = Dataset.from_dict(_columns(rows, system_prompt), features=features())
                    path = data / name / f"{SPLIT}-00000-of-00001.parquet"
                    path.parent.mkdir(parents=True)
                    ds.to_parquet(str(path))
                    entry.update(num_bytes=ds.data.nbytes, file_bytes=path.stat().st_size)
                entries.append(entry)
            dataset_card(entries, license=license, pretty_name=pretty_name, system_prompt=system_prompt,
                         with_results=results_db is not None, repo_id=repo_id).save(card)
    finally:
        if not bars_were_off:
            enable_progress_bars()
    return out_dir


# ---------------------------------------------------------------------------------------------
# The dataset card
# ---------------------------------------------------------------------------------------------


def size_category(n: int) -> str:
    """The Hub's size_categories bucket of n rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M")]
    return next((label for bound, label in bounds if n < bound), "10M<n<100M")


def _num(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _cost(v) -> str:
    if v is None:
        return "unknown"
    return f"${v:,.2f}" if v >= 1 else "$" + (f"{v:.6f}".rstrip("0").rstrip(".") or "0")


def _section(e: dict, with_results: bool, repo: str) -> list[str]:
    s, m, res = e["setting"], e["manifest"], e["results"] or {}
    if e["rows"]:
        head = f"`load_dataset(\"{repo}\", \"{e['config']}\")`: {e['rows']} rows, {s.method} / {s.domain}."
    else:
        head = f"No valid instance, so no config to load ({s.method} / {s.domain})."
    lines = [f"### {e['config']}", "", head, ""]
    if m is None:
        return lines + ["No manifest was found beside this dataset, so its provenance is unknown.", ""]
    lines.append(f"- Generator: `{m.generator}` (backend `{m.backend}`, model `{m.model}`)")
    if m.source is not None:
        src = m.source
        origin = f", downloaded from the Hub dataset `{src['origin']}`" if src.get("origin") else ""
        columns = ", ".join(f"{k.removesuffix('_column')} `{v}`" for k, v in src.get("columns", {}).items())
        lines.append(f"- Imported from `{src.get('path')}` ({src.get('format')}, sha256 `{src.get('sha256')}`"
                     f"{origin}); columns: {columns}")
    else:
        lines.append(f"- Prompt: `{m.prompt_file}` ({m.prompt_format} format), prompt set sha256 "
                     f"`{m.prompt_set_sha256}`; seeds: {m.num_seeds} from `{m.seed_source}` (sha256 "
                     f"`{m.seeds_sha256}`), seed {m.seed}")
        sampling = ", ".join(f"{k} {v}" for k, v in sorted((m.sampling or {}).items()))
        lines.append(f"- Sampling: {sampling or 'n/a'}")
    status = "complete" if m.complete else f"short: {m.shortfall_reason}"
    tried = "source rows read" if m.source is not None else "attempts"
    lines.append(f"- Instances: {m.num_valid} valid of {m.num_requested} requested ({status}); {m.attempts} {tried}")
    rejected = ", ".join(f"{r}: {n}" for r, n in sorted(m.rejections.items())) or "none"
    lines.append(f"- Rejected by validation: {sum(m.rejections.values())} ({rejected})")
    if m.cost_usd is None:
        lines.append("- Cost: unknown")
    else:
        lines.append(f"- Cost: {_cost(m.cost_usd)} ({m.input_tokens} input and {m.output_tokens} output tokens, "
                     f"rejected attempts included)")
    if m.latency_s is not None:  # the generator's answer time, summed over its attempts
        lines.append(f"- Generation time: {m.latency_s:,.1f} s of answers, rejected attempts included")
    if with_results:
        if res:
            lines.append(f"- PGR (domain): {_num(res.get('pgr'), 1)} over {res.get('pgr_benchmarks')} benchmark(s)")
            metrics = ", ".join(f"{k} {_num(res.get(k), 3)}" for k in INTRINSIC_COLUMNS)
            lines.append(f"- Intrinsic metrics: {metrics}")
        else:
            lines.append("- PGR and intrinsic metrics: not in the results database")
    return lines + [""]


def dataset_card(entries: list[dict], *, license: str, pretty_name: str, system_prompt: str | None,
                 with_results: bool, repo_id: str | None = None):
    """The README.md of an export: the Hub's YAML front matter, then the sections."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    loadable = [e for e in entries if e["rows"]]
    total = sum(e["rows"] for e in entries)
    data = DatasetCardData(license=license, pretty_name=pretty_name, task_categories=["text-generation"],
                           size_categories=[size_category(total)],
                           tags=["synthetic", "agorabench", *sorted({e["setting"].domain for e in entries}),
                                 *sorted({e["setting"].method for e in entries})])
    # The two YAML blocks `datasets`' own push_to_hub writes: where each config's files are, and their
    # features and sizes.
    MetadataConfigs({e["config"]: {"data_files": [{"split": SPLIT, "path": f"data/{e['config']}/{SPLIT}-*"}]}
                     for e in loadable}).to_dataset_card_data(data)
    infos = {}
    for e in loadable:
        splits = SplitDict()
        splits.add(SplitInfo(name=SPLIT, num_bytes=e["num_bytes"], num_examples=e["rows"]))
        infos[e["config"]] = DatasetInfo(config_name=e["config"], features=features(), splits=splits,
                                         download_size=e["file_bytes"], dataset_size=e["num_bytes"])
    DatasetInfosDict(infos).to_dataset_card_data(data)

    repo = repo_id or "ORG/NAME"
    example = loadable[0]["config"] if loadable else "GENERATOR--METHOD--DOMAIN"
    system = f'a system turn ("{system_prompt}"), ' if system_prompt else ""
    body = [
        f"# {pretty_name}", "",
        "Instruction data written by language models (or imported from elsewhere) for "
        "[AgoraBench](https://arxiv.org/abs/2412.03679), which measures what a dataset is worth as training "
        "data: a student model is fine-tuned on each dataset and its gain on benchmarks is reported as PGR "
        "(performance gap recovered: percent of the way from the untrained student to a reference model).", "",
        f"{len(loadable)} configs, {total} rows. A config is `GENERATOR--METHOD--DOMAIN`:", "",
        "```python", "from datasets import load_dataset", "",
        f"ds = load_dataset(\"{repo}\", \"{example}\", split=\"train\")", "```", "",
        "## Columns", "",
        "| column | meaning |", "|---|---|",
        "| instruction, response | the instance |",
        f"| messages | the chat the student is trained on: {system}the instruction as the user turn, the response "
        "as the assistant turn |",
        "| id | GENERATOR/METHOD/DOMAIN/index |",
        "| generator, model | the generator's (or import's) name in the experiment and the model behind it |",
        "| method, domain | instance_generation, response_generation or quality_enhancement; math, code or general |",
        "| request_key, prompt_sha256 | the request that produced the instance (AgoraBench's request store key) "
        "and a hash of its prompt |",
        "| seed_ids, attempt, theme, first_word | the seed examples in the prompt, the attempt number (an "
        "import's: the source row), the prompt's theme and first word (instance generation) |",
        "| input_tokens, output_tokens, cost_usd | what the request used and cost (empty where unknown) |", "",
        "Each config's manifest (counts, rejections, cost, prompt and seed hashes, package versions) is "
        "`manifests/CONFIG.json`.", "",
        "## Configs", "",
        "| config | generator | model | valid / requested | rejected | cost" + (" | PGR" if with_results else "") + " |",
        "|---|---|---|---|---|---" + ("|---" if with_results else "") + "|",
    ]
    for e in entries:
        m, res = e["manifest"], e["results"] or {}
        row = (f"| {e['config']} | {e['setting'].name} | {m.model if m else 'n/a'} | "
               f"{m.num_valid if m else e['rows']} / {m.num_requested if m else 'n/a'} | "
               f"{sum(m.rejections.values()) if m else 'n/a'} | {_cost(m.cost_usd) if m else 'unknown'}")
        body.append(row + (f" | {_num(res.get('pgr'), 1)}" if with_results else "") + " |")
    body += ["", "## Datasets", ""]
    for e in entries:
        body += _section(e, with_results, repo)
    body += ["## License", "",
             "The text was written by the models named above (or comes from the imported datasets named above); "
             "its use falls under their terms of use and licenses.", ""]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


# ---------------------------------------------------------------------------------------------
# Push
# ---------------------------------------------------------------------------------------------


def check_push(repo_id: str) -> None:
    """A push's one-line errors that need no request: the id's form, and the offline default."""
    from huggingface_hub import constants

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"--push-to-hub {repo_id!r}: give ORG/NAME (or USER/NAME)")
    if constants.is_offline_mode():
        raise ValueError(f"cannot push to {repo_id}: the Hub is offline (HF_HUB_OFFLINE=1, agora's default); "
                         f"run with AGORA_ONLINE=1 and HF_TOKEN set")


def push_to_hub(out_dir: str | Path, repo_id: str, *, token: str | None = None, endpoint: str | None = None,
                private: bool = False, commit_message: str = "AgoraBench datasets") -> str:
    """Upload an export folder as the dataset repository repo_id (created when missing) with
    huggingface_hub; `endpoint` defaults to HF_ENDPOINT's, else the Hub. Returns the commit URL."""
    from huggingface_hub import HfApi

    out_dir = Path(out_dir)
    if not (out_dir / CARD_FILE).is_file():
        raise ValueError(f"{out_dir}: no {CARD_FILE}; write the folder with `agora export` first")
    check_push(repo_id)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(out_dir), repo_id=repo_id, repo_type="dataset",
                                 commit_message=commit_message)
    except ValueError as e:
        if not str(e).startswith("Invalid metadata in README.md"):  # the Hub's check of the card, before upload
            raise
        reasons = "; ".join(line.lstrip("- ") for line in str(e).splitlines()[1:]) or "no reason given"
        raise ValueError(f"{out_dir / CARD_FILE}: the Hub refused the card: {reasons}; write the folder again "
                         f"with `agora export`") from None
    except OSError as e:  # HfHubHTTPError (401, 403, 404, ...) and a Hub that cannot be reached
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"--push-to-hub {repo_id}: {first}; check HF_TOKEN (write access), the id and "
                         f"HF_ENDPOINT") from None
    return info.commit_url
