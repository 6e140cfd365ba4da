"""Command-API overhead: a 1000-command batch through sessions vs the same ops on the engine.

``batch_overhead_ratio`` is the median wall time of parsing and executing the batch (one
transaction, limits checked) over the median time of the same ops called directly. Its
commands rebind one name (``y = sin(y)``), so the session runs them as one fused chain
(engine.fusion). ``unchained_overhead_ratio`` is the same over the same ops with the result
bound to two names in turn (``z = sin(y)``, ``y = tanh(z)``), which forms no chain: every
command its executor's call, as a batch of unrelated commands takes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

N = 1000
OPS = ("mul", "add", "sin", "tanh")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=15, help="timed repetitions (median)")


def _commands(chained: bool = True) -> list[dict[str, Any]]:
    cmds: list[dict[str, Any]] = [
        {"kind": "create", "data": [0.1, 0.2, 0.3, 0.4], "requires_grad": True, "name": "x"},
        {"kind": "op", "op": "mul", "inputs": ["x", 1.0], "name": "y"},
    ]
    y = "y"
    for i in range(N - 3):
        op = OPS[i % len(OPS)]
        out = y if chained else ("z" if y == "y" else "y")
        inputs: list[Any] = [y, 1.0001] if op in ("mul", "add") else [y]
        cmds.append({"kind": "op", "op": op, "inputs": inputs, "name": out})
        y = out
    cmds.append({"kind": "op", "op": "sum", "inputs": [y], "name": "s"})
    return cmds


def _direct() -> None:
    import engine

    x = engine.tensor([0.1, 0.2, 0.3, 0.4], requires_grad=True)
    y = engine.mul(x, 1.0)
    for i in range(N - 3):
        op = OPS[i % len(OPS)]
        y = engine.OPS[op](y, 1.0001) if op in ("mul", "add") else engine.OPS[op](y)
    engine.OPS["sum"](y)


def main(args: argparse.Namespace) -> int:
    from engine.parsing import parse
    from engine.session import SessionManager

    manager = SessionManager()
    session_id, token = manager.create()
    raw, unchained = _commands(), _commands(chained=False)
    api: list[float] = []
    apart: list[float] = []
    direct: list[float] = []
    try:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            manager.execute(session_id, token, [parse(c) for c in raw])
            api.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _direct()
            direct.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            manager.execute(session_id, token, [parse(c) for c in unchained])
            apart.append(time.perf_counter() - t0)
    finally:
        manager.shutdown()
    a, u, d = statistics.median(api), statistics.median(apart), statistics.median(direct)
    result = {
        "batch_overhead_ratio": round(a / d, 3),
        "unchained_overhead_ratio": round(u / d, 3),
        "batch_us_per_command": round(a * 1e6 / N, 2),
        "unchained_us_per_command": round(u * 1e6 / N, 2),
        "engine_us_per_op": round(d * 1e6 / N, 2),
        "commands": N,
        "repeats": args.repeats,
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0
