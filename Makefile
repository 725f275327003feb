# lienthong: every target creates the virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test unit faults check lint format bench demo run clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The fault-injection scenarios (minutes, RabbitMQ nodes of their own) run apart: make faults.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not faults"

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# Each scenario has a hard time limit (tests/faults/conftest.py); figures in fault-results/.
faults: $(STAMP)
	$(BIN)/python -m pytest -q -m faults tests/faults

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(STAMP)
	$(BIN)/python scripts/demo.py demo

run: $(STAMP)
	$(BIN)/python scripts/demo.py serve

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
