"""PyTorch's small value types on the client: dtypes, ``Size``, ``device``, and tensor data.

``as_array`` turns what ``torch.tensor`` takes (nested lists of Python numbers, NumPy arrays)
into the array the server will hold, with PyTorch's dtype inference: the client then knows
the tensor's exact values without asking.
"""

from __future__ import annotations

from typing import Any

import numpy

from .errors import invalid

NAMES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
ALIASES = {
    "float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
    "short": "int16",
}  # fmt: skip
FLOATS = frozenset({"float16", "float32", "float64"})


class dtype:
    """A tensor element type; ``repr`` as PyTorch's (``torch.float32``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def is_floating_point(self) -> bool:
        return self.name in FLOATS

    @property
    def itemsize(self) -> int:
        return numpy.dtype(self.name).itemsize

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    def __reduce__(self) -> Any:
        return (of, (self.name,))


DTYPES: dict[str, dtype] = {name: dtype(name) for name in NAMES}


def of(name: str) -> dtype:
    return DTYPES[name]


def name_of(value: Any) -> str:
    """A dtype's name from a ``dtype``, a string (``"float32"``, ``"torch.long"``) or NumPy's."""
    if isinstance(value, dtype):
        return value.name
    if isinstance(value, str):
        key = value.removeprefix("torch.")
        key = ALIASES.get(key, key)
        if key in DTYPES:
            return key
    elif value in (float, int, bool):
        return {float: "float32", int: "int64", bool: "bool"}[value]
    else:
        try:
            key = numpy.dtype(value).name
        except TypeError:
            key = ""
        if key in DTYPES:
            return key
    raise invalid(f"unsupported dtype {value!r}; expected one of {list(NAMES)}", "TypeError")


class Size(tuple[int, ...]):
    """A tensor's shape; ``repr`` as PyTorch's (``torch.Size([2, 3])``)."""

    def __repr__(self) -> str:
        return f"torch.Size({list(self)})"

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= d
        return n


class device:
    """Where a session's tensors live; ``repr`` as PyTorch's (``device(type='cpu')``)."""

    __slots__ = ("index", "type")

    def __init__(self, spec: str) -> None:
        kind, _, index = str(spec).partition(":")
        self.type = kind
        self.index = int(index) if index else None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"


def _infer(value: Any) -> int:
    """PyTorch's category of nested Python data: 0 bool, 1 int64, 2 float32."""
    if isinstance(value, bool | numpy.bool_):
        return 0
    if isinstance(value, int | numpy.integer):
        return 1
    if isinstance(value, float | numpy.floating):
        return 2
    if isinstance(value, list | tuple):
        return max((_infer(v) for v in value), default=2)
    raise invalid(f"Could not infer dtype of {type(value).__name__}", "TypeError")


def as_array(data: Any, dtype_name: str | None) -> numpy.ndarray:
    """The array ``torch.tensor(data, dtype=...)`` holds, as the server computes it."""
    if isinstance(data, numpy.ndarray | numpy.generic):
        name = dtype_name or numpy.dtype(data.dtype).name
        if name not in DTYPES:
            raise invalid(f"unsupported dtype {data.dtype.name!r}", "TypeError")
        return numpy.array(data, dtype=name, copy=True)
    inferred = ("bool", "int64", "float32")[_infer(data)]  # also rejects None, strings, ...
    name = dtype_name or inferred
    try:
        return numpy.array(data, dtype=name)
    except (ValueError, TypeError, OverflowError) as exc:
        raise invalid(f"could not convert data to a tensor: {exc}", "ValueError") from exc
