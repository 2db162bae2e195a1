"""Faults in our own files: a corrupt or locked store, a disk that fills up mid-write, a dataset cut
short. Each one is a StorageError from the library whose text is ONE line naming the file and the fix,
and whatever was stored before is still there afterwards. The stages are called as library functions
(no Prefect); `agora` commands that run without Prefect (sql, train --dry-run) check that the CLI
prints such an error as one line with exit status 2.

A full disk is injected (an OSError(ENOSPC), or the exact error text a library gave on a real full
tmpfs) into the write itself; a locked SQLite file is a real exclusive transaction held by another
connection, with a short busy timeout; a locked DuckDB file is held by a real second process."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

import agorabench.files
from agorabench.config import load_params
from agorabench.files import (
    StorageError,
    is_disk_full,
    replacing,
    replacing_dir,
    write_atomic,
)
from agorabench.generation.loop import generate_setting
from agorabench.generation.records import read_instances
from agorabench.intrinsic.cache import ResultCache
from agorabench.intrinsic.run import intrinsic_for_dataset
from agorabench.models.store import Completion, RequestStore
from agorabench.setting import Setting
from agorabench.testing.datasets import instances, write_instances
from agorabench.testing.results_tree import write_tree
from flows.cli import _OneLineUserErrors, app
from tests.conftest import write_params

RG = "response_generation"
ANSWER = Completion("a stored answer", "stop", 3, 4, 0.1, 0.02)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def one_line_error(result, *needles: str) -> str:
    """The CLI's answer to a fault: exit status 2 and a single line `error: ...` holding every needle."""
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}"
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def storage_error(call, *needles: str) -> str:
    """The library's answer to a fault: a StorageError whose text is one line holding every needle."""
    with pytest.raises(StorageError) as err:
        call()
    text = str(err.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    return text


def test_canary_storage_error_rejects_two_lines_another_error_and_a_missing_file_name():
    def raises(e):
        def call():
            raise e
        return call

    with pytest.raises(AssertionError):
        storage_error(raises(StorageError("x.sqlite: locked\nre-run")))
    with pytest.raises(KeyError):
        storage_error(raises(KeyError("x.sqlite")))
    with pytest.raises(AssertionError):
        storage_error(raises(StorageError("the store is locked; re-run")), "x.sqlite")
    assert storage_error(raises(StorageError("x.sqlite: the store is locked; re-run")), "x.sqlite", "re-run")


def test_canary_one_line_error_rejects_a_traceback_and_a_missing_file_name():
    class Result:
        exit_code, output = 2, "error: x.sqlite: locked\nTraceback (most recent call last):\n  ...\n"

    with pytest.raises(AssertionError):
        one_line_error(Result())
    Result.output = "error: the store is locked; re-run\n"
    with pytest.raises(AssertionError):
        one_line_error(Result(), "x.sqlite")
    Result.output = "error: x.sqlite: the store is locked; re-run\n"
    assert one_line_error(Result(), "x.sqlite", "re-run")


def digests(*paths: Path) -> dict[str, str]:
    """sha256 of every file under `paths` (files or folders), by path."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")) if p.is_dir() else [])
             if f.is_file()]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def leftovers(root: Path) -> list[str]:
    """Temporary files or folders a write left behind under `root`."""
    return sorted(str(p) for p in root.rglob("*") if p.name.endswith((".tmp", ".old")))


@contextlib.contextmanager
def sqlite_held(path: Path):
    """Another connection holding the file's write lock (BEGIN EXCLUSIVE) until the block ends."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        con.execute("ROLLBACK")
        con.close()


@contextlib.contextmanager
def duckdb_held(path: Path):
    """A second process holding the DuckDB file open for writing (as a DuckDB shell or notebook would)."""
    code = ("import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def store_with_canary(path: Path) -> None:
    store = RequestStore(path)
    store.put("canary", "openai", "fake-model", {"messages": ["canary"]}, ANSWER)
    store.close()


def canary_answer(path: Path) -> Completion | None:
    store = RequestStore(path)
    try:
        return store.get_many(["canary"]).get("canary")
    finally:
        store.close()


def store_rows(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM responses").fetchone()[0]
    finally:
        con.close()


@pytest.fixture
def project(tmp_path, fake_server, monkeypatch) -> Path:
    """A params.yaml in tmp_path (the working directory) whose generator is the loopback fake server."""
    monkeypatch.setenv("FAKE_API_KEY", "k")
    monkeypatch.chdir(tmp_path)
    return write_params(tmp_path / "params.yaml", fake_server.url,
                        **{"intrinsic.cache_db": str(tmp_path / ".agora/intrinsic-cache.sqlite"),
                           "analysis.results_dir": str(tmp_path / "data/results")})


def generate(params_file: Path, num: int = 2) -> dict:
    """What `agora generate -g fake -m response_generation -d math -n NUM` runs: the manifest, with `run`."""
    params = load_params(params_file)
    return asyncio.run(generate_setting(params, "fake", "math", RG, num=num, progress=False))


def intrinsic(params_file: Path) -> dict:
    return intrinsic_for_dataset(load_params(params_file), "fake", "math", RG, log=lambda line: None)


# ---------------------------------------------------------------------------------------------
# The request store
# ---------------------------------------------------------------------------------------------


def test_corrupt_request_store_is_one_line_and_left_untouched(project):
    store = project.parent / ".agora/requests.sqlite"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"not a database, only text that was once an answer store\n" * 40)
    before = digests(store.parent)

    storage_error(lambda: generate(project), f"{store}: the request store", "not a readable SQLite database",
                  f"mv {store} {store}.corrupt", "sends every request it answered again")
    assert digests(store.parent) == before  # not repaired, replaced or joined by -wal/-shm files
    with pytest.raises(StorageError, match="requests.sqlite: the request store .* is not a readable SQLite"):
        RequestStore(store)

    # canary: doing what the line says works, and the moved file is still byte for byte what it was
    store.rename(store.with_name("requests.sqlite.corrupt"))
    assert generate(project)["num_valid"] == 2
    assert hashlib.sha256(store.with_name("requests.sqlite.corrupt").read_bytes()).hexdigest() == before[str(store)]


def test_prefect_terminal_shows_a_user_error_once_and_other_errors_whole():
    quiet = _OneLineUserErrors()

    def record(msg, exc=None):
        return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, msg, None,
                                 (type(exc), exc, None) if exc else None)

    err = StorageError("/x/requests.sqlite: the request store is locked by another process")
    # a task whose retry condition refused the error: only its state is logged
    assert not quiet.filter(record(f"Finished in state Failed('Task run encountered an exception StorageError: "
                                   f"{err}')"))
    assert not quiet.filter(record("Encountered exception during execution: %r", err))
    assert not quiet.filter(record(f"Finished in state Failed('Flow run encountered an exception: {err}')"))
    # canary: a bug keeps its traceback, and unrelated lines pass
    assert quiet.filter(record("Encountered exception during execution", KeyError("instruction")))
    assert quiet.filter(record("Finished in state Failed('Task run encountered an exception KeyError: 'x'')"))
    assert quiet.filter(record("Finished in state Completed()"))


def test_locked_request_store_is_one_line_and_keeps_what_it_holds(project, monkeypatch):
    store = project.parent / ".agora/requests.sqlite"
    store_with_canary(store)
    monkeypatch.setattr(agorabench.files, "BUSY_TIMEOUT_S", 0.2)
    with sqlite_held(store):
        storage_error(lambda: generate(project), f"{store}: the request store is locked by another process",
                      "re-run")
    assert canary_answer(store).text == ANSWER.text and store_rows(store) == 1  # nothing written, nothing lost
    opened = RequestStore(store)
    with pytest.raises(StorageError, match="requests.sqlite: the request store is locked"), sqlite_held(store):
        opened.put("k", "openai", "fake-model", "{}", ANSWER)
    opened.close()

    # canary: once the other process lets go, the same command runs and stores its answers
    assert generate(project)["num_valid"] == 2
    assert store_rows(store) > 1 and canary_answer(store).text == ANSWER.text


# ---------------------------------------------------------------------------------------------
# The intrinsic cache
# ---------------------------------------------------------------------------------------------


def test_corrupt_intrinsic_cache_is_one_line_and_left_untouched(project):
    params = load_params(project)
    write_instances(Setting("fake", RG, "math").dataset(params)["data"],
                    instances("fake", RG, "math", [("What is 1 + 1?", "2")]))
    cache = Path(params.intrinsic.cache_db)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(b"\x00garbage where the cache was" * 100)
    before = digests(cache.parent)
    storage_error(lambda: intrinsic(project), f"{cache}: the intrinsic cache", "not a readable SQLite database",
                  f"mv {cache} {cache}.corrupt", "computes every dataset's intrinsic metrics again")
    assert digests(cache.parent) == before
    assert not Setting("fake", RG, "math").intrinsic(params)["parquet"].exists()

    # canary: a healthy cache opens and returns what it holds
    cache.rename(cache.with_name("moved.corrupt"))
    with ResultCache(cache) as c:
        c.put_many("quality", [("canary", {"score": 4})])
    with ResultCache(cache) as c:
        assert c.get_many(["canary"]) == {"canary": {"score": 4}}


def test_locked_intrinsic_cache_is_a_storage_error_and_keeps_its_rows(tmp_path, monkeypatch):
    path = tmp_path / "cache.sqlite"
    with ResultCache(path) as c:
        c.put_many("quality", [("canary", {"score": 4})])
    monkeypatch.setattr(agorabench.files, "BUSY_TIMEOUT_S", 0.2)
    cache = ResultCache(path)
    with sqlite_held(path), pytest.raises(StorageError) as err:
        cache.put_many("quality", [("new", {"score": 1})])
    assert str(err.value).startswith(f"{path}: the intrinsic cache is locked by another process (waited 0.2 s)")
    assert "\n" not in str(err.value)
    assert cache.get_many(["canary", "new"]) == {"canary": {"score": 4}}  # rolled back, nothing lost
    # canary: without the other writer the same write goes through
    cache.put_many("quality", [("new", {"score": 1})])
    assert set(cache.get_many(["canary", "new"])) == {"canary", "new"}
    cache.close()


# ---------------------------------------------------------------------------------------------
# The results database
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def results_tree(tmp_path, monkeypatch):
    """Pipeline outputs, their Parquet and agora.duckdb, and a params.yaml that points at them."""
    from agorabench.results.db import build_results

    monkeypatch.chdir(tmp_path)
    tree = write_tree(tmp_path / "root", generators=("alpha",))
    build_results(tree.params)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(tree.params.model_dump(mode="json"), sort_keys=False))
    return tree, params_file


def sql(params_file: Path, query: str = "SELECT count(*) AS n FROM instances"):
    return CliRunner().invoke(app, ["sql", query, "--params", str(params_file)])


def test_corrupt_results_database_is_one_line_and_not_rebuilt_over(results_tree):
    from agorabench.results.db import build_db

    tree, params_file = results_tree
    db = tree.out / "agora.duckdb"
    db.write_bytes(b"half a database " * 500)
    before = digests(tree.out)
    one_line_error(sql(params_file), str(db), "cannot be read", f"mv {db} {db}.corrupt", "agora results",
                   "nothing is lost")
    assert digests(tree.out) == before
    os.utime(tree.out / "instances.parquet")  # newer Parquet: `agora sql` would rebuild a healthy database
    before = digests(tree.out)
    one_line_error(sql(params_file), str(db), "cannot be read")
    with pytest.raises(StorageError, match="the results database cannot be read"):
        build_db(tree.out)
    assert digests(tree.out) == before and leftovers(tree.out) == []

    # canary: moved aside as the line says, the database is built again from the Parquet
    db.rename(db.with_name("agora.duckdb.corrupt"))
    result = sql(params_file)
    assert result.exit_code == 0 and "(1 row)" in result.output, result.output
    assert db.is_file()


def test_locked_results_database_is_one_line_and_not_replaced(results_tree):
    from agorabench.results.db import build_db

    tree, params_file = results_tree
    db = tree.out / "agora.duckdb"
    inode = db.stat().st_ino
    with duckdb_held(db) as pid:
        one_line_error(sql(params_file), str(db), f"in use by process {pid}", "close that connection")
        os.utime(tree.out / "instances.parquet")  # stale: a rebuild would replace the file under the holder
        one_line_error(sql(params_file), str(db), f"in use by process {pid}")
        with pytest.raises(StorageError, match="in use by process"):
            build_db(tree.out)
        assert db.stat().st_ino == inode  # the holder's file is still the database
    # canary: once the other process has closed it, the same query runs
    result = sql(params_file)
    assert result.exit_code == 0 and "(1 row)" in result.output, result.output


# ---------------------------------------------------------------------------------------------
# A disk that fills up
# ---------------------------------------------------------------------------------------------


def enospc(path) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def test_full_disk_while_writing_a_dataset_keeps_the_previous_one_and_the_answers(project, fake_server,
                                                                                  monkeypatch):
    assert generate(project, num=2)["num_valid"] == 2  # canary: the dataset a later run must not damage
    params = load_params(project)
    paths = Setting("fake", RG, "math").dataset(params)
    before = digests(*paths.values())
    assert len(before) == 3

    real_write_text = Path.write_text

    def fills_up(self, text, *args, **kwargs):
        if self.name.endswith(".rejected.jsonl.tmp"):  # the second of the three files
            real_write_text(self, text[: len(text) // 2], *args, **kwargs)
            raise enospc(self)
        return real_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fills_up)
    storage_error(lambda: generate(project, num=3), f"{paths['rejected']}: the disk filled up", "free some space",
                  "agora generate", "the previous file is unchanged")
    assert digests(*paths.values()) == before and leftovers(paths["data"].parent) == []
    sent = fake_server.request_count

    # canary: with space again the run finishes, every answer from the store (none paid twice)
    monkeypatch.setattr(Path, "write_text", real_write_text)
    manifest = generate(project, num=3)
    assert manifest["num_valid"] == 3 and manifest["run"]["requests_sent"] == 0
    assert fake_server.request_count == sent
    assert len(read_instances(paths["data"], "x")) == 3


def test_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, tiny_student, monkeypatch):
    import transformers.modeling_utils
    from safetensors import SafetensorError

    from agorabench.training.sft import train_student

    monkeypatch.chdir(tmp_path)
    params_file = write_params(tmp_path / "params.yaml", "http://127.0.0.1:9", **{
        "student.base": tiny_student, "training.max_length": 128, "training.packing": False,
        "training.max_steps": 1, "training.per_device_batch_size": 2, "training.lora": None,
        "training.output_dir": str(tmp_path / "data/checkpoints"), "training.logs_dir": str(tmp_path / "data/train")})
    params = load_params(params_file)
    setting = Setting("fake", RG, "math")
    write_instances(setting.dataset(params)["data"], instances("fake", RG, "math", [("1 + 1?", "2"), ("2 + 2?", "4")]))
    assert train_student(params, "fake", "math", RG)["trained"]  # canary: the checkpoint a later run must not damage
    out = setting.checkpoint(params)
    before = digests(out)
    assert any(p.endswith(".safetensors") for p in before)

    real_save = transformers.modeling_utils.safe_save_file

    def fills_up(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 1000)  # part of the weights, then the disk is full
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", fills_up)
    storage_error(lambda: train_student(params, "fake", "math", RG), f"{out}: the disk filled up",
                  "agora train --generator fake", "the previous one is unchanged")
    assert digests(out) == before and leftovers(out.parent) == []
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", real_save)


def test_full_disk_while_writing_the_results_parquet_keeps_the_previous_tables(results_tree, monkeypatch):
    from agorabench.results.db import build_results

    tree, _ = results_tree
    before = digests(tree.out)
    assert sum(p.endswith(".parquet") for p in before) >= 5
    real_write_table = pq.write_table
    written = []

    def fills_up(table, where, **kwargs):
        written.append(where)
        if len(written) == 3:  # two whole tables written, then the disk fills up in the third
            Path(where).write_bytes(b"PAR1")
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        return real_write_table(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", fills_up)
    storage_error(lambda: build_results(tree.params), f"{tree.out}/", "the disk filled up", "agora results")
    assert digests(tree.out) == before and leftovers(tree.out) == []  # no mix of old and new tables
    # canary: with space again `agora results` writes them all
    monkeypatch.setattr(pq, "write_table", real_write_table)
    build_results(tree.params)
    assert digests(tree.out) != before and leftovers(tree.out) == []


def test_full_disk_while_writing_evaluation_items_keeps_the_previous_result(tmp_path, tiny_student, fake_server,
                                                                             monkeypatch):
    from agorabench.evaluation.run import evaluate, output_paths, resolve_model_ref

    monkeypatch.setenv("FAKE_API_KEY", "k")
    params = load_params(write_params(tmp_path / "params.yaml", fake_server.url, **{
        "student.base": tiny_student, "student.reference": tiny_student, "evaluation.limit": 2,
        "evaluation.limits": {}, "evaluation.output_dir": str(tmp_path / "data/eval")}))
    evaluate(params, "generator:fake", "gsm8k")  # canary: the result a later run must not damage
    paths = output_paths(params, resolve_model_ref(params, "generator:fake"), "gsm8k")
    before = digests(*paths.values())
    assert len(before) == 2

    def fills_up(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1")
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pq, "write_table", fills_up)
    with pytest.raises(StorageError) as err:
        evaluate(params, "generator:fake", "gsm8k")
    assert str(err.value).startswith(f"{paths['items']}: the disk filled up while writing it")
    assert "agora evaluate --model generator:fake --benchmark gsm8k" in str(err.value) and "\n" not in str(err.value)
    assert digests(*paths.values()) == before and leftovers(paths["items"].parent) == []


# ---------------------------------------------------------------------------------------------
# A dataset cut short
# ---------------------------------------------------------------------------------------------


def cut_dataset(params) -> tuple[Path, bytes]:
    """A 3-instance dataset whose last line stops in the middle; returns its path and its whole bytes."""
    path = Setting("fake", RG, "math").dataset(params)["data"]
    rows = instances("fake", RG, "math", [(f"What is {k} + {k}?", f"{2 * k}") for k in range(3)])
    whole = write_instances(path, rows).read_bytes()
    path.write_bytes(whole[: len(whole) - 40])
    return path, whole


def test_truncated_dataset_is_one_line_for_training_and_intrinsic(project):
    params = load_params(project)
    path, whole = cut_dataset(params)
    cut = path.read_bytes()
    needles = (str(path), "line 3, the last, is cut short", "agora generate")
    runner = CliRunner()
    one_line_error(runner.invoke(app, ["train", "-g", "fake", "-m", RG, "-d", "math", "--params", str(project),
                                       "--dry-run"]), *needles)
    storage_error(lambda: intrinsic(project), *needles)
    with pytest.raises(StorageError, match="line 3, the last, is cut short"):
        read_instances(path, "fake/response_generation/math")
    assert path.read_bytes() == cut  # read, never "repaired"

    # canary: the whole file reads, and a last line that is complete but lacks its newline is not "cut"
    path.write_bytes(whole)
    result = runner.invoke(app, ["train", "-g", "fake", "-m", RG, "-d", "math", "--params", str(project), "--dry-run"])
    assert result.exit_code == 0 and "3 examples" in result.output, result.output
    path.write_bytes(whole.rstrip(b"\n"))
    assert len(read_instances(path, "x")) == 3
    # ... and a broken line in the middle is a bad line, not a cut one
    lines = whole.splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[1][:20] + b"\n" + lines[2])
    with pytest.raises(ValueError, match=r"line 2: not valid JSON") as err:
        read_instances(path, "x")
    assert not isinstance(err.value, StorageError)


def test_truncated_dataset_is_one_line_for_results(results_tree):
    from agorabench.results.db import build_results

    tree, _ = results_tree
    path = tree.generated / "alpha" / RG / "math.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole[:-30])
    before = digests(tree.out)
    storage_error(lambda: build_results(tree.params), str(path), "line 3, the last, is cut short", "agora generate")
    assert digests(tree.out) == before
    # canary: a file that lost whole lines (cut at a line's end) does not match its manifest's count
    path.write_bytes(b"".join(whole.splitlines(keepends=True)[:2]))
    with pytest.raises(ValueError, match="2 instances but its manifest says 3") as err:
        build_results(tree.params)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    path.write_bytes(whole)
    build_results(tree.params)


# ---------------------------------------------------------------------------------------------
# The helpers themselves
# ---------------------------------------------------------------------------------------------


def test_replacing_writes_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_atomic(a, "old a", "x")
    write_atomic(b, "old b", "x")
    with pytest.raises(StorageError, match=r"b\.json: the disk filled up .*re-run `make it`; the previous file"):
        with replacing(a, b, rerun="`make it`") as (ta, tb):
            ta.write_text("new a")
            tb.write_text("half")
            raise enospc(tb)
    assert (a.read_text(), b.read_text()) == ("old a", "old b") and leftovers(tmp_path) == []
    with pytest.raises(KeyError):  # another error is not a storage fault: it stays itself
        with replacing(a, rerun="x") as (ta,):
            ta.write_text("new a")
            raise KeyError("bug")
    assert a.read_text() == "old a" and leftovers(tmp_path) == []
    # canary: a block that ends well replaces both
    with replacing(a, b, rerun="x") as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b") and leftovers(tmp_path) == []


def test_replacing_dir_keeps_the_old_folder_until_the_new_one_is_whole(tmp_path):
    out = tmp_path / "ckpt"
    with replacing_dir(out, "x") as tmp:
        (tmp / "w.bin").write_bytes(b"old")
    with pytest.raises(StorageError, match=r"ckpt: the disk filled up .*the previous one is unchanged"):
        with replacing_dir(out, "`agora train`") as tmp:
            (tmp / "w.bin").write_bytes(b"ne")
            raise enospc(tmp / "w.bin")
    assert (out / "w.bin").read_bytes() == b"old" and leftovers(tmp_path) == []
    # canary: a whole new folder takes the old one's place
    with replacing_dir(out, "x") as tmp:
        (tmp / "w.bin").write_bytes(b"new")
    assert [p.name for p in out.iterdir()] == ["w.bin"] and (out / "w.bin").read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_disk_full_is_recognised_in_each_library_s_words():
    for real in (OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device"),
                 RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
                 sqlite3.OperationalError("database or disk is full"),
                 RuntimeError('Failed to commit: Could not write file "x.wal": No space left on device'),
                 OSError(errno.EDQUOT, "Disk quota exceeded")):
        assert is_disk_full(real), real
    # canary: other failures are not taken for a full disk
    for other in (OSError(errno.EACCES, "Permission denied"), ValueError("bad value"),
                  sqlite3.OperationalError("no such table: responses")):
        assert not is_disk_full(other), other
