# Two commands do all set-up on a fresh machine:
#   make run    install into .venv, start broker + embedded ClickHouse + worker + simulator
#   make test   install what the tests need (incl. Debian's clickhouse-server) and run them
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install services lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/gridpulse run

services:
	bash infra/install-services.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install services lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/gridpulse bench --json bench-latest.json

clean:
	rm -rf $(VENV) .gridpulse
