# tidegate: `make run` serves the demo pipeline; `make test` runs every test
# against real services (started/configured by `make services`).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install run test unit services browser bench bench-e2e chaos lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

run: install
	$(BIN)/tidegate serve --config specs/demo.yaml --state-dir .tidegate --api-addr 127.0.0.1:8080

# the servers of the tests, and the headless chromium of the console's (scripts/services/chromium.sh)
services:
	@set -e; for s in scripts/services/*.sh; do echo "== $$s"; bash $$s; done

browser:
	bash scripts/services/chromium.sh

test: install services
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

unit: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

bench: install services
	@failed=""; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "bench failures:$$failed"; exit 1; fi

bench-e2e: install services
	$(BIN)/python bench/bench_e2e.py

# seeded fault injection (not part of `make test`); a failing run prints the line that replays it
CHAOS_MINUTES       ?= 5
CHAOS_SEED          ?= $(shell date +%s)
CHAOS_FAULT_EVERY_S ?= 20

chaos: install services
	$(BIN)/python -m tests.chaos --minutes $(CHAOS_MINUTES) --seed $(CHAOS_SEED) --fault-every $(CHAOS_FAULT_EVERY_S)

LINTED := shared supervisor worker tests bench

lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .tidegate build *.egg-info
