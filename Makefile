# Everything runs inside .venv, created on first use from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install demo test lint typecheck pytest bench soak clean

help:
	@echo "make demo       run the whole job against the simulated Zendesk into SQLite"
	@echo "make test       lint, type-check and run the tests (SQLite, PostgreSQL, MariaDB)"
	@echo "make bench      throughput and cost benchmarks (prints a table, writes JSON)"
	@echo "make soak       the long kill-anywhere test (hundreds of SIGKILLs)"
	@echo "make clean      remove the virtualenv and generated files"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -n 2 -m "not slow" $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench_envelope.py --strict

soak: $(STAMP)
	ETL_SOAK=1 ETL_SOAK_REPORT=soak-results.jsonl $(BIN)/pytest -m slow -n 2 $(PYTEST_ARGS)
	@cat soak-results.jsonl

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache dist build
