# The two commands that matter: `make demo` and `make test`. Everything else is a step they use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: deps system venv tools controlplane lint test test-kind demo bench bench-smoke clean

deps: system venv tools controlplane

system:
	@bash scripts/ensure_system.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Both locks: requirements-runtime.lock is what the images install, requirements-dev.lock the tests,
# sandbox, benchmarks and lint on top of it.
$(VENV)/.installed: requirements-runtime.lock requirements-dev.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-runtime.lock -r requirements-dev.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(VENV)/.installed

tools: $(BIN)/helm

# The upstream kube-apiserver, etcd, kube-controller-manager and kube-scheduler, built from Go
# modules (controlplane/) once per machine and cached outside the repo by a hash of the inputs.
controlplane: | $(VENV)/.installed
	$(BIN)/python -m receiptsync_sandbox.controlplane.build

$(BIN)/helm: | $(VENV)/.installed
	$(BIN)/python scripts/install_tools.py $(BIN)

# ruff's rules are in pyproject.toml ([tool.ruff]); lint runs before any test.
lint: | $(VENV)/.installed
	$(BIN)/ruff check .

test: deps lint
	$(BIN)/python -m pytest tests -m "not kind" $(PYTEST_ARGS)

test-kind: deps
	$(BIN)/python -m pytest tests -m kind $(PYTEST_ARGS)

demo: deps
	$(BIN)/python -m receiptsync_sandbox.demo

bench: deps
	$(BIN)/python -m bench

bench-smoke: deps
	$(BIN)/python -m bench --smoke

clean:
	rm -rf $(VENV) .pytest_cache
