# iotlink: `make run` shows a virtual board working, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench mpy soak clean

# One pinned file (pyproject.toml) says what the host needs; reinstall only when it changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/iotlink demo

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

# BENCH_ARGS="--only peers" runs one part (see python -m iotlink_tools.bench --help).
bench: $(STAMP) $(MOSQUITTO) $(WASM_PORT)
	$(BIN)/python -m iotlink_tools.bench $(BENCH_ARGS)

mpy: $(STAMP)
	$(BIN)/iotlink mpy

MINUTES ?= 5
soak: $(STAMP)
	$(BIN)/python -m iotlink_tools.soak --minutes $(MINUTES)

clean:
	rm -rf $(VENV) build .pytest_cache
