"""The request store: every completed API response, written to SQLite before anything uses it.

Why SQLite in WAL mode (agorabench.files.SQLiteFile): a `kill -9` can land at any instant, and a
committed row survives it; readers in other processes (parallel DVC stages, Dask workers) never
block the writer. The key covers everything that determines the answer (backend, model, full
messages, sampling parameters, sample index), so a re-run asks the store first and pays only for
what is missing. A corrupt, locked or full store is a one-line StorageError, never replaced.

A judge asked for log-probabilities gets them back from the store too (column logprobs, JSON): per
reply token, the token, its log-probability and the top alternatives at that position, for the first
LOGPROB_POSITIONS tokens. Why only those: the judges that ask for them are told to reply with a verdict
tag and nothing else, so the verdict is among the first few tokens; a judge that writes its verdict later
is read from its text. Twenty alternatives at every token of a 4,096-token critique would be ~1 MB a reply.
"""
from __future__ import annotations

import asyncio
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from agorabench.files import SQLiteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key           TEXT PRIMARY KEY,
    backend       TEXT NOT NULL,
    model         TEXT NOT NULL,
    request       TEXT NOT NULL,   -- canonical JSON of what was asked
    text          TEXT NOT NULL,
    finish_reason TEXT,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    latency_s     REAL NOT NULL,
    cost_usd      REAL NOT NULL,
    created_at    REAL NOT NULL,
    logprobs      TEXT             -- JSON [[token, logprob, [[alternative, logprob], ...]], ...] or NULL
);
CREATE TABLE IF NOT EXISTS failures (
    key        TEXT NOT NULL,
    backend    TEXT NOT NULL,
    model      TEXT NOT NULL,
    error      TEXT NOT NULL,
    retryable  INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""


INSERT_RESPONSE = ("INSERT OR IGNORE INTO responses (key, backend, model, request, text, finish_reason, input_tokens,"
                   " output_tokens, latency_s, cost_usd, created_at, logprobs) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")
LOGPROB_POSITIONS = 64  # reply tokens whose log-probabilities are kept (see the module docstring)

# One reply token: (token, its logprob, ((alternative, logprob), ...) the top alternatives there).
TokenLogprobs = tuple[str, float, tuple[tuple[str, float], ...]]

# What a new, empty store costs (said when the old one cannot be read and must be moved aside).
REBUILD = "which sends every request it answered again (their API spend once more)"


def open_store(path: str | Path, read_only: bool = False) -> SQLiteFile:
    """The request store's SQLite file (read_only: for readers beside a running generation)."""
    return SQLiteFile(path, SCHEMA, what="request store", rebuild=REBUILD, read_only=read_only)


def canonical_json(obj) -> str:
    # orjson: sorted keys, no whitespace, UTF-8; about ten times faster than json.dumps, which
    # matters at a thousand requests a second on two cores.
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()


def request_key(request: dict | str) -> str:
    """sha256 of the canonical JSON (pass the JSON string itself to avoid encoding twice)."""
    text = request if isinstance(request, str) else canonical_json(request)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    input_tokens: int
    output_tokens: int
    latency_s: float
    cost_usd: float
    cached: bool = False
    # The reply's first tokens with their top alternatives, where they were asked for and the backend
    # gives them (OpenAI-compatible logprobs / top_logprobs, or a model run here); else None.
    logprobs: tuple[TokenLogprobs, ...] | None = None


def alternatives(position: TokenLogprobs) -> list[tuple[str, float]]:
    """(token, logprob) at one reply position: its top alternatives, with the sampled token added when a
    backend left it out of them (it is always there at temperature 0)."""
    token, logprob, top = position
    pairs = [(t, float(lp)) for t, lp in top]
    if token not in {t for t, _ in pairs}:
        pairs.append((token, float(logprob)))
    return pairs


def _finite(logprob) -> float:
    # An impossible token may come back as -inf (or None); JSON has no infinity, and -1e4 is as impossible.
    return -1e4 if logprob is None or not math.isfinite(logprob) else max(float(logprob), -1e4)


def token_logprobs(logprobs) -> tuple[TokenLogprobs, ...] | None:
    """An OpenAI-compatible choice's `logprobs` (the SDK's ChoiceLogprobs: content = [{token, logprob,
    top_logprobs}]; OpenAI's API and vLLM's server) as Completion.logprobs: the first LOGPROB_POSITIONS
    tokens. None when the server sent none."""
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return None
    return tuple((t.token, _finite(t.logprob), tuple((a.token, _finite(a.logprob)) for a in (t.top_logprobs or ())))
                 for t in content[:LOGPROB_POSITIONS])


def logprobs_json(logprobs) -> str | None:
    """The stored form of Completion.logprobs (first LOGPROB_POSITIONS tokens)."""
    if logprobs is None:
        return None
    # The model run here and the clients cut already; a caller's own Completion is cut here.
    return orjson.dumps([[t, lp, [list(a) for a in alts]] for t, lp, alts in logprobs[:LOGPROB_POSITIONS]]).decode()


def logprobs_from_json(text: str | None) -> tuple[TokenLogprobs, ...] | None:
    if text is None:
        return None
    return tuple((t, lp, tuple((a, b) for a, b in alts)) for t, lp, alts in orjson.loads(text))


class RequestStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = open_store(self.path)
        with self._file.use() as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(responses)")}
            if "logprobs" not in columns:  # a store written before judges read log-probabilities
                db.execute("ALTER TABLE responses ADD COLUMN logprobs TEXT")
        self._pending: list[tuple[tuple, asyncio.Future]] = []  # put_async rows awaiting their commit
        self._spent, self._spent_upto = 0.0, 0  # spent_usd's running sum and the last rowid it read

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        """One query for a whole batch: a re-run checks a thousand keys in a millisecond or two."""
        found: dict[str, Completion] = {}
        with self._file.use() as db:
            for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
                chunk = keys[start:start + 500]
                rows = db.execute(
                    "SELECT key, text, finish_reason, input_tokens, output_tokens, latency_s, cost_usd, logprobs "
                    f"FROM responses WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
                found.update({r[0]: Completion(*r[1:7], cached=True, logprobs=logprobs_from_json(r[7])) for r in rows})
        return found

    @staticmethod
    def _row(key: str, backend: str, model: str, request: dict | str, c: Completion) -> tuple:
        text = request if isinstance(request, str) else canonical_json(request)
        return (key, backend, model, text, c.text, c.finish_reason,
                c.input_tokens, c.output_tokens, c.latency_s, c.cost_usd, time.time(), logprobs_json(c.logprobs))

    def put(self, key: str, backend: str, model: str, request: dict | str, c: Completion) -> None:
        row = self._row(key, backend, model, request, c)
        with self._file.use() as db:
            db.execute(INSERT_RESPONSE, row)

    async def put_async(self, key: str, backend: str, model: str, request: dict | str, c: Completion) -> None:
        """put() for the event loop. The answers that arrive during one pass of the loop are committed
        together, in one transaction, at the start of the next pass, and each caller returns only once
        its own row is committed: nothing is used before it is stored, and what a kill -9 can lose is
        what it could lose before, an answer its caller has not seen yet.

        Why: a commit costs about twenty system calls (locks, WAL frames) however few rows it holds,
        and at hundreds of answers a second about ten arrive per pass. Committing each one alone was
        the client's largest cost outside the SDK (benchmarks/generation_throughput.py). Unlike a
        writer thread, this adds no hand-off between threads. One event loop at a time."""
        loop = asyncio.get_running_loop()
        stored = loop.create_future()
        self._pending.append((self._row(key, backend, model, request, c), stored))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        await stored

    def _flush(self) -> None:
        """Commit the rows put_async has collected, and wake their callers."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            if len(pending) == 1:
                with self._file.use() as db:
                    db.execute(INSERT_RESPONSE, pending[0][0])
            else:
                with self._file.transaction() as db:
                    db.executemany(INSERT_RESPONSE, [row for row, _ in pending])
        except Exception as e:  # each waiting caller raises, as its own put() would have
            for _, stored in pending:
                if not stored.done():
                    stored.set_exception(e)
        else:
            for _, stored in pending:
                if not stored.done():  # a caller cancelled meanwhile: its row is stored all the same
                    stored.set_result(None)

    def record_failure(self, key: str, backend: str, model: str, error: str, retryable: bool) -> None:
        with self._file.use() as db:
            db.execute(
                "INSERT INTO failures VALUES (?,?,?,?,?,?)",
                (key, backend, model, error[:2000], int(retryable), time.time()),
            )

    def spent_usd(self) -> float:
        """What every recorded answer cost, summed: the project's spend so far (a cached answer was
        recorded once, so it counts once). Any process may have written since the last call; only the
        rows added since then are read (rowids only grow: nothing is ever deleted), so the spending cap
        can ask before every paid request."""
        with self._file.use() as db:
            total, last = db.execute("SELECT total(cost_usd), max(rowid) FROM responses WHERE rowid > ?",
                                     (self._spent_upto,)).fetchone()
        if last is not None:
            self._spent, self._spent_upto = self._spent + total, last
        return self._spent

    def mean_output_tokens(self, backend: str, model: str) -> float | None:
        with self._file.use() as db:
            row = db.execute(
                "SELECT avg(output_tokens), count(*) FROM responses WHERE backend=? AND model=?",
                (backend, model),
            ).fetchone()
        return row[0] if row and row[1] else None

    def close(self) -> None:
        self._flush()  # rows of callers that were cancelled before their pass came
        self._file.close()
