# Two entry points do all the set-up from a fresh clone:
#   make demo   -- create .venv, install tilevm, run `python -m tilevm demo`
#   make test   -- create .venv, install tilevm with its test extras, lint, run the tests
# TORCH picks the torch requirement installed first (any torch >= 2.4 works; the
# default is the CPU build that CI machines carry locally).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.tilevm-installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tilevm demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
