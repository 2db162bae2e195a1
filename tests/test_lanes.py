"""`agora run` lanes: one `dvc repro` per lane at the same time, then one for what is left
(pipeline.split_lanes, pipeline.repro), on a real DVC repository in a real git repository."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from agorabench.config import Params
from agorabench.pipeline.run import _bin, lane_summary, repro, seconds_by_kind, split_lanes, stage_seconds
from agorabench.pipeline.stages import LaneGroup, lane_groups, pipeline_stages

from tests.conftest import REPO

# Two "generators" (x, y), two chained stages each, and a stage that reads all of them. Each stage
# command sleeps, writes its output and logs its start and end times outside DVC's outputs.
ITEM = "${item.generator}-${item.method}-${item.domain}"
DVC_YAML = {"stages": {
    "generate": {"matrix": {"generator": ["x", "y"], "method": ["m1", "m2"], "domain": ["d"]},
                 "cmd": f"python ../stage.py generate@{ITEM} gen-{ITEM}.txt", "outs": [f"gen-{ITEM}.txt"]},
    "train": {"matrix": {"generator": ["x", "y"], "method": ["m1", "m2"], "domain": ["d"]},
              "cmd": f"python ../stage.py train@{ITEM} train-{ITEM}.txt",
              "deps": [f"gen-{ITEM}.txt"], "outs": [f"train-{ITEM}.txt"]},
    "results": {"cmd": "python ../stage.py results results.txt",
                "deps": [f"train-{g}-{m}-d.txt" for g in "xy" for m in ("m1", "m2")], "outs": ["results.txt"]},
}}
STAGES = [f"{s}@{g}-{m}-d" for s in ("generate", "train") for g in "xy" for m in ("m1", "m2")] + ["results"]
STAGE = """import os, sys, time
start = time.time()
time.sleep(1.0)
open(sys.argv[2], "w").write(sys.argv[1])
if sys.argv[1].startswith("train"):  # as an intrinsic stage reports its judge's time
    print("  quality: 2 judged by j in 0.5 s", flush=True)
with open("../times.log", "a") as log:
    log.write(f"{sys.argv[1]} {start} {time.time()} {os.environ.get('LANE_TAG', '-')}\\n")
"""


def _repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "stage.py").write_text(STAGE)
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], [_bin("dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=repo, check=True, env=env)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "toy"], cwd=repo, check=True)
    return repo, env


def _times(tmp_path: Path) -> dict[str, list[tuple[float, float]]]:
    runs: dict[str, list[tuple[float, float]]] = {}
    for line in (tmp_path / "times.log").read_text().splitlines():
        name, start, end, _ = line.split()
        runs.setdefault(name, []).append((float(start), float(end)))
    return runs


def _overlap(runs, a: list[str], b: list[str]) -> bool:
    """Did some stage of `a` run while some stage of `b` ran?"""
    spans = lambda names: [span for name in names for span in runs.get(name, [])]
    return any(s1 < e2 and s2 < e1 for s1, e1 in spans(a) for s2, e2 in spans(b))


def _tags(tmp_path: Path) -> dict[str, str]:
    """Each stage's LANE_TAG, as its command saw it."""
    return {line.split()[0]: line.split()[3] for line in (tmp_path / "times.log").read_text().splitlines()}


def _run(repo: Path, env, lanes, force=False, lane_envs=(), lines=None) -> int:
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        return repro(env, lanes=lanes, force=force, lane_envs=lane_envs, lines=lines)
    finally:
        os.chdir(cwd)


def _params(**extra) -> Params:
    return Params.model_validate({
        "generators": {g: {"backend": "openai", "model": g} for g in ("qwen-coder", "qwen", "gpt")},
        "benchmark_generators": ["qwen-coder", "qwen"], "methods": ["instance_generation"], "domains": ["math", "code"],
        "evaluation": {"generators": ["qwen", "gpt"]}, **extra})


def _served(**student) -> Params:
    """The default's shape: two served generators (SmolLM2-135M, then Qwen-0.5B in dvc.yaml's order),
    a hosted one scored for its problem solving, the base the small generator's model."""
    local = {"backend": "local", "engine": "vllm"}
    return Params.model_validate({
        "generators": {"small": {**local, "model": "smollm2-135m-instruct"},
                       "large": {**local, "model": "qwen2.5-coder-0.5b-instruct"},
                       "hosted": {"backend": "openai", "model": "gpt"}},
        "benchmark_generators": ["small", "large"], "methods": ["instance_generation"], "domains": ["math", "code"],
        "evaluation": {"generators": ["hosted", "small", "large"]},
        "student": {"base": "smollm2-135m-instruct", "reference": "qwen2.5-coder-1.5b-instruct", **student}})


SETTINGS = [f"{g}-instance_generation-{d}" for g in ("small", "large") for d in ("math", "code")]
LONE = ["evaluate-anchor@base", "evaluate-anchor@reference", "evaluate-generator@hosted",
        "evaluate-generator@small", "evaluate-generator@large"]
CHAIN = lambda s: [f"generate@{s}", f"train@{s}"]  # noqa: E731
DVC_ORDER = [f"{kind}@{s}" for kind in ("generate", "train") for s in SETTINGS] + LONE + ["results", "report"]


def test_each_generator_s_stages_share_a_lane_and_the_anchors_go_with_the_smaller_model():
    params = _served()
    groups = lane_groups(params, DVC_ORDER)
    # largest model first; each group its settings' chains, then its own scores and the anchor its model
    # answers (the base is the small generator's model); the reference, of no generator, on its own
    assert [(g.stages, g.settings) for g in groups] == [
        (CHAIN("large-instance_generation-math") + CHAIN("large-instance_generation-code")
         + ["evaluate-generator@large"], 2),
        (CHAIN("small-instance_generation-math") + CHAIN("small-instance_generation-code")
         + ["evaluate-generator@small", "evaluate-anchor@base"], 2),
        (["evaluate-generator@hosted"], 0), (["evaluate-anchor@reference"], 0)]
    lanes = split_lanes(groups, jobs=2)
    # one lane per served generator, so each server serves one lane; the groups of no setting from the
    # last lane back: the reference beside the small model, the hosted scores beside the large one
    assert lanes == [groups[0].stages + ["evaluate-anchor@reference"],
                     groups[1].stages + ["evaluate-generator@hosted"]]
    assert lane_summary(lanes[1], params) == ("2 small settings, evaluate-generator@small, evaluate-anchor@base, "
                                               "evaluate-generator@hosted (7 stages)")
    # canary: a base that no generator serves is dealt on its own, no longer beside the small generator
    apart = split_lanes(lane_groups(_served(base="some/other-base"), DVC_ORDER), jobs=2)
    assert "evaluate-anchor@base" in apart[0] and "evaluate-generator@small" in apart[1]
    # canary: one job is one lane with every stage of a lane; results and report stay out
    (one,) = split_lanes(groups, jobs=1)
    assert set(DVC_ORDER) - set(one) == {"results", "report"}


def test_the_reference_goes_with_a_generator_of_its_model():
    # whichever of the two runs second reads the prompts they share from the request store
    groups = lane_groups(_served(reference="qwen2.5-coder-0.5b-instruct"), DVC_ORDER)
    assert groups[0].stages[-2:] == ["evaluate-generator@large", "evaluate-anchor@reference"]
    assert "evaluate-anchor@reference" in split_lanes(groups, jobs=2)[0]


def test_more_lanes_than_generators_deal_each_generator_s_settings_over_the_lanes():
    params = _served()
    lanes = split_lanes(lane_groups(params, DVC_ORDER), jobs=3)
    # two generators, three lanes: the groups are split into their chains, dealt in turn (the larger
    # model's first), and the stages of no setting from the last lane back
    assert [lane_summary(lane, params).split(" (")[0] for lane in lanes] == [
        "1 large setting, 1 small setting, evaluate-anchor@base",
        "1 large setting, evaluate-generator@small, evaluate-anchor@reference",
        "1 small setting, evaluate-generator@large, evaluate-generator@hosted"]
    assert all(CHAIN(s)[0] in lane and CHAIN(s)[1] in lane for s in SETTINGS
               for lane in lanes if CHAIN(s)[0] in lane)  # a chain never split


def test_a_settings_stages_and_its_scaling_studys_follow_it():
    params = _params(scaling={"generators": ["qwen"], "sizes": [25]})
    known = pipeline_stages(params)
    qwen_math = known["generate@qwen-instance_generation-math"].setting
    for name in ("decontaminate@qwen-instance_generation-math", "train@qwen-instance_generation-math",
                 "scale-generate@qwen-instance_generation-math", "scale-subset@qwen-instance_generation-math-25",
                 "scale-decontaminate@qwen-instance_generation-math-25",
                 "scale-train@qwen-instance_generation-math-25", "scale-evaluate@qwen-instance_generation-math-25"):
        assert known[name].setting == qwen_math
    assert known["evaluate-generator@qwen"].setting is None and known["evaluate-generator@qwen"].generator == "qwen"
    # canary: another setting's stage is in another chain
    assert known["scale-train@qwen-instance_generation-code-25"].setting != qwen_math


def test_stage_names_from_params_are_the_ones_dvc_lists(tmp_path):
    """Setting.stage and pipeline_stages name the stages exactly as DVC expands the project's dvc.yaml
    (with and without a scaling study or imports): the lanes never parse a name, so they must agree by construction."""
    imports = {"my-data": {"source": "d.jsonl", "method": "response_generation", "domain": "math",
                           "instruction_column": "q", "response_column": "a"}}
    for name, extra in (("plain", {}), ("scaled", {"scaling": {"generators": ["smollm2"], "sizes": [1, 2]}}),
                        ("imported", {"imports": imports})):
        repo = tmp_path / name
        repo.mkdir()
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["scaling"].update(extra.get("scaling", {}))
        params["imports"] = extra.get("imports", params["imports"])
        (repo / "params.yaml").write_text(yaml.safe_dump(params))
        (repo / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
        env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
        for cmd in (["git", "init", "-q"], [_bin("dvc"), "init", "-q"]):
            subprocess.run(cmd, cwd=repo, check=True, env=env)
        listed = subprocess.run([_bin("dvc"), "stage", "list", "--name-only"], cwd=repo, env=env,
                                capture_output=True, text=True, check=True).stdout.split()
        ours = set(pipeline_stages(Params.model_validate(params)))
        assert set(listed) - ours == {"results", "report"} and ours <= set(listed), name
        assert any(s.startswith("scale-") for s in listed) == (name == "scaled")  # canary: the scaled run has more
        assert any(s.startswith("import") for s in listed) == (name == "imported")
    assert {"import@my-data", "import-train@my-data", "import-evaluate@my-data", "import-intrinsic@my-data"} <= ours


def test_lanes_run_side_by_side_and_leave_a_complete_dvc_lock(tmp_path, capsys):
    repo, env = _repo(tmp_path)
    groups = [LaneGroup(tuple((f"generate@{g}-{m}-d", f"train@{g}-{m}-d") for m in ("m1", "m2")), 2) for g in "xy"]
    lanes = split_lanes(groups, jobs=2)
    lines = []
    assert _run(repo, env, lanes, lane_envs=[{"LANE_TAG": "a"}, {"LANE_TAG": "b"}], lines=lines) == 0
    runs = _times(tmp_path)
    # each lane's stages see that lane's environment (its own model servers); the last pass the common one
    assert _tags(tmp_path) == {**{s: "ab"[i] for i, lane in enumerate(lanes) for s in lane}, "results": "-"}
    assert all("@x-" in s for s in lanes[0]) and all("@y-" in s for s in lanes[1])  # a generator per lane
    assert sorted(runs) == sorted(STAGES) and all(len(v) == 1 for v in runs.values())
    assert _overlap(runs, *lanes)  # the two lanes really ran at the same time
    assert runs["results"][0][0] >= max(e for n, v in runs.items() if n != "results" for _, e in v)
    status = subprocess.run([_bin("dvc"), "status", "--json"], cwd=repo, env=env, capture_output=True, text=True)
    assert status.stdout.strip() == "{}"  # dvc.lock records every stage: nothing left to run
    out = capsys.readouterr().out
    counters = [int(n) for n in re.findall(r"(\d+)/9", out)]  # one counter over the lanes and the last pass
    assert counters == sorted(counters) and counters[-1] == 9
    assert out.count("didn't change") == 0  # the last pass does not repeat what the lanes ran

    # each stage's time, from its lane's lines: at least its command's own span, and the judge's share
    seconds, judged = stage_seconds(lines)
    assert set(seconds) == set(STAGES)
    assert all(seconds[name] >= end - start for name, [(start, end)] in runs.items())
    assert judged == {s: 0.5 for s in STAGES if s.startswith("train")}
    by_kind = seconds_by_kind(_params(), seconds, judged)
    assert list(by_kind) == ["generation", "judging", "training", "results"] and by_kind["judging"] == 2.0
    assert by_kind["training"] == pytest.approx(sum(v for k, v in seconds.items() if k.startswith("train")) - 2.0,
                                                abs=0.1)

    # --force through lanes: every stage once more, not twice
    (tmp_path / "times.log").unlink()
    assert _run(repo, env, lanes, force=True) == 0
    assert all(len(v) == 1 for v in _times(tmp_path).values()) and len(_times(tmp_path)) == len(STAGES)


def test_one_lane_runs_one_stage_at_a_time(tmp_path):
    """Canary for the overlap check above: a plain `dvc repro` never overlaps two stages."""
    repo, env = _repo(tmp_path)
    assert _run(repo, env, []) == 0
    runs = _times(tmp_path)
    assert len(runs) == 9 and not any(_overlap(runs, [a], [b]) for a in STAGES for b in STAGES if a < b)
    assert set(_tags(tmp_path).values()) == {"-"}  # canary for the lane environments above
