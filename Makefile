# The one command set: CI, the README and developers all use these targets.
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve test lint typecheck unit format clean lock

# Re-install whenever the dependency list or the lock changes.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/chainserve serve --host $(HOST) --port $(PORT)

test: install lint typecheck unit

lint: install
	$(BIN)/ruff check api chains tests
	$(BIN)/ruff format --check api chains tests

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest

format: install
	$(BIN)/ruff check --fix api chains tests
	$(BIN)/ruff format api chains tests

# Refresh the pinned versions after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/python -m pip freeze --exclude-editable --exclude chainserve > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
