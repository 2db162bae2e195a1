"""Meta-prompts: loading, checking placeholders, filling.

The files follow the paper's conventions (docs/paper.md §1.3-1.4): numbered demo placeholders `<input1>`,
`<output1>`, ..., `<input>`/`<output>` for the fixed instruction or pair, `<input_theme>` and
`<first_word>` for instance generation. A prompt folder given in params.yaml must use the same file
names; every file is checked on load so a missing or misspelt placeholder fails before any request.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from agorabench.config import DOMAINS, METHODS, ParamsError

PLACEHOLDER = re.compile(r"<(?:input|output)\d*>|<input_theme>|<first_word>")

# Triggers the parsers split on (docs/paper.md §1.3); quality enhancement uses its own pair.
INPUT_TRIGGER, OUTPUT_TRIGGER = "INPUT:", "OUTPUT:"
QE_INPUT_TRIGGER, QE_OUTPUT_TRIGGER = "Revised Question:", "Revised Answer:"
STOP_PHRASE = "[END]"


def prompt_file(method: str, domain: str, fmt: str = "text") -> str:
    suffix = "_json" if fmt == "json" and method == "instance_generation" else ""
    return f"{method}_{domain}{suffix}.txt"


def required_placeholders(method: str, domain: str, fmt: str, num_fewshot: int) -> set[str]:
    if method == "instance_generation":
        demos = {f"<input{i}>" for i in range(1, num_fewshot + 1)} | {
            f"<output{i}>" for i in range(1, num_fewshot + 1)}
        if fmt == "json":
            return demos
        return demos | {"<input_theme>"} | ({"<first_word>"} if domain == "general" else set())
    if method == "response_generation":
        return {"<input>"}
    return {"<input>", "<output>"}


@dataclass(frozen=True)
class PromptSet:
    templates: dict[str, str]   # file name -> text
    system_prompt: str
    themes: dict[str, list[str]]
    first_words: list[str]
    sha256: str                 # over every file: goes into manifests and DVC deps

    def template(self, method: str, domain: str, fmt: str = "text") -> str:
        return self.templates[prompt_file(method, domain, fmt)]


def _default_dir() -> Path:
    return Path(str(resources.files("agorabench.generation") / "prompts" / "default"))


def load_prompt_set(prompt_dir: str | Path | None = None, num_fewshot: int = 3) -> PromptSet:
    folder = Path(prompt_dir) if prompt_dir else _default_dir()
    if not folder.is_dir():
        raise ParamsError(f"generation.prompt_dir: folder {folder} does not exist")
    templates: dict[str, str] = {}
    digest = hashlib.sha256()
    for method in METHODS:
        for domain in DOMAINS:
            for fmt in ("text", "json") if method == "instance_generation" else ("text",):
                name = prompt_file(method, domain, fmt)
                path = folder / name
                if not path.exists():
                    raise ParamsError(f"{path}: prompt file missing; every prompt folder needs {name}")
                text = path.read_text(encoding="utf-8")
                found = set(PLACEHOLDER.findall(text))
                need = required_placeholders(method, domain, fmt, num_fewshot)
                if need - found:
                    raise ParamsError(f"{path}: missing placeholder(s) {', '.join(sorted(need - found))}")
                if found - need:
                    raise ParamsError(
                        f"{path}: unexpected placeholder(s) {', '.join(sorted(found - need))}; "
                        f"allowed here: {', '.join(sorted(need))}"
                    )
                templates[name] = text
                digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    lists_path = folder / "lists.yaml"
    if not lists_path.exists():
        raise ParamsError(f"{lists_path}: missing; it holds system_prompt, themes and first_words")
    lists_text = lists_path.read_text(encoding="utf-8")
    lists = yaml.safe_load(lists_text) or {}
    for key in ("system_prompt", "themes", "first_words"):
        if key not in lists:
            raise ParamsError(f"{lists_path}: key {key!r} is missing")
    for domain in DOMAINS:
        if not lists["themes"].get(domain):
            raise ParamsError(f"{lists_path}: themes.{domain} must be a non-empty list")
    digest.update(b"lists.yaml\0" + lists_text.encode())
    return PromptSet(templates=templates, system_prompt=str(lists["system_prompt"]).strip(),
                     themes={d: list(lists["themes"][d]) for d in DOMAINS},
                     first_words=list(lists["first_words"]), sha256=digest.hexdigest())


def fill(template: str, values: dict[str, str]) -> str:
    """Replace placeholders in one pass, so text inserted for one never gets replaced by another
    (a demo that happens to contain "<output2>" stays as written)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(0), m.group(0)), template)


def instance_prompt(template: str, demos: list[tuple[str, str]], *, fmt: str = "text",
                    theme: str | None = None, first_word: str | None = None) -> str:
    values: dict[str, str] = {}
    for i, (instruction, response) in enumerate(demos, start=1):
        if fmt == "json":  # the JSON variant shows demos as JSON string literals
            instruction, response = json.dumps(instruction, ensure_ascii=False), json.dumps(response, ensure_ascii=False)
        values[f"<input{i}>"] = instruction
        values[f"<output{i}>"] = response
    if theme is not None:
        values["<input_theme>"] = theme
    if first_word is not None:
        values["<first_word>"] = first_word
    return fill(template, values)


def response_prompt(template: str, instruction: str) -> str:
    return fill(template, {"<input>": instruction})


def enhancement_prompt(template: str, instruction: str, response: str) -> str:
    return fill(template, {"<input>": instruction, "<output>": response})
