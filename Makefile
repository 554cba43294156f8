# The commands of this project. All create .venv/ at the repository root and install into it, every
# dependency at the version and SHA-256 of requirements/<extra>.lock (pip --require-hashes).
#   make run   install what running needs (the `workflow` extra) and run the default study with Snakemake
#   make test  install the `test` extra (the `workflow` extra plus test tools) and run the test suite
#   make lint  snakemake --lint, snakefmt --check and ruff check (settings in pyproject.toml)
#   make lock  resolve pyproject.toml's dependencies again and rewrite requirements/*.lock (pip-tools)
#   make docs  write config/README.md's tables from rules/config.schema.yaml and the package (a test checks them)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
# Workflow jobs call the `wscl` command: put the environment's bin/ first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test test-gpu setup lint lock speed bench mlflow-ui archive docs snapshot snapshot-sweep snapshot-ablation readme-results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per extra: `make run` never installs the test tools; `make test` adds them to the same .venv/.
# The lock holds every dependency (setuptools too, so the package itself builds without fetching anything).
$(VENV)/.installed-%: pyproject.toml requirements/%.lock | $(BIN)/python
	$(BIN)/python -m pip install --require-hashes -r requirements/$*.lock
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	touch $@

# pip-tools in an environment of its own (.venv-lock/), so that it is in neither lock. wscl itself and pip
# stay out of the locks (--unsafe-package); resolving with hashes reads every wheel once: minutes.
LOCK_BIN := .venv-lock/bin
lock:
	test -x $(LOCK_BIN)/pip-compile || ($(PYTHON) -m venv .venv-lock && $(LOCK_BIN)/python -m pip install 'pip-tools==7.6.2')
	for extra in workflow test; do \
	  $(LOCK_BIN)/pip-compile --quiet --upgrade --generate-hashes --strip-extras --no-emit-index-url \
	    --no-emit-find-links --unsafe-package wscl --unsafe-package pip --extra $$extra \
	    -o requirements/$$extra.lock pyproject.toml || exit 1; \
	done

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

docs: $(VENV)/.installed-workflow
	$(BIN)/python -m wscl schema --readme config/README.md --study-schema rules/config.schema.yaml

# after `make run`: the default study's per-run figures, machine and commit (commit the file), then the README's table
snapshot: $(VENV)/.installed-workflow
	$(BIN)/python -m wscl snapshot --runs results/tables/all_runs.csv --out docs/snapshot/default.json

readme-results: $(VENV)/.installed-workflow
	$(BIN)/python -m wscl readme-results --snapshot docs/snapshot/default.json --readme README.md
	$(BIN)/python -m wscl readme-results --snapshot docs/snapshot/sweep.json --readme README.md
	$(BIN)/python -m wscl readme-results --snapshot docs/snapshot/ablation.json --readme README.md

# after the sweep study (README, Sweeps): its runs, its selection, machine and commit (commit the file)
snapshot-sweep: $(VENV)/.installed-workflow
	$(BIN)/python -m wscl snapshot --runs results/sweep/tables/all_runs.csv --selection results/sweep/tables/selection.json --out docs/snapshot/sweep.json

# after the ablation study (README, Comparisons): its runs and its seed rule, machine and commit (commit the file)
snapshot-ablation: $(VENV)/.installed-workflow
	$(BIN)/python -m wscl snapshot --runs results/ablation/tables/all_runs.csv --study-config config/ablation.yaml --out docs/snapshot/ablation.json

speed: $(VENV)/.installed-workflow
	$(BIN)/python -m wscl speed --out results/speed.json

bench: speed  # the earlier name

mlflow-ui: $(VENV)/.installed-workflow
	@echo "MLflow UI: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (the Model training view)"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///results/mlflow/mlflow.db --port 5000

archive: $(VENV)/.installed-workflow
	$(BIN)/snakemake --workflow-profile profiles/default --cores $(CORES) archive
