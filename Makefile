# One place for every developer command. Each target creates .venv from the project's own
# files when it is missing or older than pyproject.toml, so a fresh machine needs only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck bench oracle-sql clean

$(BIN)/xrdagg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## Set up, then fill the embedded SQLite database with sample data and run the jobs on it.
demo: $(BIN)/xrdagg
	$(BIN)/xrdagg demo

## Every check: ruff, mypy, then the test suite (SQLite always; PostgreSQL when
## XRDAGG_TEST_POSTGRES_URL is set or Docker answers; Oracle when XRDAGG_ORACLE_URL is set or Docker answers).
test: lint typecheck
	$(BIN)/pytest

lint: $(BIN)/xrdagg
	$(BIN)/ruff check xrdagg migrations tests bench setup.py
	$(BIN)/ruff format --check xrdagg migrations tests bench setup.py

typecheck: $(BIN)/xrdagg
	$(BIN)/mypy xrdagg

bench: $(BIN)/xrdagg
	$(BIN)/python -m bench.run --write docs/benchmarks.md $(BENCH_ARGS)

## Regenerate the reviewed Oracle DDL in sql/ from the migrations.
oracle-sql: $(BIN)/xrdagg
	$(BIN)/python -m xrdagg.db.offline schema > sql/oracle_schema.sql
	$(BIN)/python -m xrdagg.db.offline grants > sql/oracle_grants.sql

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
