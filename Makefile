# The two commands: `make run` and `make test`. Both set up whatever is missing first
# (the hub's venv, every enabled backend's venv); a second run is quick.
PY ?= python3
VENV := .venv
HUB_PY := $(VENV)/bin/python
STAMP := $(VENV)/.hub-deps.stamp
RAY_STAMP := $(VENV)/.ray-deps.stamp
CONFIG ?= config/models.yaml
HOST ?= 127.0.0.1
PORT ?= 8765
BACKENDS := fatigue emotion eeg vlm
PYTEST_PINS := pytest==9.0.3 pytest-asyncio==1.5.0 pytest-timeout==2.4.0 hypothesis==6.170.15 PyYAML==6.0.3

.PHONY: run test setup backends browser lint bench clean test-backend-units ray-deps bench-peers

$(STAMP): requirements.txt requirements-dev.txt model_backends/base/pyproject.toml
	test -x $(HUB_PY) || $(PY) -m venv $(VENV)
	$(HUB_PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(HUB_PY) -m pip install -q --disable-pip-version-check -e model_backends/base
	touch $(STAMP)

setup: $(STAMP) backends
	@if grep -Eq '^[[:space:]]*placement:[[:space:]]*ray' $(CONFIG); then $(MAKE) --no-print-directory ray-deps; fi

# Ray is optional: only for backends with `placement: ray` (see docs/scaling.md), and for the tests.
ray-deps: $(RAY_STAMP)

$(RAY_STAMP): requirements-ray.txt $(STAMP)
	$(HUB_PY) -m pip install -q --disable-pip-version-check -r requirements-ray.txt
	touch $(RAY_STAMP)

backends: $(STAMP)
	$(HUB_PY) -m main_backend setup --config $(CONFIG)

browser:
	bash scripts/install_browser.sh

run: setup
	@echo "Dashboard: http://$(HOST):$(PORT)/   clients: ws://$(HOST):$(PORT)/ws   (Ctrl-C stops everything)"
	$(HUB_PY) -m main_backend serve --supervise --config $(CONFIG) --host $(HOST) --port $(PORT)

# Backend-specific unit tests need the backend's own libraries (mne, h5py, ...): they run in
# that backend's venv, with the same pytest pins as the hub's.
test-backend-units: setup
	@for b in $(BACKENDS); do \
	  py=model_backends/$${b}_backend/.venv/bin/python; \
	  files=$$(ls tests/unit/test_$${b}_*.py 2>/dev/null); \
	  if [ -x "$$py" ] && [ -n "$$files" ]; then \
	    echo "== $$b unit tests in its own venv"; \
	    $$py -m pip install -q --disable-pip-version-check $(PYTEST_PINS) || exit 1; \
	    $$py -m pytest -q -p no:cacheprovider $$files || exit 1; \
	  fi; \
	done

test: setup ray-deps browser test-backend-units
	$(HUB_PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --explicit-package-bases -p main_backend -p model_backends.base

bench: setup
	$(HUB_PY) -m bench.relay
	$(HUB_PY) -m bench.priority
	$(HUB_PY) -m bench.stream

# Ray Serve, for bench/peers.py only: its own venv (Serve needs a newer aiohttp than the hub pins).
.venv-peers/.stamp: bench/requirements-peers.txt
	test -x .venv-peers/bin/python || $(PY) -m venv .venv-peers
	.venv-peers/bin/python -m pip install -q --disable-pip-version-check -r bench/requirements-peers.txt
	touch .venv-peers/.stamp

bench-peers: setup ray-deps .venv-peers/.stamp
	$(HUB_PY) -m bench.peers

clean:
	rm -rf $(VENV) model_backends/*/.venv logs
