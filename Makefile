# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   creates .venv if missing, installs, runs `ud demo`
#   make test   creates .venv if missing, installs with test extras, runs pytest
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-all lint install ui down clean

# uv resolves and installs the project in about 20 s where pip takes 2.5 to 5.5 minutes here
# (docs/performance.md); pip stays the fallback, and `make INSTALLER=pip ...` uses it alone
# (a machine whose only package index is in pip's own configuration, which uv does not read).
INSTALLER ?= uv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	[ "$(INSTALLER)" = pip ] || $(BIN)/python -m pip install --quiet uv || true

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	if [ "$(INSTALLER)" != pip ] && [ -x $(BIN)/uv ]; then \
		$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[test]" \
		|| $(BIN)/python -m pip install --quiet -e ".[test]"; \
	else $(BIN)/python -m pip install --quiet -e ".[test]"; fi
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/ud demo

# Workers: one per core, at most 4 (one more than the cores was measured: no faster, each test
# slower). A test file stays on one worker, so its module fixtures (a Postgres cluster, a
# trained model) are made once; the demo is shared by all workers (tests/conftest.py). Files go
# out longest first (tests/conftest.py LONGEST_FIRST): xdist's default reorder would hand them
# out by their number of tests, leaving the one-test tutorials, the longest, for the end.
XDIST := -n auto --maxprocesses=4 --dist loadfile --no-loadscope-reorder

test: install
	$(BIN)/python -m pytest $(XDIST)

# What .ci/run checks before the tests: ruff (style, imports, formatting) and pyright (basic).
lint: install
	$(BIN)/ruff check unified_delivery
	$(BIN)/ruff format --check unified_delivery
	$(BIN)/pyright

test-all: install
	$(BIN)/python -m pytest $(XDIST) -m ""

ui: install
	$(BIN)/ud ui

down:
	$(BIN)/ud down

clean:
	-$(BIN)/ud down
	rm -rf .ud dbt_project/target dbt_project/logs
