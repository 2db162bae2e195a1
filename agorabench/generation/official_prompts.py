"""Converting the official AgoraBench meta-prompts (a clone of neulab/data-agora) into a prompt folder.

The official repository keeps its 12 meta-prompts in agora_scripts/prompts/ under its own names and
hard-codes the themes, the first words and the system message in agora_scripts/run.py. This module
owns the mapping from that layout to ours (docs/paper.md §1.1-1.5): it copies the files byte for byte
under our names and writes lists.yaml from run.py, which it reads with `ast` and never runs.

The official lists are kept exactly as they are, quirks included, because a faithful rerun of the
paper samples from them: a missing comma that merges two first words into one ("As a " "Question: "
is one entry), duplicated entries (which double their sampling weight). The report lists every
quirk found, so a user can see what "kept" means.
"""
from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agorabench.generation.prompting import (
    DOMAINS,
    INPUT_TRIGGER,
    METHODS,
    OUTPUT_TRIGGER,
    PLACEHOLDER,
    STOP_PHRASE,
    ParamsError,
    load_prompt_set,
    prompt_file,
    required_placeholders,
)

# Names the official run.py uses (docs/paper.md §1.3-1.5): a dict of theme lists by domain, the list
# passed as first_word_list for general instance generation, the keyword that carries the system
# message, and the dict of placeholder and trigger strings.
THEMES_VAR = "themes"
FIRST_WORDS_VAR = "general_triggers"
SYSTEM_KEYWORD = "system_message"
PLACEHOLDERS_VAR = "placeholder_formats"

# The commit of neulab/data-agora that docs/paper.md describes (its HEAD on 2024-12-06).
PAPER_COMMIT = "d7e66e12b03616caa42d818d5c2a387c127014ab"

# Official placeholder_formats key -> our placeholder. The demo keys hold "@" where the official
# loader puts the demo number; ours is the number itself ("<input1>").
OUR_PLACEHOLDERS = {
    "demonstration_input_placeholder": "<input@>",
    "demonstration_output_placeholder": "<output@>",
    "test_input_placeholder": "<input>",
    "test_output_placeholder": "<output>",
    "input_theme": "<input_theme>",
    "first_word": "<first_word>",
}
# Triggers our parsers split on; a run.py with other values needs other parsers, not just other files.
OUR_TRIGGERS = {"test_input_trigger": INPUT_TRIGGER, "test_output_trigger": OUTPUT_TRIGGER,
                "stop_phrase": STOP_PHRASE}


def official_file(method: str, domain: str, fmt: str = "text") -> str:
    suffix = "_json_formatted" if fmt == "json" else ""
    return f"{method}_{domain}_prompt{suffix}.txt"


def prompt_settings():
    """Every (method, domain, format) our loader reads: 9 text prompts and 3 JSON variants."""
    for method in METHODS:
        for domain in DOMAINS:
            for fmt in ("text", "json") if method == "instance_generation" else ("text",):
                yield method, domain, fmt


@dataclass(frozen=True)
class Merge:
    """A list entry written as adjacent string literals, which Python joins into one entry."""
    list_name: str
    line: int
    parts: tuple[str, ...]

    @property
    def value(self) -> str:
        return "".join(self.parts)


@dataclass(frozen=True)
class Duplicate:
    list_name: str
    value: str
    lines: tuple[int, ...]   # one per occurrence


@dataclass
class ConversionReport:
    out_dir: Path
    run_script: Path
    files: dict[str, str]                                # our file name -> official file name
    rewrites: list[str] = field(default_factory=list)    # "file: official -> ours (n)"
    merges: list[Merge] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    commit: str | None = None                            # the clone's checked-out commit, if readable
    sha256: str = ""

    def quirks(self) -> list[str]:
        lines = [f"{self.run_script.name} line {m.line}: {m.list_name} entry {m.value!r} is "
                 f"{' + '.join(repr(p) for p in m.parts)} joined by a missing comma (kept as one entry)"
                 for m in self.merges]
        lines += [f"{self.run_script.name} lines {', '.join(map(str, d.lines))}: {d.list_name} has "
                  f"{d.value!r} {len(d.lines)} times (kept, so it is drawn more often)"
                  for d in self.duplicates]
        return lines

    def summary(self) -> str:
        out = [f"wrote {len(self.files)} prompt files and lists.yaml to {self.out_dir} "
               f"(prompt set {self.sha256[:12]}; official commit {self.commit or 'unknown'})"]
        out += [f"rewrote placeholders: {r}" for r in self.rewrites] or ["placeholders: same as ours, no rewrites"]
        out += [f"quirk kept: {q}" for q in self.quirks()] or ["quirks: none found"]
        out += [f"warning: {w}" for w in self.warnings]
        return "\n".join(out)


def clone_commit(clone_dir: Path) -> str | None:
    """The checked-out commit, read from .git without running git; None when it cannot be told."""
    git = clone_dir / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head  # a detached HEAD holds the id itself
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None


def _locate(clone_dir: Path) -> tuple[Path, Path]:
    """The run script and the prompt folder; CLONE_DIR may be the clone's root or its agora_scripts/."""
    for scripts in (clone_dir / "agora_scripts", clone_dir):
        if (scripts / "run.py").is_file():
            return scripts / "run.py", scripts / "prompts"
    raise ParamsError(f"{clone_dir / 'agora_scripts' / 'run.py'}: not found; pass the root of a clone "
                      f"of https://github.com/neulab/data-agora")


# ---- reading run.py --------------------------------------------------------------------------

def _literal(node: ast.AST, where: str):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ParamsError(f"{where}: not a plain literal (only strings, lists and dicts can be read "
                          f"without running the script); restore the official assignment") from None


def _string_list(node: ast.AST, where: str) -> list[str]:
    value = _literal(node, where)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ParamsError(f"{where}: expected a non-empty list of strings; restore the official list")
    return value


def _merges(source: str, node: ast.List, list_name: str) -> list[Merge]:
    """Entries made of several string tokens. The AST only shows the joined constant, so each
    entry's own source text is tokenized (wrapped in brackets so line breaks inside it are fine)."""
    found = []
    for elt in node.elts:
        segment = ast.get_source_segment(source, elt) or ""
        tokens = tokenize.generate_tokens(io.StringIO(f"({segment})").readline)
        parts = [ast.literal_eval(t.string) for t in tokens if t.type == tokenize.STRING]
        if len(parts) > 1:
            found.append(Merge(list_name, elt.lineno, tuple(parts)))
    return found


def _duplicates(values: list[str], node: ast.List, list_name: str) -> list[Duplicate]:
    counts = Counter(values)
    return [Duplicate(list_name, value, tuple(e.lineno for e, v in zip(node.elts, values) if v == value))
            for value in counts if counts[value] > 1]


def read_run_script(path: Path) -> tuple[dict, list[Merge], list[Duplicate], dict[str, str]]:
    """(lists for lists.yaml, merges, duplicates, placeholder_formats) from the official run script."""
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as e:
        raise ParamsError(f"{path} line {e.lineno}: not valid Python ({e.msg}); use an unmodified "
                          f"agora_scripts/run.py") from None

    # Module-level `name = ...` assignments; the official lists all live there.
    assigned = {stmt.targets[0].id: stmt.value for stmt in tree.body
                if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)}
    merges: list[Merge] = []
    duplicates: list[Duplicate] = []

    def read_list(node: ast.AST, name: str) -> list[str]:
        values = _string_list(node, f"{path}: {name}")
        merges.extend(_merges(source, node, name))
        duplicates.extend(_duplicates(values, node, name))
        return values

    if THEMES_VAR not in assigned or not isinstance(assigned[THEMES_VAR], ast.Dict):
        raise ParamsError(f"{path}: no `{THEMES_VAR} = {{...}}` dict of theme lists by domain; "
                          f"use an unmodified agora_scripts/run.py")
    theme_nodes = {}
    for key, value in zip(assigned[THEMES_VAR].keys, assigned[THEMES_VAR].values):
        domain = _literal(key, f"{path}: a key of {THEMES_VAR}") if key is not None else None
        if isinstance(value, ast.Name):  # the official dict refers to lists defined above it
            if value.id not in assigned:
                raise ParamsError(f"{path}: {THEMES_VAR}[{domain!r}] refers to {value.id}, which is not "
                                  f"assigned at module level; use an unmodified agora_scripts/run.py")
            theme_nodes[domain] = (value.id, assigned[value.id])
        else:
            theme_nodes[domain] = (f"{THEMES_VAR}[{domain!r}]", value)
    themes = {}
    for domain in DOMAINS:
        if domain not in theme_nodes:
            raise ParamsError(f"{path}: {THEMES_VAR} has no {domain!r} entry; "
                              f"use an unmodified agora_scripts/run.py")
        themes[domain] = read_list(theme_nodes[domain][1], theme_nodes[domain][0])

    if FIRST_WORDS_VAR not in assigned:
        raise ParamsError(f"{path}: no `{FIRST_WORDS_VAR} = [...]` list of first words; "
                          f"use an unmodified agora_scripts/run.py")
    first_words = read_list(assigned[FIRST_WORDS_VAR], FIRST_WORDS_VAR)

    systems = {kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
               for kw in node.keywords if kw.arg == SYSTEM_KEYWORD
               and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)}
    if len(systems) != 1:
        raise ParamsError(f"{path}: expected one `{SYSTEM_KEYWORD}=\"...\"` string argument, found "
                          f"{len(systems)}; use an unmodified agora_scripts/run.py")

    # placeholder_formats: the dict literal, plus keys set later by subscript (run.py adds
    # first_word that way). Later subscripts that override a key (the quality-enhancement triggers)
    # are left out: they are per-method switches our parsers make themselves.
    formats: dict[str, str] = {}
    if PLACEHOLDERS_VAR in assigned:
        formats = _literal(assigned[PLACEHOLDERS_VAR], f"{path}: {PLACEHOLDERS_VAR}")
        if not isinstance(formats, dict) or not all(isinstance(v, str) for v in formats.values()):
            raise ParamsError(f"{path}: {PLACEHOLDERS_VAR} must be a dict of strings; "
                              f"use an unmodified agora_scripts/run.py")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript)
                    and isinstance(node.targets[0].value, ast.Name)
                    and node.targets[0].value.id == PLACEHOLDERS_VAR):
                key = node.targets[0].slice
                if isinstance(key, ast.Constant) and key.value not in formats \
                        and isinstance(node.value, ast.Constant):
                    formats[key.value] = node.value.value
    lists = {"system_prompt": systems.pop(), "themes": themes, "first_words": first_words}
    return lists, merges, duplicates, formats


# ---- placeholders -----------------------------------------------------------------------------

def _rewriter(formats: dict[str, str]):
    """A function text -> (text, [(official, ours, count)]) that maps the official placeholders
    differing from ours, in one pass so that a replacement is never replaced again."""
    pairs = [(formats[key], ours) for key, ours in OUR_PLACEHOLDERS.items()
             if formats.get(key, ours) != ours]
    if not pairs:
        return lambda text: (text, [])
    # Longest first, so a placeholder that is a prefix of another (say "$input" and "$input_theme")
    # cannot match inside it.
    pairs.sort(key=lambda pair: -len(pair[0]))
    alternatives = [f"(?P<p{i}>{re.escape(official).replace('@', f'(?P<n{i}>[0-9]+)')})"
                    for i, (official, _) in enumerate(pairs)]
    combined = re.compile("|".join(alternatives))

    def rewrite(text: str):
        counts: Counter = Counter()

        def one(match: re.Match) -> str:
            i = next(i for i in range(len(pairs)) if match.group(f"p{i}") is not None)
            ours = pairs[i][1]
            new = ours.replace("@", match.group(f"n{i}")) if "@" in pairs[i][0] else ours
            counts[(match.group(0), new)] += 1
            return new

        new_text = combined.sub(one, text)
        return new_text, [(old, new, n) for (old, new), n in counts.items()]

    return rewrite


# ---- the conversion ---------------------------------------------------------------------------

def convert_official(clone_dir: str | Path, out_dir: str | Path, num_fewshot: int = 3) -> ConversionReport:
    """Write a prompt folder for generation.prompt_dir from a clone of neulab/data-agora.

    Everything is read and checked before anything is written, so a bad clone leaves OUT_DIR as it was.
    """
    clone_dir, out_dir = Path(clone_dir), Path(out_dir)
    run_script, prompts_dir = _locate(clone_dir)
    lists, merges, duplicates, formats = read_run_script(run_script)
    rewrite = _rewriter(formats)

    report = ConversionReport(out_dir=out_dir, run_script=run_script, files={}, merges=merges,
                              duplicates=duplicates, commit=clone_commit(run_script.parent.parent))
    if report.commit and report.commit != PAPER_COMMIT:
        report.warnings.append(f"the clone is at {report.commit[:12]}, the spec describes {PAPER_COMMIT[:12]}; "
                               f"`git checkout {PAPER_COMMIT[:12]}` in the clone for the prompts it describes")
    if not formats:
        report.warnings.append(f"{run_script.name} has no {PLACEHOLDERS_VAR}; assumed the official "
                               f"placeholders, which are ours")
    for key, ours in OUR_TRIGGERS.items():
        if key in formats and formats[key] != ours:
            report.warnings.append(f"{PLACEHOLDERS_VAR}[{key!r}] is {formats[key]!r}, our parsers use "
                                   f"{ours!r}; outputs will not parse unless the prompt text asks for {ours!r}")

    texts: dict[str, str] = {}
    for method, domain, fmt in prompt_settings():
        ours, theirs = prompt_file(method, domain, fmt), official_file(method, domain, fmt)
        source = prompts_dir / theirs
        if not source.is_file():
            raise ParamsError(f"{source}: missing; the official prompt folder needs all 12 files "
                              f"(use a complete clone of neulab/data-agora)")
        try:
            # Bytes, not read_text: universal newlines would turn a "\r\n" into "\n".
            text = source.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise ParamsError(f"{source}: not UTF-8 text (byte {e.start}); re-checkout the file") from None
        text, changes = rewrite(text)
        report.rewrites += [f"{ours}: {old} -> {new} ({n}x)" for old, new, n in changes]
        found = set(PLACEHOLDER.findall(text))
        need = required_placeholders(method, domain, fmt, num_fewshot)
        if need != found:
            problems = [f"missing {', '.join(sorted(need - found))}"] if need - found else []
            problems += [f"unexpected {', '.join(sorted(found - need))}"] if found - need else []
            raise ParamsError(f"{source}: placeholder(s) {'; '.join(problems)} (it becomes {ours}, "
                              f"which needs exactly {', '.join(sorted(need))}); fix the file or the clone")
        texts[ours] = text
        report.files[ours] = theirs

    dumped = yaml.safe_dump(lists, sort_keys=False, allow_unicode=True, width=10_000)
    if yaml.safe_load(dumped) != lists:  # entries like "### Problem:  " must survive quoting as they are
        raise ParamsError(f"{run_script}: the lists do not survive a YAML round trip; report this as a bug")
    # No absolute path here: lists.yaml is part of the prompt-set hash, which must not depend on
    # where the clone lives.
    header = [f"# Converted by `agora prompts from-official` from neulab/data-agora "
              f"at {report.commit or 'an unknown commit'} (agora_scripts/run.py).",
              "# The official lists are kept exactly as they are; quirks found:"]
    header += [f"#   {q}" for q in report.quirks()] or ["#   none"]

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (out_dir / name).write_bytes(text.encode("utf-8"))
    (out_dir / "lists.yaml").write_text("\n".join(header) + "\n" + dumped, encoding="utf-8")
    # The folder must load the way generation will load it.
    report.sha256 = load_prompt_set(out_dir, num_fewshot).sha256
    return report


def main(argv: list[str] | None = None) -> int:
    """`agora prompts from-official CLONE_DIR OUT_DIR`; returns the exit status (2: a fixable error)."""
    parser = argparse.ArgumentParser(
        prog="agora prompts from-official",
        description="Convert the official AgoraBench meta-prompts (a clone of neulab/data-agora) into a "
                    "folder for generation.prompt_dir.")
    parser.add_argument("clone_dir", help="root of a clone of https://github.com/neulab/data-agora")
    parser.add_argument("out_dir", help="folder to write (created if missing)")
    parser.add_argument("--num-fewshot", type=int, default=3, help="demos per instance prompt (official: 3)")
    args = parser.parse_args(argv)
    try:
        report = convert_official(args.clone_dir, args.out_dir, args.num_fewshot)
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"next: set generation.prompt_dir: {args.out_dir} in your params file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
