"""Shared test set-up: offline, quiet, one thread for torch, one Prefect harness per session."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Before anything imports torch, prefect, dvc or huggingface_hub.
os.environ["OMP_NUM_THREADS"] = "1"
_home = tempfile.mkdtemp(prefix="agora-test-home-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)  # the session's Prefect database and caches go with it
os.environ.setdefault("PREFECT_HOME", os.path.join(_home, "prefect"))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("DVC_SITE_CACHE_DIR", os.path.join(_home, "dvc-site"))
os.environ.setdefault("HF_HOME", os.path.join(_home, "hf"))
os.environ.pop("PREFECT_API_URL", None)
for _key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):  # no real key can leak into a test
    os.environ.pop(_key, None)

from agorabench import env_defaults as offline  # noqa: E402

offline.apply_defaults()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session (~6 s to start), used by the flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def prefect_api_env(prefect_harness) -> dict[str, str]:
    """The session's Prefect server, for the `agora` stage commands a test runs through `dvc repro`:
    without PREFECT_API_URL each of them starts a temporary server of its own (8-11 s on 2 busy cores)."""
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": PREFECT_API_URL.value()}


@pytest.fixture
def fake_server():
    from agorabench.testing.llm_server import FakeLLMServer

    with FakeLLMServer() as server:
        yield server


def download_from(hub, monkeypatch, cache: Path) -> None:
    """Point this process's `hf_hub_download` and `datasets.load_dataset` at the loopback Hub `hub`
    (agorabench.testing.hub_server), online, with a fresh cache: both read their endpoint at import."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", hub.url)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")


def write_params(path: Path, server_url: str, **overrides) -> Path:
    """A params.yaml whose generators talk to the loopback fake server (OpenAI and Anthropic)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["generators"] = {
        "fake": {"backend": "openai", "model": "fake-model", "base_url": server_url + "/v1",
                 "api_key_env": "FAKE_API_KEY", "price_in_per_mtok": 1.0, "price_out_per_mtok": 2.0,
                 "concurrency": 8, "retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05, "timeout_s": 5},
        "fake-claude": {"backend": "anthropic", "model": "claude-fake", "base_url": server_url,
                        "api_key_env": "FAKE_API_KEY", "price_in_per_mtok": 3.0, "price_out_per_mtok": 15.0,
                        "concurrency": 8, "retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05, "timeout_s": 5},
    }
    params["benchmark_generators"] = ["fake"]
    # Students and anchors answer in this process: the tests of vLLM (test_vllm_paths.py) start it themselves.
    params.setdefault("evaluation", {})["engine"] = "transformers"
    params.setdefault("evaluation", {}).update(judge="fake", generators=["fake"])
    params.setdefault("intrinsic", {}).update(judges=["fake"])
    params["generation"]["prompt_dir"] = str(REPO / "agorabench/generation/prompts/default")
    params["generation"]["output_dir"] = str(path.parent / "data/generated")
    params["cache"]["requests_db"] = str(path.parent / ".agora/requests.sqlite")
    for dotted, value in overrides.items():
        node = params
        *head, last = dotted.split(".")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def params_file(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "test-key")
    return write_params(tmp_path / "params.yaml", fake_server.url)


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory) -> str:
    """A 2-layer random Llama saved with SmolLM2's tokenizer (taken from the packaged GGUF)."""
    from transformers import AutoTokenizer

    from agorabench.models.packaged import hf_model_dir
    from agorabench.testing.tiny_models import save_tiny_llama

    tok = AutoTokenizer.from_pretrained(hf_model_dir("smollm2-135m-instruct"))
    return save_tiny_llama(tok, tmp_path_factory.mktemp("tiny-student"))


def query(db, sql: str) -> list[tuple]:
    """Rows of `sql` over the results database `db` (read-only), the connection closed after."""
    from agorabench.results.db import connect

    con = connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()
