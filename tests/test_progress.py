"""Long steps say how far they are: a line every AGORA_PROGRESS_INTERVAL_S seconds where output is not a
terminal (done/total, rate, ETA), nothing under `agora -q`; `agora --version` works."""
import asyncio
import io
import re
import time

from typer.testing import CliRunner

from agorabench.config import load_params
from agorabench.progress import Progress
from tests.conftest import write_params

LINE = re.compile(r"^(?P<label>.+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+).*, (?P<rate>[\d.]+)/s, "
                  r".* so far, ETA (?P<eta>\S+)$")


def test_lines_every_interval_with_done_total_rate_and_eta(monkeypatch):
    monkeypatch.setenv("AGORA_PROGRESS_INTERVAL_S", "0.05")
    out = io.StringIO()  # not a terminal: lines, not a bar
    with Progress("students/x gsm8k", 10, unit="answers", stream=out) as bar:
        bar.advance(4)
        time.sleep(0.3)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2
    m = LINE.match(lines[-1])
    assert m and (m["label"], m["done"], m["total"], m["unit"]) == ("students/x gsm8k", "4", "10", "answers")
    assert float(m["rate"]) > 0 and m["eta"] != "unknown"
    time.sleep(0.2)
    assert out.getvalue().splitlines() == lines, "nothing after close()"


def test_a_short_step_a_quiet_run_and_a_silent_caller_print_nothing(monkeypatch):
    monkeypatch.setenv("AGORA_PROGRESS_INTERVAL_S", "0.05")
    short, silent, quiet = io.StringIO(), io.StringIO(), io.StringIO()
    with Progress("short", 3, stream=short) as bar:
        bar.advance(3)  # done before the first interval
    with Progress("silent", 3, mode=False, stream=silent):
        time.sleep(0.2)
    monkeypatch.setenv("AGORA_QUIET", "1")
    with Progress("quiet", 3, stream=quiet):
        time.sleep(0.2)
    assert short.getvalue() == silent.getvalue() == quiet.getvalue() == ""
    # canary: the same wait without -q prints
    monkeypatch.delenv("AGORA_QUIET")
    loud = io.StringIO()
    with Progress("loud", 3, stream=loud):
        time.sleep(0.2)
    assert LINE.match(loud.getvalue().splitlines()[0])


def test_a_generation_stage_prints_its_valid_count_while_it_runs(tmp_path, monkeypatch, capsys):
    from agorabench.generation.loop import generate_setting
    from agorabench.testing.llm_server import FakeLLMServer

    monkeypatch.setenv("FAKE_API_KEY", "k")
    monkeypatch.setenv("AGORA_PROGRESS_INTERVAL_S", "0.1")
    with FakeLLMServer(latency_s=0.2) as server:
        params = load_params(write_params(tmp_path / "params.yaml", server.url,
                                          **{"generators.fake.concurrency": 1}))
        manifest = asyncio.run(generate_setting(params, "fake", "general", "response_generation", num=4))
    assert manifest["num_valid"] == 4
    err = capsys.readouterr().err
    lines = [m for m in map(LINE.match, err.splitlines()) if m]
    assert lines and lines[0]["label"] == "fake response_generation general" and lines[0]["unit"] == "valid"
    assert "answers" in err


def test_an_intrinsic_judge_prints_how_many_it_has_judged_while_it_runs(tmp_path, tiny_student, monkeypatch, capsys):
    from agorabench.intrinsic.run import intrinsic_for_dataset
    from tests.test_intrinsic import EXAMPLES, _params, _write_dataset

    monkeypatch.setenv("AGORA_PROGRESS_INTERVAL_S", "0.05")
    params = _params(tmp_path, tiny_student, metrics=["difficulty", "quality"], judge_batch_size=1)
    _write_dataset(tmp_path, EXAMPLES)

    def slow_judge(convs):
        time.sleep(0.1)
        return ["Feedback: ok [RESULT] 3" for _ in convs]

    intrinsic_for_dataset(params, "gen", "math", "response_generation", slow_judge, judge_name="slow",
                          log=lambda s: None)
    lines = [m for m in map(LINE.match, capsys.readouterr().err.splitlines()) if m]
    labels = {m["label"].strip() for m in lines}
    assert labels == {"difficulty by slow", "quality by slow"} and {m["unit"] for m in lines} == {"judged"}
    assert all(m["total"] == str(len(EXAMPLES)) for m in lines)


def test_version_and_quiet_flags():
    from flows.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["--version"])
    assert done.exit_code == 0 and re.fullmatch(r"agora \d+\.\d+\.\d+\n", done.output)
    assert runner.invoke(app, ["--bogus"]).exit_code != 0  # canary: an unknown option is refused


def test_a_training_stage_prints_its_steps_while_it_runs(tmp_path, tiny_student, monkeypatch, capsys):
    from transformers import TrainerCallback

    from agorabench.training import sft
    from tests.test_training import make_params

    monkeypatch.setenv("AGORA_PROGRESS_INTERVAL_S", "0.05")
    build = sft.build_trainer

    class SlowSteps(TrainerCallback):  # the tiny model's steps take milliseconds; a line needs 0.05 s
        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(0.12)

    def slow_trainer(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.add_callback(SlowSteps())
        return trainer

    monkeypatch.setattr(sft, "build_trainer", slow_trainer)
    sft.train_student(make_params(tmp_path, tiny_student), "fake", "math", "response_generation")
    lines = [m for m in map(LINE.match, capsys.readouterr().err.splitlines()) if m]
    assert lines and {m["label"] for m in lines} == {"train fake response_generation math"}
    assert {m["unit"] for m in lines} == {"steps"} and {m["total"] for m in lines} == {"4"}
    # canary: the progress thread stopped with the training; nothing more is printed afterwards
    time.sleep(0.2)
    assert not [m for m in map(LINE.match, capsys.readouterr().err.splitlines()) if m]


def test_verbosity_flags_set_the_level_and_errors_go_to_stderr(tmp_path, monkeypatch):
    """-v logs at DEBUG, -q at WARNING and turns progress off (for the stages `agora run` starts too,
    through the environment); a query's answer is alone on stdout, an error is one line on stderr."""
    import logging
    import os

    from agorabench.results.db import build_db
    from flows.cli import app

    for var in ("AGORA_LOG_LEVEL", "AGORA_QUIET"):  # set by the CLI below; put back as they were after
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setattr(logging.getLogger("agorabench"), "level", logging.getLogger("agorabench").level)
    (tmp_path / "empty").mkdir()
    db = str(build_db(tmp_path / "empty", db_path=tmp_path / "agora.duckdb"))
    runner = CliRunner()
    logger = logging.getLogger("agorabench")
    answer = runner.invoke(app, ["-v", "sql", "--db", db, "--format", "csv", "SELECT 6 * 7 AS answer"])
    assert answer.exit_code == 0 and answer.stdout.split() == ["answer", "42"] and answer.stderr == ""
    assert logger.level == logging.DEBUG and os.environ["AGORA_LOG_LEVEL"] == "DEBUG"
    assert "AGORA_QUIET" not in os.environ
    quiet = runner.invoke(app, ["-q", "sql", "--db", db, "--format", "csv", "SELECT 1 AS one"])
    assert quiet.exit_code == 0 and logger.level == logging.WARNING and os.environ["AGORA_QUIET"] == "1"
    assert Progress("q", 10).mode is None  # no bar, no lines
    # canary: a bad query is an error on stderr, with nothing on stdout
    bad = runner.invoke(app, ["sql", "--db", db, "SELEC 1"])
    assert bad.exit_code == 2 and bad.stdout == "" and bad.stderr.startswith("error: ")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_agora_run_keeps_each_lanes_stage_and_progress_in_view():
    """LaneStatus reads the lanes' lines as `repro` gets them: a stage's start, then the progress lines
    its step prints (Progress.line, the real format), per lane; on a terminal it draws them as rows."""
    from rich.console import Console

    from agorabench.pipeline.status import LaneStatus

    step = Progress("fake instance_generation math", 16, unit="valid", mode=False)
    step.update(3, info="answers 12, cached 0")
    out = io.StringIO()
    with LaneStatus(["a", "b"], live=True, console=Console(file=out, force_terminal=True, width=200)) as status:
        assert [r[1] for r in status.rows()] == ["between stages", "between stages"]
        status.feed("a", "Running stage 'generate@fake-instance_generation-math':")
        status.feed("a", "> agora generate --generator fake --domain math --method instance_generation")
        status.feed("a", step.line())
        status.feed("b", "Running stage 'train@fake-response_generation-code':")
        status.print("[00:12    3/70 a] a log line")
        lane_a, lane_b = status.rows()
        assert lane_a[1] == "generate@fake-instance_generation-math"
        assert lane_a[3].startswith("fake instance_generation math: 3/16 valid (answers 12, cached 0)")
        assert "ETA" in lane_a[3] and lane_b[1:4:2] == ("train@fake-response_generation-code", "")
        # Canary: a summary line with a count but no ETA is not progress; a new stage clears the old one's.
        status.feed("b", "fake response_generation code: 16/16 instances (complete), 0 rejected")
        assert status.rows()[1][3] == ""
        status.feed("a", "Running stage 'intrinsic@fake-instance_generation-math':")
        assert status.rows()[0][1:4:2] == ("intrinsic@fake-instance_generation-math", "")
        status.feed("b", "Updating lock file 'dvc.lock'")  # its stage is done: no stage shown with a running clock
        assert status.rows()[1][1:] == ("between stages", "", "")
        status.finished("b")
        assert status.rows()[1][1] == "finished"
        status._live.refresh()
    drawn = out.getvalue()
    assert "a log line" in drawn and "intrinsic@fake-instance_generation-math" in drawn
    # Not a terminal: plain lines only, no status rows.
    plain = LaneStatus(["a"], live=False)
    assert plain._live is None
