"""Per-instance results of the intrinsic metrics, kept in SQLite across runs and datasets.

A key is the sha256 of everything that determines one result - the metric, its settings (model
identity, prompt version, max length, ...) and exactly the texts it reads (difficulty reads only the
instruction, so datasets that share instructions share those judgements). Adding a dataset or a
metric therefore computes only what is new. Judge replies are cached a second time, as raw
requests, by the request store; this cache holds the parsed numbers and skips even the parsing.

Only results that a re-run would reproduce are stored: a judge error is not, so the next run asks
again. Opened as the request store is (agorabench.files.SQLiteFile: WAL mode, so parallel DVC
stages can share the file; a corrupt, locked or full cache is a one-line StorageError, never replaced).
"""
from __future__ import annotations

import time
from pathlib import Path

from agorabench.files import SQLiteFile
from agorabench.models.store import canonical_json, request_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key        TEXT PRIMARY KEY,
    metric     TEXT NOT NULL,
    value      TEXT NOT NULL,   -- JSON of the result fields
    created_at REAL NOT NULL
);
"""


# What a new, empty cache costs (said when the old one cannot be read and must be moved aside).
REBUILD = ("which computes every dataset's intrinsic metrics again (judge answers come back from the request "
           "store, free; reward, perplexity and embeddings run locally)")


def result_key(metric: str, settings: dict, **texts: str | None) -> str:
    return request_key(canonical_json({"metric": metric, "settings": settings, "texts": texts}))


class ResultCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = SQLiteFile(self.path, SCHEMA, what="intrinsic cache", rebuild=REBUILD)

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        import orjson

        found: dict[str, dict] = {}
        unique = list(dict.fromkeys(keys))
        with self._file.use() as db:
            for start in range(0, len(unique), 500):  # SQLite's bound-parameter limit
                chunk = unique[start:start + 500]
                rows = db.execute(f"SELECT key, value FROM results WHERE key IN ({','.join('?' * len(chunk))})",
                                  chunk).fetchall()
                found.update({k: orjson.loads(v) for k, v in rows})
        return found

    def put_many(self, metric: str, items: list[tuple[str, dict]]) -> None:
        now = time.time()
        with self._file.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO results VALUES (?,?,?,?)",
                           [(k, metric, canonical_json(v), now) for k, v in items])

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["ResultCache", "result_key"]
