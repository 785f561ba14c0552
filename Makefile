# The commands the README names; CI (.ci/run) calls `make lint` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1

.PHONY: install run demo serve test lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## From a fresh clone to a running gateway with demo tenants, models and keys.
run: install
	$(BIN)/predgate demo --base-url http://$(HOST):$(PORT)
	$(BIN)/predgate serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

demo: install
	$(BIN)/predgate demo --base-url http://$(HOST):$(PORT)

serve: install
	$(BIN)/predgate serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

## The test suite (SQLite always; PostgreSQL too when PREDGATE_TEST_DATABASE_URL is set).
test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Benchmarks (never part of the tests): latency, audit throughput, rate-limit overhead.
## audit_throughput needs wrk (apt-get install wrk); ratelimit_overhead needs Redis.
bench: install
	$(BIN)/python -m bench.predict_latency
	$(BIN)/python -m bench.audit_throughput
	$(BIN)/python -m bench.ratelimit_overhead
	$(BIN)/python -m bench.auth_cost

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
