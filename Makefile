# DocuMind developer commands. Everything installs into .venv (pip + venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
DATA   ?= .documind

.PHONY: help venv install install-test run test test-fast lint format typecheck check bench clean

help:
	@echo "make run        install and run the embedded stack (no Docker, no API key) on :$(PORT)"
	@echo "make test       install the test extras and run every test"
	@echo "make test-fast  unit and runtime tests only (no model, no service processes)"
	@echo "make lint | format | typecheck | check | bench"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install only when the dependency list changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[local]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local,test]'
	touch $(VENV)/.installed $@

venv install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: $(VENV)/.installed
	$(BIN)/documind up --port $(PORT) --data-dir $(DATA)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow" tests/libs tests/services tests/integration/test_worker_runtime.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy libs services bench

check: lint typecheck test

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench.pipeline

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
