"""The documents the code cites live in docs/: no file points outside the repository, and every
"docs/NAME.md §N" citation names a section that exists in that file (its numbered headings).

Inside docs/ a bare "§N" (or "NAME.md §N") means a section of the same folder's page; everywhere
else a section number must come with its page, "docs/NAME.md §N", so a reader can follow it.
This file is left out of the scan: its canaries spell the very references the check forbids.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path

from tests.conftest import REPO

os.environ.setdefault("OMP_NUM_THREADS", "1")

SKIPPED = (".venv/", "data/", ".git/")
SELF = Path(__file__).resolve().relative_to(REPO).as_posix()

# References to documents that are not part of the repository: the team's spec and research notes.
OUTSIDE = [
    (re.compile(r"\bspec\s*§"), "the team's spec"),
    (re.compile(r"(?<![\w./-])(?:\.\./)*shared/"), "the shared folder"),
    (re.compile(r"stack-feasibility|stack-pins|agorabench-paper\.md|peers\.md"), "a research note"),
    (re.compile(r"(?<![\w.])/work/"), "an absolute path of the workspace"),
]

SECTION = r"\d+(?:\.\d+)*"
ONE = rf"§\s*{SECTION}(?:\s*[-–]\s*{SECTION})?"  # §1.7 or §1.1-1.5
# An optional page, then one or more section numbers: "docs/paper.md §1.3, §1.5", "(§3.2)".
CITATION = re.compile(rf"(?P<page>(?:docs/)?[\w-]+\.md)?\s*(?P<sections>{ONE}(?:\s*(?:,|and)\s*{ONE})*)")
HEADING = re.compile(rf"^#{{1,6}}\s+(?P<number>{SECTION})\.?\s")


@functools.lru_cache(maxsize=None)
def headings(page: Path) -> frozenset[str]:
    """The section numbers of a markdown page: "## 1. Data", "### 1.7 Parsers" -> {"1", "1.7"}."""
    numbers, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            numbers.add(m["number"])
    return frozenset(numbers)


def reference_problems(relpath: str, text: str, root: Path = REPO) -> list[str]:
    """Every reference in `text` (the file `relpath` of the repository at `root`) that leads nowhere."""
    problems = []
    for pattern, what in OUTSIDE:
        for m in pattern.finditer(text):
            problems.append(f"{relpath}:{_line(text, m.start())}: {m.group(0)!r} cites {what}, outside the "
                            f"repository; cite the docs/ page that holds the fact")
    in_docs = relpath.startswith("docs/")
    parsed = set()
    for m in CITATION.finditer(text):
        parsed.update(i for i in range(m.start(), m.end()) if text[i] == "§")
        where = f"{relpath}:{_line(text, m.start())}"
        page = m["page"]
        if page is None and not in_docs:
            problems.append(f"{where}: {m.group(0).strip()!r} has no page; write docs/NAME.md §N")
            continue
        if page is not None and not page.startswith("docs/") and not in_docs:
            problems.append(f"{where}: {m.group(0).strip()!r} names {page} outside docs/; write docs/{page}")
            continue
        target = root / relpath if page is None else root / "docs" / page.removeprefix("docs/")
        if not target.is_file():
            problems.append(f"{where}: {m.group(0).strip()!r} cites {target.relative_to(root)}, which does not exist")
            continue
        for number in re.findall(SECTION, m["sections"]):
            if number not in headings(target):
                problems.append(f"{where}: {m.group(0).strip()!r}: {target.relative_to(root)} has no section "
                                f"{number}")
    for i, char in enumerate(text):
        if char == "§" and i not in parsed:
            problems.append(f"{relpath}:{_line(text, i)}: a '§' without a section number")
    return problems


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def repository_texts() -> dict[str, str]:
    """Every text file of the checkout (tracked or not yet added), minus the virtualenv and data."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    texts = {}
    for rel in filter(None, listed):
        path = REPO / rel
        if rel.startswith(SKIPPED) or rel == SELF or not path.is_file():
            continue
        try:
            texts[rel] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # a binary file cites nothing
            continue
    return texts


def test_no_reference_leads_outside_the_repository_or_to_a_missing_section():
    texts = repository_texts()
    assert "agorabench/analysis.py" in texts and "docs/paper.md" in texts  # the scan sees the code and docs
    problems = [p for rel, text in texts.items() for p in reference_problems(rel, text)]
    assert problems == [], "\n".join(problems)


def test_the_code_cites_the_docs_pages_by_section():
    """Not vacuous: the citations the scan checked are there, and every section of them resolved."""
    texts = repository_texts()
    cited = {m.group(0) for rel, text in texts.items() if not rel.startswith("docs/")
             for m in CITATION.finditer(text)}
    assert len(cited) >= 20
    assert any(c.startswith("docs/paper.md") for c in cited)
    assert any(c.startswith("docs/offline-assets.md") for c in cited)
    assert {"1.7", "3.2", "6.1", "6.7"} <= headings(REPO / "docs/paper.md")
    assert {"1.2", "1.3", "2.1"} <= headings(REPO / "docs/offline-assets.md")


def test_good_citations_pass_the_checker():
    text = "(docs/paper.md §1.1-1.5), docs/paper.md §1.3, §1.5 and docs/offline-assets.md §2.1"
    assert reference_problems("agorabench/x.py", text) == []
    # Inside docs/ a bare number is the page's own section, and a sibling page needs no folder.
    assert reference_problems("docs/paper.md", "see §1.7 and offline-assets.md §1.2") == []


def test_canary_dangling_and_outside_references_are_caught():
    """The same checker on broken text: each bad reference is reported, naming the line and the fix."""
    cases = {
        "a dangling section": ("x\ndocs/paper.md §9.9", "agorabench/x.py:2: 'docs/paper.md §9.9': docs/paper.md "
                               "has no section 9.9"),
        "the end of a dangling range": ("docs/paper.md §1.1-1.99", "has no section 1.99"),
        "the second of a list": ("docs/paper.md §1.3, §42", "has no section 42"),
        "the old spec form": ("see spec §1.7", "cites the team's spec"),
        "a research note": ("(../shared/research/offline-assets.md §1)", "cites the shared folder"),
        "a page outside docs/": ("(offline-assets.md §1.2)", "outside docs/; write docs/offline-assets.md"),
        "a bare number in code": ("# §3.1: the judge", "has no page"),
        "a missing page": ("docs/nowhere.md §1", "docs/nowhere.md, which does not exist"),
        "a section sign alone": ("see § above", "a '§' without a section number"),
        "a stack note": ("(the tests set 1: stack-feasibility G4)", "cites a research note"),
    }
    for name, (text, expected) in cases.items():
        problems = reference_problems("agorabench/x.py", text)
        assert any(expected in p for p in problems), (name, problems)
    assert any("has no section 42" in p for p in reference_problems("docs/paper.md", "(§42)"))
