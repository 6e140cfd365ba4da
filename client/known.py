"""Exact values of small results, computed on the client where every backend must agree.

Control flow on tensor values (``while x.norm() < 1000``) needs the value now. When the
client already holds the inputs' exact values (tensors it created from data, values it has
read), a few ops give one answer on any correct implementation: IEEE's correctly rounded
``+ - * /`` on floats of one dtype with Python numbers that dtype represents exactly,
negation, absolute value, comparisons, the sum or mean of one element and the 2-norm of one
element away from overflow and underflow. The client computes those with NumPy, as the
engine does; the server still runs every command, and its values are the ones later read.
Anything else returns None and the value comes from the server.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy

MAX_ELEMENTS = 64
_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": numpy.equal,
    "ne": numpy.not_equal,
    "lt": numpy.less,
    "le": numpy.less_equal,
    "gt": numpy.greater,
    "ge": numpy.greater_equal,
}
# |x| for which x * x neither overflows nor loses bits to underflow, so sqrt(x * x) == |x|.
_NORM_RANGE = {"float32": (1e-18, 1e18), "float64": (1e-150, 1e150)}
_INT_LIMIT = 1 << 31  # int64 operands this small cannot overflow + - *


def evaluate(op: str, args: Sequence[Any], attrs: dict[str, Any]) -> numpy.ndarray | None:
    """The op's exact result from known input values (arrays) and Python scalars, or None."""
    arrays = [a for a in args if isinstance(a, numpy.ndarray)]
    if not arrays or any(a.size > MAX_ELEMENTS for a in arrays):
        return None
    dtype = arrays[0].dtype
    if any(a.dtype != dtype for a in arrays) or dtype.name not in ("float32", "float64", "int64"):
        return None
    scalars = [a for a in args if not isinstance(a, numpy.ndarray)]
    if not all(_exact(s, dtype) for s in scalars):
        return None
    try:
        out = _compute(op, args, attrs, dtype)
    except (ValueError, TypeError, ArithmeticError):
        return None
    if out is None:
        return None
    out = numpy.asarray(out)
    if out.dtype.kind == "f":
        if out.dtype != dtype:
            return None
        magnitude = numpy.abs(out[out != 0])
        if (magnitude < numpy.finfo(out.dtype).tiny).any():  # subnormal: a GPU may flush it
            return None
    return out


def _exact(value: Any, dtype: numpy.dtype[Any]) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if dtype.kind == "i":
        return isinstance(value, int) and abs(value) < _INT_LIMIT
    try:
        return bool(float(dtype.type(value)) == value)
    except OverflowError:
        return False


def _compute(op: str, args: Sequence[Any], attrs: dict[str, Any], dtype: numpy.dtype[Any]) -> Any:
    ints = dtype.kind == "i"
    if ints and any(numpy.abs(a).max(initial=0) >= _INT_LIMIT for a in args if _array(a)):
        return None
    if op in _ARITHMETIC and len(args) == 2 and not (ints and op == "div"):
        a, b = args
        with numpy.errstate(all="ignore"):
            if op == "div" and not _array(a):  # s / x is reciprocal(x) * s, as in PyTorch
                r = numpy.reciprocal(b)
                if (numpy.abs(r[r != 0]) < numpy.finfo(r.dtype).tiny).any():
                    return None
                return r * a
            return _ARITHMETIC[op](a, b)
    if op in _COMPARE and len(args) == 2 and _array(args[0]):
        return _COMPARE[op](args[0], args[1])
    if len(args) != 1 or not _array(args[0]):
        return None
    (x,) = args
    if op == "neg":
        return -x
    if op == "abs":
        return numpy.abs(x)
    if op in ("clone", "detach"):
        return x.copy()
    if x.size != 1 or attrs.get("dim") is not None or attrs.get("keepdim"):
        return None
    if op == "sum":
        return x.reshape(()).copy()
    if op == "mean" and not ints:
        return x.reshape(()).copy()
    if op == "norm" and not ints and attrs.get("p", 2) == 2:
        low, high = _NORM_RANGE[dtype.name]
        value = abs(float(x.reshape(())))
        if value != value or value in (0.0, float("inf")) or low <= value <= high:
            return numpy.abs(x.reshape(()))
    return None


def _array(value: Any) -> bool:
    return isinstance(value, numpy.ndarray)
