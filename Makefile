# Deploy Guard: every task a person or CI runs, in one place.
#   make demo   install, then run `guard demo` on the local fake Google Cloud
#   make test   install, then run the whole test suite
#   make lint   ruff (format + lint), mypy --strict, import-linter contracts
#   make lock   re-pin requirements/*.lock from pyproject.toml (needs network to PyPI)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test lint lock clean bench

$(STAMP): pyproject.toml requirements/dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Deploy Guard needs Python 3.11; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) system-deps

system-deps:
	@tools/system-deps.sh

demo: $(STAMP)
	$(BIN)/guard demo

test: install
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

lint: install
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy
	$(BIN)/mypy tools/errortexts
	$(BIN)/lint-imports --no-logo

lock: install
	$(BIN)/pip install --quiet uv==0.13.8
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-header -o requirements/dev.lock
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-header -o requirements/runtime.lock

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .import_linter_cache
