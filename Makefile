# The two commands of the README. Everything lands in .venv; nothing is installed system-wide.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test lint install bench bench-profile clean

PROVIDER ?= meta

run: $(STAMP)  ## start the daemon against the built-in simulators (make run PROVIDER=twilio)
	$(BIN)/wa-agentd demo --provider $(PROVIDER)

test: $(STAMP)  ## the whole suite
	$(BIN)/pytest -q

lint: $(STAMP)  ## the quality gates CI runs besides the tests
	$(BIN)/ruff check daemon tests bench
	$(BIN)/ruff format --check daemon tests bench
	$(BIN)/mypy --strict daemon

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: on Debian/Ubuntu run 'apt-get install python3-venv' first"; \
	  exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

bench: $(BENCH_STAMP)  ## CPU, latency and connections per turn next to the floor (~4 min; bench/README.md)
	$(BIN)/python -m bench.lean --out bench/results

bench-profile: $(BENCH_STAMP)  ## py-spy profiles of `wa-agentd serve` under load (~3 min; bench/README.md)
	$(BIN)/python -m bench.profile --out bench/results
	$(BIN)/python -m bench.profile --gil --out bench/results

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
