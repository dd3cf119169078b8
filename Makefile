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

.PHONY: serve test lint format proto setup-server setup-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps depend on pyproject.toml: editing dependencies reinstalls, nothing else does.
$(VENV)/.server-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[server]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(BUF):
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
test: setup-dev lint
	PATH="$(CURDIR)/$(BUF_DIR)/node_modules/.bin:$$PATH" $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
