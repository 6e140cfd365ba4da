"""Dtypes by PyTorch's names, and PyTorch's type promotion (including Python scalars)."""

from __future__ import annotations

from typing import Any

import numpy

from engine.errors import InvalidArgument

DTYPES: dict[str, numpy.dtype[Any]] = {
    name: numpy.dtype(name)
    for name in (
        "bool",
        "uint8",
        "int8",
        "int16",
        "int32",
        "int64",
        "float16",
        "float32",
        "float64",
    )
}
DEFAULT_FLOAT = DTYPES["float32"]
DEFAULT_INT = DTYPES["int64"]
BOOL = DTYPES["bool"]

# PyTorch's legacy type names, used in the version-counter error text.
_LEGACY = {
    "float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long",
    "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool",
}  # fmt: skip

Scalar = bool | int | float


def dtype_from_name(name: str | None) -> numpy.dtype[Any] | None:
    """Parse a dtype name ("float32", "torch.float32", "float", "long", ...) or None."""
    if name is None:
        return None
    key = name.removeprefix("torch.")
    key = {"float": "float32", "double": "float64", "half": "float16", "long": "int64",
           "int": "int32", "short": "int16"}.get(key, key)  # fmt: skip
    if key not in DTYPES:
        raise InvalidArgument(f"unsupported dtype {name!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[key]


def legacy_name(dtype: numpy.dtype[Any]) -> str:
    """PyTorch's legacy scalar type name: Float, Long, ..."""
    return _LEGACY[dtype.name]


def is_floating(dtype: numpy.dtype[Any]) -> bool:
    return dtype.kind == "f"


def category(dtype: numpy.dtype[Any]) -> int:
    """0 for bool, 1 for integers, 2 for floating point."""
    return 2 if dtype.kind == "f" else (0 if dtype.kind == "b" else 1)


def promote(a: numpy.dtype[Any], b: numpy.dtype[Any]) -> numpy.dtype[Any]:
    """PyTorch's promote_types: an integer with a float gives the float, never a wider one."""
    if a == b:
        return a
    ca, cb = category(a), category(b)
    if ca != cb:
        return a if ca > cb else b
    return numpy.promote_types(a, b)


def scalar_dtype(value: Scalar) -> numpy.dtype[Any]:
    """The dtype PyTorch gives a Python scalar on its own."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return DEFAULT_INT
    return DEFAULT_FLOAT


def _combine(higher: numpy.dtype[Any] | None, lower: numpy.dtype[Any] | None) -> Any:
    # c10's combine_categories: a lower-priority group only raises the category.
    if higher is None:
        return lower
    if lower is None or is_floating(higher):
        return higher
    if higher == BOOL or is_floating(lower):
        return promote(higher, lower)
    return higher


def result_type(operands: list[tuple[numpy.dtype[Any], int] | Scalar]) -> numpy.dtype[Any]:
    """PyTorch's result_type over (dtype, ndim) pairs for tensors and plain Python scalars."""
    dim: numpy.dtype[Any] | None = None
    zero: numpy.dtype[Any] | None = None
    wrapped: numpy.dtype[Any] | None = None
    for op in operands:
        if isinstance(op, tuple):
            dt, ndim = op
            if ndim:
                dim = dt if dim is None else promote(dim, dt)
            else:
                zero = dt if zero is None else promote(zero, dt)
        else:
            dt = scalar_dtype(op)
            wrapped = dt if wrapped is None else promote(wrapped, dt)
    result = _combine(dim, _combine(zero, wrapped))
    assert result is not None
    return result


class Constants(dict[Scalar, Any]):
    """Python numbers as read-only 0-d NumPy arrays of one floating dtype, made once each.

    A ufunc given a Python number converts it to the array's dtype on every call (NEP 50),
    which costs as much as the ufunc itself on a few elements; given the 0-d array of that
    dtype it computes the same values. ``table[value]`` is that array, or the number itself
    where the conversion is not a plain rounding (zero, whose sign the key loses; nan, which
    no key finds; values out of range, whose conversion warns) or the table is full.
    """

    _MAX = 1024

    def __init__(self, dtype: numpy.dtype[Any]) -> None:
        super().__init__()
        self.dtype = dtype

    def __missing__(self, value: Scalar) -> Any:
        if value == 0 or value != value or len(self) >= self._MAX:
            return value
        with numpy.errstate(all="raise"):
            try:
                constant = numpy.asarray(value, self.dtype)
            except (FloatingPointError, OverflowError):
                return value
        if type(value) is not float and constant.item() != value:  # an int it rounds
            return value
        constant.flags.writeable = False
        self[value] = constant
        return constant


FLOAT32, FLOAT64 = DTYPES["float32"], DTYPES["float64"]
# An attribute of the numpy module costs ~300 instructions a load on CPython 3.11 (its loads
# stay unspecialized), a global ~30: hot paths test array types against this name.
NDARRAY = numpy.ndarray
# Python numbers, tested by exact type (``type(x) in NUMBERS``: bool is no int here).
NUMBERS = frozenset((int, float, bool))
CONSTANTS32, CONSTANTS64 = Constants(FLOAT32), Constants(FLOAT64)


def constant(value: Scalar, like: Any) -> Any:
    """``value`` as an operand of a ufunc with the NumPy array ``like`` (see Constants);
    ``value`` itself next to anything else (a Tensor, a CuPy array, another dtype)."""
    if type(like) is NDARRAY:
        dtype = like.dtype
        if dtype is FLOAT32:
            return CONSTANTS32[value]
        if dtype is FLOAT64:
            return CONSTANTS64[value]
    return value
