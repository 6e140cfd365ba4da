#!/usr/bin/env bash
# GPU checks for a device-tool machine (under 5 minutes): the `gpu` tests, then the engine
# benchmark with gradserve's tensors on the GPU (PyTorch on the CPU as the peer).
# The device image already holds CuPy, NumPy, PyTorch and pytest and reaches no index, so this
# runs the repository from source with that image's python3 (PYTHON overrides it).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$py" -c 'import cupy; print("cupy", cupy.__version__, cupy.cuda.runtime.getDeviceCount(), "device(s)")'
"$py" -m pytest -q -p no:cacheprovider -m gpu tests/engine/test_gpu.py
timeout 180 "$py" -m bench engine --json --quick --device cuda
