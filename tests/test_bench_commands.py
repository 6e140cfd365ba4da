"""README's benchmark commands run and print one JSON object with their figures.

A smoke test at the smallest sizes: the figures themselves are measured by hand and recorded
in bench/RESULTS.md, never asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "allocator": (["--repeats", "1", "--processes", "1"], "allocator_ratio"),
    "engine": (["--quick"], "engine_tiny_ratio"),
    "sessions": (["--repeats", "1"], "batch_overhead_ratio"),
    "service": (["--requests", "20", "--batches", "1", "--uploads", "1"], "http_op_ratio"),
    "client": (["--repeats", "1", "--ops", "20", "--calls", "10"], "client_lazy_vs_eager"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bench_command_prints_its_figures(name: str) -> None:
    options, key = COMMANDS[name]
    out = subprocess.run(
        [sys.executable, "-m", "bench", name, "--json", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert isinstance(result[key], float)
