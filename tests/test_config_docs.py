"""docs/configuration.md is rendered from the params schema (agorabench/config_docs.py): the committed page
is current, a new field shows up in it, every field has a row with help text taken from its source
comments, and the values are written in YAML that reads back as themselves. Each check has a canary."""
from __future__ import annotations

import re
import shutil

import yaml
from pydantic import BaseModel, Field

from agorabench import config
from agorabench.config_docs import (
    AGORA_CHECK,
    CHECKED_ON_USE,
    COMMAND,
    DOC,
    PROFILES,
    PROMPT_FOLDER,
    field_help,
    render_configuration_doc,
    sections,
    type_name,
    yaml_inline,
)
from tests.conftest import REPO


class CanaryGeneration(config.GenerationConfig):
    # How loudly the canary sings: a field that
    # the real schema does not have.
    canary_volume: int = Field(3, ge=1)
    canary_mute: bool = False


class CanaryParams(config.Params):
    generation: CanaryGeneration = CanaryGeneration()  # the generation section, with the canary's fields


class DescribedGeneration(config.GenerationConfig):
    # This comment loses to the description.
    seed: int = Field(42, description="Seed, as the description says.")


def _paths(root) -> list[str]:
    return [f"{path}.{name}" if path else name for path, model in sections(root) for name in model.model_fields]


def _rows(doc: str) -> dict[str, list[str]]:
    """Field path -> the cells of its table row."""
    rows = {}
    for line in doc.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells
    return rows


def _undocumented(root, doc: str) -> list[str]:
    rows = _rows(doc)
    return [p for p in _paths(root) if p not in rows or not rows[p][-1]]


def test_the_committed_page_is_current():
    committed = (REPO / DOC).read_text()
    assert committed == render_configuration_doc(REPO), f"{DOC} is out of date: run `{COMMAND}` and commit it"


def test_a_changed_profile_changes_the_page(tmp_path):
    """Canary of the check above: the page follows the profiles' values, so an edited value breaks it."""
    for rel in PROFILES.values():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    params = tmp_path / "params.yaml"
    params.write_text(params.read_text().replace("num_instances: 4 ", "num_instances: 77 "))
    page = render_configuration_doc(tmp_path)
    assert page != (REPO / DOC).read_text()
    assert _rows(page)["generation.num_instances"][3] == "`77`"


def test_a_new_field_shows_up_with_its_type_default_and_comment():
    """Canary: a field added to a section (here in a subclass) changes the page, so the committed page
    no longer matches until the command is run again."""
    page = render_configuration_doc(REPO, root=CanaryParams)
    assert page != render_configuration_doc(REPO)
    row = _rows(page)["generation.canary_volume"]
    assert row[1:5] == ["`int` (>= 1)", "`3`", "—", "—"]
    assert row[-1] == "How loudly the canary sings: a field that the real schema does not have."


def test_every_field_has_a_row_with_help_text():
    missing = _undocumented(config.Params, (REPO / DOC).read_text())
    assert not missing, (f"no help text in {DOC} for {', '.join(missing)}: add a `# ...` comment above each in "
                         f"agorabench/config.py, then run `{COMMAND}`")
    assert len(_paths(config.Params)) > 100  # the walk reached every section, nested ones included


def test_a_field_without_a_comment_is_caught():
    """Canary: `canary_mute` has no comment, so its row has no help text."""
    missing = _undocumented(CanaryParams, render_configuration_doc(REPO, root=CanaryParams))
    assert "generation.canary_mute" in missing and "generation.canary_volume" not in missing


def test_help_text_comes_from_the_source():
    # a trailing comment; comment lines above, joined; a trailing comment continued on the next line
    assert field_help(config.TrainingConfig, "max_grad_norm") == "the official recipe does not clip"
    assert field_help(config.GenerationConfig, "max_attempts_per_seed").startswith(
        "Response generation / quality enhancement: tries per seed before the next seed takes its place "
        "(null: max_attempts_per_instance). 1 suits")
    assert field_help(config.AnalysisConfig, "standardize") == (
        "z-score the features before PCA (the paper's PCA is on features with different units: 1-5 scores, "
        "perplexity, ...)")
    # inherited fields keep the comments of the class that declares them; a description wins
    assert field_help(CanaryGeneration, "num_fewshot") == field_help(config.GenerationConfig, "num_fewshot")
    assert field_help(DescribedGeneration, "seed") == "Seed, as the description says."


def test_types_are_written_as_a_reader_would():
    fields = {p: m.model_fields for p, m in sections()}
    assert type_name(fields["evaluation"]["engine"].annotation) == '"auto" | "transformers" | "vllm"'
    assert type_name(fields["student"]["chat_template"].annotation) == "str | null"
    assert type_name(fields["evaluation"]["limits"].annotation) == "dict[str, int]"
    assert type_name(fields["training"]["bf16"].annotation) == '"auto" | true | false'
    assert type_name(fields[""]["generators"].annotation) == "dict[str, section]"


def test_values_are_yaml_that_reads_back():
    values = [model.model_fields[n].get_default(call_default_factory=True) for _, model in sections()
              for n in model.model_fields if not model.model_fields[n].is_required()]
    values = [v for v in values if not isinstance(v, BaseModel)]
    values += [1e-5, "8192", "[END]", "a: b", "null", True, None, {"math": [1, 2]}]
    assert [yaml.safe_load(yaml_inline(v)) for v in values] == values


def test_python_spelling_does_not_read_back():
    """Canary of the check above: what Python writes for these is not YAML for the same value."""
    assert yaml.safe_load(repr(1e-5)) != 1e-5  # PyYAML reads 1e-05 as a string
    assert yaml.safe_load(str(["8192"]).replace("'", "")) != ["8192"]
    assert yaml.safe_load(str(None)) is not None


def _unknown_names(text: str) -> list[str]:
    """Dotted names of the schema in a text (`section.field`) that are not fields."""
    names = re.findall(r"`([a-z_]+(?:\.[A-Za-z_]+)+)`", text)
    top = set(config.Params.model_fields)
    return [n for n in names if n.split(".")[0] in top and n not in _paths(config.Params)]


def test_the_hand_written_paragraphs_name_real_fields():
    assert _unknown_names(PROMPT_FOLDER + AGORA_CHECK + CHECKED_ON_USE) == []
    assert "`generation.prompt_dir`" in PROMPT_FOLDER  # the check above did read names


def test_a_misspelled_field_in_a_paragraph_is_caught():
    assert _unknown_names("set `generation.prompt_folder` or `dvc.yaml`") == ["generation.prompt_folder"]
