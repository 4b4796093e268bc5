# One-command entry points. Setup uses pip (uv/poetry would ignore the local torch wheel).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Demo knobs: `make demo DATA=cifar10 DATA_DIR=PATH` (ResNet-20 on CIFAR-10), `make demo EPOCHS=40`,
# `make demo DEMO_ARGS="--threads 2 --quantization qat"` (any option of `distiller pipeline --help`).
DATA ?= digits
DATA_DIR ?=
EPOCHS ?=
DEMO_ARGS ?=

.PHONY: setup demo test test-full test-flow lint docs clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The whole compression pipeline: train, prune (structured AGP), thin, fine-tune, int8, ONNX; one table.
demo: $(STAMP)
	@$(VENV)/bin/distiller pipeline --dataset $(DATA) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
		$(if $(EPOCHS),--epochs $(EPOCHS)) --out-dir logs/demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q

test-full: $(STAMP)
	$(PY) -m pytest -q -m ""

# The original's full-flow tests on ../shared/data (slow; skipped where that folder is absent). CI runs them.
test-flow: $(STAMP)
	$(PY) -m pytest -q -m "" tests/full_flow

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
