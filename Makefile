# One task runner: CI calls `make test` verbatim (see .ci/run and README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := orthanc orthanc-python orthanc-dicomweb dcmtk dicom3tools poppler-utils
# Only the tests need these: a PostgreSQL server for the job store's PostgreSQL tests, and
# PixelMed's DicomSRValidator (Java) for the SR template checks (tests/validators.py);
# promtool (Debian prometheus) and Orthanc on PostgreSQL for the Helm chart (tests/test_helm.py);
# openssl makes the test CA of the DICOM TLS test.
TEST_APT_PACKAGES := postgresql libpixelmed-java default-jre-headless prometheus orthanc-postgresql openssl
# The daemonless image build (scripts/build-image.sh, make image / image-test).
IMAGE_APT_PACKAGES := debootstrap umoci
LINTED := node orthanc tests bench image

.PHONY: setup system-packages run test test-fast lint typecheck check clean image image-test

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

run: setup viewer
	$(BIN)/mammo-node up --demo

# The one test command (README, .ci/run): lint and types can fail the build too.
test: setup viewer-test-deps
	@scripts/install-system-packages.sh $(TEST_APT_PACKAGES)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -ra -m "not image"

# The container image without a daemon: debootstrap + chroot + umoci -> var/image/oci (OCI
# layout). Cached: the base layer is rebuilt only when image/apt-packages.txt, image/install.sh
# or the resolved wheels change. Not in `make test`: a first build downloads Debian and the venv.
image: setup
	@scripts/install-system-packages.sh $(IMAGE_APT_PACKAGES)
	PYTHON=$(BIN)/python scripts/build-image.sh

# Builds the image (cached) and runs the node from its read-only root filesystem (the demo exam).
image-test: setup
	@scripts/install-system-packages.sh $(IMAGE_APT_PACKAGES)
	$(BIN)/python -m pytest -q -ra -s -m image

test-fast: setup
	$(BIN)/python -m pytest -q -ra -m "not slow"

lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The shipped reference model models/mias-unet/1.0.0, reproduced with the project's own commands:
# import the mini-MIAS dev set (patient-level split) -> report -> train -> evaluate on the
# held-out patients (figures recorded into its model.yaml and MODEL_CARD.md).
MIAS ?= ../shared/data/mias-dev
.PHONY: reference-model
# The exam-aware models reproduced: import mini-MIAS (patient-level split), train
# models/mias-contralateral/1.0.0 on the train split (CV inside it for the card), score the val
# split ONCE and record it, with the previous live model (synthetic-unet) scored on the same
# locked set so the promotion gate can compare them; then 1.1.0 (1.0.0 plus the lesion head
# trained on the lesion circles, node/training/lesion.py) the same way against 1.0.0.
# Measured: 5 min 47 s wall, 1.3 GB peak RSS on 2 CPU cores (a fresh clone, light load beside
# it); the weights came out byte-identical and the validation figures equal to the shipped ones.
# A CUDA device is used for the image vectors when torch sees one (train/evaluate --device).
# Then: mammo-node models promote mias-contralateral/1.1.0 --reason "..."
reference-model: setup
	$(BIN)/mammo-node data import $(MIAS) --format mias --out var/datasets/mias-dev --dataset-id mias-dev --val-fraction 0.3 --seed 0 --force
	$(BIN)/mammo-node data report var/datasets/mias-dev
	$(BIN)/mammo-node train --config models/mias-contralateral/train.yaml
	$(BIN)/mammo-node evaluate --model synthetic-unet/0.1.0 --dataset var/datasets/mias-dev --split val --threshold 0.5 --out var/eval/synthetic-unet-0.1.0 --record
	$(BIN)/mammo-node evaluate --model mias-contralateral/1.0.0 --dataset var/datasets/mias-dev --split val --baseline synthetic-unet/0.1.0 --threshold 0.5 --out var/eval/mias-contralateral-1.0.0 --record
	$(BIN)/mammo-node train --config models/mias-contralateral/train-1.1.0.yaml
	$(BIN)/mammo-node evaluate --model mias-contralateral/1.1.0 --dataset var/datasets/mias-dev --split val --baseline mias-contralateral/1.0.0 --threshold 0.5 --out var/eval/mias-contralateral-1.1.0 --record

# The browser test (tests/test_viewer.py): OHIF's prebuilt dist, pinned in viewer/package-lock.json
# and installed without its build-time dependencies, and Debian's Chromium driven by Playwright.
VIEWER_DIST := viewer/node_modules/@ohif/app/dist/index.html
BROWSER_APT_PACKAGES := chromium
.PHONY: viewer viewer-test-deps
viewer: $(VIEWER_DIST)
$(VIEWER_DIST): viewer/package.json viewer/package-lock.json
	cd viewer && npm ci --ignore-scripts --no-audit --no-fund
	touch $@
viewer-test-deps: viewer
	@scripts/install-system-packages.sh $(BROWSER_APT_PACKAGES)
