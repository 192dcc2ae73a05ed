# One task runner: CI calls `make test` verbatim (see .ci/run and README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := orthanc orthanc-python orthanc-dicomweb dcmtk dicom3tools poppler-utils
# Only the tests need these: a PostgreSQL server for the job store's PostgreSQL tests.
TEST_APT_PACKAGES := postgresql

.PHONY: setup system-packages run test test-fast lint typecheck check clean

setup: system-packages $(STAMP)

system-packages:
	@scripts/install-system-packages.sh $(APT_PACKAGES)

# torch first and pinned exactly: an unpinned monai install would pull a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

run: setup
	$(BIN)/mammo-node up --demo

test: setup
	@scripts/install-system-packages.sh $(TEST_APT_PACKAGES)
	$(BIN)/python -m pytest -q -ra

test-fast: setup
	$(BIN)/python -m pytest -q -ra -m "not slow"

lint: setup
	$(BIN)/ruff check node orthanc tests bench
	$(BIN)/ruff format --check node orthanc tests bench

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
