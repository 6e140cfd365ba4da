#!/usr/bin/env bash
# Set up a virtual environment and run gradserve's main job.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/python -m examples.seed_engine "$@"
