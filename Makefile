# One venv at the repository root, built on demand; stamps make re-runs instant.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8080
DATA ?= ./data

# The whole dependency set is pinned in lock files, so every machine runs what the tests ran:
# requirements.lock (runtime, with pillow-heif) and requirements-dev.lock (runtime + the dev tools).
# `make lock` regenerates both from pyproject.toml (with pip-tools, installed inside the venv); run it after
# changing a dependency there, and commit the lock files. Installing needs only Python and make.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links

.PHONY: run demo install dev lint test bench clean lock

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null

# The project itself goes in without dependencies (the lock has them all); `pip check` then fails if
# pyproject.toml asks for something the lock lacks: run `make lock`.
$(VENV)/.installed: pyproject.toml $(LOCK) | $(PY)
	$(PY) -m pip install -r $(LOCK)
	$(PY) -m pip install --no-deps -e .
	$(PY) -m pip check || { echo "The lock files are behind pyproject.toml: run make lock" >&2; exit 1; }
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(DEV_LOCK) | $(PY)
	$(PY) -m pip install -r $(DEV_LOCK)
	$(PY) -m pip install --no-deps -e .
	$(PY) -m pip check || { echo "The lock files are behind pyproject.toml: run make lock" >&2; exit 1; }
	touch $@ $(VENV)/.installed

lock: | $(PY)
	$(PY) -m pip install --quiet 'pip-tools>=7.4'
	$(PIP_COMPILE) --extra heic -o $(LOCK) pyproject.toml
	$(PIP_COMPILE) --extra heic --extra dev -o $(DEV_LOCK) pyproject.toml

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

# A fresh data directory gets the Sheffield 2011 demonstration event first, so the pages show a working world.
run: install
	@[ -e $(DATA)/snapshot.jsonl ] || ls $(DATA)/journal-*.log >/dev/null 2>&1 || $(PY) -m fieldcomms demo --data-dir $(DATA) --host $(HOST) --port $(PORT)
	$(PY) -m fieldcomms serve --host $(HOST) --port $(PORT) --data-dir $(DATA)

# The Sheffield 2011 demonstration event, once (a second run changes nothing); then `make run`.
demo: install
	$(PY) -m fieldcomms demo --data-dir $(DATA) --host $(HOST) --port $(PORT)

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
