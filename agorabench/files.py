"""Faults in the project's own files, and the few ways its files are written and opened.

Owns:
  StorageError    the one exception for a file of ours that cannot be used as it is (corrupt,
                  locked, cut short, a disk that filled while writing it). Its text is one line:
                  the file, what is wrong, what to do, and that nothing stored was lost.
  replacing       the one definition of "write a file atomically": write temporary files beside
                  the real ones, then os.replace them in; a failed or killed write leaves the
                  previous files as they were and is never taken for a finished one.
  write_atomic    replacing() for one text or bytes file.
  replacing_dir   the same for a folder (a checkpoint).
  creating_dir    a folder written once and never replaced (a recorded run): the first writer wins.
  SQLiteFile      the one way the SQLite stores (request store, intrinsic cache) are opened and used.
  file_sha256     a file's SHA-256, read in 1 MiB chunks (model files are gigabytes).

Nothing here deletes, repairs or overwrites a file that cannot be read: the message says how to
move it aside, and what starting afresh would cost.

May import: nothing of agorabench.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# How long a SQLite store waits for another process's write lock before giving up. Writes are
# tiny, so a minute of waiting means the other process holds the lock on purpose (or is stuck).
BUSY_TIMEOUT_S = 60.0


class StorageError(Exception):
    """A file of ours that cannot be read or written; str() is one line naming it and the fix."""


# ---------------------------------------------------------------------------------------------
# A disk that fills up
# ---------------------------------------------------------------------------------------------

# Libraries report a full disk in their own words: OSError's errno (Python, pyarrow, pandas), the
# text of safetensors' SafetensorError ("os error 28"), SQLite's SQLITE_FULL, DuckDB's
# "Could not write file ...: No space left on device" (each seen on a real full tmpfs).
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXTS = ("no space left on device", "disk quota exceeded", "os error 28", "database or disk is full")


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    text = str(exc).lower()
    return any(t in text for t in _FULL_TEXTS)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _free(path: Path) -> str:
    """'1.2 GB free on /data' for the file system that holds `path` (the nearest folder that exists)."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return f"{_size(shutil.disk_usage(folder).free)} free on {folder}"
    except OSError:
        return f"free space on {folder} unknown"


def disk_full_error(path: Path, rerun: str, kept: str) -> StorageError:
    return StorageError(f"{path}: the disk filled up while writing it ({_free(path)}); free some space and "
                        f"re-run {rerun}; {kept}")


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------


def tmp_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place. A fixed name: a killed run's leftover
    is overwritten by the next attempt rather than piling up."""
    return path.with_name(path.name + ".tmp")


@contextmanager
def replacing(*paths: str | Path, rerun: str) -> Iterator[list[Path]]:
    """Temporary paths beside `paths` for the block to write; when it ends without an error, each
    replaces its path (os.replace, in the order given: put the file whose presence says "finished",
    such as a manifest, last).

    Every temporary file is written before any real one is replaced, so a disk that fills up or a
    write that fails leaves all of `paths` as they were, and the partial files are removed. A full
    disk becomes a StorageError naming the file; `rerun` says what writes it again."""
    paths = [Path(p) for p in paths]
    tmps = [tmp_path(p) for p in paths]
    try:
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
        yield tmps
    except BaseException as e:
        # The file being written: the one the error names, else the last temporary file begun.
        begun = [p for p, t in zip(paths, tmps) if t.exists()]
        failed = next((p for p, t in zip(paths, tmps) if str(t) == getattr(e, "filename", None)),
                      begun[-1] if begun else paths[0])
        for t in tmps:
            t.unlink(missing_ok=True)
        if is_disk_full(e):
            kept = "the previous file is unchanged" if failed.exists() else "nothing was written"
            raise disk_full_error(failed, rerun, kept) from None
        raise
    for t, p in zip(tmps, paths):
        os.replace(t, p)


def write_atomic(path: str | Path, data: str | bytes, rerun: str) -> Path:
    """Write `data` (str: UTF-8) to `path` through replacing(): readers see the old file or the new one."""
    with replacing(path, rerun=rerun) as (tmp,):
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def dir_tmp(out: Path) -> Path:
    """The folder a checkpoint is written into before it replaces `out`: a hidden sibling, outside the
    folder DVC tracks."""
    return out.parent / f".{out.name}.tmp"


@contextmanager
def replacing_dir(out: str | Path, rerun: str, *, owner: bool = True) -> Iterator[Path]:
    """A fresh temporary folder beside `out` for the block to fill; when it ends without an error, it
    takes `out`'s place. The previous `out` is renamed aside first and deleted only once the new one
    is in place, so a kill at any moment leaves either the old folder or the new one (under its name
    or, for the instant between the two renames, as the hidden .NAME.old beside it).

    owner=False is for the other processes of a distributed save: they only write into the folder;
    the owner empties it on entry (the block must wait for the owner before writing) and swaps it in.
    A failed write removes the folder; a full disk becomes a StorageError naming `out`."""
    out = Path(out)
    tmp = dir_tmp(out)
    try:
        if owner:
            shutil.rmtree(tmp, ignore_errors=True)  # what a killed run may have left
            tmp.mkdir(parents=True)
        yield tmp
    except BaseException as e:
        if owner:
            shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(e):
            kept = "the previous one is unchanged" if out.exists() else "nothing was written"
            raise disk_full_error(out, rerun, kept) from None
        raise
    if owner:
        old = out.parent / f".{out.name}.old"
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)


class AlreadyThere(Exception):
    """creating_dir: another writer put the folder in place first (the block's work was discarded)."""


@contextmanager
def creating_dir(out: str | Path, rerun: str) -> Iterator[Path]:
    """A temporary folder of this writer's own beside `out` (a unique hidden name: writers in several
    processes never share one) for the block to fill; when it ends without an error it is renamed to
    `out`. For a folder that, once written, is never replaced: if `out` exists by then, the folder is
    discarded and AlreadyThere raised. A kill leaves at most a hidden leftover, never a half-written
    `out`; a failed write removes the folder; a full disk becomes a StorageError naming `out`."""
    out = Path(out)
    tmp = out.parent / f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.mkdir(parents=True)
        yield tmp
        try:
            os.rename(tmp, out)
        except OSError:
            if out.is_dir():
                raise AlreadyThere(str(out)) from None
            raise
    except AlreadyThere:
        raise
    except BaseException as e:
        if is_disk_full(e):
            raise disk_full_error(out, rerun, "nothing was written") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Lines of JSON
# ---------------------------------------------------------------------------------------------


def cut_short(path: Path, line_number: int, rerun: str) -> StorageError:
    """The error for a JSONL file whose last line is incomplete: a write that did not finish."""
    return StorageError(f"{path}: line {line_number}, the last, is cut short (the file was truncated by a write "
                        f"that did not finish); re-run {rerun} to write it whole (nothing else was read from it)")


# ---------------------------------------------------------------------------------------------
# SQLite stores
# ---------------------------------------------------------------------------------------------

# Primary result codes (sqlite3.h), read from sqlite3.Error.sqlite_errorcode (Python 3.11+).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26


def sqlite_fault(path: Path, what: str, rebuild: str, e: sqlite3.Error, waited_s: float) -> StorageError | None:
    """The StorageError for an error of the file itself (locked, corrupt, disk full); None for the
    others (a bug in a query), which stay as they are."""
    code = getattr(e, "sqlite_errorcode", None)
    primary = code & 0xFF if code is not None else None
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in str(e):
        return StorageError(f"{path}: the {what} is locked by another process (waited {waited_s:g} s); let it "
                            f"finish or stop it (`fuser {path}` or `lsof {path}` shows which), then re-run; nothing "
                            f"it held was lost")
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        size = _size(path.stat().st_size) if path.exists() else "?"
        return StorageError(
            f"{path}: the {what} ({size}) is not a readable SQLite database ({e}) and was left untouched; move it "
            f"aside (`mv {path} {path}.corrupt`, and its -wal/-shm files if any) and re-run to start an empty one, "
            f"{rebuild}; `sqlite3 {path}.corrupt .recover` may salvage its rows first")
    if primary == _SQLITE_FULL or is_disk_full(e):
        return disk_full_error(path, "the same command", f"every row the {what} committed before is kept")
    return None


class SQLiteFile:
    """One SQLite file of ours in WAL mode, with one connection shared by the event loop and worker
    threads behind a lock (writes are tiny; a single writer per process avoids SQLITE_BUSY inside
    it). Why WAL: a committed row survives a kill -9 (synchronous=NORMAL loses nothing on a process
    crash, only on power loss), and readers in other processes never block the writer.

    Every use goes through `use()` or `transaction()`, so a locked, corrupt or full file is a
    StorageError naming it whenever it shows up, not only when the file is opened.
    what: what the file is, for messages ("request store"); rebuild: what starting a new one costs
    ("which ..." completing "re-run to start an empty one, ").
    read_only: never create, change or lock the file (a reader beside a running writer)."""

    def __init__(self, path: str | Path, schema: str, *, what: str, rebuild: str, read_only: bool = False):
        self.path, self.what, self.rebuild = Path(path), what, rebuild
        self.timeout_s = BUSY_TIMEOUT_S  # read now, not at import: tests lower the module's value
        self._lock = threading.Lock()
        with self._faults():
            if read_only:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                          timeout=self.timeout_s, isolation_level=None)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, check_same_thread=False, timeout=self.timeout_s,
                                      isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(schema)

    @contextmanager
    def _faults(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            fault = sqlite_fault(self.path, self.what, self.rebuild, e, self.timeout_s)
            if fault is None:
                raise
            raise fault from None

    @contextmanager
    def use(self) -> Iterator[sqlite3.Connection]:
        """The connection, for statements in autocommit mode (each its own commit)."""
        with self._lock, self._faults():
            yield self.db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside BEGIN ... COMMIT: one commit for many rows; rolled back on any error."""
        with self.use() as db:
            db.execute("BEGIN")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the first error is the one to report; SQLite rolls back on close anyway
                raise

    def close(self) -> None:
        with self._lock:
            self.db.close()


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file, read a chunk at a time so that a 6 GB model file costs no memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
