# One venv at the repository root, built on demand; stamps make re-runs instant.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8080
DATA ?= ./data

.PHONY: run demo install dev lint test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -e . pillow-heif
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

# A fresh data directory gets the Sheffield 2011 demonstration event first, so the pages show a working world.
run: install
	@[ -e $(DATA)/snapshot.jsonl ] || ls $(DATA)/journal-*.log >/dev/null 2>&1 || $(PY) -m fieldcomms demo --data-dir $(DATA)
	$(PY) -m fieldcomms serve --host $(HOST) --port $(PORT) --data-dir $(DATA)

# The Sheffield 2011 demonstration event, once (a second run changes nothing); then `make run`.
demo: install
	$(PY) -m fieldcomms demo --data-dir $(DATA)

lint: dev
	$(VENV)/bin/ruff check fieldcomms tests bench
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q

# wrk is the load generator for the HTTP benchmarks (a Python client saturates first).
bench: dev
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(PY) -m bench $(BENCH)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
