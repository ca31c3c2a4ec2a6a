# Set-up, demo and tests for a fresh Debian 12 / Python 3.11 machine.
# `make setup` is incremental: it reinstalls only when a file it depends on changed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facealign-installed
COMPAT_WHEELS := build/compat-wheels
PIP := $(BIN)/python -m pip --disable-pip-version-check
COMPAT := $(wildcard compat/glibc239/*.py compat/glibc239/shim.*)

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): requirements.txt setup.py pyproject.toml $(COMPAT)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@mkdir -p $(COMPAT_WHEELS)
	$(BIN)/python compat/glibc239/install.py --venv $(VENV) --wheel-dir $(COMPAT_WHEELS)
	$(PIP) install --quiet --find-links $(COMPAT_WHEELS) -r requirements.txt
	$(PIP) install --quiet --no-deps -e .
	@touch $@
	@echo "facealign: environment ready in $(VENV) ($$(du -sh $(VENV) | cut -f1))"

demo: setup
	$(BIN)/facealign run --config pipeline.yaml

test: setup
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) build runs serving_models
