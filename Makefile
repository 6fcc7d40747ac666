# Velox — the two commands: `make run` (set up + main job) and `make test` (set up + full suite).
# Everything installs into ./.venv from the project's own files; nothing system-wide except what
# .ci/run adds for the test servers (Debian PostgreSQL).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.velox-installed

.PHONY: run test setup lab bench lint clean-store help

help:
	@echo "make run    - set up .venv and the embedded store, import bundled data, start the workbench"
	@echo "make test   - set up .venv and run the whole test suite"
	@echo "make lab    - start JupyterLab on the notebooks/"
	@echo "make bench  - run every benchmark in bench/ (minutes; prints ratios)"
	@echo "make lint   - ruff check"

# Reinstall only when the dependency declaration changes: a second `make run` is fast.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all]"
	@touch $@

setup: $(STAMP)

# The main job: the store and bundled data (`velox run`, idempotent), then the whole workbench
# (`velox workbench`: a paper engine and the web server; Ctrl-C stops everything).
run: setup
	$(BIN)/velox run
	$(BIN)/velox workbench

test: setup
	$(BIN)/python -m pytest

lab: setup
	$(BIN)/jupyter lab notebooks/

bench: setup
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: setup
	$(BIN)/ruff check velox tests bench

clean-store:
	rm -rf data/store
