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

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m iotlink_tools.bench

mpy: $(STAMP)
	$(BIN)/iotlink mpy

MINUTES ?= 5
soak: $(STAMP)
	$(BIN)/python -m iotlink_tools.soak --minutes $(MINUTES)

clean:
	rm -rf $(VENV) build .pytest_cache
