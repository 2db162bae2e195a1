"""The one interface for answering prompts: an Answerer, with the request store beneath it.

Every model AgoraBench asks something (a generator writing data, a student or an anchor answering a
benchmark, a judge) is an Answerer:

    EndpointAnswerer     models/endpoint.py: a configured generator: an API (OpenAI, Anthropic) or an
                         OpenAI-compatible server (vLLM, a local server AgoraBench starts)
    ServedModelAnswerer  models/served.py: a model folder (a student, the base, the reference) through a
                         vLLM server of its base model, a LoRA student's adapter loaded into it
    TransformersAnswerer models/in_process.py: a model loaded here, batched generation

They differ in how they compute an answer; they share what an answer is keyed by. `request` is the
one request key: the answerer's identity (which model, served how, with which weights), the
messages, the decoding settings in the backend's own spelling, and the sample index (repeated
identical prompts). Every answer is in the store before anyone uses it, so a killed run resumes
where it stopped and a re-run sends nothing.

May import: config, models (store, packaged models, servers, checkpoints).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from agorabench.models.store import Completion, RequestStore, canonical_json, request_key

Conversation = list[dict]
OnDone = Callable[[int], None]  # called with how many answers just became available


@dataclass(frozen=True)
class Decoding:
    """How to decode, whatever the backend. Each answerer spells it its own way (`sampling`)."""

    temperature: float = 0.0
    top_p: float | None = 0.95
    max_new_tokens: int = 1024
    repetition_penalty: float | None = 1.03  # in-process models only: chat APIs have none
    stop: tuple[str, ...] | None = None       # stop strings (generation's "[END]")
    # Judges: the top log-probabilities to return at each reply token (None: none). Only answerers that
    # can give them (`Answerer.gives_logprobs`) ask for them; the request key says whether they did.
    top_logprobs: int | None = None

    def as_dict(self) -> dict:
        """The in-process spelling (and the request key's): what transformers and vLLM take. top_logprobs
        only when set, so that every other request keeps the key it always had."""
        d = {"temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens,
             "repetition_penalty": self.repetition_penalty}
        if self.top_logprobs:
            d["top_logprobs"] = self.top_logprobs
        return d


def chat_sampling(decoding: Decoding, overrides: dict | None = None) -> dict:
    """The chat-API spelling of `decoding`, with a generator's own `sampling:` overrides (a None value
    removes a field, e.g. top_p for an API that refuses it). What an endpoint is sent, what its
    request key holds and what a dataset's manifest records."""
    s = {"temperature": decoding.temperature, "top_p": decoding.top_p, "max_tokens": decoding.max_new_tokens}
    if decoding.stop is not None:
        s["stop"] = list(decoding.stop)
    if decoding.top_logprobs:
        s.update(logprobs=True, top_logprobs=decoding.top_logprobs)
    s.update(overrides or {})
    return {k: v for k, v in s.items() if v is not None}


# What a reply cost: its tokens, its price and how long it took (latency_s: the seconds from sending the
# request to the whole answer; answers run side by side overlap, so a sum of them is answering time, not
# wall time).
USAGE_FIELDS = ("input_tokens", "output_tokens", "cost_usd", "latency_s")


def judge_usage(replies: Sequence) -> dict:
    """What a judge's replies cost: {"requests", *USAGE_FIELDS}, summed over
    the replies it gave (a failure, None, cost nothing it recorded). A reply that is bare text (a judge
    function of the user's) has no usage: the sums are then None, unknown rather than too low. Cached
    replies count at what they cost when they were asked, so a re-run books the same figures; the same
    reply object given for repeated conversations counts once."""
    given = list({id(r): r for r in replies if r is not None}.values())  # one reply to repeated conversations
    out: dict = {"requests": len(given)}
    for name in USAGE_FIELDS:
        values = [r.get(name) if isinstance(r, dict) else getattr(r, name, None) for r in given]
        out[name] = None if any(v is None for v in values) else sum(values)
    return out


def add_usage(total: dict | None, more: dict) -> dict:
    """Two judge_usage sums added (an unknown part makes its field unknown)."""
    if total is None:
        return dict(more)
    return {k: None if total.get(k) is None or more.get(k) is None else total[k] + more[k]
            for k in ("requests", *USAGE_FIELDS)}


# How an evaluation or intrinsic stage says how long it waited on a judge (`agora run` adds it up per
# stage kind: pipeline/run.py, stage_seconds).
JUDGED_LINE = re.compile(r": (?P<n>\d+) judged by (?P<judge>\S+) in (?P<seconds>[\d.]+) s$")


def judged_line(what: str, n: int, judge: str, seconds: float) -> str:
    return f"{what}: {n} judged by {judge} in {seconds:.1f} s"


@dataclass
class RunStats:
    """What an answerer did in this process (not part of any output: a re-run would differ)."""

    sent: int = 0           # requests sent (API attempts)
    completed: int = 0      # new answers stored
    cached: int = 0         # answers served from the store
    retried: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    spent_usd: float = 0.0  # new money spent in this process
    reserved_usd: float = 0.0


class Answerer:
    """A model that answers chat conversations; `identity` names its answers in the request store."""

    gives_logprobs = False  # whether Decoding.top_logprobs gets the reply's log-probabilities back

    def __init__(self, store: RequestStore, identity: dict):
        self.store, self.identity = store, identity
        self.stats = RunStats()

    def sampling(self, decoding: Decoding) -> dict:
        """`decoding` as this backend spells it (part of the request key)."""
        raise NotImplementedError

    def request(self, messages: Conversation, decoding: Decoding, sample_index: int = 0) -> tuple[str, str]:
        """(canonical request JSON, its key): the one key every answerer stores and looks up by."""
        request = canonical_json({**self.identity, "messages": messages, "sampling": self.sampling(decoding),
                                  "sample_index": sample_index})
        return request, request_key(request)

    def answer_many(self, conversations: Sequence[Conversation], decoding: Decoding, sample_index: int = 0,
                    on_done: OnDone | None = None) -> list[Completion | None]:
        """One answer per conversation, from the store where it has them; None where a model kept failing."""
        keyed = [self.request(m, decoding, sample_index) for m in conversations]
        found = self.store.get_many([k for _, k in keyed])
        self.stats.cached += len(found)
        if on_done and found:
            on_done(len(found))
        todo = [i for i, (_, k) in enumerate(keyed) if k not in found]
        # All stored (an evaluate after its stage's prefetch): no model to load, no server to start.
        batches = self._compute([conversations[i] for i in todo], decoding, sample_index) if todo else ()
        for chunk, answers in batches:
            for j, done in zip(chunk, answers):
                request, key = keyed[todo[j]]
                self.store.put(key, self.identity["backend"], self.identity["model"], request, done)
                found[key] = done
                self.stats.completed += 1
            if on_done:
                on_done(len(chunk))
        return [found.get(k) for _, k in keyed]

    def _compute(self, conversations: list[Conversation], decoding: Decoding, sample_index: int):
        """Yield (positions in `conversations`, their completions) as batches finish."""
        raise NotImplementedError

    def judge(self, decoding: Decoding):
        """A JudgeFn (evaluation/context.py) answering with this model: one Completion per conversation
        (None where the model kept failing), so its callers read the text and book its tokens and cost
        (judge_usage). Called with top_logprobs, an answerer that gives them (`gives_logprobs`) asks for
        them and the Completions' logprobs hold them; one that cannot (Anthropic's API, `transformers
        serve`) answers with text only, under the text's request key."""
        def judge_fn(conversations, top_logprobs: int = 0):
            asked = replace(decoding, top_logprobs=top_logprobs) if top_logprobs and self.gives_logprobs else decoding
            # A conversation repeated in the batch (two models gave the same answer) is asked once: sent
            # side by side, both copies would miss the store and be paid for. Its copies get the same
            # Completion, which judge_usage books once.
            conversations = list(conversations)
            keys = [canonical_json(c) for c in conversations]
            first: dict[str, Conversation] = {}  # in the batch's order: without repeats, the same requests as before
            for k, c in zip(keys, conversations):
                first.setdefault(k, c)
            answers = dict(zip(first, self.answer_many(list(first.values()), asked)))
            return [answers[k] for k in keys]

        return judge_fn

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
