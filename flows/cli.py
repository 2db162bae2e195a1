"""`agora`: the command line. Thin: it parses options, loads params.yaml and runs a flow (every
pipeline stage and `agora run`) or a library function (queries, estimates, checks). Errors a user
can fix are printed as one line and exit with status 2.

The one thing it reads from the environment for the library is where `agora run` started the local
model servers (models.endpoint.SERVERS_ENV); the flows get those addresses as a parameter."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from typing import Optional

import typer

from agorabench import env_defaults as offline
from agorabench.files import StorageError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="AgoraBench: which language model should generate your synthetic training data?")

PARAMS_OPT = typer.Option("params.yaml", "--params", "-p", help="The experiment file (params.yaml or a profile).")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"agora {version('agorabench')}")
        raise typer.Exit()


@app.callback()
def main(verbose: int = typer.Option(0, "--verbose", "-v", count=True,
                                     help="More detail: -v logs at DEBUG (the library's `agorabench` loggers)."),
         quiet: bool = typer.Option(False, "--quiet", "-q",
                                    help="Warnings and errors only: no progress lines, no INFO logs."),
         version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """AgoraBench: which language model should generate your synthetic training data?"""
    from agorabench.models.launchers import exit_on_sigterm

    exit_on_sigterm()  # a killed command still stops what it started, e.g. Prefect's temporary server
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    # The stages `agora run` starts through DVC read the same choice from the environment.
    os.environ["AGORA_LOG_LEVEL"] = logging.getLevelName(level)
    if quiet:
        os.environ["AGORA_QUIET"] = "1"
    configure_logging()


def configure_logging() -> None:
    """The library's loggers (`agorabench.*`) print to stderr at AGORA_LOG_LEVEL (INFO by default)."""
    logger = logging.getLogger("agorabench")
    if not any(getattr(h, "_agora", False) for h in logger.handlers):
        handler = logging.StreamHandler()  # stderr: results stay alone on stdout
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._agora = True
        logger.addHandler(handler)
        logger.propagate = False  # not twice through Prefect's root handlers
    logger.setLevel(os.environ.get("AGORA_LOG_LEVEL", "INFO"))


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _load(params_file: str):
    from agorabench.config import ParamsError, load_params

    try:
        params = load_params(params_file)
    except ParamsError as e:
        fail(str(e))
    offline.apply_defaults(online=params.reads_the_hub())
    return params


@contextlib.contextmanager
def _foreground_flow():
    """Prefect settings for a flow `agora` runs in the foreground (one per DVC stage): no heartbeat
    thread. Heartbeats mark runs that died unseen; here the caller (a terminal, DVC) sees the exit,
    and joining that thread, which sleeps in 1-second steps, added about a second to every stage.
    And a user error stays one line on the terminal (_OneLineUserErrors)."""
    import prefect.main  # noqa: F401  (importing it sets up Prefect's log handlers, filtered below)
    from prefect.logging.handlers import PrefectConsoleHandler
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    consoles = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    quiet = _OneLineUserErrors()
    for h in consoles:
        h.addFilter(quiet)
    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
    finally:
        for h in consoles:
            h.removeFilter(quiet)


class _OneLineUserErrors:
    """A filter for Prefect's terminal log: a flow or task that fails with a user error (one the CLI
    prints as one line: a bad params file, a corrupt store, a full disk) would otherwise print its
    traceback and repeat the message in "Finished in state Failed(...)" lines above that line. The
    records carrying such an error, or quoting it, are left out of the terminal; Prefect's API log
    (the UI) still gets all of them. A task whose retry condition refuses the error logs no record
    with the exception itself, only its state ("... encountered an exception StorageError: ..."),
    hence the second test."""

    def __init__(self):
        self.seen: list[str] = []

    def filter(self, record) -> bool:
        if record.levelno < logging.ERROR:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, _user_errors()):
            if str(exc):
                self.seen.append(str(exc)[:40])  # a prefix: later records quote the message, escaped or cut
            return False
        text = record.getMessage()
        names = "|".join(t.__name__ for t in _user_errors())
        return not (re.search(rf"exception:? (?:{names}): ", text) or any(s in text for s in self.seen))


def _endpoints() -> dict | None:
    """The local model servers `agora run` started for the stages (JSON in SERVERS_ENV), or None."""
    from agorabench.models.endpoint import SERVERS_ENV

    raw = os.environ.get(SERVERS_ENV)
    return json.loads(raw) if raw else None


def _user_errors():
    from agorabench.models.clients.retry import FatalAPIError
    from agorabench.config import ParamsError
    from agorabench.models.endpoint import BudgetExceeded

    # ConnectionError: the Hub (seeds.source: hub, Arena-Hard v0.1) or a server that cannot be reached at all.
    # StorageError: a file of ours that is corrupt, locked, cut short or could not be written.
    # BudgetExceeded: the spending cap (budget_usd, --max-cost) stopped a stage; its message says what is undone.
    return (ParamsError, FatalAPIError, FileNotFoundError, ConnectionError, StorageError, BudgetExceeded)


@app.command()
def generate(
    generator: str = typer.Option(..., "--generator", "-g", help="A name under `generators:` (or `imports:`) in params."),
    domain: str = typer.Option(..., "--domain", "-d", help="math | code | general"),
    method: str = typer.Option(..., "--method", "-m",
                               help="instance_generation | response_generation | quality_enhancement"),
    num: Optional[int] = typer.Option(None, "--num", "-n", min=1, help="Valid instances to produce (default: generation.num_instances)."),
    params_file: str = PARAMS_OPT,
    max_cost: Optional[float] = typer.Option(None, "--max-cost", min=0,
                                             help="Stop cleanly before the spend recorded in the request store could exceed this many USD "
                                             "(default: budget_usd; this one writes a short dataset)."),
    scaling: bool = typer.Option(False, "--scaling", help="The scaling study's larger dataset: the largest of "
                                 "scaling.sizes, written under scaling.output_dir (then `agora subset`)."),
):
    """Generate one setting's dataset: data/generated/NAME/METHOD/DOMAIN.jsonl and its manifest."""
    params = _load(params_file)
    from agorabench.config import check_setting

    try:
        check_setting(domain, method)
        if generator in params.imports:  # read from its source: no model, no key
            from agorabench.generation.importing import check_import

            check_import(params, generator, method, domain)
        else:
            params.generator(generator).api_key(generator)
        output_dir = None
        if scaling:
            from agorabench.generation.scaling import scaling_num

            num, output_dir = num or scaling_num(params, generator, method), params.scaling.output_dir
        from flows.generate import generate as flow

        with _foreground_flow():
            manifest = asyncio.run(flow(generator=generator, domain=domain, method=method, params_file=params_file,
                                        num=num, max_cost=max_cost, output_dir=output_dir, endpoints=_endpoints()))
    except _user_errors() as e:
        fail(str(e))
    run = manifest.pop("run", {})
    status = "complete" if manifest["complete"] else f"SHORT: {manifest['shortfall_reason']}"
    typer.echo(f"{generator} {method} {domain}: {manifest['num_valid']}/{manifest['num_requested']} valid "
               f"({status}); {manifest['attempts']} attempts, rejections {manifest['rejections'] or '{}'}; "
               + ("dataset cost unknown (imported)" if manifest["cost_usd"] is None
                  else f"dataset cost ${manifest['cost_usd']:.4f}"))
    typer.echo(f"this run: {run.get('requests_sent', 0)} requests sent, {run.get('answers_cached', 0)} answers "
               f"from the request store, ${run.get('new_cost_usd', 0):.4f} new spend")


@app.command()
def subset(
    generator: str = typer.Option(..., "--generator", "-g", help="A name under scaling.generators."),
    domain: str = typer.Option(..., "--domain", "-d", help="math | code | general"),
    method: str = typer.Option(..., "--method", "-m",
                               help="instance_generation | response_generation | quality_enhancement"),
    size: int = typer.Option(..., "--size", "-n", min=1, help="One of scaling.sizes."),
    params_file: str = PARAMS_OPT,
):
    """The first N instances of a scaling dataset as the dataset of generator NAME@N (quantity vs quality)."""
    _load(params_file)
    from agorabench.setting import Setting
    from flows.subset import subset as flow

    try:
        Setting(generator, method, domain, size)  # the one-line errors of bad names, before Prefect starts
        with _foreground_flow():
            m = flow(generator=generator, domain=domain, method=method, size=size, params_file=params_file)
    except _user_errors() as e:
        fail(str(e))
    status = "complete" if m["complete"] else f"SHORT: {m['shortfall_reason']}"
    typer.echo(f"{Setting(generator, method, domain, size).name} {method} {domain}: {m['num_valid']}/{size} instances ({status}), "
               f"{m['attempts']} attempts, cost ${m['cost_usd']:.4f}")


@app.command()
def decontaminate(
    generator: str = typer.Option(..., "--generator", "-g", help="Whose dataset: a name under `generators:` "
                                  "(NAME@SIZE: a scaling prefix)."),
    domain: str = typer.Option(..., "--domain", "-d", help="math | code | general"),
    method: str = typer.Option(..., "--method", "-m",
                               help="instance_generation | response_generation | quality_enhancement"),
    params_file: str = PARAMS_OPT,
):
    """Check one dataset for benchmark items and copied seeds (n-gram overlap): DOMAIN.contamination.json
    beside it, and DOMAIN.drop.json, what training leaves out (nothing unless decontamination.drop)."""
    params = _load(params_file)
    from agorabench.config import ParamsError
    from agorabench.setting import SIZE_SEP, Setting

    try:
        name, sep, size = generator.partition(SIZE_SEP)
        if sep and not size.isdigit():
            raise ParamsError(f"--generator {generator}: a scaling prefix is NAME{SIZE_SEP}SIZE with a whole number SIZE")
        params.generator(name)
        setting = Setting(name, method, domain, int(size) if sep else None)
        from flows.decontaminate import decontaminate as flow

        with _foreground_flow():
            out = flow(generator=name, domain=domain, method=method, size=setting.size, params_file=params_file)
    except (*_user_errors(), ValueError) as e:
        fail(str(e))
    found = ", ".join(f"{source} {n}" for source, n in out["by_source"].items()) or "none"
    what = "left out of training" if out["dropped"] else "kept for training (decontamination.drop: false)"
    typer.echo(f"{setting.label}: {out['flagged']}/{out['instances']} instances overlap ({out['ngram']}-grams; "
               f"{found}); {what}")


@app.command()
def train(
    generator: str = typer.Option(..., "--generator", "-g", help="Whose dataset: a name under `generators:` or `imports:`."),
    domain: str = typer.Option(..., "--domain", "-d", help="math | code | general"),
    method: str = typer.Option(..., "--method", "-m",
                               help="instance_generation | response_generation | quality_enhancement"),
    params_file: str = PARAMS_OPT,
    accelerate: Optional[str] = typer.Option(None, "--accelerate", help="An accelerate config (multi-GPU, FSDP): "
                                             "run under `accelerate launch` with it (default: training.accelerate_config)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the dataset and config, print what would run; train nothing."),
):
    """Fine-tune the student (student.base) on one dataset: data/checkpoints/NAME/METHOD/DOMAIN."""
    params = _load(params_file)
    from agorabench.setting import Setting
    from agorabench.training.sft import launch_command, training_examples

    try:
        _, info = training_examples(params, generator, domain, method)
        accelerate = accelerate or params.training.accelerate_config
        command = launch_command(accelerate, generator, domain, method, params_file) if accelerate else None
    except (*_user_errors(), ValueError) as e:  # ValueError: a bad line in the dataset
        fail(str(e))
    if dry_run:
        if not info["examples"]:
            typer.echo(f"{info['dataset']} has no instance to train on: the student would be the base model, untrained")
            return
        left_out = f", {info['dropped_examples']} contaminated left out" if info["dropped_examples"] else ""
        typer.echo(f"train {params.student.base} on {info['dataset']}: {info['examples']} examples "
                   f"({info['seed_examples']} seeds{left_out}) -> {Setting(generator, method, domain).checkpoint(params)}")
        if command:
            typer.echo("would run: " + " ".join(command))
        return
    try:
        from flows.train import train as flow

        with _foreground_flow():
            metrics = flow(generator=generator, domain=domain, method=method, params_file=params_file,
                           accelerate_config=accelerate)
    except (*_user_errors(), RuntimeError) as e:
        fail(str(e))
    if not metrics.get("trained", True):
        typer.echo(f"{generator} {method} {domain}: nothing to train on; {metrics['untrained_reason']}")
        return
    typer.echo(f"{generator} {method} {domain}: {metrics['steps']} steps on {metrics['examples']} examples, "
               f"loss {metrics['first_loss']} -> {metrics['final_loss']} in {metrics['wall_s']} s")


@app.command()
def evaluate(
    model: str = typer.Option(..., "--model", help="base | reference | student:GENERATOR/METHOD/DOMAIN | "
                              "generator:NAME | a model folder or hub id"),
    benchmark: list[str] = typer.Option([], "--benchmark", "-b", help="Repeat for several; default: the model's "
                                        "(a student: its domain's; others: all)."),
    params_file: str = PARAMS_OPT,
    allow_code_execution: Optional[bool] = typer.Option(
        None, "--allow-code-execution/--no-code-execution", envvar="AGORA_ALLOW_CODE_EXECUTION",
        help="Opt in to running generated code (MBPP, HumanEval) in the sandbox (default: evaluation.allow_code_execution)."),
):
    """Evaluate a model: data/eval/<model>/<benchmark>.parquet (every item) and .scores.json."""
    params = _load(params_file)
    from agorabench.evaluation.run import benchmark_module, benchmarks_for, resolve_model_ref
    from agorabench.models.endpoint import BudgetExceeded

    try:
        resolve_model_ref(params, model)
        names = benchmark or benchmarks_for(params, model)
        for name in names:
            benchmark_module(name)
        from flows.evaluate import evaluate as flow

        with _foreground_flow():
            results = flow(model=model, benchmarks=names, params_file=params_file,
                           allow_code_execution=allow_code_execution, endpoints=_endpoints())
    except BudgetExceeded as e:
        from agorabench.evaluation.run import output_paths

        ref = resolve_model_ref(params, model)
        undone = [n for n in names if not output_paths(params, ref, n)["scores"].is_file()]
        fail(f"{e}; left undone: evaluate {model} on {', '.join(undone)}")
    except _user_errors() as e:
        fail(str(e))
    for name, r in results.items():
        run = r.get("run", {})
        score = "none" if r["score"] is None else f"{r['score']:.2f}"  # None: the judge gave no usable verdict
        typer.echo(f"{r['model']} {name}: {r['primary']} = {score} on {r['n_items']} items "
                   f"({run.get('generated', 0)} generated, {run.get('cached', 0)} from the request store)")


@app.command()
def intrinsic(
    generator: str = typer.Option(..., "--generator", "-g", help="Whose dataset: a name under `generators:` or `imports:`."),
    domain: str = typer.Option(..., "--domain", "-d", help="math | code | general"),
    method: str = typer.Option(..., "--method", "-m",
                               help="instance_generation | response_generation | quality_enhancement"),
    params_file: str = PARAMS_OPT,
):
    """Intrinsic data quality of one dataset (judge difficulty/quality, reward, perplexity, diversity):
    data/intrinsic/NAME/METHOD/DOMAIN.parquet and .summary.json."""
    _load(params_file)
    from agorabench.config import check_setting
    from agorabench.models.endpoint import BudgetExceeded

    try:
        check_setting(domain, method)
        from flows.intrinsic import intrinsic as flow

        with _foreground_flow():
            summary = flow(generator=generator, domains=[domain], methods=[method], params_file=params_file,
                           endpoints=_endpoints())[f"{method}/{domain}"]
    except BudgetExceeded as e:
        fail(f"{e}; left undone: intrinsic {generator}/{method}/{domain} (judge scores already paid are kept)")
    except (*_user_errors(), ValueError) as e:
        fail(str(e))
    shown = [f"{k} {summary[k]:.3g}" for k in ("difficulty", "quality", "reward", "perplexity",
                                                "instruction_diversity", "response_diversity")
             if isinstance(summary.get(k), (int, float))]
    typer.echo(f"{generator} {method} {domain}: {summary['n']} instances; " + (", ".join(shown) or "no metric"))


@app.command()
def results(params_file: str = PARAMS_OPT,
            requests: bool = typer.Option(False, "--requests", help="Also export the request store (not deterministic).")):
    """Collect every dataset, checkpoint, score and metric into data/results/ (Parquet) and agora.duckdb,
    and add the run to the history (data/history/) unless this revision is there already."""
    _load(params_file)
    from flows.results import results as flow

    try:
        with _foreground_flow():
            db = flow(params_file=params_file, include_requests=requests)
    except (ValueError, FileNotFoundError, StorageError) as e:
        fail(str(e))
    typer.echo(f"results database: {db} (try: agora sql \"SELECT * FROM pgr_overall\")")


@app.command("import")
def import_(
    source: str = typer.Argument(..., help="A .jsonl/.json or .parquet file, a `datasets` save_to_disk folder, or a "
                                 "Hub dataset id ORG/NAME (with AGORA_ONLINE=1; saved as Parquet under data/imports/)."),
    name: str = typer.Option(..., "--as", help="The dataset's name in the experiment (letters, digits, '-', '_')."),
    domain: str = typer.Option(..., "--domain", "-d", help="math | code | general: whose benchmarks score it"),
    method: str = typer.Option(..., "--method", "-m",
                               help="instance_generation | response_generation | quality_enhancement"),
    instruction_column: Optional[str] = typer.Option(None, "--instruction-column",
                                                     help="Default: recognized (instruction, inputs, prompt, ...)."),
    response_column: Optional[str] = typer.Option(None, "--response-column",
                                                  help="Default: recognized (response, generation, output, generations, ...)."),
    messages_column: Optional[str] = typer.Option(None, "--messages-column",
                                                  help="A column of chat messages, instead of the two above."),
    input_column: Optional[str] = typer.Option(None, "--input-column",
                                               help="A context column appended to the instruction (Alpaca's input)."),
    split: str = typer.Option("train", "--split", help="The split of a save_to_disk folder or a Hub dataset."),
    subset: Optional[str] = typer.Option(None, "--subset", help="A Hub dataset's config (e.g. gsm8k's main)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Keep the first N valid rows."),
    model: Optional[str] = typer.Option(None, "--model", help="The model that wrote the data (default: distilabel's "
                                        "model_name column when it has one value, else unknown)."),
    strict_format: bool = typer.Option(True, "--strict-format/--no-strict-format",
                                       help="Apply the domain's format rules ([RESULT] tags, code fences)."),
    params_file: str = PARAMS_OPT,
):
    """Register an outside dataset for one domain and method: it becomes imports.NAME in params, and `agora run`
    trains, evaluates and scores it like a generator's dataset (its generate stage calls no model)."""
    params = _load(params_file)
    from agorabench.generation.importing import describe, resolve_import
    from agorabench.generation.records import DatasetManifest

    columns = {"instruction_column": instruction_column, "response_column": response_column,
               "messages_column": messages_column, "input_column": input_column}
    try:
        # Every check (the source, its columns, its rows) before Prefect starts: a mistake is one line.
        cfg = resolve_import(params, source, name, method=method, domain=domain, columns=columns, split=split,
                             subset=subset, limit=limit, model=model, strict_format=strict_format)
        from flows.importing import import_dataset as flow

        with _foreground_flow():
            m = DatasetManifest.model_validate(flow(name=name, config=cfg.model_dump(), params_file=params_file))
    except _user_errors() as e:
        fail(str(e))
    cols = ", ".join(f"{k.removesuffix('_column')} {v}" for k, v in cfg.model_dump().items() if k.endswith("_column") and v)
    typer.echo(describe(m) + f"; columns: {cols}")
    typer.echo(f"{params_file}: imports.{name} registered; `agora run` trains, evaluates and scores it, then "
               f"agora sql \"SELECT * FROM pgr_domain WHERE generator = '{name}'\"")


@app.command()
def export(
    out_dir: str = typer.Option("data/export", "--out", "-o", help="The dataset folder to write (README.md, data/, "
                                "manifests/; nothing else there is touched)."),
    setting: list[str] = typer.Option([], "--setting", "-s", help="GENERATOR/METHOD/DOMAIN; repeat for several "
                                      "(default: every dataset of params)."),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", help="ORG/NAME: upload the folder as that "
                                              "dataset repository (needs AGORA_ONLINE=1 and HF_TOKEN; HF_ENDPOINT applies)."),
    private: bool = typer.Option(False, "--private", help="Create the Hub repository private."),
    license: str = typer.Option("other", "--license", help="The card's license (default other: generated text "
                                "falls under each generator's terms)."),
    results: bool = typer.Option(True, "--results/--no-results", help="Put PGR and intrinsic metrics in the card "
                                 "when the results database exists."),
    params_file: str = PARAMS_OPT,
):
    """Write every dataset as one Hugging Face dataset (a config per generator/method/domain, instruction, response
    and messages columns, a dataset card from the manifests and results), and push it to the Hub if asked."""
    params = _load(params_file)
    from pathlib import Path

    from agorabench.results.export import check_push, pick_settings

    try:
        # The checks that need no work, before Prefect starts: a mistake is one line.
        pick_settings(params, setting or None)
        if push_to_hub is not None:
            check_push(push_to_hub)
        from flows.export import export as flow

        db = None
        if results and any(Path(params.analysis.results_dir).glob("*.parquet")):
            db = str(_results_db(params_file))
        with _foreground_flow():
            out = flow(out_dir=out_dir, params_file=params_file, settings=setting or None, results_db=db,
                       license=license, repo_id=push_to_hub, push=push_to_hub is not None, private=private)
    except (*_user_errors(), ValueError) as e:
        fail(str(e))
    typer.echo(f"{out['out_dir']}: {len(out['configs'])} configs" + (" with PGR and intrinsic metrics" if db else "")
               + (f"; pushed: {out['commit_url']}" if out["commit_url"] else "")
               + (f" (load one: datasets.load_dataset(\"{out['out_dir']}\", \"{out['configs'][0]}\"))"
                  if out["configs"] else ""))


@app.command()
def sql(
    query: str = typer.Argument(..., help='e.g. "SELECT * FROM pgr_overall" (tables and views: docs/results-schema.md)'),
    db: Optional[str] = typer.Option(None, "--db", help="The results database (default: analysis.results_dir/"
                                     "agora.duckdb, rebuilt from its Parquet when stale)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | csv | json | markdown"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Show at most this many rows."),
    params_file: str = PARAMS_OPT,
):
    """Query the results database (DuckDB) and print the answer."""
    from agorabench.results.query import run_sql

    try:
        db = db or str(_results_db(params_file))
        out = run_sql(db, query, fmt, limit=limit)
    except (ValueError, StorageError) as e:
        fail(str(e))
    if out:
        typer.echo(out)


def _results_db(params_file: str):
    """The results database of params' analysis section, rebuilt when its Parquet is newer."""
    from pathlib import Path

    from agorabench.config import ParamsError, load_params
    from agorabench.results.db import ensure_db

    try:
        analysis = load_params(params_file).analysis
    except ParamsError:  # querying needs no valid experiment file; fall back to the defaults
        from agorabench.config import AnalysisConfig

        analysis = AnalysisConfig()
    if not Path(analysis.results_dir).is_dir():
        raise ValueError(f"results folder {analysis.results_dir} does not exist; run `agora results` "
                         f"(or `agora run`) first")
    return ensure_db(analysis.results_dir, analysis.combine, analysis.min_gap, analysis.history_dir)


@app.command()
def analyze(
    features: Optional[str] = typer.Option(None, "--features", help="A CSV or Parquet with columns generator, method, "
                                           "domain, pgr, problem_solving and numeric features (default: our results)."),
    db: Optional[str] = typer.Option(None, "--db", help="The results database (default: analysis.results_dir)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (pca.*, regression.coarse/fine/pca_top5; "
                                 "coarse is null below 3 generators)."),
    standardize: Optional[bool] = typer.Option(None, "--standardize/--no-standardize",
                                               help="z-score features before the PCA (default: analysis.standardize)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1, help="Components in the PGR regression "
                                        "(default: analysis.top_k)."),
    loading_average: Optional[str] = typer.Option(None, "--loading-average", metavar="all|top_k",
                                                  help="Mean |loading| per feature over all components (the "
                                                       "paper's Table 4) or the top k (default: "
                                                       "analysis.loading_average)."),
    params_file: str = PARAMS_OPT,
):
    """PGR against problem solving (coarse and fine), PCA of the intrinsic features, PGR on the top components."""
    from agorabench.analysis import (features_from_db, format_analysis, load_features, quantity_quality_from_db,
                                     run_analysis)
    from agorabench.config import AnalysisConfig, ParamsError, load_params

    try:
        cfg = load_params(params_file).analysis
    except ParamsError:
        cfg = AnalysisConfig()
    try:
        if features:
            frame, source = load_features(features), features
        else:
            source = db or str(_results_db(params_file))
            frame = features_from_db(source)
        result = run_analysis(frame, standardize=cfg.standardize if standardize is None else standardize,
                              top_k=top_k or cfg.top_k, source=source,
                              loading_average=loading_average or cfg.loading_average)
        if not features:
            result["quantity_quality"] = quantity_quality_from_db(source)
    except (ValueError, FileNotFoundError, StorageError) as e:
        fail(str(e))
    typer.echo(json.dumps(result, indent=2, allow_nan=False) if as_json else format_analysis(result))


@app.command()
def report(params_file: str = PARAMS_OPT,
           single_file: Optional[str] = typer.Option(None, "--single-file", metavar="PATH",
                                                     help="also write the page as this one self-contained HTML file "
                                                          "(figures inside, no other file needed) to share")):
    """Write the HTML report (analysis.report_dir/index.html): PGR, scores, valid rates, cost, intrinsic, samples."""
    _load(params_file)
    from flows.report import report as flow

    try:
        with _foreground_flow():
            out = flow(params_file=params_file, single_file=single_file)
    except (ValueError, FileNotFoundError, StorageError) as e:
        fail(str(e))
    why = out["analysis_skipped"]
    typer.echo(f"report: {out['index']}" + (f" (analysis skipped: {why})" if why else ""))
    if single_file:
        typer.echo(f"single file: {single_file}")


@app.command()
def estimate(
    generator: list[str] = typer.Option([], "--generator", "-g", help="Repeat for several; default: benchmark_generators."),
    domain: list[str] = typer.Option([], "--domain", "-d", help="Default: all domains in params."),
    method: list[str] = typer.Option([], "--method", "-m", help="Default: all methods in params."),
    num: Optional[int] = typer.Option(None, "--num", "-n", min=1),
    params_file: str = PARAMS_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Projected requests, tokens and cost of a run, before it starts: generation per setting, then every
    paid call per stage (intrinsic judge, benchmark judges, generators' benchmark runs) and the total. Sends nothing."""
    params = _load(params_file)
    from dataclasses import asdict

    from agorabench.config import check_setting
    from agorabench.generation.estimate import estimate_setting

    gens = generator or params.benchmark_generators or list(params.generators)
    rows = []
    try:
        for g in gens:
            params.generator(g)
            for m in method or params.methods:
                for d in domain or params.domains:
                    check_setting(d, m)
                    rows.append(estimate_setting(params, g, d, m, num))
        from agorabench.pipeline.dry_run import bill, format_bill

        # The calls after generation: the intrinsic judge reads each estimated setting's dataset; the
        # benchmark judge and the generators' own runs are the whole run's (params' evaluation section).
        costs = bill(params, [asdict(r) for r in rows], datasets=len(rows))
    except _user_errors() as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps({"generation": [asdict(r) for r in rows], "costs": costs}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Projected generation cost")
    for col in ("generator", "method", "domain", "instances", "input tok", "output tok", "cost $", "worst case $"):
        table.add_column(col, justify="right" if col not in ("generator", "method", "domain") else "left")
    for r in rows:
        table.add_row(r.generator, r.method, r.domain, str(r.num), f"{r.input_tokens:,}", f"{r.output_tokens:,}",
                      f"{r.cost_usd:.4f}", f"{r.worst_cost_usd:.4f}")
    table.add_row("total", "", "", "", f"{sum(r.input_tokens for r in rows):,}",
                  f"{sum(r.output_tokens for r in rows):,}", f"{sum(r.cost_usd for r in rows):.4f}",
                  f"{sum(r.worst_cost_usd for r in rows):.4f}")
    console = Console()
    console.width = max(console.width, 132)  # numbers stay readable in logs and narrow terminals
    console.print(table)
    for basis in sorted({r.basis for r in rows}):
        typer.echo(basis)
    typer.echo("\n".join(format_bill(costs)))


@app.command()
def deploy(
    name: str = typer.Option("nightly", "--name", help="The deployment's name."),
    cron: str = typer.Option("0 3 * * *", "--cron", help="Five-field cron, UTC (e.g. '0 3 * * 1': Mondays 03:00)."),
    generator: list[str] = typer.Option([], "--generator", "-g", help="Repeat for several; default: benchmark_generators."),
    push: bool = typer.Option(False, "--push/--no-push", help="`dvc push` to the default remote after each run."),
    repo: str = typer.Option(".", "--repo", help="The project's git + DVC repository."),
    allow_code_execution: bool = typer.Option(
        False, "--allow-code-execution", help="Opt in to running generated code (MBPP, HumanEval) in the sandbox."),
):
    """Re-run the benchmark on a schedule: serves a Prefect deployment of the pipeline flow (what `agora run`
    runs) until stopped (needs a Prefect server: `prefect server start`, and PREFECT_API_URL)."""
    from flows.deploy import deploy as serve_benchmark

    try:
        serve_benchmark(name=name, cron=cron, generators=generator or None, push=push, repo=repo,
                        allow_code_execution=allow_code_execution)
    except ValueError as e:
        fail(str(e))


prompts_app = typer.Typer(help="Meta-prompt folders (generation.prompt_dir).", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")


@prompts_app.command("from-official")
def prompts_from_official(
    clone_dir: str = typer.Argument(..., help="A clone of the paper's repository (neulab/data-agora)."),
    out_dir: str = typer.Argument(..., help="The folder to write (then set generation.prompt_dir to it)."),
):
    """Convert the paper's own meta-prompts into a folder AgoraBench reads: its 12 prompt files under our
    names and lists.yaml (themes, first words, system prompt) read from its run script, quirks kept."""
    from agorabench.config import ParamsError
    from agorabench.generation.official_prompts import convert_official

    try:
        report = convert_official(clone_dir, out_dir)
    except ParamsError as e:
        fail(str(e))
    typer.echo(report.summary())


@app.command()
def check(params_file: str = PARAMS_OPT):
    """Validate params.yaml, the prompt folder and the API keys it needs, without sending anything."""
    params = _load(params_file)
    from agorabench.config import ParamsError
    from agorabench.generation.prompting import load_prompt_set

    try:
        prompts = load_prompt_set(params.generation.prompt_dir, params.generation.num_fewshot)
        if not params.benchmark_generators:
            raise ParamsError(f"{params_file}: benchmark_generators is not set; list the generators to run "
                              f"(dvc.yaml's matrices read it)")
        for name in params.called_generators():
            params.generator(name).api_key(name)
        from pathlib import Path

        for name, cfg in params.imports.items():
            if not Path(cfg.source).exists():
                raise ParamsError(f"imports.{name}.source: {cfg.source} does not exist; restore the file or run "
                                  f"`agora import` again")
    except _user_errors() as e:
        fail(str(e))
    imported = f", {len(params.imports)} imports" if params.imports else ""
    typer.echo(f"{params_file}: ok ({len(params.generators)} generators{imported}, prompt set {prompts.sha256[:12]})")


@app.command()
def run(
    params_file: str = PARAMS_OPT,
    profile: Optional[str] = typer.Option(None, "--profile", help="A profile under profiles/ (e.g. paper): it "
                                          "becomes params.yaml, which the DVC pipeline reads."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan: stages, requests, tokens and cost. "
                                 "Calls nothing."),
    allow_code_execution: bool = typer.Option(
        False, "--allow-code-execution", help="Opt in to running generated code (MBPP, HumanEval) in the sandbox."),
    ui: bool = typer.Option(False, "--ui", help="Serve the Prefect UI while the run goes (its URL is printed)."),
    force: bool = typer.Option(False, "--force", help="Re-run every stage (answers still come from the request store)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="How many `dvc repro` lanes run side by side "
                                       "(settings dealt in turn; default: one per benchmark generator, at most "
                                       "one per core, 1 on a GPU host). Each lane's stages and local model servers "
                                       "get cores/jobs threads unless OMP_NUM_THREADS is set."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", min=0, help="Spending cap in USD for the whole "
                                             "run (default: budget_usd): every paid request checks it against the "
                                             "spend the request store records; the run stops cleanly, and the "
                                             "next one resumes without paying twice."),
    rehearse: bool = typer.Option(False, "--rehearse", help="Rehearse the profile on this CPU before paying for "
                                  "it: every code path of it, with small packaged models, loopback API servers "
                                  "and a loopback Hub in place of the paid models, the GPUs and the network."),
):
    """Run the whole benchmark: `dvc repro` over dvc.yaml, each stage one Prefect flow; only what changed runs."""
    import contextlib
    from pathlib import Path

    source = Path(f"profiles/{profile}.yaml") if profile else Path(params_file)
    if profile and not source.is_file():
        known = ", ".join(sorted(p.stem for p in Path("profiles").glob("*.yaml"))) or "none"
        fail(f"profile {profile!r}: {source} not found; known profiles: {known}")
    if rehearse:
        if not profile:
            fail("--rehearse rehearses a profile: add --profile NAME (e.g. agora run --profile paper --rehearse)")
        from agorabench.pipeline import rehearsal

        source = rehearsal.HOME / "params.yaml"
        rehearsal.write_params(f"profiles/{profile}.yaml", source)
    params = _load(str(source))
    if max_cost is not None:  # the stages are DVC subprocesses: the cap reaches them in the environment
        from agorabench.models.endpoint import MAX_COST_ENV

        os.environ[MAX_COST_ENV] = repr(max_cost)
    if dry_run:
        # "Calls nothing": no Hub either, even for a profile whose seeds or tokenizer live there.
        if os.environ.get("AGORA_ONLINE") != "1":
            os.environ.update(offline.OFFLINE)
        from agorabench.pipeline.dry_run import format_plan, plan

        try:
            typer.echo(format_plan(plan(params, max_cost)))
        except _user_errors() as e:
            fail(str(e))
        return
    if source != Path("params.yaml"):
        if not profile:
            fail("the DVC pipeline reads params.yaml: pass --profile NAME, copy the file over params.yaml, "
                 "or run variants with `dvc exp run -S`")
        import shutil

        shutil.copyfile(source, "params.yaml")
        typer.echo(f"params.yaml <- {source} (git shows the change; `git checkout params.yaml` undoes it)")
    from agorabench.pipeline.run import pending_stages, pipeline_env, repro

    if not force and pending_stages(pipeline_env()) == []:
        # Nothing changed: DVC says so, and neither a Prefect server nor a model server starts. The
        # run is still recorded: a new commit is a new revision (the same one adds nothing).
        from agorabench.pipeline.run import record_history

        rc = repro(pipeline_env())
        if rc == 0:
            record_history(params, ["results"], say=typer.echo)
            _print_answer(params)
        _remind_rehearsal(rehearse)
        raise typer.Exit(rc)
    try:
        from flows.pipeline import pipeline, pipeline_server

        if rehearse:
            typer.echo("rehearsal: starting the loopback Hub and APIs and their answering model")
        with (rehearsal.rehearsal_world(params) if rehearse else contextlib.nullcontext({})) as world:
            os.environ.update(world)  # the stages are DVC subprocesses: they inherit it
            with pipeline_server(ui=ui) as url:
                typer.echo(f"Prefect API {url}" + (" (UI: " + url.removesuffix("/api") + ")" if ui else ""))
                summary = pipeline(repo=".", force=force, jobs=jobs, allow_code_execution=allow_code_execution)
    except (RuntimeError, *_user_errors()) as e:  # a server that would not start, a port in use, a failed stage
        _remind_rehearsal(rehearse)
        fail(str(e))
    typer.echo(f"done: agora sql \"SELECT * FROM pgr_overall\"; report: {params.analysis.report_dir}/index.html"
               f" ({len(summary['stages_run'])} stages run in {summary['duration_s']:.0f} s)")
    _print_answer(params)
    _remind_rehearsal(rehearse)


def _remind_rehearsal(rehearse: bool) -> None:
    if rehearse:
        typer.echo("rehearsal: params.yaml is the rehearsal's; `git checkout params.yaml` before any other run")


def _print_answer(params) -> None:
    """The run's answer, last on the terminal: the report's headline (overall PGR per generator, its
    interval, the method averages, cost), as summary.md has it."""
    from pathlib import Path

    from agorabench.report.data import load_report_data
    from agorabench.report.page import headline_table, markdown_table
    from agorabench.results.db import DB_NAME

    db = Path(params.analysis.results_dir) / DB_NAME
    if not db.is_file():
        return
    try:
        table = markdown_table(*headline_table(load_report_data(db)))
    except (ValueError, StorageError) as e:  # the run is done; the database says why it has no answer
        typer.echo(f"no PGR table: {e}", err=True)
        return
    typer.echo(f"\nGenerators, best overall PGR first ({params.analysis.report_dir}/summary.md has more):\n{table}")


if __name__ == "__main__":
    app()
