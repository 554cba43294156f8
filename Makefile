# The two commands of this project. Both create .venv/ at the repository root and install into it.
#   make run   set up and run the default study (config/config.yaml) with Snakemake
#   make test  set up and run the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
STAMP := $(VENV)/.installed
# Workflow jobs call the `wscl` command: put the environment's bin/ first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test test-gpu setup bench lint mlflow-ui archive clean-results

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --workflow-profile profiles/default --cores $(CORES)

test: $(STAMP)
	$(BIN)/python -m pytest

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m cuda -v

bench: $(STAMP)
	$(BIN)/python -m wscl bench --out results/bench.json

lint: $(STAMP)
	$(BIN)/snakemake --lint

mlflow-ui: $(STAMP)
	@echo "MLflow UI: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (the Model training view)"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///results/mlflow/mlflow.db --port 5000

archive: $(STAMP)
	$(BIN)/snakemake --workflow-profile profiles/default --cores $(CORES) archive
