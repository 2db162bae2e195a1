"""kill -9 in the middle of `agora generate`, then run it again: it completes, and no request whose
answer had been stored before the kill is sent again."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from agorabench.config import load_params
from agorabench.setting import Setting
from agorabench.testing.llm_server import FakeLLMServer
from tests.conftest import REPO, write_params


def stored_messages(db) -> set[str]:
    if not db.exists():
        return set()
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT request FROM responses").fetchall()
    except sqlite3.OperationalError:  # the table is not created yet
        return set()
    finally:
        con.close()
    return {json.dumps(json.loads(r[0])["messages"], sort_keys=True) for r in rows}


@pytest.mark.slow
def test_kill_minus_9_then_resume_pays_nothing_twice(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "k")
    with FakeLLMServer(latency_s=0.15) as server:
        params_file = write_params(tmp_path / "params.yaml", server.url, **{"generators.fake.concurrency": 2})
        params = load_params(params_file)
        db = tmp_path / ".agora/requests.sqlite"
        cmd = [sys.executable, "-m", "flows", "generate", "-g", "fake", "-d", "general",
               "-m", "response_generation", "-n", "40", "--params", str(params_file)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}

        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while len(stored_messages(db)) < 8:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.time() < deadline, "the run never got going"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its Prefect server, everything
        proc.wait()
        paid_before_kill = stored_messages(db)
        received_before = len(server.received)
        assert 8 <= len(paid_before_kill) < 40, "the kill must land mid-run"

        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

        resent = [json.dumps(b["messages"], sort_keys=True) for b in server.received[received_before:]]
        assert not paid_before_kill & set(resent), "a request answered before the kill was sent again"
        # Only what was not stored (never answered, or in flight at the kill) was asked again.
        assert len(set(resent)) == 40 - len(paid_before_kill)
        rows = Setting("fake", "response_generation", "general").dataset(params)["data"].read_text().splitlines()
        assert len(rows) == 40
        assert "40/40 valid" in done.stdout

        # Canary: without the store (a fresh database) the same check does see re-sent requests.
        import asyncio

        from agorabench.generation.loop import generate_setting

        mark = len(server.received)
        fresh = params.model_copy(update={"cache": params.cache.model_copy(update={"requests_db": str(tmp_path / "fresh.sqlite")})})
        asyncio.run(generate_setting(fresh, "fake", "general", "response_generation", num=40, progress=False))
        again = {json.dumps(b["messages"], sort_keys=True) for b in server.received[mark:]}
        assert paid_before_kill <= again
