#!/usr/bin/env bash
# Regenerate the lock files the Docker image installs from (pinned, with hashes), from pyproject.toml:
#   requirements.lock        runtime dependencies ([project] dependencies)
#   requirements-gpu.lock    the same plus the cuda12 extra (CuPy for CUDA 12)
#   requirements-build.lock  [build-system] requires (setuptools), to build gradserve's wheel
# One universal resolution for Python 3.11, valid on every platform (amd64 and arm64 images).
# Existing pins are kept; pass --upgrade (or --upgrade-package NAME) to move them.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.8

[ -x .venv/bin/python ] || python3 -m venv .venv
if command -v uv >/dev/null 2>&1; then
    uv=uv
else
    [ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q --disable-pip-version-check "uv==${UV_VERSION}"
    uv=.venv/bin/uv
fi

compile() {
    "$uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
        --custom-compile-command "bash scripts/lock.sh" "$@"
}

compile pyproject.toml -o requirements.lock "$@"
compile pyproject.toml --extra cuda12 -o requirements-gpu.lock "$@"
.venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
    | compile - -o requirements-build.lock "$@"
