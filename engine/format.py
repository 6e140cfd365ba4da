"""PyTorch's tensor ``repr()``, byte for byte, with the default print options.

A NumPy re-implementation of ``torch/_tensor_str.py`` (torch 2.13) for strided CPU tensors
of the real dtypes: precision 4, threshold 1000, edgeitems 3, linewidth 80, sci_mode None.

One element formatter serves the whole tensor.  It is built from the elements that are
shown (the edges only, when a tensor of more than ``THRESHOLD`` elements is summarised);
for floats it looks only at the finite non-zero values to pick between int mode
(``3.``), fixed (``3.1416``) and scientific (``3.1416e+00``) notation and the common width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy

THRESHOLD = 1000
EDGEITEMS = 3
LINEWIDTH = 80
PREFIX = "tensor("
INDENT = len(PREFIX)

FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})
INT_DTYPES = frozenset({"int8", "int16", "int32", "int64", "uint8", "bool"})
DEFAULT_DTYPE = "float32"
# Dtypes whose name repr() leaves out for non-empty tensors (default float, int64, bool).
IMPLICIT_DTYPES = frozenset({DEFAULT_DTYPE, "int64", "bool"})

_SCI: Callable[[float], str] = "{:.4e}".format
_FIXED: Callable[[float], str] = "{:.4f}".format


def format_tensor(
    data: numpy.ndarray[Any, Any],
    dtype: str,
    *,
    grad_fn: str | None = None,
    requires_grad: bool = False,
) -> str:
    """Return exactly what torch 2.13's repr() prints for a tensor with these values.

    ``dtype`` is the torch dtype name without ``torch.`` and must match ``data.dtype``;
    ``grad_fn`` is a node name such as ``"MulBackward0"``.
    """
    if dtype not in FLOAT_DTYPES and dtype not in INT_DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}")
    suffixes: list[str] = []
    if data.size == 0:
        if data.ndim != 1:
            suffixes.append(f"size={tuple(data.shape)}")
        if dtype != DEFAULT_DTYPE:
            suffixes.append(f"dtype=torch.{dtype}")
        contents = "[]"
    else:
        if dtype not in IMPLICIT_DTYPES:
            suffixes.append(f"dtype=torch.{dtype}")
        contents = _contents(data, dtype in FLOAT_DTYPES)
    if grad_fn is not None:
        suffixes.append(f"grad_fn=<{grad_fn}>")
    elif requires_grad:
        suffixes.append("requires_grad=True")
    return _add_suffixes(PREFIX + contents, suffixes)


def _contents(data: numpy.ndarray[Any, Any], floating: bool) -> str:
    """The bracketed body of a non-empty tensor (summarised when it is large)."""
    summarize = data.size > THRESHOLD
    elided = tuple(summarize and n > 2 * EDGEITEMS for n in data.shape)
    shown = _edges(data, elided)
    cells, width = _float_cells(shown) if floating else _int_cells(shown)
    padded = [cell.rjust(width) for cell in cells]
    return _render(padded, shown.shape, elided, INDENT, width)


def _edges(data: numpy.ndarray[Any, Any], elided: Sequence[bool]) -> numpy.ndarray[Any, Any]:
    """Keep only the first and last ``EDGEITEMS`` entries along every elided axis.

    One fancy-indexing gather, so only the shown elements are ever copied.
    """
    if not any(elided):
        return data
    index = [
        [*range(EDGEITEMS), *range(n - EDGEITEMS, n)] if cut else range(n)
        for n, cut in zip(data.shape, elided, strict=True)
    ]
    return data[numpy.ix_(*index)]


def _int_cells(shown: numpy.ndarray[Any, Any]) -> tuple[list[str], int]:
    """``str()`` of every integer or bool element, and the widest length (at least 1)."""
    cells = [str(value) for value in shown.ravel().tolist()]
    return cells, max(1, *map(len, cells))


def _float_cells(shown: numpy.ndarray[Any, Any]) -> tuple[list[str], int]:
    """Every float element in the tensor-wide notation, and the common width.

    The width is taken from the finite non-zero values only, so ``nan``, ``inf`` and
    ``-0.`` may come out wider than it.
    """
    values = shown.astype(numpy.float64).ravel()  # exact for float16/float32, like .item()
    counted = numpy.isfinite(values) & (values != 0)
    magnitudes = numpy.abs(values[counted])
    fmt = _choose_notation(magnitudes)
    cells = [fmt(value) for value in values.tolist()]
    width = max(
        (len(cell) for cell, keep in zip(cells, counted.tolist(), strict=True) if keep),
        default=1,
    )
    return cells, max(1, width)


def _choose_notation(magnitudes: numpy.ndarray[Any, Any]) -> Callable[[float], str]:
    """Pick scientific, int-mode or fixed notation from the finite non-zero magnitudes."""
    if magnitudes.size == 0:
        return _int_mode
    largest = float(magnitudes.max())
    smallest = float(magnitudes.min())
    if largest / smallest > 1000.0 or largest > 1.0e8 or smallest < 1.0e-4:
        return _SCI
    if numpy.array_equal(magnitudes, numpy.ceil(magnitudes)):
        return _int_mode
    return _FIXED


def _int_mode(value: float) -> str:
    """A float with integral values: ``3.``, ``-0.``; ``nan`` and ``inf`` get no dot."""
    text = f"{value:.0f}"
    return text if text[-1] in "nf" else text + "."


def _render(
    cells: list[str], shape: tuple[int, ...], elided: Sequence[bool], indent: int, width: int
) -> str:
    """Lay out padded cells (row-major) as nested brackets; ``indent`` is the column of '['."""
    if not shape:
        return cells[0]
    if len(shape) == 1:
        return _render_row(cells, elided[0], indent, width)
    step = len(cells) // shape[0]
    blocks = [
        _render(cells[i * step : (i + 1) * step], shape[1:], elided[1:], indent + 1, width)
        for i in range(shape[0])
    ]
    if elided[0]:
        blocks.insert(EDGEITEMS, "...")
    separator = "," + "\n" * (len(shape) - 1) + " " * (indent + 1)
    return "[" + separator.join(blocks) + "]"


def _render_row(cells: list[str], elided: bool, indent: int, width: int) -> str:
    """One innermost vector, wrapped to ``LINEWIDTH``; the ``" ..."`` marker counts as a cell."""
    items = [*cells[:EDGEITEMS], " ...", *cells[EDGEITEMS:]] if elided else cells
    per_line = max(1, (LINEWIDTH - indent) // (width + 2))
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _add_suffixes(text: str, suffixes: list[str]) -> str:
    """Append ``, suffix`` items, moving one to a new line when it would pass ``LINEWIDTH``."""
    parts = [text]
    line_len = len(text) - text.rfind("\n") + 1  # last line's length + 2, as torch counts
    for suffix in suffixes:
        if line_len + len(suffix) + 2 > LINEWIDTH:
            parts.append(",\n" + " " * INDENT + suffix)
            line_len = INDENT + len(suffix)
        else:
            parts.append(", " + suffix)
            line_len += len(suffix) + 2
    parts.append(")")
    return "".join(parts)
