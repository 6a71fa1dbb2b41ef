# Two commands on a fresh machine: `make run` serves the product, `make test` tests it.
# Both create .venv and install on first use (again whenever pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/gateway serve

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

# The exactly-once claim under a mix of faults (docs/chaos.md): CHAOS_PROFILE=short|long,
# CHAOS_SEED=N replays a run's schedule.
CHAOS_PROFILE ?= short
chaos: $(STAMP)
	$(BIN)/python -m chaos --profile $(CHAOS_PROFILE) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

clean:
	rm -rf $(VENV) .gateway .mypy_cache .pytest_cache .ruff_cache
