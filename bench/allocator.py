"""The host allocator setting the server applies (``engine.backend.tune_host_allocator``).

``python -m bench allocator --json``: a 48-op elementwise chain on 1M float32 elements,
forward and backward, in two fresh processes without torch (as the server runs): glibc's
defaults against the tuned allocator. ``allocator_ratio`` is tuned over default time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = """
import statistics, sys, time
import numpy
from engine.backend import tune_host_allocator
tuned = sys.argv[1] == "tuned" and tune_host_allocator()
import engine
x = engine.tensor(numpy.random.default_rng(0).uniform(-1, 1, 1_000_000).astype("float32"),
                  requires_grad=True)
times = []
for _ in range(int(sys.argv[2])):
    x.grad = None
    start = time.perf_counter()
    y = x
    for i in range(48):
        y = (y * 1.01).sin() if i % 2 else y + 0.5
    y.sum().backward()
    times.append(time.perf_counter() - start)
print(statistics.median(times) * 1e6 / 48, tuned)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=7, help="timed chains per process")
    parser.add_argument("--processes", type=int, default=2, help="processes per side")


def _child(mode: str, repeats: int) -> tuple[float, bool]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(repeats)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), out[1] == "True"


def main(args: argparse.Namespace) -> int:
    default: list[float] = []
    tuned: list[float] = []
    applied = False
    for _ in range(args.processes):  # alternate, so neither side always runs first
        default.append(_child("default", args.repeats)[0])
        us, applied = _child("tuned", args.repeats)
        tuned.append(us)
    d, t = statistics.median(default), statistics.median(tuned)
    result = {
        "allocator_ratio": round(t / d, 3),
        "default_us_per_op": round(d, 1),
        "tuned_us_per_op": round(t, 1),
        "tuned_applied": applied,
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0
