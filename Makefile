# The commands the README names; CI (.ci/run) calls `make lint` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1

.PHONY: install test-tools run demo serve test lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## From a fresh clone to a running gateway with demo tenants, models and keys. `run` and `serve`
## log as text; `predgate serve` itself logs JSON lines unless PREDGATE_LOG_FORMAT=text.
run: install
	$(BIN)/predgate demo --base-url http://$(HOST):$(PORT)
	PREDGATE_LOG_FORMAT=$${PREDGATE_LOG_FORMAT:-text} \
	  $(BIN)/predgate serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

demo: install
	$(BIN)/predgate demo --base-url http://$(HOST):$(PORT)

serve: install
	PREDGATE_LOG_FORMAT=$${PREDGATE_LOG_FORMAT:-text} \
	  $(BIN)/predgate serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

test-tools:
	scripts/install-test-tools

## The test suite (SQLite always; PostgreSQL too when PREDGATE_TEST_DATABASE_URL is set).
test: install test-tools
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Benchmark (never part of the tests): predgate against bare Flask baselines in one run
## (about 10-15 min; needs wrk, the local PostgreSQL and Redis). Results in bench/results/.
## BENCH_ARGS=--quick for a smoke run. By hand: bench.audit_throughput, bench.ratelimit_overhead.
bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.compare $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
