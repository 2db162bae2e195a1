"""Generate one setting's dataset: exactly N valid instances from one generator, or a manifest that
says why fewer.

Determinism is the design constraint here. Attempts are numbered, and every attempt's prompt is a
pure function of (seed, setting, attempt number, results of earlier batches). Prompts of one batch
are all built before any of them is sent, so instance generation's pool of generated demos only
grows between batches. The outcome therefore never depends on which request came back first or on
the concurrency, and a re-run asks exactly the same requests again, all answered by the store:
zero requests, byte-identical files.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path


from agorabench.config import GeneratorConfig, Params, ParamsError
from agorabench.generation.parsing import is_complete, parse_output
from agorabench.generation.records import DatasetManifest, Instance, Rejection, write_dataset
from agorabench.generation.prompting import (PromptSet, enhancement_prompt, instance_prompt, prompt_file,
                                  response_prompt)
from agorabench.models.answering import Decoding, chat_sampling
from agorabench.models.store import Completion
from agorabench.generation.seeds import SeedExample, load_seeds
from agorabench.generation.validation import count_tokens, validate


@dataclass(frozen=True)
class Attempt:
    index: int                 # position in this setting's attempt sequence
    messages: list[dict]
    sample_index: int          # part of the request key: tells repeated identical prompts apart
    seed_ids: tuple[str, ...]
    item: int | None = None    # RG/QE: position of the seed being answered or revised
    theme: str | None = None
    first_word: str | None = None
    seed_instruction: str = ""

    @property
    def prompt_sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.messages, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Outcome:
    attempt: Attempt
    key: str
    completion: Completion


@dataclass
class SettingPlan:
    """The state machine of one setting: which attempts to send next, what to keep."""

    generator: str
    gen_cfg: GeneratorConfig
    domain: str
    method: str
    prompts: PromptSet
    seeds: list[SeedExample]
    num: int
    params: Params
    accepted: list[tuple[Attempt, str, str, Outcome]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    next_index: int = 0
    in_flight: int = 0
    stop_reason: str | None = None

    def __post_init__(self):
        g = self.params.generation
        self.fmt = g.prompt_format if self.method == "instance_generation" else "text"
        self.template = self.prompts.template(self.method, self.domain, self.fmt)
        self.decoding = Decoding(temperature=g.sampling.temperature, top_p=g.sampling.top_p,
                                 max_new_tokens=g.sampling.max_tokens, repetition_penalty=None,
                                 stop=tuple(g.sampling.stop))
        # What the generator is sent, with its own overrides (e.g. top_p: null): the manifest records it.
        self.sampling = chat_sampling(self.decoding, self.gen_cfg.sampling)
        # The whole setting's attempts are capped (the paper's 10 tries per instance, N times), so
        # a weak generator cannot burn through every seed: past that, the manifest says why.
        self.budget = self.num * g.max_attempts_per_instance
        if self.method != "instance_generation":
            # RG/QE answer seeds in a fixed shuffled order. An item that spends all its attempts is
            # replaced by the next unused seed, so N valid instances come out while seeds last.
            order = list(range(len(self.seeds)))
            random.Random(f"{g.seed}:{self.domain}:{self.method}").shuffle(order)
            self.order = order
            self.active = order[: self.num]
            self.next_item = min(self.num, len(order))
            self.tries: dict[int, int] = {}
            self.tries_per_seed = g.max_attempts_per_seed or g.max_attempts_per_instance
        self.pending_items: set[int | None] = set()

    def _messages(self, user: str) -> list[dict]:
        return [{"role": "system", "content": self.prompts.system_prompt}, {"role": "user", "content": user}]

    # -- instance generation ---------------------------------------------------------------------
    def _instance_attempt(self, i: int, pool: list[tuple[str, str]]) -> Attempt:
        g = self.params.generation
        rng = random.Random(f"{g.seed}:{self.domain}:{self.method}:{i}")
        n_generated = min(g.num_fewshot - g.num_seed_demos, len(pool))
        generated = rng.sample(pool, n_generated) if n_generated else []
        seed_picks = rng.sample(self.seeds, min(g.num_fewshot - n_generated, len(self.seeds)))
        demos = [(s.instruction, s.response) for s in seed_picks] + generated
        rng.shuffle(demos)
        while len(demos) < g.num_fewshot:  # tiny seed sets: repeat rather than leave a hole
            demos.append(demos[len(demos) % max(1, len(demos))])
        theme = rng.choice(self.prompts.themes[self.domain]) if self.fmt == "text" else None
        first_word = (rng.choice(self.prompts.first_words)
                      if self.fmt == "text" and self.domain == "general" else None)
        user = instance_prompt(self.template, demos, fmt=self.fmt, theme=theme, first_word=first_word)
        return Attempt(index=i, messages=self._messages(user), sample_index=i,
                       seed_ids=tuple(s.id for s in seed_picks), theme=theme, first_word=first_word)

    # -- response generation / quality enhancement ------------------------------------------------
    def _item_attempt(self, i: int, item: int) -> Attempt:
        seed = self.seeds[item]
        if self.method == "response_generation":
            user = response_prompt(self.template, seed.instruction)
        else:
            user = enhancement_prompt(self.template, seed.instruction, seed.response)
        retry = self.tries.get(item, 0)
        self.tries[item] = retry + 1
        return Attempt(index=i, messages=self._messages(user), sample_index=retry, seed_ids=(seed.id,),
                       item=item, seed_instruction=seed.instruction)

    def next_batch(self) -> list[Attempt]:
        """The next attempts to send, decided from absorbed results only.

        One batch may still be in flight while this is called (the engine keeps the next batch
        queued so the generator never idles between batches). Everything here depends on absorbed
        results and on how many attempts are in flight, never on timing, so runs stay reproducible.
        An empty list with attempts in flight means "wait"; with none in flight, the setting is done.
        """
        if self.stop_reason or len(self.accepted) >= self.num:
            return []
        g = self.params.generation
        left = self.budget - self.next_index
        if left <= 0:
            if not self.in_flight:
                self.stop_reason = f"retry budget spent ({self.budget} attempts for {self.num} instances)"
            return []
        if self.method == "instance_generation":
            absorbed = self.next_index - self.in_flight
            needed = self.num - len(self.accepted)
            # Acceptance rate with one imagined success and failure (Laplace), so a first batch
            # with no valid instance asks for a few times more, not twenty times more, attempts.
            rate = (len(self.accepted) + 1) / (absorbed + 2) if absorbed else 1.0
            count = min(g.batch_size, left, math.ceil(needed / max(rate, 0.05)) - self.in_flight)
            if count <= 0:
                return []
            pool = [(a[1], a[2]) for a in self.accepted]
            batch = [self._instance_attempt(self.next_index + k, pool) for k in range(count)]
        else:
            batch = []
            for item in self.active:
                if len(batch) >= min(g.batch_size, left):
                    break
                if item not in self.pending_items:  # one attempt per seed at a time
                    batch.append(self._item_attempt(self.next_index + len(batch), item))
            if not batch:
                if not self.active and not self.in_flight:
                    self.stop_reason = (f"seeds exhausted: {len(self.seeds)} seeds, each tried up to "
                                        f"{self.tries_per_seed} times")
                return []
            self.pending_items.update(a.item for a in batch)
        self.next_index += len(batch)
        self.in_flight += len(batch)
        return batch

    def absorb(self, outcomes: list[Outcome], issued: int | None = None) -> None:
        """Judge a finished batch. `issued` is how many attempts it had (more than `outcomes` when
        a budget stop cut it short)."""
        g = self.params.generation
        self.in_flight -= len(outcomes) if issued is None else issued
        for o in sorted(outcomes, key=lambda o: o.attempt.index):
            self.outcomes.append(o)
            a, c = o.attempt, o.completion
            self.pending_items.discard(a.item)
            if not is_complete(c.text, c.finish_reason):
                verdict = ("truncated", f"finish_reason={c.finish_reason}")
            else:
                parsed = parse_output(self.method, c.text, fmt=self.fmt, seed_instruction=a.seed_instruction)
                if parsed.reason:
                    verdict = (parsed.reason, parsed.detail)
                else:
                    verdict = validate(self.method, self.domain, parsed.instruction, parsed.response,
                                       max_tokens=g.max_instance_tokens, tokenizer=g.tokenizer,
                                       strict_format=self.fmt == "text")
            if verdict is None:
                self.accepted.append((a, parsed.instruction, parsed.response, o))
                if a.item is not None:
                    self.active.remove(a.item)
            else:
                self.rejected.append(Rejection(attempt=a.index, reason=verdict[0], detail=verdict[1],
                                               raw=c.text, finish_reason=c.finish_reason,
                                               seed_ids=list(a.seed_ids), request_key=o.key,
                                               # what the rejection cost (a prefix of the dataset is priced from these)
                                               input_tokens=c.input_tokens, output_tokens=c.output_tokens,
                                               cost_usd=round(c.cost_usd, 10)))
                if a.item is not None and self.tries[a.item] >= self.tries_per_seed:
                    self.active.remove(a.item)  # this seed is spent; bring in the next one
                    if self.next_item < len(self.order):
                        self.active.append(self.order[self.next_item])
                        self.next_item += 1

    def rows(self) -> list[Instance]:
        kept = self.accepted
        if self.method != "instance_generation":  # seed order, not completion order
            rank = {item: r for r, item in enumerate(self.order)}
            kept = sorted(kept, key=lambda t: rank[t[0].item])
        rows = []
        for k, (a, instruction, response, o) in enumerate(kept[: self.num]):
            rows.append(Instance(
                id=f"{self.generator}/{self.method}/{self.domain}/{k:06d}",
                instruction=instruction, response=response, config=self.gen_cfg.model,
                generator=self.generator, method=self.method, domain=self.domain,
                attempt=a.index, seed_ids=list(a.seed_ids), theme=a.theme, first_word=a.first_word,
                prompt_sha256=a.prompt_sha256, request_key=o.key,
                input_tokens=o.completion.input_tokens, output_tokens=o.completion.output_tokens,
                cost_usd=round(o.completion.cost_usd, 10),
            ))
        return rows

    def manifest(self, rows: list[Instance]) -> DatasetManifest:
        reasons: dict[str, int] = {}
        for r in self.rejected:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        seeds_hash = hashlib.sha256(json.dumps([[s.id, s.instruction, s.response] for s in self.seeds]).encode())
        complete = len(rows) >= self.num
        return DatasetManifest(
            generator=self.generator, backend=self.gen_cfg.backend, model=self.gen_cfg.model,
            domain=self.domain, method=self.method,
            num_requested=self.num, num_valid=len(rows), complete=complete,
            shortfall_reason=None if complete else (self.stop_reason or "stopped early"),
            attempts=len(self.outcomes), rejections=dict(sorted(reasons.items())),
            # Cost of every attempt this dataset needed, rejected ones included.
            cost_usd=round(sum(o.completion.cost_usd for o in self.outcomes), 8),
            input_tokens=sum(o.completion.input_tokens for o in self.outcomes),
            output_tokens=sum(o.completion.output_tokens for o in self.outcomes),
            latency_s=round(sum(o.completion.latency_s for o in self.outcomes), 3),
            prompt_format=self.fmt, prompt_file=prompt_file(self.method, self.domain, self.fmt),
            prompt_set_sha256=self.prompts.sha256, sampling=self.sampling,
            seed=self.params.generation.seed, seed_source=self.params.seeds.source,
            num_seeds=len(self.seeds), seeds_sha256=seeds_hash.hexdigest(),
            versions=package_versions(),
        )


def load_setting_seeds(params: Params, domain: str, method: str) -> list[SeedExample]:
    """Seeds for a setting, without the ones over seeds.max_tokens; a Hub that cannot be reached
    becomes one line that says what to do."""
    try:
        seeds = load_seeds(domain, method, source=params.seeds.source)
    except Exception as e:
        if params.seeds.source != "hub":
            raise
        raise ParamsError(
            f"seeds.source: hub: could not load the {domain}/{method} seed set from the Hugging Face Hub "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); check the network and "
            f"HF_TOKEN, or set seeds.source: offline"
        ) from None
    if not seeds:  # the loaders take out every seed that overlaps a benchmark item
        raise ParamsError(f"seeds.source: {params.seeds.source}: no {domain}/{method} seed: the set is empty, or "
                          f"every seed overlaps a benchmark item and was taken out; use seeds from outside the "
                          f"test sets")
    limit, tokenizer = params.seeds.max_tokens, params.generation.tokenizer
    kept = [s for s in seeds if count_tokens(s.instruction + "\n" + s.response, tokenizer) <= limit]
    if not kept:
        raise ParamsError(f"seeds.max_tokens = {limit} leaves no {domain}/{method} seed; raise it")
    return kept


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("agorabench", "openai", "anthropic", "transformers", "torch", "prefect"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out



def write_outputs(plan: SettingPlan, paths: dict[str, Path]) -> dict:
    """Write the dataset's three files; return the manifest as a dict."""
    rows = plan.rows()
    manifest = plan.manifest(rows)
    write_dataset(paths, rows, plan.rejected, manifest)
    return manifest.model_dump()
