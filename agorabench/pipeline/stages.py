"""The pipeline's stages as params name them: every setting's chain, and the stages of no setting.

dvc.yaml is the DAG. This module knows how DVC names the entries of its matrices (Setting.stage),
so `agora run` can deal the stages into lanes and start each lane's model servers from params alone,
without parsing a stage name back into a setting. tests/test_lanes.py checks that these names are
exactly the ones `dvc stage list` prints for the project's dvc.yaml.

May import: config, setting, models (the servers it starts, the sizes of packaged models).
"""
from __future__ import annotations

from dataclasses import dataclass

from agorabench.config import Params
from agorabench.setting import SCALING_SOURCE, Setting, scaling_sources, settings

ANCHORS = ("evaluate-anchor@base", "evaluate-anchor@reference")


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str                      # dvc.yaml's stage name: generate, train, evaluate-anchor, ...
    setting: Setting | None        # the (full-size) setting whose chain it is in; None for the anchors
                                   # and the generators' own scores
    generator: str | None = None   # evaluate-generator@NAME: the generator it scores


def pipeline_stages(params: Params) -> dict[str, Stage]:
    """Every stage of a setting or of no setting, by name (results and report read everything and
    belong to no lane, so they are not here)."""
    out: dict[str, Stage] = {}
    for s in settings(params):
        for kind in s.chain:
            out[s.stage(kind)] = Stage(s.stage(kind), kind, s.full_size())  # a prefix is in its setting's chain
    for s in scaling_sources(params):
        out[s.stage(SCALING_SOURCE)] = Stage(s.stage(SCALING_SOURCE), SCALING_SOURCE, s)
    for name in ANCHORS:
        out[name] = Stage(name, "evaluate-anchor", None)
    for g in params.evaluation.generators:
        name = f"evaluate-generator@{g}"
        out[name] = Stage(name, "evaluate-generator", None, g)
    return out


@dataclass(frozen=True)
class LaneGroup:
    """Stages `agora run` keeps in one lane: a generator's settings' chains (each setting's stages
    depend on each other) and its own scores, with the anchors its model answers; or an anchor on
    its own."""

    chains: tuple[tuple[str, ...], ...]  # each setting's chain, then each stage of no setting
    settings: int                        # how many of `chains` are settings' chains
    parameters: int = 0                  # of the model its local server answers with (served_parameters)

    @property
    def stages(self) -> list[str]:
        return [name for chain in self.chains for name in chain]

    def parts(self) -> list["LaneGroup"]:
        """Each chain a group of its own (for more lanes than generators)."""
        return [LaneGroup((chain,), int(i < self.settings), self.parameters) for i, chain in enumerate(self.chains)]


def lane_groups(params: Params, stages: list[str]) -> list[LaneGroup]:
    """What `agora run` deals to lanes (pipeline.run.split_lanes), from `stages` in DVC's order.

    One group per generator: its settings' chains (generation, decontamination, training, student
    evaluation, intrinsic metrics, scaling) and its own scores, so that its server, which a CPU
    runs with one thread, serves one lane at a time. Two lanes calling one server leave a core idle:
    with the settings dealt over both lanes, the default's lanes called Qwen's server at once for
    166-460 s a run. An anchor goes with the generator of the same model, whose server answers it
    too (the default's base is SmolLM2); a generator that is the reference model gets the
    reference's prompts, so whichever of the two runs second reads them from the request store.
    Another anchor is a group of its own. Largest served model first, then the groups without a
    setting (the anchors last)."""
    known = pipeline_stages(params)
    by_setting: dict[Setting, list[str]] = {}
    lone: dict[str | None, list[str]] = {}  # a generator's stages of no setting; None: the anchors
    for name in stages:
        stage = known.get(name)
        if stage is None:
            continue  # results, report: after the lanes
        if stage.setting is not None:
            by_setting.setdefault(stage.setting, []).append(name)
        else:
            lone.setdefault(stage.generator, []).append(name)
    generators = list(dict.fromkeys([s.generator for s in by_setting] + [g for g in lone if g is not None]))
    anchor_model = {"evaluate-anchor@base": params.student.base, "evaluate-anchor@reference": params.student.reference}
    alone: list[str] = []
    for anchor in lone.pop(None, []):
        same = [g for g in generators if g in params.generators and params.generators[g].model == anchor_model[anchor]]
        (lone.setdefault(same[0], []) if same else alone).append(anchor)
    groups = []
    for g in generators:
        chains = [tuple(c) for s, c in by_setting.items() if s.generator == g]
        size = served_parameters(params, g) if g in params.generators else 0  # an import calls no generator
        groups.append(LaneGroup(tuple(chains) + tuple((name,) for name in lone.get(g, [])), len(chains), size))
    # sorted() is stable: ties keep DVC's order
    groups = sorted(groups, key=lambda group: (group.settings == 0, -group.parameters))
    return groups + [LaneGroup(((name,),), 0) for name in alone]


def served_parameters(params: Params, generator: str) -> int:
    """The parameters of the model a generator's local server answers with, where AgoraBench knows them
    (a packaged model); 0 otherwise (a hosted model costs this machine nothing but waiting)."""
    from agorabench.models.packaged import PACKAGED_MODELS

    cfg = params.generators[generator]
    if cfg.backend != "local" or cfg.base_url:
        return 0
    return PACKAGED_MODELS.get(cfg.model, {}).get("num_parameters", 0)


def served_generators(params: Params) -> list[str]:
    """Local generators the pipeline calls whose server AgoraBench starts itself (no base_url)."""
    return [n for n in params.called_generators()
            if params.generators[n].backend == "local" and not params.generators[n].base_url]


def generators_called_by(params: Params, stages: list[str]) -> list[str]:
    """The served generators that `stages` call: generation its own generator; an evaluation the judges
    and, for evaluate-generator@NAME, NAME; intrinsic metrics the judges."""
    known = pipeline_stages(params)
    judges = {params.evaluation.judge, *params.intrinsic.judges}
    called: set[str] = set()
    for name in stages:
        stage = known.get(name)
        if stage is None:
            continue
        if stage.kind in ("generate", SCALING_SOURCE):
            called.add(stage.setting.generator)
        elif stage.kind in ("evaluate-student", "evaluate-anchor", "evaluate-generator", "scale-evaluate",
                            "intrinsic", "import-evaluate", "import-intrinsic"):
            called.update(judges)
            if stage.generator:
                called.add(stage.generator)
    return [n for n in served_generators(params) if n in called]


@dataclass(frozen=True)
class ServerSpec:
    """One local model server `agora run` starts: for generators and judges, and with vLLM for the
    student base (LoRA on: each student's adapter is loaded into it)."""

    model: str
    engine: str
    lora: bool = False
    cpu_weights: str = "float32"
    server_args: tuple[str, ...] = ()

    def merged(self, other: "ServerSpec | None") -> "ServerSpec":
        """One server for both asks of the same key: LoRA on if either needs it."""
        if other is None:
            return self
        return ServerSpec(self.model, self.engine, self.lora or other.lora, self.cpu_weights,
                          self.server_args or other.server_args)

    @property
    def key(self) -> str:  # how the stages find it
        from agorabench.models.servers import server_key

        return server_key(self.engine, self.model, self.cpu_weights)


def servers_for(params: Params, stages: list[str] | None) -> list[ServerSpec]:
    """The servers `stages` call (None: every stage), one per engine, model and weights: a generator's
    model, the judges', and, when students are evaluated through vLLM, the student base (LoRA on for
    LoRA students on a GPU)."""
    from agorabench.models.servers import evaluation_engine, local_engine, serves_lora_adapters

    names = served_generators(params) if stages is None else generators_called_by(params, stages)
    specs: dict[str, ServerSpec] = {}

    def add(spec: ServerSpec) -> None:
        specs[spec.key] = spec.merged(specs.get(spec.key))

    for name in names:
        cfg = params.generators[name]
        add(ServerSpec(cfg.model, local_engine(cfg.engine, cfg.model), cpu_weights=cfg.cpu_weights,
                       server_args=tuple(cfg.server_args)))
    # LoRA on where students load their adapters into it; on a CPU they are merged and served on their own.
    lora = params.training.lora is not None and serves_lora_adapters()
    if evaluation_engine(params.evaluation.engine) == "vllm":
        known = pipeline_stages(params)
        kinds = {known[s].kind if s in known else None for s in stages} if stages is not None else None
        everything = stages is None
        if everything or kinds & {"evaluate-student", "scale-evaluate", "import-evaluate"} or "evaluate-anchor@base" in stages:
            add(ServerSpec(params.student.base, "vllm", lora=lora, cpu_weights=params.evaluation.cpu_weights))
        # The reference answers in one stage: that stage starts its server and stops it when done, rather
        # than hold its weights in memory all run; a generator's server of the same model serves it instead.
    return list(specs.values())


def calls_a_model(params: Params, stages: list[str]) -> bool:
    """Whether one of `stages` calls a model server (generation, evaluation, intrinsic metrics)."""
    known = pipeline_stages(params)
    local = ("decontaminate", "train", "scale-subset", "scale-decontaminate", "scale-train", "import", "import-train")
    return any(known[s].kind not in local for s in stages if s in known)
