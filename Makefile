# iotlink: `make run` shows a virtual board working, `make test` runs every test, `make test-fast` the
# quick ones (no firmware loop on virtual boards, no bench, no browser: not marked slow or browser).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two stamps: what running needs, and that plus the test dependencies (the stamp `make test` and
# a developer's `make .venv/.installed` use).
RUN_STAMP  := $(VENV)/.installed-run
STAMP      := $(VENV)/.installed
# `make run PORT=9090`: the port of the demo's server and web page.
PORT ?= 8080
# The web page's third-party assets (uPlot), pinned in its own lock file and served by the
# local server from node_modules, so the page works offline.
PAGE        := tools/iotlink_tools/devserver/static
PAGE_ASSETS := $(PAGE)/node_modules/.installed

.PHONY: run test test-fast bench mpy soak clean

# One pinned file (pyproject.toml) says what the host needs; reinstall only when it changes.
# The web page's chart library comes with it (order-only: it does not force a reinstall).
$(RUN_STAMP): pyproject.toml | $(PAGE_ASSETS)
	@echo "iotlink: creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "iotlink: installing the host tools and their pinned dependencies (a minute or two the first time)"
	$(BIN)/pip install --disable-pip-version-check --progress-bar off -q -e .
	@touch $@
	@echo "iotlink: installed: $(BIN)/iotlink"

# Installed when missing or re-pinned.
$(PAGE_ASSETS): $(PAGE)/package-lock.json
	@echo "iotlink: installing the web page's chart library (npm ci)"
	cd $(PAGE) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMP): $(RUN_STAMP)
	@echo "iotlink: installing the test dependencies"
	$(BIN)/pip install --disable-pip-version-check --progress-bar off -q -e '.[test]'
	@touch $@
	@echo "iotlink: test dependencies installed"

run: $(RUN_STAMP)
	$(BIN)/iotlink demo --http-port $(PORT)

# The web page's test drives a real headless browser: Debian's chromium and its driver,
# installed once (we run as root; apt-get runs only while one of them is missing).
BROWSER := /usr/bin/chromium /usr/bin/chromedriver
$(BROWSER) &:
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver

# The MQTT peers' benchmark (and its test) run a local broker: Debian's mosquitto.
MOSQUITTO := /usr/sbin/mosquitto
$(MOSQUITTO):
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto

# MicroPython's WebAssembly port (32-bit), run by node for the bench's 32-bit import figures.
WASM_PACKAGE := @micropython/micropython-webassembly-pyscript@1.28.0-6
WASM_PORT := build/wasm/node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs
$(WASM_PORT):
	npm install --prefix build/wasm --no-save --no-audit --no-fund $(WASM_PACKAGE)

test: $(STAMP) $(BROWSER) $(MOSQUITTO)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser" $(PYTEST_ARGS)

# BENCH_ARGS="--only peers" runs one part (see python -m iotlink_lab.bench --help).
bench: $(RUN_STAMP) $(MOSQUITTO) $(WASM_PORT)
	$(BIN)/python -m iotlink_lab.bench $(BENCH_ARGS)

mpy: $(RUN_STAMP)
	$(BIN)/iotlink mpy

MINUTES ?= 5
soak: $(RUN_STAMP)
	$(BIN)/python -m iotlink_lab.soak --minutes $(MINUTES)

clean:
	rm -rf $(VENV) build .pytest_cache $(PAGE)/node_modules
