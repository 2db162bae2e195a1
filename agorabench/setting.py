"""A setting: one generator's dataset in one (method, domain), and every name derived from it.

The paths of a setting's files (its dataset, contamination report, checkpoint, training logs,
evaluation, intrinsic metrics) and the DVC stage names of its chain are defined here, once. Nothing parses a path or a
stage name back into a setting: code that needs the settings asks params for them (`settings`).

A scaling prefix (the quantity study, agorabench/generation/scaling.py) is a setting too, with a
`size`: its dataset is the first `size` instances of the larger scaling dataset, and everywhere
else it is the dataset of generator "NAME@SIZE".

An imported dataset (`imports:` in params, agorabench/generation/importing.py) is the one setting of
its NAME, `imported`: its files are where a generator's are, and only its stage names differ (DVC
expands its chain over the imports, so a stage is named by NAME alone).

May import: config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agorabench.config import Params, check_setting

SIZE_SEP = "@"  # "gpt-4o-mini@50000": the dataset of a scaling prefix, as a generator name

# The stages of one setting's chain, by dvc.yaml's stage names: a main setting, a scaling prefix,
# and the full-size scaling dataset its prefixes are cut from.
CHAIN = ("generate", "decontaminate", "train", "evaluate-student", "intrinsic")
PREFIX_CHAIN = ("scale-subset", "scale-decontaminate", "scale-train", "scale-evaluate")
IMPORT_CHAIN = ("import", "import-train", "import-evaluate", "import-intrinsic")
SCALING_SOURCE = "scale-generate"


@dataclass(frozen=True)
class Setting:
    generator: str
    method: str
    domain: str
    size: int | None = None  # a scaling prefix of this many instances
    imported: bool = False   # an outside dataset (imports.NAME in params)

    def __post_init__(self):
        check_setting(self.domain, self.method)

    # -- names -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The generator key of the dataset: NAME, or NAME@SIZE for a scaling prefix."""
        return self.generator if self.size is None else f"{self.generator}{SIZE_SEP}{self.size}"

    @property
    def label(self) -> str:
        """"NAME/METHOD/DOMAIN": how messages, ids and the CLI name a setting."""
        return f"{self.name}/{self.method}/{self.domain}"

    @property
    def matrix_key(self) -> str:
        """How DVC names this setting's entries of a matrix over generator, method, domain (, size), or of
        the import stages' loop over the imports (by name)."""
        if self.imported:
            return self.generator
        key = f"{self.generator}-{self.method}-{self.domain}"
        return key if self.size is None else f"{key}-{self.size}"

    def stage(self, kind: str) -> str:
        """The DVC stage name of one step of this setting's chain, e.g. "train@smollm2-response_generation-math"."""
        return f"{kind}@{self.matrix_key}"

    @property
    def chain(self) -> tuple[str, ...]:
        """dvc.yaml's stage names of this setting's chain, in pipeline order."""
        return PREFIX_CHAIN if self.size is not None else IMPORT_CHAIN if self.imported else CHAIN

    def stages(self) -> list[str]:
        """The setting's own stages, in pipeline order."""
        return [self.stage(kind) for kind in self.chain]

    @property
    def eval_key(self) -> str:
        """The student's folder under evaluation.output_dir (and its scores file's name)."""
        return f"students/{self.name}/{self.method}/{self.domain}"

    @property
    def student_ref(self) -> str:
        """`agora evaluate --model` for this setting's student."""
        return f"student:{self.name}/{self.method}/{self.domain}"

    def full_size(self) -> "Setting":
        """The setting of the full-size scaling dataset a prefix is cut from."""
        return Setting(self.generator, self.method, self.domain)

    # -- paths -------------------------------------------------------------------------------------
    def dataset(self, params: Params, output_dir: str | Path | None = None) -> dict[str, Path]:
        """data (JSONL), rejected (JSONL) and manifest (JSON) of the dataset, under generation.output_dir
        (or `output_dir`: the scaling study writes its full-size datasets under scaling.output_dir)."""
        base = Path(output_dir or params.generation.output_dir) / self.name / self.method
        return {"data": base / f"{self.domain}.jsonl", "manifest": base / f"{self.domain}.manifest.json",
                "rejected": base / f"{self.domain}.rejected.jsonl"}

    def scaling_source(self, params: Params) -> dict[str, Path]:
        """The full-size scaling dataset (what `agora generate --scaling` writes)."""
        return self.full_size().dataset(params, params.scaling.output_dir)

    def contamination(self, params: Params) -> dict[str, Path]:
        """Beside the dataset: report (JSON: what overlaps the benchmarks or the seeds) and drop (JSON:
        the instances training leaves out, none unless decontamination.drop)."""
        data = self.dataset(params)["data"]
        return {"report": data.with_name(f"{self.domain}.contamination.json"),
                "drop": data.with_name(f"{self.domain}.drop.json")}

    def checkpoint(self, params: Params) -> Path:
        return Path(params.training.output_dir) / self.name / self.method / self.domain

    def train_logs(self, params: Params) -> dict[str, Path]:
        stem = Path(params.training.logs_dir) / self.name / self.method / self.domain
        return {"metrics": stem.with_suffix(".metrics.json"), "loss": stem.with_suffix(".loss.csv")}

    def intrinsic(self, params: Params) -> dict[str, Path]:
        base = Path(params.intrinsic.output_dir) / self.name / self.method
        return {"parquet": base / f"{self.domain}.parquet", "summary": base / f"{self.domain}.summary.json"}


def settings(params: Params) -> list[Setting]:
    """Every setting the pipeline runs, in dvc.yaml's order: the benchmark generators' (generator, then
    method, then domain), the imports', then the scaling study's prefixes (generator, method, domain, size)."""
    main = [Setting(g, m, d) for g in params.benchmark_generators for m in params.methods for d in params.domains]
    imported = [import_setting(params, name) for name in params.imports]
    sc = params.scaling
    prefixes = [Setting(g, m, d, n) for g in sc.generators for m in sc.methods for d in params.domains for n in sc.sizes]
    return main + imported + prefixes


def import_setting(params: Params, name: str) -> Setting:
    """The setting of imports.NAME."""
    from agorabench.config import ParamsError

    if name not in params.imports:
        raise ParamsError(f"unknown import {name!r}; imports in params: {', '.join(params.imports) or 'none'} "
                          f"(`agora import` adds one)")
    cfg = params.imports[name]
    return Setting(name, cfg.method, cfg.domain, imported=True)


def scaling_sources(params: Params) -> list[Setting]:
    """The full-size scaling datasets (one scale-generate stage each), in matrix order."""
    sc = params.scaling
    return [Setting(g, m, d) for g in sc.generators for m in sc.methods for d in params.domains]


def student_setting(params: Params, ref: str) -> Setting:
    """The setting of `agora evaluate --model student:NAME/METHOD/DOMAIN` (user input, so checked)."""
    from agorabench.config import ParamsError

    parts = ref.removeprefix("student:").split("/")
    if len(parts) != 3:
        raise ParamsError(f"--model {ref}: write student:GENERATOR/METHOD/DOMAIN")
    name, method, domain = parts
    generator, sep, size = name.partition(SIZE_SEP)
    if sep and not size.isdigit():
        raise ParamsError(f"--model {ref}: a scaling prefix is NAME@SIZE with a whole number SIZE")
    return Setting(generator, method, domain, int(size) if sep else None)
