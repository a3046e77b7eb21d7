# Two commands do all the set-up on a fresh machine:
#   make demo   run the demo stack (stacks/hello) in the foreground; Ctrl-C stops it cleanly
#   make test   lint, types, unit, fake-runtime and real-engine integration tests
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test check unit integration bench clean engine

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) || { scripts/ensure-python-venv && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

engine:
	scripts/ensure-engine
	scripts/ensure-tools
	scripts/seed-image busybox:1.36

demo: $(STAMP) engine
	$(VENV)/bin/podctl run stacks/hello/stack.yaml

check: $(STAMP)
	VENV=$(VENV) scripts/check

unit: $(STAMP)
	$(VENV)/bin/pytest -q -m "not docker" tests

integration: $(STAMP) engine
	$(VENV)/bin/pytest -q -m docker --durations=15 tests

test: check unit integration

bench: $(STAMP) engine
	scripts/ensure-bench-tools
	$(VENV)/bin/python -m bench.startup
	$(VENV)/bin/python -m bench.proxy
	$(VENV)/bin/python -m bench.dev

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
