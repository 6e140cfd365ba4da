"""What commands return: small, immutable records of the tensors they created or read.

Both are named tuples: one per command of every batch, so they are built by
``tuple.__new__`` from values already at hand (no ``__init__`` frame, no keyword parsing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy

from engine.backend import to_numpy
from engine.dtypes import DTYPES
from engine.tensor import Tensor

# dtype.name goes through Python code in NumPy; a dict lookup is far cheaper.
DTYPE_NAMES = {dt: name for name, dt in DTYPES.items()}

_new = tuple.__new__


class TensorInfo(NamedTuple):
    """What a command reports about a tensor; ``value``, ``grad`` and ``repr`` when asked."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    is_leaf: bool
    grad_fn: str | None
    has_grad: bool
    value: numpy.ndarray | None = None
    grad: numpy.ndarray | None = None
    repr: str | None = None


class Result(NamedTuple):
    """One command's result: the tensors it created or read (``None`` for an unused grad).

    The session gives ``tensors`` as a tuple: a tuple of immutable records drops out of the
    garbage collector's sight at its first pass, and a batch makes one result per command.
    """

    kind: str
    tensors: Sequence[TensorInfo | None]


def brief(name: str, t: Tensor) -> TensorInfo:
    """A tensor's metadata as it is now (later commands of the batch may change it)."""
    data = t.data
    node = t.grad_fn
    layout = t._layout
    return _new(  # type: ignore[no-any-return]
        TensorInfo,
        (
            name,
            # A tuple on either backend: the layout's (one for many tensors: no new object)
            layout[2] if layout else data.shape,
            DTYPE_NAMES[data.dtype],
            t._requires_grad,
            node is None,
            None if node is None else node.name,
            t.grad is not None,
            None,
            None,
            None,
        ),
    )


def info(
    name: str, t: Tensor, *, value: bool = False, grad: bool = False, text: bool = False
) -> TensorInfo:
    """``brief``, with copies of the value and grad and the repr when asked."""
    out = brief(name, t)
    if not (value or grad or text):
        return out
    return out._replace(
        value=to_numpy(t.data).copy() if value else None,
        grad=to_numpy(t.grad.data).copy() if grad and t.grad is not None else None,
        repr=repr(t) if text else None,
    )


def result(kind: str, *tensors: TensorInfo | None) -> Result:
    return _new(Result, (kind, tensors))  # type: ignore[no-any-return]
