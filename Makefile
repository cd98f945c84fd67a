# `make demo` and `make test` each set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check bench bench-pg clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,postgres,server]'
	touch $(STAMP)

demo: $(STAMP)
	cd $$(mktemp -d) && $(CURDIR)/$(BIN)/mainspring demo

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check mainspring tests benchmarks scripts
	$(BIN)/ruff format --check mainspring tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/scale.py

bench-pg: $(STAMP)
	$(BIN)/python benchmarks/run.py --group pg
	$(BIN)/python benchmarks/scale.py --backend postgres

clean:
	rm -rf $(VENV) build *.egg-info
