import shutil

import pytest

from agorabench.config import DOMAINS, METHODS, ParamsError
from agorabench.generation.prompting import PLACEHOLDER, fill, instance_prompt, load_prompt_set, prompt_file


def test_default_prompt_set_has_every_setting_and_the_triggers():
    prompts = load_prompt_set()
    for method in METHODS:
        for domain in DOMAINS:
            text = prompts.template(method, domain)
            assert "[END]" in text
    assert prompts.template("instance_generation", "math").endswith("INPUT: ")
    assert prompts.template("quality_enhancement", "code").endswith("Revised Question: ")
    assert prompts.template("response_generation", "general").endswith("OUTPUT:\n")
    assert prompts.template("instance_generation", "code", "json").rstrip().endswith("New Example:")
    assert len(prompts.themes["math"]) >= 10 and len(prompts.first_words) >= 50


def test_filled_instance_prompt_has_no_placeholders_left():
    prompts = load_prompt_set()
    demos = [("Q1 <output2>", "A1"), ("Q2", "A2"), ("Q3", "A3")]
    text = instance_prompt(prompts.template("instance_generation", "general"), demos,
                           theme="Cooking", first_word="Describe ")
    assert "Cooking" in text and "Describe " in text and "Q3" in text
    # The demo's literal "<output2>" is kept: filling is one pass, never recursive.
    assert "Q1 <output2>" in text
    assert not PLACEHOLDER.findall(text.replace("Q1 <output2>", ""))


def test_json_variant_quotes_demos():
    prompts = load_prompt_set()
    text = instance_prompt(prompts.template("instance_generation", "math", "json"),
                           [('say "hi"', "1"), ("b", "2"), ("c", "3")], fmt="json")
    assert '"say \\"hi\\""' in text


def _copy_prompts(tmp_path):
    target = tmp_path / "prompts"
    shutil.copytree(load_prompt_set.__globals__["_default_dir"](), target)
    return target


def test_custom_prompt_dir_with_missing_placeholder_fails_naming_the_file(tmp_path):
    folder = _copy_prompts(tmp_path)
    name = prompt_file("quality_enhancement", "math")
    (folder / name).write_text((folder / name).read_text().replace("<output>", "<answer>"))
    with pytest.raises(ParamsError, match=name) as e:
        load_prompt_set(folder)
    assert "<output>" in str(e.value)


def test_custom_prompt_dir_with_unexpected_placeholder_fails(tmp_path):
    folder = _copy_prompts(tmp_path)
    name = prompt_file("response_generation", "code")
    (folder / name).write_text((folder / name).read_text() + "\n<input_theme>")
    with pytest.raises(ParamsError, match="unexpected placeholder"):
        load_prompt_set(folder)


def test_unmodified_copy_loads_and_hash_tracks_content_canary(tmp_path):
    folder = _copy_prompts(tmp_path)
    same = load_prompt_set(folder)
    assert same.sha256 == load_prompt_set().sha256
    name = prompt_file("response_generation", "general")
    (folder / name).write_text("Be brief. Write [END] at the end.\n" + (folder / name).read_text())
    assert load_prompt_set(folder).sha256 != same.sha256


def test_fill_replaces_only_known_values():
    assert fill("<input> and <output>", {"<input>": "x"}) == "x and <output>"
