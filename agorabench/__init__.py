"""AgoraBench: which language model should generate your synthetic training data, and what is it worth.

The library, grouped by pipeline step. Each package's docstring says what it owns and what it may
import; pyproject.toml's [tool.importlinter] contracts keep it so (tests/test_architecture.py):

    config.py, setting.py, records.py   params.yaml's schema; a setting and its paths and stage names;
                                        the typed records every stage's files are read and written with
    files.py      faults in our own files (StorageError), atomic writes, opening the SQLite stores
    progress.py   how a long step shows how far it is (a bar on a terminal, else a line every 30 s)
    models/       answering prompts: the request store, API clients, local model servers, in-process models
    generation/   writing one setting's dataset: prompts, seeds, the generation loop, parsing, validation
    training/     fine-tuning the student on a dataset
    evaluation/   benchmarks (one folder each), the code sandbox, scoring a model
    intrinsic/    the intrinsic quality of a dataset
    results/      the results database (Parquet, DuckDB views: PGR, cost, intrinsic)
    analysis.py   PGR against problem solving, the PCA and regressions
    report/       the HTML report
    pipeline/     running the whole DVC pipeline: lanes, model servers, the dry-run plan
    testing/      loopback servers and fixture trees for tests and benchmarks/ scripts

May import: numpy, torch, transformers and the like, never Prefect: flows/ and tasks/ (and the CLI,
flows/cli.py) wrap it. Inside, a step imports the steps below it (the list reads top-down from
pipeline/ to config.py).
"""

import warnings

# PEFT 0.21 reads transformers' deprecated `is_gradient_checkpointing` whenever it wraps a model, so every
# training and LoRA-student evaluation stage printed this FutureWarning; it is not ours to act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
