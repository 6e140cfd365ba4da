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
import tokenize
from typing import Any, NoReturn

import numpy
from numpy.lib import format as npy_format

from engine.backend import HOST_BLOCKS
from engine.dtypes import DTYPES
from engine.errors import InvalidArgument
from service.errors import RequestTooLarge
from service.wire import to_bytes

# What numpy.load raises for bytes that are not a .npy file (a header that does not tokenize
# escapes as TokenError, a dimension past int64 as OverflowError).
_NOT_NPY = (ValueError, OverflowError, OSError, EOFError, SyntaxError, tokenize.TokenError)
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


def from_bytes(
    raw: bytes | memoryview, shape: tuple[int, ...], dtype: numpy.dtype[Any]
) -> numpy.ndarray:
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
    except _NOT_NPY as exc:
        raise InvalidArgument(f"invalid .npy body: {exc}") from exc
    return _native(array)


def _native(array: numpy.ndarray) -> numpy.ndarray:
    if array.dtype.name not in DTYPES:
        raise InvalidArgument(f"unsupported dtype {array.dtype.name!r} in .npy body")
    return array.astype(DTYPES[array.dtype.name], copy=False)  # native byte order


_NPY_HEADER_READERS = {
    (1, 0): (2, npy_format.read_array_header_1_0),
    (2, 0): (4, npy_format.read_array_header_2_0),
}


class NpyReader:
    """``.npy`` bytes fed as they arrive, written straight into the array they describe.

    Once the header is in, the data goes into a new array of its shape and dtype, which
    nothing else references (a tensor can adopt it: ``engine.creation.Adopted``): no list of
    chunks, no joined copy. What this path does not cover (another format version, a header
    that does not parse, a dtype the engine lacks) is collected and handed to ``from_npy``,
    so that answers and messages stay the same. An array over ``max_bytes`` is never
    allocated: its bytes are only counted, to say whether the body was too large or short.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._head = bytearray()
        self._chunks: list[bytes] | None = None  # the general path's body
        self._array: numpy.ndarray | None = None
        self._target = memoryview(b"")  # the array's bytes, in the file's order
        self._claimed: int | None = None  # the size of an array over the limit
        self._filled = 0

    def feed(self, chunk: bytes) -> None:
        if self._chunks is not None:
            self._chunks.append(chunk)
        elif self._array is not None:
            self._fill(chunk)
        elif self._claimed is not None:
            self._filled += len(chunk)
        else:
            self._head += chunk
            self._start()

    def _fill(self, chunk: bytes) -> None:
        n = min(len(chunk), len(self._target) - self._filled)  # numpy ignores trailing bytes
        self._target[self._filled : self._filled + n] = memoryview(chunk)[:n]
        self._filled += n

    def _start(self) -> None:
        """Take the header once it is complete: allocate the array, or choose another path."""
        head = self._head
        if len(head) < npy_format.MAGIC_LEN + 4:
            return
        version = (head[6], head[7])
        if head[:6] != npy_format.MAGIC_PREFIX or version not in _NPY_HEADER_READERS:
            self._general()
            return
        width, read_header = _NPY_HEADER_READERS[version]
        offset = npy_format.MAGIC_LEN + width
        end = offset + int.from_bytes(head[npy_format.MAGIC_LEN : offset], "little")
        if len(head) < end:
            return
        try:
            shape, fortran_order, dtype = read_header(io.BytesIO(head[npy_format.MAGIC_LEN : end]))
        except _NOT_NPY:
            self._general()
            return
        if dtype.hasobject or min(shape, default=0) < 0:  # numpy.load refuses these itself
            self._general()
            return
        rest = bytes(head[end:])
        self._head = bytearray()
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > self._max_bytes:
            self._claimed = nbytes
            self._filled = len(rest)
        elif dtype.name not in DTYPES:
            self._chunks = [bytes(head)]
        else:
            try:
                if fortran_order:
                    array = numpy.empty(shape, dtype, order="F")
                else:  # a large one in memory already faulted in, if a block is free
                    array = HOST_BLOCKS.empty(shape, dtype)
            except (ValueError, OverflowError):  # dimensions numpy cannot hold: let it say so
                self._chunks = [bytes(head)]
                return
            in_file_order = array.T if fortran_order else array  # C-contiguous, like the file
            self._array = array
            self._target = in_file_order.reshape(-1).view(numpy.uint8).data
            self._fill(rest)

    def _general(self) -> None:
        self._chunks = [bytes(self._head)]
        self._head = bytearray()

    def array(self) -> numpy.ndarray:
        """The array (native byte order), once every chunk was fed. InvalidArgument when the
        body is not a ``.npy`` file of a supported dtype or is cut short, RequestTooLarge when
        its array is over the limit."""
        if self._claimed is not None:
            if self._filled >= self._claimed:
                raise RequestTooLarge(
                    f"the .npy body's array of {self._claimed} bytes exceeds the limit of "
                    f"{self._max_bytes} bytes"
                )
            self._eof(self._claimed)
        if self._array is None:
            return from_npy(b"".join(self._chunks if self._chunks is not None else [self._head]))
        if self._filled < len(self._target):
            self._eof(len(self._target))
        return _native(self._array)

    def _eof(self, expected: int) -> NoReturn:
        raise InvalidArgument(
            f"invalid .npy body: EOF: reading array data, expected {expected} bytes got "
            f"{self._filled}"
        )
