"""The one tensor codec: JSON (flat or nested data, base64), protobuf bytes, and ``.npy``.

JSON form: ``{"shape": [2, 2], "dtype": "float32", "data": [1, 2, 3, 4]}`` with flat
row-major data (nested lists are accepted on input) and the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"`` for non-finite values; or ``{"shape", "dtype", "b64"}``
with the little-endian bytes in base64. Protobuf carries the same bytes raw: their layout is
``service.wire.to_bytes``, which the client shares.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy

from engine.dtypes import DTYPES
from engine.errors import InvalidArgument
from service.wire import to_bytes

_NONFINITE_IN = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _dtype(name: Any) -> numpy.dtype[Any]:
    if not isinstance(name, str) or name.removeprefix("torch.") not in DTYPES:
        raise InvalidArgument(f"unsupported dtype {name!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[name.removeprefix("torch.")]


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value
    ):
        raise InvalidArgument(f"shape must be a list of non-negative integers, got {value!r}")
    return tuple(value)


def _flatten(data: Any) -> list[Any]:
    """Row-major leaves of nested lists (iteratively; the nesting must be rectangular)."""
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _number(value: Any) -> Any:
    if isinstance(value, str):
        if value not in _NONFINITE_IN:
            raise InvalidArgument(
                f'invalid tensor element {value!r}: numbers, or "NaN", "Infinity", "-Infinity"'
            )
        return _NONFINITE_IN[value]
    if value is None or not isinstance(value, bool | int | float):
        raise InvalidArgument(f"invalid tensor element {value!r}")
    return value


def from_bytes(raw: bytes, shape: tuple[int, ...], dtype: numpy.dtype[Any]) -> numpy.ndarray:
    """An array from little-endian bytes, checked against shape and dtype; read-only when
    the bytes need no conversion."""
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise InvalidArgument(
            f"tensor data has {len(raw)} bytes but shape {list(shape)} of {dtype.name} needs "
            f"{expected}"
        )
    # A read-only view where the bytes are already native (no copy of a large upload here):
    # creating a tensor copies its data anyway.
    return (
        numpy.frombuffer(raw, dtype=dtype.newbyteorder("<"))
        .astype(dtype, copy=False)
        .reshape(shape)
    )


def decode(obj: Any) -> numpy.ndarray:
    """An array from the JSON form."""
    if not isinstance(obj, dict):
        raise InvalidArgument("a tensor must be an object with shape, dtype and data (or b64)")
    unknown = set(obj) - {"shape", "dtype", "data", "b64"}
    if unknown:
        raise InvalidArgument(f"unknown tensor field(s) {sorted(unknown)}")
    dtype = _dtype(obj.get("dtype", "float32"))
    if ("data" in obj) == ("b64" in obj):
        raise InvalidArgument("a tensor needs exactly one of 'data' and 'b64'")
    if "b64" in obj:
        if "shape" not in obj:
            raise InvalidArgument("a base64 tensor needs its 'shape'")
        try:
            raw = base64.b64decode(obj["b64"], validate=True)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(f"invalid base64 tensor data: {exc}") from exc
        return from_bytes(raw, _shape(obj["shape"]), dtype)
    data = obj["data"]
    values = [_number(v) for v in _flatten(data)]
    if "shape" in obj:
        shape = _shape(obj["shape"])
    else:
        shape = numpy.shape(data) if isinstance(data, list) else ()
    if len(values) != math.prod(shape):
        raise InvalidArgument(
            f"tensor data has {len(values)} elements but shape {list(shape)} needs "
            f"{math.prod(shape)}"
        )
    try:
        return numpy.array(values, dtype=dtype).reshape(shape)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"tensor data does not fit {dtype.name}: {exc}") from exc


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def encode(array: numpy.ndarray, binary: bool = False) -> dict[str, Any]:
    """The JSON form of an array: flat data, or base64 bytes when ``binary``."""
    out: dict[str, Any] = {"shape": list(array.shape), "dtype": array.dtype.name}
    if binary:
        out["b64"] = base64.b64encode(to_bytes(array)).decode("ascii")
        return out
    flat = array.reshape(-1).tolist()
    if array.dtype.kind == "f" and not numpy.isfinite(array).all():
        flat = [_json_value(v) for v in flat]
    out["data"] = flat
    return out


def to_npy(array: numpy.ndarray) -> bytes:
    buffer = io.BytesIO()
    numpy.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def from_npy(raw: bytes) -> numpy.ndarray:
    """An array from ``.npy`` bytes (never unpickles objects)."""
    try:
        array = numpy.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidArgument(f"invalid .npy body: {exc}") from exc
    if array.dtype.name not in DTYPES:
        raise InvalidArgument(f"unsupported dtype {array.dtype.name!r} in .npy body")
    return array.astype(DTYPES[array.dtype.name], copy=False)  # native byte order
