# The two commands: `make run` and `make test`. Both set up what is missing first.
PY ?= python3
VENV := .venv
HUB_PY := $(VENV)/bin/python
STAMP := $(VENV)/.hub-deps.stamp

.PHONY: run test setup lint bench clean

$(STAMP): requirements.txt requirements-dev.txt model_backends/base/pyproject.toml
	test -x $(HUB_PY) || $(PY) -m venv $(VENV)
	$(HUB_PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(HUB_PY) -m pip install -q --disable-pip-version-check -e model_backends/base
	touch $(STAMP)

setup: $(STAMP)
	$(HUB_PY) -m main_backend setup

run: setup
	$(HUB_PY) -m main_backend serve --supervise

test: setup
	$(HUB_PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy main_backend model_backends/base

bench: setup
	$(HUB_PY) bench/relay.py

clean:
	rm -rf $(VENV) model_backends/*/.venv logs
