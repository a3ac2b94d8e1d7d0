# iotlink: `make run` shows a virtual board working, `make test` runs every test, `make test-fast` the
# quick ones (no firmware loop on virtual boards, no bench, no browser: not marked slow or browser).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The web page's third-party assets (uPlot), pinned in its own lock file and served by the
# local server from node_modules, so the page works offline.
PAGE        := tools/iotlink_tools/devserver/static
PAGE_ASSETS := $(PAGE)/node_modules/.installed

.PHONY: run test test-fast bench mpy soak clean

# One pinned file (pyproject.toml) says what the host needs; reinstall only when it changes.
# The web page's chart library comes with it (order-only: it does not force a reinstall).
$(STAMP): pyproject.toml | $(PAGE_ASSETS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Installed when missing or re-pinned.
$(PAGE_ASSETS): $(PAGE)/package-lock.json
	cd $(PAGE) && npm ci --no-audit --no-fund --loglevel=error
	touch $(PAGE_ASSETS)

run: $(STAMP)
	$(BIN)/iotlink demo

# The web page's test drives a real headless browser: Debian's chromium and its driver,
# installed once (we run as root; apt-get runs only while one of them is missing).
BROWSER := /usr/bin/chromium /usr/bin/chromedriver
$(BROWSER) &:
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver

test: $(STAMP) $(BROWSER)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m iotlink_lab.bench

mpy: $(STAMP)
	$(BIN)/iotlink mpy

MINUTES ?= 5
soak: $(STAMP)
	$(BIN)/python -m iotlink_lab.soak --minutes $(MINUTES)

clean:
	rm -rf $(VENV) build .pytest_cache $(PAGE)/node_modules
