#!/usr/bin/env bash
# Set up a virtual environment and run gradserve: HTTP on 127.0.0.1:8000, gRPC on 127.0.0.1:50051
# (flags such as --http-port and GRADSERVE_* variables override them).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/gradserve serve "$@"
