"""Does a generated dataset contain benchmark items, or copies of its own seeds? (the decontaminate stage)

A generator that has memorised GSM8K or HumanEval can write test items into its "synthetic" data; a
student trained on them scores on recall, and its PGR then measures leakage rather than the data's
worth. Each dataset is checked instance by instance:

* against every benchmark's items (every item, not only the evaluated sample): the instance's
  instruction AND response against each item's prompt and, where the item has one worth matching,
  its answer (``ANSWERS`` says which text that is per benchmark, and why);
* against the setting's seeds, for instance generation only: there the generator is asked for new
  instances after seeing seed demos, so a copied seed is human data passed off as generated (which
  the student then sees twice: instance generation also trains on its seeds). Response generation
  answers seed instructions and quality enhancement rewrites seed pairs: their overlap with the
  seeds is the method, not a finding.

A match is a shared run of n words (decontamination.ngram, 13 by default as in the GPT-3 and Llama
reports) or, for prompts and seed instructions, an equal normalised text (which finds prompts
shorter than n words). Normalisation and n-grams are ``agorabench.evaluation.items``'s, the ones the
seeds themselves are decontaminated with; n-grams made only of numbers never count. Benchmark n-grams
that the setting's seeds also contain do not count either (``check_dataset`` says why). Text without
spaces between words (Chinese, Japanese) is one word to the normaliser, so such prompts are found
only as exact copies.

The stage writes two files beside the dataset (Setting.contamination; records in
generation/records.py): the report, and the list of instances training leaves out (empty unless
decontamination.drop, so by default the student trains on everything, as the paper's did).

It is a module of its own, in its own layer between evaluation and training: it reads the benchmarks'
items (evaluation) and the seeds (generation), and a module in either folder would make every stage
that depends on that folder re-run when it changes.

May import: config, setting, records, generation (seeds, records), evaluation (benchmark declarations, items).
"""
from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field

from agorabench.config import DecontaminationConfig, Params, ParamsError
from agorabench.evaluation.items import ngrams, normalize_text
from agorabench.files import file_sha256
from agorabench.generation.records import (
    ContaminationMatch,
    ContaminationReport,
    DropList,
    FlaggedInstance,
    read_instances,
    write_contamination,
)
from agorabench.setting import Setting

SEEDS = "seeds"  # the `source` of a seed match; a benchmark match carries the benchmark's name
FIELDS = ("instruction", "response")  # the texts of an instance that are checked


# ---------------------------------------------------------------------------------------------
# What is indexed of each benchmark item
# ---------------------------------------------------------------------------------------------

_CALCULATOR = re.compile(r"<<[^>]*>>")


def _gsm8k_answers(item) -> list[str]:
    # The worked solution (item.reference is only the final number). Its <<48/2=24>> calculator notes
    # are in the file but rarely in a memorised copy, and they would cut every n-gram across them, so
    # the solution is indexed with and without them.
    raw = item.extra["answer"]
    return [raw, _CALCULATOR.sub("", raw)]


def _humaneval_answers(item) -> list[str]:
    # The canonical solution is a function body, and 36 of the 164 are under 13 words. A response that
    # copies it most likely writes the whole function: signature, then body, usually without the
    # docstring. So the text indexed is the prompt's code with the entry point's docstring cut out, then
    # the body; the body alone is a contiguous part of it, and the docstring is the prompt's to match.
    code = item.prompt + item.reference
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return [item.reference]
    lines = code.splitlines(keepends=True)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == item.extra["entry_point"]:
            doc = node.body[0]
            if (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                    and isinstance(doc.value.value, str) and doc.lineno > node.lineno):
                del lines[doc.lineno - 1 : doc.end_lineno]
            break
    return ["".join(lines)]


# benchmark -> the texts of an item that count as its answer (None: its prompt only). Every benchmark
# folder must have an entry, so that a new benchmark is a decision (the index refuses to build
# otherwise). Short final answers (GSM8K's number, MATH's boxed expression) are left out: "12" in a
# response is no copy.
ANSWERS = {
    "gsm8k": _gsm8k_answers,
    "math": lambda item: [item.extra["solution"]],  # the worked solution with its \boxed{} answer
    "mbpp": lambda item: [item.reference],  # the reference function
    "humaneval": _humaneval_answers,
    # item.reference is GPT-4-Turbo's output, the judge's other side, not a gold answer. Generators
    # write in its style ("Certainly! Below is a Python function that ..."), and its outputs matched
    # generic code in the MT-Bench seeds; a student needs the prompt to recall it, and prompts are checked.
    "alpacaeval": None,
    "arenahard": None,  # the baseline answers are loaded per category by the task; prompts only
    "ifeval": None,  # no reference answer, only checkers
}


# ---------------------------------------------------------------------------------------------
# Indexes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """One indexed text's origin: a benchmark item's prompt or answer, or a seed's instruction or response."""

    source: str  # benchmark name, or SEEDS
    item_id: str
    item_field: str  # prompt | answer (benchmarks); instruction | response (seeds)


@dataclass
class Index:
    """Normalised texts and their n-gram hashes, each pointing back to the Ref it came from."""

    n: int
    refs: list[Ref] = field(default_factory=list)
    positions: dict[Ref, int] = field(default_factory=dict)  # a Ref added with several texts keeps one
    exact: dict[str, tuple[int, ...]] = field(default_factory=dict)  # normalised text -> positions
    # n-gram hash -> a position, or a tuple of them when several texts share the n-gram. Most n-grams
    # belong to one text, and a bare int costs no extra object (330,000 n-grams for all benchmarks).
    grams: dict[int, int | tuple[int, ...]] = field(default_factory=dict)

    def add(self, ref: Ref, text: str, exact: bool) -> None:
        """Index `text` under `ref`; `exact`: an instance text equal to it matches too, however short.

        Only prompts and instructions match exactly. An answer's words follow from its question, so
        short answers coincide ("Yes.", "return a + b"); they count only by a shared n-gram.
        """
        norm = normalize_text(text)
        if not norm:
            return
        pos = self.positions.get(ref)
        if pos is None:
            pos = self.positions[ref] = len(self.refs)
            self.refs.append(ref)
        if exact and pos not in self.exact.get(norm, ()):
            self.exact[norm] = (*self.exact.get(norm, ()), pos)
        for gram in ngrams(norm.split(), self.n):
            h = hash(gram)  # str hashes are stable within a process, all a per-process index needs
            old = self.grams.get(h)
            if old is None:
                self.grams[h] = pos
            elif isinstance(old, int):
                if old != pos:
                    self.grams[h] = (old, pos)
            elif pos not in old:
                self.grams[h] = (*old, pos)


@functools.lru_cache(maxsize=4)
def benchmark_index(n: int) -> Index:
    """Every item of every benchmark folder, built once per process and n."""
    from agorabench.evaluation.benchmarks import NAMES, load_items

    missing = [name for name in NAMES if name not in ANSWERS]
    if missing:
        raise ValueError(f"benchmark {missing[0]!r} has no entry in agorabench/decontamination.py ANSWERS; "
                         f"add one (None: check its prompts only)")
    index = Index(n)
    for name in NAMES:
        answers = ANSWERS[name]
        for item in load_items(name):
            index.add(Ref(name, item.id, "prompt"), item.prompt, exact=True)
            for text in answers(item) if answers else ():
                index.add(Ref(name, item.id, "answer"), text, exact=False)
    return index


def benchmark_versions() -> dict[str, str]:
    """benchmark -> the exact data (package, file, sha256) its items, and so the index, came from."""
    from agorabench.evaluation.benchmarks import NAMES, data_version

    return {name: data_version(name) for name in NAMES}


@functools.lru_cache(maxsize=8)
def seed_index(domain: str, method: str, source: str, n: int) -> Index:
    """The setting's seeds as ``load_seeds`` gives them: all of them, before generation's length filter."""
    from agorabench.generation.seeds import load_seeds

    index = Index(n)
    for seed in load_seeds(domain, method, source):
        index.add(Ref(SEEDS, seed.id, "instruction"), seed.instruction, exact=True)
        index.add(Ref(SEEDS, seed.id, "response"), seed.response, exact=False)
    return index


# ---------------------------------------------------------------------------------------------
# Checking a dataset
# ---------------------------------------------------------------------------------------------


def _matches(index: Index, instance_field: str, norm: str, grams: list[str], hashes: list[int],
             found: dict[tuple, tuple], ignore=frozenset()) -> None:
    """Add to `found` what one instance text matches in `index`: (source, item_id, item_field, field) ->
    (kind, ngram): exact when the whole text equals an exact-matching text, else the first n-gram of the
    instance's text that the item shares. N-gram hashes in `ignore` do not count."""
    for pos in index.exact.get(norm, ()):
        ref = index.refs[pos]
        found[(ref.source, ref.item_id, ref.item_field, instance_field)] = ("exact", None)
    if index.grams.keys().isdisjoint(hashes):  # nearly every text: one pass in C, no loop here
        return
    for gram, h in zip(grams, hashes):
        hit = index.grams.get(h)
        if hit is None or h in ignore:
            continue
        for pos in (hit,) if isinstance(hit, int) else hit:
            ref = index.refs[pos]
            found.setdefault((ref.source, ref.item_id, ref.item_field, instance_field), ("ngram", gram))


def check_dataset(rows: list[dict], *, domain: str, method: str, config: DecontaminationConfig | None = None,
                  seed_source: str = "offline") -> list[FlaggedInstance]:
    """The instances of one dataset (dicts with id, instruction, response) that overlap, in order.

    Benchmark n-grams that also occur in the setting's seeds do not count: the generator was shown
    those words. They are a benchmark's house style, shared by its seed and eval parts (MBPP's
    `return 'Found a match!'`, MATH's Asymptote preamble, "the sum of an arithmetic series is equal to
    the average of the first and last term"). Counted, they flagged 1.7 % of held-out math seeds and
    11.5 % of code seeds; not counted, 0.9 % and 8.2 % (benchmarks/decontamination_speed.py).
    """
    config = config or DecontaminationConfig()
    bench = benchmark_index(config.ngram) if "benchmarks" in config.against else None
    copies = "seeds" in config.against and method == "instance_generation"
    seeds = seed_index(domain, method, seed_source, config.ngram) if bench is not None or copies else None
    flagged = []
    for idx, row in enumerate(rows):
        found: dict[tuple, tuple] = {}
        for instance_field in FIELDS:
            text = row.get(instance_field) if isinstance(row, dict) else None
            if not isinstance(text, str):
                raise ValueError(f"instance {idx}: `{instance_field}` is missing or not a string; every row needs "
                                 f"`instruction` and `response` (a dataset written by `agora generate`)")
            norm = normalize_text(text)
            # number-only n-grams are kept: the indexes hold none, so they never match
            grams = ngrams(norm.split(), config.ngram, numbers=True)
            hashes = list(map(hash, grams))
            if bench is not None:
                _matches(bench, instance_field, norm, grams, hashes, found, ignore=seeds.grams)
            if copies:
                _matches(seeds, instance_field, norm, grams, hashes, found)
        if found:
            matches = [ContaminationMatch(source=k[0], item_id=k[1], item_field=k[2], field=k[3], kind=kind,
                                          ngram=gram) for k, (kind, gram) in sorted(found.items())]
            flagged.append(FlaggedInstance(idx=idx, id=str(row.get("id")), matches=matches))
    return flagged


def contamination_report(rows: list[dict], *, generator: str, domain: str, method: str, dataset_sha256: str,
                         config: DecontaminationConfig | None = None,
                         seed_source: str = "offline") -> ContaminationReport:
    """check_dataset, and what it was checked against: the report of one dataset."""
    config = config or DecontaminationConfig()
    flagged = check_dataset(rows, domain=domain, method=method, config=config, seed_source=seed_source)
    by_source: dict[str, int] = {}
    for entry in flagged:
        for source in {m.source for m in entry.matches}:
            by_source[source] = by_source.get(source, 0) + 1
    benchmarks = "benchmarks" in config.against
    copies = "seeds" in config.against and method == "instance_generation"
    seeds = seed_index(domain, method, seed_source, config.ngram) if benchmarks or copies else None
    return ContaminationReport(
        generator=generator, method=method, domain=domain, dataset_sha256=dataset_sha256, ngram=config.ngram,
        against=list(config.against), benchmarks=benchmark_versions() if benchmarks else {},
        seed_source=seed_source if seeds is not None else None,
        num_seeds=len({r.item_id for r in seeds.refs}) if seeds is not None else None,
        seed_copies_checked=copies, num_instances=len(rows), num_flagged=len(flagged),
        flagged_by_source=dict(sorted(by_source.items())), dropped=config.drop, flagged=flagged)


def drop_list(report: ContaminationReport) -> DropList:
    """The instances training leaves out: the flagged ones when the report says so, else none."""
    return DropList(dataset_sha256=report.dataset_sha256, drop=report.dropped,
                    ids=[entry.id for entry in report.flagged] if report.dropped else [])


def decontaminate_setting(params: Params, setting: Setting) -> ContaminationReport:
    """Check one setting's dataset and write its report and drop list beside it (what the stage runs)."""
    data = setting.dataset(params)["data"]
    if not data.is_file():
        raise ParamsError(f"{data}: no generated dataset; run `agora generate` for {setting.label} first")
    rows = [{"id": r.id, "instruction": r.instruction, "response": r.response}
            for r in read_instances(data, setting.label)]
    report = contamination_report(rows, generator=setting.name, domain=setting.domain, method=setting.method,
                                  dataset_sha256=file_sha256(data), config=params.decontamination,
                                  seed_source=params.seeds.source)
    write_contamination(setting.contamination(params), report, drop_list(report))
    return report


