# One-command entry points. Setup uses pip (uv/poetry would ignore the local torch wheel).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Demo knobs: `make demo EPOCHS=30`
EPOCHS ?= 20

.PHONY: setup demo test test-full lint docs clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/distiller classify --arch simplenet_digits --dataset digits --epochs $(EPOCHS) \
		--batch-size 64 --lr 0.1 --workers 0 --deterministic --out-dir logs/demo --name digits

test: $(STAMP)
	$(PY) -m pytest -q

test-full: $(STAMP)
	$(PY) -m pytest -q -m ""

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The schedule and CLI references are generated from the registries and the argparse parser first,
# so they cannot drift; --strict turns every MkDocs warning (a broken link, a missing page) into an error.
docs: $(STAMP)
	$(PY) docs/gen/schedule_reference.py
	$(PY) docs/gen/cli_reference.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) logs .pytest_cache .ruff_cache build *.egg-info src/*.egg-info
