"""gradserve's engine against PyTorch CPU eager, measured in one run on the same thread count.

``python -m bench engine --json`` prints one JSON object. Each ``engine_*_ratio`` is
gradserve's median over PyTorch's median (below 1: gradserve is faster or smaller):

- ``engine_tiny_ratio``: a chain of mixed elementwise ops on 4-element tensors, forward and
  backward: the per-op overhead of the Python engine against PyTorch's dispatcher.
- ``engine_large_ratio``: the same kind of chain on 1M-element float32 tensors: kernel
  throughput, where PyTorch runs elementwise kernels on every core.
- ``engine_matmul_ratio``: a chain of 1024x1024 float32 matmuls (BLAS on both sides).
- ``engine_peak_mem_ratio``: peak resident memory of a 100-op chain on 1M elements, forward
  and backward, each library in a fresh subprocess (see ``_peak_child``).

The same chain code runs on both libraries: ``engine`` doubles as a ``torch``-like namespace.
Both get the same thread count, the machine's cores: ``torch.set_num_threads(os.cpu_count())``
and ``engine.parallel.set_num_threads(os.cpu_count())``. Timed runs alternate between the two
libraries, each after a ``gc.collect()``; the raw per-op timings are under ``raw``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy

THREADS = os.cpu_count() or 1
DEVICE = "cpu"  # where gradserve's tensors live (``--device cuda`` on a GPU machine)

# One step of the mixed chain each; values stay in about [-1, 3] whatever the length.
STEPS: tuple[Callable[[Any, Any, Any], Any], ...] = (
    lambda x, w, b: x * w,
    lambda x, w, b: x + b,
    lambda x, w, b: x.sin(),
    lambda x, w, b: x.exp(),
    lambda x, w, b: x.tanh(),
    lambda x, w, b: x / 2.0,
    lambda x, w, b: x - b,
    lambda x, w, b: x.cos(),
)


def mixed_chain(x: Any, w: Any, b: Any, n_ops: int) -> Any:
    """``n_ops`` elementwise ops cycling through ``STEPS``."""
    for i in range(n_ops):
        x = STEPS[i % len(STEPS)](x, w, b)
    return x


def matmul_chain(x: Any, weights: list[Any]) -> Any:
    for w in weights:
        x = x @ w
    return x


def _library(name: str) -> ModuleType:
    """``engine`` or ``torch``, set to use ``THREADS`` threads."""
    if name == "torch":
        import torch

        torch.set_num_threads(THREADS)
        return torch
    import engine
    from engine import parallel

    parallel.set_num_threads(THREADS)
    return engine


def _libraries() -> dict[str, ModuleType]:
    return {name: _library(name) for name in ("gradserve", "torch")}


def _leaf(lib: ModuleType, array: numpy.ndarray) -> Any:
    if lib.__name__ == "engine":
        return lib.tensor(array, requires_grad=True, device=DEVICE)
    return lib.tensor(array, requires_grad=True)


def _sync() -> None:
    """Let queued GPU kernels finish before a clock is read."""
    if DEVICE != "cpu":
        from engine.backend import synchronize

        synchronize()


def _elementwise_inputs(numel: int, seed: int) -> list[numpy.ndarray]:
    rng = numpy.random.default_rng(seed)
    return [
        rng.uniform(-1.0, 1.0, numel).astype(numpy.float32),
        rng.uniform(0.5, 1.5, numel).astype(numpy.float32),
        rng.uniform(-0.5, 0.5, numel).astype(numpy.float32),
    ]


def _timed_run(step: Callable[[], Any], leaves: list[Any]) -> tuple[float, float]:
    """Forward and backward seconds of one run; gradients from the last run are dropped first."""
    for t in leaves:
        t.grad = None
    gc.collect()
    start = time.perf_counter()
    y = step().sum()
    _sync()
    mid = time.perf_counter()
    y.backward()
    _sync()
    end = time.perf_counter()
    return mid - start, end - mid


def _compare(
    make: Callable[[ModuleType], tuple[Callable[[], Any], list[Any]]],
    libs: dict[str, ModuleType],
    n_ops: int,
    repeats: int,
    warmup: int = 2,
) -> dict[str, Any]:
    """Median forward+backward time per op for each library, runs interleaved."""
    runs = {name: make(lib) for name, lib in libs.items()}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in libs}
    for i in range(warmup + repeats):
        order = list(runs) if i % 2 else list(reversed(runs))  # neither always runs first
        for name in order:
            step, leaves = runs[name]
            fwd, bwd = _timed_run(step, leaves)
            if i >= warmup:
                times[name].append((fwd, bwd))
    out: dict[str, Any] = {"ops": n_ops, "repeats": repeats}
    for name, samples in times.items():
        us = 1e6 / n_ops
        out[f"{name}_us_per_op"] = round(statistics.median(f + b for f, b in samples) * us, 3)
        out[f"{name}_forward_us_per_op"] = round(statistics.median(f for f, _ in samples) * us, 3)
        out[f"{name}_backward_us_per_op"] = round(statistics.median(b for _, b in samples) * us, 3)
    out["ratio"] = round(out["gradserve_us_per_op"] / out["torch_us_per_op"], 3)
    return out


def bench_elementwise(
    libs: dict[str, ModuleType], numel: int, n_ops: int, repeats: int
) -> dict[str, Any]:
    arrays = _elementwise_inputs(numel, seed=0)

    def make(lib: ModuleType) -> tuple[Callable[[], Any], list[Any]]:
        x, w, b = (_leaf(lib, a) for a in arrays)
        return (lambda: mixed_chain(x, w, b, n_ops)), [x, w, b]

    return {"numel": numel, "dtype": "float32", **_compare(make, libs, n_ops, repeats)}


def bench_matmul(libs: dict[str, ModuleType], n: int, n_ops: int, repeats: int) -> dict[str, Any]:
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((n, n), dtype=numpy.float32)
    # Scaled by 1/sqrt(n) so that values keep their size along the chain.
    ws = [rng.standard_normal((n, n), dtype=numpy.float32) / n**0.5 for _ in range(n_ops)]

    def make(lib: ModuleType) -> tuple[Callable[[], Any], list[Any]]:
        leaves = [_leaf(lib, x)] + [_leaf(lib, w) for w in ws]
        return (lambda: matmul_chain(leaves[0], leaves[1:])), leaves

    result = _compare(make, libs, n_ops, repeats, warmup=1)
    return {"shape": [n, n], "dtype": "float32", **result}


# ----- peak memory -----

# Every buffer of 128 KiB or more gets its own mmap, returned to the kernel on free, on both
# sides: glibc's default raises this threshold as large blocks are freed and then keeps freed
# memory in its heap, which would make resident memory lag the live buffers.
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Reset VmHWM to the current resident size (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def graph_saved_bytes(root: Any) -> int:
    """Sum of ``Node.saved_bytes()`` over the engine's nodes reachable from ``root``.

    An array that two nodes keep (tanh's output, which the next op saves as its input)
    counts twice: this is a count of what the nodes hold, not of distinct memory.
    """
    from engine.graph import Node

    total = 0
    stack = [root]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if not isinstance(node, Node) or id(node) in seen:
            continue
        seen.add(id(node))
        total += node.saved_bytes()
        stack.extend(node.edges)
    return total


def _peak_child(name: str, numel: int, n_ops: int) -> None:
    """In a fresh process: peak resident bytes over baseline of one forward+backward."""
    lib = _library(name)
    arrays = _elementwise_inputs(numel, seed=2)
    xs, ws, bs = (_leaf(lib, a[:16].copy()) for a in arrays)
    mixed_chain(xs, ws, bs, n_ops).sum().backward()  # first-use costs outside the measure
    x, w, b = (_leaf(lib, a) for a in arrays)
    del arrays
    mixed_chain(x, w, b, 1)  # starts the thread pools (OpenMP, engine.parallel); then freed
    gc.collect()
    base = _status_kib("VmRSS")
    _reset_peak_rss()
    y = mixed_chain(x, w, b, n_ops).sum()
    saved_before = graph_saved_bytes(y.grad_fn) if name == "gradserve" else None
    y.backward()
    peak = _status_kib("VmHWM")
    result: dict[str, Any] = {"peak_bytes": (peak - base) * 1024}
    if name == "gradserve":
        import tracemalloc

        result["saved_bytes_before_backward"] = saved_before
        result["saved_bytes_after_backward"] = graph_saved_bytes(y.grad_fn)
        del y
        for t in (x, w, b):
            t.grad = None
        gc.collect()
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        mixed_chain(x, w, b, n_ops).sum().backward()
        result["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1] - start
        tracemalloc.stop()
    print(json.dumps(result))


def bench_peak_memory(numel: int, n_ops: int) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    out: dict[str, Any] = {"numel": numel, "ops": n_ops, "dtype": "float32"}
    for name in ("gradserve", "torch"):
        code = f"from bench.engine import _peak_child; _peak_child({name!r}, {numel}, {n_ops})"
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env={**os.environ, **_MALLOC_ENV},
            capture_output=True,
            text=True,
            check=True,
        )
        for key, value in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            out[f"{name}_{key}"] = value
    out["ratio"] = round(out["gradserve_peak_bytes"] / out["torch_peak_bytes"], 3)
    out["method"] = (
        "each library in a fresh subprocess with MALLOC_MMAP_THRESHOLD_=131072; peak = VmHWM "
        "after forward+backward minus VmRSS before it (VmHWM reset through /proc/self/clear_refs)"
        "; tracemalloc peak of the same run given for gradserve as a cross-check"
    )
    return out


# ----- command -----


def _machine() -> dict[str, Any]:
    import torch

    return {
        "cpus": os.cpu_count(),
        "threads": THREADS,
        "gpu": "none used (PyTorch CPU eager against the NumPy backend)",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
        # Other work on the machine skews every figure: the 1-minute load average before and
        # after the run tells a reader how quiet it was.
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }


def run(quick: bool = False) -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 2)
    libs = _libraries()
    scale = 3 if quick else 1
    tiny = bench_elementwise(libs, numel=4, n_ops=1000, repeats=15 // scale)
    large = bench_elementwise(libs, numel=1_000_000, n_ops=48, repeats=9 // scale)
    matmul = bench_matmul(libs, n=1024, n_ops=4, repeats=7 // scale)
    if DEVICE != "cpu":  # resident memory says nothing of GPU memory: the CPU figures stand
        machine = {**_machine(), "loadavg_1min_before": load_before, "device": DEVICE}
        return {
            "engine_tiny_ratio": tiny["ratio"],
            "engine_large_ratio": large["ratio"],
            "engine_matmul_ratio": matmul["ratio"],
            "raw": {"tiny": tiny, "large": large, "matmul": matmul},
            "machine": machine,
        }
    memory = bench_peak_memory(numel=1_000_000, n_ops=100)
    machine = {**_machine(), "loadavg_1min_before": load_before}
    return {
        "engine_tiny_ratio": tiny["ratio"],
        "engine_large_ratio": large["ratio"],
        "engine_matmul_ratio": matmul["ratio"],
        "engine_peak_mem_ratio": memory["ratio"],
        "engine_saved_bytes_after_backward": memory["gradserve_saved_bytes_after_backward"],
        "raw": {"tiny": tiny, "large": large, "matmul": matmul, "peak_mem": memory},
        "machine": machine,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    parser.add_argument(
        "--device", default="cpu", help="gradserve's device: cpu, or cuda against PyTorch CPU"
    )


def main(args: argparse.Namespace) -> int:
    global DEVICE
    DEVICE = args.device
    result = run(quick=args.quick)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for key, value in result.items():
        if key.startswith("engine_"):
            print(f"{key:40} {value}")
    for name, section in result["raw"].items():
        line = ", ".join(f"{k}={v}" for k, v in section.items() if k.endswith(("_op", "_bytes")))
        print(f"{name:8} {line}")
    return 0
