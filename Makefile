# VasBox Dash. `make run` serves the app on SQLite; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2

.PHONY: run test lint format install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test
	@scripts/ensure-chromium

run: install
	$(BIN)/vasbox-dash db upgrade
	$(BIN)/vasbox-dash demo --if-empty
	@echo
	@echo "  VasBox Dash is starting at http://$(HOST):$(PORT)/"
	@echo "  Sign in with a demo account printed above (first run only); to reset one:"
	@echo "    $(BIN)/vasbox-dash set-password owner@demo.vasbox.example"
	@echo
	$(BIN)/vasbox-dash serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-test
	$(BIN)/python bench/api_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
