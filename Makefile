# The two commands of the README. Everything lands in .venv; nothing is installed system-wide.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test lint install bench bench-profile clean lock lock-check deploy-check

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

# Development installs from pyproject.toml (editable, with the dev tools), held to the
# versions of requirements.lock: the suite tests what a deploy installs. pip can't take the
# lock itself as constraints (its hashes would demand hashes for the editable install too),
# so the constraints are the lock without its hashes.
$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: on Debian/Ubuntu run 'apt-get install python3-venv' first"; \
	  exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	sed -e '/--hash=/d' -e 's/ \\$$//' requirements.lock > $(VENV)/constraints.txt
	$(BIN)/python -m pip install --quiet -c $(VENV)/constraints.txt -e '.[dev]'
	@touch $@

# requirements.lock: every runtime dependency and the build backend, pinned with hashes, for
# every Python the daemon supports at once (uv's universal resolution: where versions differ
# by Python, e.g. quart-trio 0.12 below 3.13 and 0.13 from 3.13, the lines carry markers).
# `make lock` after a change to [project] dependencies or [build-system] requires; it keeps
# every pin that still fits (uv prefers the versions already in the output file).
LOCK_INPUTS = $(BIN)/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))'
LOCK = $(BIN)/uv pip compile pyproject.toml - --universal --generate-hashes --quiet \
	--custom-compile-command 'make lock  (pyproject.toml: [project] dependencies + [build-system] requires)'

lock: $(STAMP)  ## update requirements.lock from pyproject.toml
	$(LOCK_INPUTS) | $(LOCK) -o requirements.lock

lock-check: $(STAMP)  ## fail when requirements.lock is not what `make lock` would write
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cp requirements.lock "$$tmp/" && \
	$(LOCK_INPUTS) | $(LOCK) -o "$$tmp/requirements.lock" && \
	if ! diff -u requirements.lock "$$tmp/requirements.lock"; then \
	  echo "requirements.lock is out of date with pyproject.toml: run 'make lock' and commit it"; \
	  exit 1; \
	fi && echo "requirements.lock is current"


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
