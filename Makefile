# The two commands of the README. Everything lands in .venv; nothing is installed system-wide.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install bench clean

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

bench: $(STAMP)  ## the benchmarks (not part of the test suite)
	$(BIN)/python -m bench.turns

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
