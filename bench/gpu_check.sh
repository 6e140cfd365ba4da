#!/usr/bin/env bash
# GPU checks for a device-tool machine (under 5 minutes): install the CUDA extra, run the
# `gpu` tests, then the engine benchmark on the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv /tmp/gpu-venv
/tmp/gpu-venv/bin/pip install -q -e '.[test,cuda12]'
/tmp/gpu-venv/bin/python -c 'import cupy; print("cupy", cupy.__version__, cupy.cuda.runtime.getDeviceCount(), "device(s)")'
/tmp/gpu-venv/bin/python -m pytest -q -m gpu tests/engine/test_gpu.py
GRADSERVE_BENCH_DEVICE=cuda timeout 180 /tmp/gpu-venv/bin/python -m bench engine --json
