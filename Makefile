# `make run` and `make test` each set up everything they need on a fresh machine (virtualenv, packages).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
# vLLM's CPU build where there is no NVIDIA GPU, vLLM where there is.
ENGINE := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo engine-cuda || echo engine-cpu)

export TOKENIZERS_PARALLELISM ?= false

.PHONY: run test demo bench lint install clean chromium

run: $(STAMP)  ## The gateway + a supervised vLLM on SmolLM2-135M-Instruct, SQLite, local FAISS
	$(BIN)/loraflow up

test: $(STAMP) chromium  ## Every suite: unit, store (SQLite + PostgreSQL), end-to-end on a real vLLM, the console in Chromium
	$(BIN)/python -m pytest

# Debian's Chromium for the console's browser tests (Playwright drives it; its own browser download is never used).
# CI runs as root on a fresh machine: installed there on first use.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  [ "$$(id -u)" = 0 ] || { echo "The console's browser tests need Chromium: sudo apt-get install -y chromium"; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

demo: $(STAMP)  ## Two tenants, simulated users and ratings, a retrain, the before/after table
	$(BIN)/loraflow demo

bench: $(STAMP)  ## Benchmarks; results in bench/results/
	$(BIN)/python -m bench.run_all

lint: $(STAMP)  ## ruff (lint + format) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

install: $(STAMP)

$(STAMP): pyproject.toml
	rm -f $(VENV)/.installed-*
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(ENGINE),trainer,retrieval,postgres,s3,dev]"
ifeq ($(ENGINE),engine-cpu)
	# The CPU build of vLLM pulls CUDA builds of these, which break `import transformers`; nothing here uses them.
	$(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
endif
	touch $@

clean:
	rm -rf $(VENV) var/test-cache
