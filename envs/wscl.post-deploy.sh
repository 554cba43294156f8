#!/usr/bin/env bash
# Snakemake runs this in the new environment, from the working directory (the repository root): install the
# package with the dependencies pyproject.toml pins, so that they are declared in one place.
set -euo pipefail
python -m pip install --no-cache-dir ".[workflow]"
