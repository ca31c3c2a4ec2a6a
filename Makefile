# Set-up, demo and tests for a fresh Debian 12 / Python 3.11 machine.
# `make setup` is incremental: it reinstalls only when a file it depends on changed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facealign-installed
COMPAT_WHEELS := build/compat-wheels
PIP := $(BIN)/python -m pip --disable-pip-version-check
COMPAT := $(wildcard compat/glibc239/*.py compat/glibc239/shim.*)

.PHONY: setup demo lint test test-fast clean mariadb peers browser airflow

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

lint: setup
	$(BIN)/ruff check .

# Everything: unit tests, the end-to-end pipeline runs (e2e) and the slow ones.
# Two pytest-xdist workers, a module each at a time (module fixtures stay shared): the
# pipeline runs are mostly one busy Python thread, so the suite takes about half as long
# on 2 cores (42 -> 21 min, Zen 3). --durations: the slowest tests, to keep CI (install
# included) under 30 min.
test: setup mariadb peers browser airflow
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25 tests

# The quick part, for iterating: no pipeline runs, nothing marked slow.
test-fast: setup mariadb
	$(BIN)/python -m pytest -q -m "not e2e and not slow" tests

# dlib, for benchmarks/peer_comparison.py and its test: setup.py's "peers" extra, a benchmark-only
# dependency (never a runtime one), installed into the venv for the tests.
PEERS_STAMP := $(VENV)/.facealign-peers
peers: $(PEERS_STAMP)

$(PEERS_STAMP): $(STAMP)
	$(PIP) install --quiet --find-links $(COMPAT_WHEELS) -e '.[peers]'
	@touch $@

# Apache Airflow, for `facealign compile --target airflow` and tests/test_airflow.py (which runs the
# compiled DAG with Airflow's dag.test()): setup.py's "airflow" extra, an optional orchestrator.
AIRFLOW_STAMP := $(VENV)/.facealign-airflow
airflow: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): $(STAMP)
	$(PIP) install --quiet --find-links $(COMPAT_WHEELS) -e '.[airflow]'
	@touch $@

# A real browser for tests/test_browser.py (the try-it page of `facealign serve` and the run
# report): Debian's chromium and chromium-driver, installed with apt (as root, else with sudo)
# when /usr/bin/chromedriver is missing, and Selenium (setup.py's "browser" extra), which is
# given the driver's path (Selenium Manager would download a browser: no internet here).
BROWSER_STAMP := $(VENV)/.facealign-browser
browser: $(BROWSER_STAMP)
	@test -x /usr/bin/chromedriver || { \
	  echo "facealign: installing chromium and chromium-driver (for tests/test_browser.py)"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    chromium chromium-driver; }

$(BROWSER_STAMP): $(STAMP)
	$(PIP) install --quiet --find-links $(COMPAT_WHEELS) -e '.[browser]'
	@touch $@

# MariaDB's server, for tests/test_metadata_mysql.py (pipeline.mysql), which starts a private
# instance of it; installed with apt (as root, else with sudo) when no mariadbd / mysqld is found.
mariadb:
	@test -x /usr/sbin/mariadbd || test -x /usr/sbin/mysqld || command -v mariadbd >/dev/null \
	  || command -v mysqld >/dev/null || { \
	  echo "facealign: installing mariadb-server (for tests/test_metadata_mysql.py)"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    mariadb-server; }

clean:
	rm -rf $(VENV) build runs serving_models
