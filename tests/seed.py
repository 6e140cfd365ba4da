"""The seed notebook: its cells, and a replay that prints as IPython's display does."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED = Path(__file__).resolve().parent / "data" / "autograd_notebook.txt"
WIDTH = 79  # IPython's PlainTextFormatter max_width


@dataclass
class Cell:
    label: str
    code: str
    output: str


def cells(path: Path = SEED) -> list[Cell]:
    """Code cells with their expected output (prose headings between cells dropped)."""
    parts = re.split(r"^(In \[\d+\]):\n", path.read_text(), flags=re.M)[1:]
    out: list[Cell] = []
    for label, body in zip(parts[::2], parts[1::2], strict=True):
        code: list[str] = []
        shown: list[str] = []
        for chunk in body.strip("\n").split("\n\n"):
            if chunk.startswith(("tensor", "(tensor")):
                shown.append(chunk)
            elif not chunk.startswith("###"):
                code.append(chunk)
        out.append(Cell(label, "\n\n".join(code), "\n\n".join(shown)))
    return out


def display(value: Any) -> str:
    """IPython's text/plain for tensors and tuples or lists of them (section 12)."""
    if isinstance(value, tuple | list):
        open_, close = ("(", ")") if isinstance(value, tuple) else ("[", "]")
        items = [display(v) for v in value]
        trailing = "," if isinstance(value, tuple) and len(value) == 1 else ""
        flat = open_ + ", ".join(items) + trailing + close
        if len(flat) <= WIDTH and "\n" not in flat:
            return flat
        lines = [item.replace("\n", "\n ") for item in items]
        return open_ + ",\n ".join(lines) + trailing + close
    return repr(value)


def run_cell(code: str, namespace: dict[str, Any]) -> str:
    """Execute a cell; return what the notebook shows for it ('' for no output)."""
    tree = ast.parse(code)
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body[-1].value)
        tree.body.pop()
        exec(compile(tree, "<cell>", "exec"), namespace)
        value = eval(compile(last, "<cell>", "eval"), namespace)
        return "" if value is None else display(value)
    exec(compile(tree, "<cell>", "exec"), namespace)
    return ""


def replay(torch: Any) -> list[tuple[Cell, str]]:
    """Run every cell with ``torch`` bound as given; pairs of (cell, shown output)."""
    namespace: dict[str, Any] = {"torch": torch}
    shown = []
    for cell in cells():
        code = "\n".join(line for line in cell.code.splitlines() if line != "import torch")
        shown.append((cell, run_cell(code, namespace)))
    return shown
