# Everything runs inside .venv, created on first use from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pytest's workers (xdist -n): 4 on a 2-core machine, because the tests often wait (the
# simulated Zendesk's latency, the databases' flushes to disk) and the extra workers fill
# those waits: a fresh clone's idle `make test` took 335 s with four, 379 s with three
# (docs/TESTING.md).
PYTEST_WORKERS ?= 4

.PHONY: help install demo test test-fast test-sqlite lint typecheck pytest bench bench-envelope bench-export bench-verify bench-ledger bench-dlt soak dist clean

help: ## this list, made from the "##" comment on each target's line
	@awk -F':.*## ' '/^[a-z][a-z-]*:.*## / { printf "make %-15s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the package with its dev tools

demo: $(STAMP) ## run the whole job against the simulated Zendesk into SQLite
	$(BIN)/python scripts/demo.py

lint: $(STAMP) ## ruff check, ruff format --check, and the import layers (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP) ## mypy --strict over etl, zendesk_sim, migrations, tests and scripts
	$(BIN)/mypy

pytest: $(STAMP) ## the tests on SQLite, PostgreSQL and MariaDB (PYTEST_ARGS to narrow)
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

# mypy from a cold cache (CI's fresh clone) is some 13 s of one core, and the tests' workers
# often wait (on the simulated Zendesk, on the databases' disks): it runs beside them rather
# than before. Either failing fails the target; mypy's report comes when it ends.
test: lint ## lint, then type-check and run the tests side by side: what CI runs
	@$(MAKE) --no-print-directory -j2 typecheck pytest

# By what a test needs (marked by tests/parts/marks.py): test-fast takes the tests that need
# no database and no new process (values, and HTTP on loopback), about 850 in under a minute
# on two cores; test-sqlite adds the database tests, on SQLite alone (about 1,350 in some
# two minutes idle). Neither runs the whole-process tests (signals, kills, the installed command).
test-fast: $(STAMP) ## the tests that need no database and no new process, in under a minute (PYTEST_ARGS to narrow)
	ETL_TEST_DATABASES=sqlite $(BIN)/pytest -n 2 -m "not db and not process and not slow and not packaging" $(PYTEST_ARGS)

test-sqlite: $(STAMP) ## all but the whole-process tests, on SQLite only (PYTEST_ARGS to narrow)
	ETL_TEST_DATABASES=sqlite $(BIN)/pytest -n $(PYTEST_WORKERS) -m "not process and not slow and not packaging" $(PYTEST_ARGS)

bench: $(STAMP) ## throughput and cost benchmarks, then the envelope (tables, JSON)
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench_envelope.py --strict

bench-envelope: $(STAMP) ## the rate-limit envelope alone (ENVELOPE_ARGS="--seconds 20 --repeats 1": quick)
	$(BIN)/python scripts/bench_envelope.py --strict $(ENVELOPE_ARGS)

bench-export: $(STAMP) ## export 1,000,000 stored rows into a file: records/s, memory, queries
	$(BIN)/python scripts/bench_export.py $(BENCH_ARGS)

bench-verify: $(STAMP) ## verify 1,000,000 stored rows: records/s and peak memory (target 200,000/s)
	$(BIN)/python scripts/bench_verify.py $(BENCH_ARGS)

bench-ledger: $(STAMP) ## what the ledger costs a whole first load of 100,000 records, per database (target 10%)
	$(BIN)/python scripts/bench_ledger_load.py $(BENCH_ARGS)

bench-dlt: $(STAMP) ## first load of 100,000 records, the job against dlt (installs the bench extra)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python scripts/bench_dlt.py $(BENCH_ARGS)

soak: $(STAMP) ## the long kill-anywhere test (hundreds of SIGKILLs)
	ETL_SOAK=1 ETL_SOAK_REPORT=soak-results.jsonl $(BIN)/pytest -m slow -n 2 $(PYTEST_ARGS)
	@cat soak-results.jsonl

# The wheel holds the package, its migrations and config.example.toml (not zendesk_sim,
# the simulated Zendesk of the tests, demo and bench); built with the
# hatchling of the dev environment, so no network is needed beyond `make install`.
dist: $(STAMP) ## build the wheel into dist/ (to install where there is no checkout)
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .
	@ls dist/*.whl

clean: ## remove the virtualenv and generated files
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache dist build
