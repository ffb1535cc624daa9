# `make demo` and `make test` set up everything they need in .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo adopt-demo test bench generate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,embedded,kailash]'
	touch $(STAMP)

demo: $(STAMP)
	cd examples/quickstart && ../../$(PY) quickstart.py

# adopting an existing database: import, baseline, one change (examples/adopt/README.md)
adopt-demo: $(STAMP)
	$(PY) examples/adopt/adopt.py

LINTED := operator tests bench examples

test: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

# the CRD (operator/dataflow/resources/crd.yaml and the chart's copy) and docs/canonical-schema.md's field tables
generate: $(STAMP)
	$(PY) -m dataflow.crdgen

bench: $(STAMP)
	$(PY) bench/plan_speed.py --plot docs/plan-speed.png

clean:
	rm -rf $(VENV) .dataflow examples/quickstart/.dataflow
