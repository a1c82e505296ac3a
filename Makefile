# ATS: the two commands a newcomer needs are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Which Dagster instance file to use: dagster.yaml (embedded default, SQLite) or
# deployment/dagster.yaml (PostgreSQL storage; needs the TIMESCALEDB_* variables).
INSTANCE ?= dagster.yaml

export DAGSTER_HOME ?= $(CURDIR)/.dagster
export ATS_DATA_DIR ?= $(CURDIR)/data

.PHONY: install instance demo live-replay status test lint format dev bench bench-ingest bench-features bench-train bench-backtest bench-live metrics clean

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

instance:
	@mkdir -p $(DAGSTER_HOME)
	@cp $(INSTANCE) $(DAGSTER_HOME)/dagster.yaml

demo: install instance
	$(BIN)/ats demo

# Replay a trading day through live_trading_job after `make demo` (DAY=YYYY-MM-DD, SPEED=60).
live-replay: install instance
	$(BIN)/ats live $(if $(DAY),--day $(DAY)) $(if $(SPEED),--speed $(SPEED))

test: install lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python -m benchmarks.foundation

bench-ingest: install
	$(BIN)/python -m benchmarks.ingest

bench-features: install
	$(BIN)/python -m benchmarks.features
	$(BIN)/python -m benchmarks.indicator_speed

bench-train: install
	$(BIN)/python -m benchmarks.train

bench-backtest: install
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.backtest

bench-live: install instance
	$(BIN)/python -m benchmarks.live

# Serve Prometheus metrics on http://127.0.0.1:9108/metrics (see deployment/monitoring/).
status: install instance
	$(BIN)/ats status

metrics: install instance
	$(BIN)/ats metrics

dev: install instance
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean:
	rm -rf .dagster data
