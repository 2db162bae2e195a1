"""Converting a clone of the official repository into a prompt folder (agorabench.generation.official_prompts).

The fixture tests/data/official_layout/ has the official layout (agora_scripts/run.py and
agora_scripts/prompts/ with the official file names) but short contents of our own wording.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agorabench.config import ParamsError
from agorabench.generation.official_prompts import PAPER_COMMIT, Duplicate, Merge, convert_official
from agorabench.generation.prompting import PLACEHOLDER, load_prompt_set, prompt_file, required_placeholders

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "official_layout"
PROMPTS = FIXTURE / "agora_scripts" / "prompts"


@pytest.fixture
def clone(tmp_path):
    """A writable copy of the fixture, for tests that break it."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "clone"))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"fixture changed: {old!r} not in {path}"
    path.write_text(text.replace(old, new))


def test_converted_folder_loads_with_our_names_lists_and_quirks(tmp_path):
    out = tmp_path / "out"
    report = convert_official(FIXTURE, out)

    assert len(report.files) == 12
    assert report.files[prompt_file("instance_generation", "math", "json")] == \
        "instance_generation_math_prompt_json_formatted.txt"
    assert report.files["quality_enhancement_code.txt"] == "quality_enhancement_code_prompt.txt"
    for ours, theirs in report.files.items():  # byte for byte, CRLF file included
        assert (out / ours).read_bytes() == (PROMPTS / theirs).read_bytes(), ours
    assert b"\r\n" in (out / "response_generation_code.txt").read_bytes()
    assert report.rewrites == []

    prompts = load_prompt_set(out)
    assert prompts.sha256 == report.sha256
    general = prompts.template("instance_generation", "general")
    assert set(PLACEHOLDER.findall(general)) == required_placeholders("instance_generation", "general", "text", 3)
    assert prompts.system_prompt == ("You write new training examples that follow the rules and "
                                     "samples you are shown.")
    assert prompts.themes == {"math": ["Modular Arithmetic", "Geometry", "Recurrences", "Geometry"],
                              "code": ["Writing a Rust Function", "Repairing a Go Function"],
                              "general": ["Gardening", "Astronomy", "Board Games"]}
    # The missing comma is kept: one merged entry, as the official script samples it.
    assert prompts.first_words == ["Sketch ", "Why ", "Picture this: Suppose ", "Why ", "List "]

    assert report.merges == [Merge("general_triggers", 12, ("Picture this: ", "Suppose "))]
    assert set(report.duplicates) == {Duplicate("math_themes", "Geometry", (25, 27)),
                                      Duplicate("general_triggers", "Why ", (11, 14))}
    assert len(report.quirks()) == 3
    header = (out / "lists.yaml").read_text().split("system_prompt:")[0]
    assert "'Picture this: ' + 'Suppose '" in header and str(FIXTURE) not in header


def test_canary_no_quirks_reported_once_the_lists_are_clean(clone, tmp_path):
    run = clone / "agora_scripts" / "run.py"
    _edit(run, '"Picture this: "\n', '"Picture this: ",\n')
    _edit(run, '    "Recurrences",\n    "Geometry",\n', '    "Recurrences",\n')
    _edit(run, '    "Why ",\n    "List ",\n', '    "List ",\n')
    report = convert_official(clone, tmp_path / "out")
    assert report.merges == [] and report.duplicates == [] and report.quirks() == []
    assert load_prompt_set(tmp_path / "out").first_words == ["Sketch ", "Why ", "Picture this: ", "Suppose ", "List "]


def _use_other_placeholders(clone: Path) -> None:
    """Turn the fixture into a fork whose placeholder_formats (and files) use other spellings."""
    other = {"<input@>": "{{in@}}", "<output@>": "{{out@}}", "<input>": "{{in}}", "<output>": "{{out}}",
             "<input_theme>": "{{theme}}", "<first_word>": "{{first}}"}
    run = clone / "agora_scripts" / "run.py"
    for ours, theirs in other.items():
        _edit(run, f'"{ours}"', f'"{theirs}"')
    for path in (clone / "agora_scripts" / "prompts").iterdir():
        text = path.read_bytes().decode()
        for i in (1, 2, 3):
            text = text.replace(f"<input{i}>", f"{{{{in{i}}}}}").replace(f"<output{i}>", f"{{{{out{i}}}}}")
        for ours in ("<input>", "<output>", "<input_theme>", "<first_word>"):
            text = text.replace(ours, other[ours])
        path.write_bytes(text.encode())


def test_other_placeholders_are_rewritten_to_ours_and_reported(clone, tmp_path):
    _use_other_placeholders(clone)
    report = convert_official(clone, tmp_path / "out")
    for ours, theirs in report.files.items():  # back to exactly the fixture's text
        assert (tmp_path / "out" / ours).read_bytes() == (PROMPTS / theirs).read_bytes(), ours
    assert "instance_generation_general.txt: {{first}} -> <first_word> (1x)" in report.rewrites
    assert "instance_generation_math_json.txt: {{in2}} -> <input2> (1x)" in report.rewrites
    assert "quality_enhancement_code.txt: {{out}} -> <output> (1x)" in report.rewrites


def test_canary_other_placeholders_without_their_formats_fail_naming_the_file(clone, tmp_path):
    _use_other_placeholders(clone)
    _edit(clone / "agora_scripts" / "run.py", '"{{in@}}"', '"<input@>"')  # run.py no longer declares them
    with pytest.raises(ParamsError) as e:
        convert_official(clone, tmp_path / "out")
    message = str(e.value)
    assert "\n" not in message and "instance_generation_math_prompt.txt" in message
    assert "missing <input1>, <input2>, <input3>" in message and "unexpected" not in message
    assert not (tmp_path / "out").exists()  # nothing written before everything was checked


def test_canary_missing_prompt_file_is_one_line_naming_it(clone, tmp_path):
    (clone / "agora_scripts" / "prompts" / "response_generation_math_prompt.txt").unlink()
    with pytest.raises(ParamsError) as e:
        convert_official(clone, tmp_path / "out")
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(str(clone / "agora_scripts" / "prompts" / "response_generation_math_prompt.txt"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("old, new, expected", [
    ("general_triggers = [", "first_words = [", "no `general_triggers = [...]`"),
    ("themes = {", "topics = {", "no `themes = {...}`"),
    ('    "math": math_themes\n', "", "themes has no 'math' entry"),
    ('    "Geometry",\n    "Recurrences",', '    "Geometry",\n    str(1),', "math_themes: not a plain literal"),
    ('system_message="', 'system_prompt="', "expected one `system_message"),
    ("def main(method, domain):", "def main(method, domain)", "not valid Python"),
])
def test_canary_run_script_without_the_lists_fails_clearly(clone, tmp_path, old, new, expected):
    run = clone / "agora_scripts" / "run.py"
    _edit(run, old, new)
    with pytest.raises(ParamsError) as e:
        convert_official(clone, tmp_path / "out")
    assert "\n" not in str(e.value) and str(run) in str(e.value) and expected in str(e.value)


def test_canary_not_a_clone(tmp_path):
    with pytest.raises(ParamsError, match="agora_scripts/run.py: not found"):
        convert_official(tmp_path, tmp_path / "out")


def test_clone_commit_is_read_from_git_and_a_non_paper_commit_warns(clone, tmp_path):
    def git(*args):
        return subprocess.run(["git", "-C", str(clone), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "fixture")
    head = git("rev-parse", "HEAD")
    git("pack-refs", "--all")  # the ref now lives only in .git/packed-refs, as in a fresh clone
    report = convert_official(clone, tmp_path / "out")
    assert report.commit == head
    assert any(PAPER_COMMIT[:12] in w for w in report.warnings)
    assert f"at {head} " in (tmp_path / "out" / "lists.yaml").read_text()
    # Canary: without .git the commit is unknown and there is nothing to warn about.
    shutil.rmtree(clone / ".git")
    report = convert_official(clone, tmp_path / "out2")
    assert report.commit is None and report.warnings == []


def test_command_line_entry_prints_quirks_and_fails_with_one_line(clone, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "agorabench.generation.official_prompts"]
    ok = subprocess.run([*command, str(FIXTURE), str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "'Picture this: ' + 'Suppose '" in ok.stdout and "generation.prompt_dir" in ok.stdout
    (clone / "agora_scripts" / "prompts" / "quality_enhancement_general_prompt.txt").unlink()
    bad = subprocess.run([*command, str(clone), str(tmp_path / "out2")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")
    assert "quality_enhancement_general_prompt.txt: missing" in bad.stderr
