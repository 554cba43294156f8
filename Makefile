# The commands of this project. All create .venv/ at the repository root and install into it.
#   make run   install what running needs (the `workflow` extra) and run the default study with Snakemake
#   make test  install the `test` extra (the `workflow` extra plus test tools) and run the test suite
#   make lint  snakemake --lint, snakefmt --check and ruff check (settings in pyproject.toml)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
# Workflow jobs call the `wscl` command: put the environment's bin/ first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test test-gpu setup lint bench mlflow-ui archive

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# One stamp per extra: `make run` never installs the test tools; `make test` adds them to the same .venv/.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[$*]'
	touch $@

setup: $(VENV)/.installed-test

run: $(VENV)/.installed-workflow
	$(BIN)/snakemake --workflow-profile profiles/default --cores $(CORES)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

test-gpu: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m cuda -v

lint: $(VENV)/.installed-test
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .
	$(BIN)/ruff check .

bench: $(VENV)/.installed-workflow
	$(BIN)/python -m wscl bench --out results/bench.json

mlflow-ui: $(VENV)/.installed-workflow
	@echo "MLflow UI: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (the Model training view)"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///results/mlflow/mlflow.db --port 5000

archive: $(VENV)/.installed-workflow
	$(BIN)/snakemake --workflow-profile profiles/default --cores $(CORES) archive
