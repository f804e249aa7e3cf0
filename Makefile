# consultcam: `make run` starts the main job on the embedded defaults; `make test` runs every test.
# Both set up what they need on a fresh machine (a virtualenv from PyPI; Chromium and ffmpeg from Debian for
# the browser tests).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 0.0.0.0
PORT   ?= 8443
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test install install-dev system-deps test-idp test-medplum lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## Start consultcam on the embedded defaults (SQLite, folder store, in-process bus and queue, export connector).
run: install
	$(BIN)/consultcam serve --host $(HOST) --port $(PORT)

## Browser tests need Debian's Chromium and ffmpeg (the fake camera is an MJPEG made from a real photo), and for
## the phone page in every engine Firefox ESR (driven over WebDriver BiDi) and WebKitGTK's WebKitWebDriver under
## Xvfb; the DICOMweb tests need Orthanc with its DICOMweb plugin and dciodvfy (dicom3tools); the Inbox Scan TIFFs are
## read back with libtiff's tiffinfo (libtiff-tools); the sign-in tests' identity provider runs on Node; edits are
## burned in losslessly by libjpeg-turbo's jpegtran (libjpeg-turbo-progs, also needed in production: docs/deploy.md).
DEBIAN_TEST_PACKAGES := chromium ffmpeg nodejs firefox-esr webkit2gtk-driver xvfb orthanc orthanc-dicomweb dicom3tools libtiff-tools libjpeg-turbo-progs
system-deps:
	@dpkg -s $(DEBIAN_TEST_PACKAGES) >/dev/null 2>&1 || \
	  ( $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $(DEBIAN_TEST_PACKAGES) )

## The identity provider the sign-in tests run (tests/idp: oidc-provider from npm, OpenID Certified), installed
## exactly as locked; again only when package.json or package-lock.json changed.
IDP := tests/idp
$(IDP)/node_modules/.installed: $(IDP)/package.json $(IDP)/package-lock.json | system-deps
	@command -v npm >/dev/null || { echo "npm is needed for the sign-in tests' identity provider (Debian: apt-get install npm)"; exit 1; }
	npm ci --prefix $(IDP) --no-audit --no-fund
	touch $@

test-idp: $(IDP)/node_modules/.installed

## The second FHIR engine the FHIR connector's tests commit into (tests/medplum: a small server of ours on
## Medplum's @medplum/fhir-router and @medplum/core from npm), installed exactly as locked. The packages ask for
## Node 22.18+ (npm warns, EBADENGINE); on Debian's Node 20 the tests run it with --experimental-websocket.
MEDPLUM := tests/medplum
$(MEDPLUM)/node_modules/.installed: $(MEDPLUM)/package.json $(MEDPLUM)/package-lock.json | system-deps
	@command -v npm >/dev/null || { echo "npm is needed for the FHIR tests' Medplum server (Debian: apt-get install npm)"; exit 1; }
	npm ci --prefix $(MEDPLUM) --no-audit --no-fund
	touch $@

test-medplum: $(MEDPLUM)/node_modules/.installed

## Every test: unit, API, end-to-end in real Chromium.
test: install-dev system-deps test-idp test-medplum
	$(BIN)/ruff check consultcam tests bench
	$(BIN)/mypy consultcam
	$(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check consultcam tests bench
	$(BIN)/mypy consultcam

format: install-dev
	$(BIN)/ruff format consultcam tests bench
	$(BIN)/ruff check --fix consultcam tests bench

bench: install-dev system-deps
	$(BIN)/python bench/capture_latency.py
	$(BIN)/python bench/production_load.py --profile
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/registration_cpu.py
	$(BIN)/python bench/edits_cpu.py
	$(BIN)/python bench/fidelity.py

clean:
	rm -rf $(VENV) data test-artifacts .pytest_cache .ruff_cache $(IDP)/node_modules $(MEDPLUM)/node_modules
