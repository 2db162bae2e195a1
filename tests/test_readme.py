"""The README's and docs' commands are ones the CLI has: every `agora SUBCOMMAND --option` they show is
an option of that subcommand's --help; and the README's sections come in the order a new user needs
them (quick start, then "What is my dataset worth?"). Canary: a made-up option is caught."""
from __future__ import annotations

import functools
import re

from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import REPO

# `agora SUB ...` up to the end of a code span, a comment or the line; options are --long-names.
COMMAND = re.compile(r"(?<![\w-])agora (?P<sub>[a-z][a-z-]*)(?P<args>[^`#\n]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)")


@functools.cache
def options_of(sub: str) -> set[str] | None:
    """The --options `agora SUB --help` lists; None when there is no such subcommand."""
    out = CliRunner().invoke(app, [sub, "--help"], env={"COLUMNS": "400"})  # rich cuts long names to fit
    return set(OPTION.findall(out.output)) if out.exit_code == 0 else None


def unknown_options(text: str) -> list[str]:
    problems = []
    for m in COMMAND.finditer(text):
        known = options_of(m["sub"])
        if known is None:
            problems.append(f"agora {m['sub']}: no such command")
            continue
        problems += [f"agora {m['sub']} {o}" for o in OPTION.findall(m["args"]) if o not in known]
    return problems


def test_every_agora_command_in_the_readme_has_its_options():
    readme = (REPO / "README.md").read_text()
    assert len(COMMAND.findall(readme)) > 20  # the scan finds the README's commands at all
    assert unknown_options(readme) == []
    for page in sorted((REPO / "docs").glob("*.md")):
        assert unknown_options(page.read_text()) == [], page.name
    # Canary: an option the CLI does not have, and a command it does not have.
    assert unknown_options("`agora run --max-costs 5`") == ["agora run --max-costs"]
    assert unknown_options("agora frobnicate --x") == ["agora frobnicate: no such command"]
    assert unknown_options("neulab/data-agora at its commit") == []  # a name that ends in agora is no command


def test_the_readme_puts_the_quick_start_first_and_what_is_my_dataset_worth_second():
    sections = [line[3:].strip() for line in (REPO / "README.md").read_text().splitlines() if line.startswith("## ")]
    assert sections[:2] == ["Quick start", "What is my dataset worth?"]
