# Two commands are the whole setup: `make run` and `make test` (each creates .venv when needed).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install system-packages run test lint format openapi bench bench-quick clean doctor

$(STAMP): pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Serve the sandbox (both vendors emulated, demo data, no credentials) on 127.0.0.1:8000.
run: install
	FACADE_SANDBOX=true $(VENV)/bin/uvicorn app.main:app --host $(HOST) --port $(PORT) --no-access-log --http app.api.middleware.header_limit:HeaderLimitedHttpToolsProtocol

## Debian tools the tests drive (redis-server, chromium, promtool, jq, curl), installed only when missing.
system-packages:
	scripts/ensure-system-packages.sh

## Every test: unit, contract, integration, fuzz and soak.
test: install system-packages
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check app tests scripts bench
	$(VENV)/bin/ruff format --check app tests scripts bench
	$(VENV)/bin/mypy app
	$(VENV)/bin/vulture app vulture_whitelist.py --min-confidence 80
	$(VENV)/bin/hadolint Dockerfile

format: install
	$(VENV)/bin/ruff format app tests scripts bench
	$(VENV)/bin/ruff check --fix app tests scripts bench

## Regenerate openapi/openapi.json from the app (a test fails when it is stale).
openapi: install
	$(PY) scripts/export_openapi.py > openapi/openapi.json

## Read-only self-check of every pinned vendor assumption against the configured vendors (IOMETER_*,
## WALTERO_*); `FACADE_SANDBOX=true make doctor` checks the built-in emulators on loopback instead.
doctor: install
	$(PY) -m app.doctor

## Benchmark: prints a table of ratios and writes bench/results.json.
bench: install
	$(PY) bench/run.py

## The same steps with small counts and short runs: checks that the bench runs end to end (figures not to quote).
bench-quick: install
	$(PY) bench/run.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
