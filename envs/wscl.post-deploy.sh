#!/usr/bin/env bash
# Snakemake runs this in the new environment, from the working directory (the repository root): install the
# dependencies at the versions and hashes of requirements/workflow.lock (the lock `make run` installs), then
# the package itself.
set -euo pipefail
python -m pip install --no-cache-dir --require-hashes -r requirements/workflow.lock
python -m pip install --no-cache-dir --no-deps --no-build-isolation .
