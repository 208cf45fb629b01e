# Two commands for a newcomer: `make demo` and `make test`. Each one creates
# the virtual environment in .venv and installs what it needs first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench clean

$(VENV)/.demo-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[demo]'
	touch $@

# The example store plugin is its own package: the tests find it through its
# entry point, as an application would.
$(VENV)/.test-installed: pyproject.toml example_apps/sqlite_store/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet -e example_apps/sqlite_store
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(PY) -m example_apps.demo $(ARGS)

test: $(VENV)/.test-installed
	$(PY) -m pytest $(ARGS)

lint: $(VENV)/.test-installed
	$(PY) -m ruff check lti_middleware tests example_apps benchmarks
	$(PY) -m ruff format --check lti_middleware tests example_apps benchmarks
	$(PY) -m mypy
	$(PY) -m mypy example_apps/sqlite_store/lti_sqlite_store

bench: $(VENV)/.test-installed
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/launch_and_grade.py
	$(PY) benchmarks/stores_and_workers.py
	$(PY) benchmarks/validation.py
	$(PY) benchmarks/end_to_end.py

clean:
	rm -rf $(VENV) .demo
