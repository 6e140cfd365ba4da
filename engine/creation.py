"""Tensor factories with PyTorch's dtype inference, and the seeded random generator."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy

from engine import dtypes
from engine.backend import HOST_BLOCKS, on_device, parse_device, to_numpy, xp_for
from engine.errors import InvalidArgument
from engine.tensor import Tensor, owned

Shape = tuple[int, ...]


class Generator:
    """A seeded random source. Its state is plain data, so a session can save and restore it.

    A batch marks a ``checkpoint`` to ``rollback`` to: the state is copied by the first draw
    after the mark (a copy is ~1 us warm, several in a loaded server), so that the batches
    that draw nothing, most of them, copy nothing.
    """

    def __init__(self, seed: int = 0) -> None:
        self._rng = numpy.random.Generator(numpy.random.PCG64(seed))
        self._marked = False  # a checkpoint is marked and no draw has saved it yet
        self._saved: dict[str, Any] | None = None  # the state at the checkpoint, once saved

    def get_state(self) -> dict[str, Any]:
        return dict(self._rng.bit_generator.state)

    def set_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state

    def checkpoint(self) -> None:
        """Mark the state as it is now, for ``rollback``."""
        self._marked = True
        self._saved = None

    def rollback(self) -> None:
        """Back to the state at the last ``checkpoint``."""
        if self._saved is not None:
            self.set_state(self._saved)
        self._marked = False
        self._saved = None

    def random(self, shape: Shape, dtype: numpy.dtype[Any]) -> numpy.ndarray:
        self._save()
        return self._rng.random(shape, dtype=numpy.float64).astype(dtype)

    def normal(self, shape: Shape, dtype: numpy.dtype[Any]) -> numpy.ndarray:
        self._save()
        return self._rng.standard_normal(shape, dtype=numpy.float64).astype(dtype)

    def _save(self) -> None:
        if self._marked:
            self._saved = self.get_state()
            self._marked = False


_DEFAULT_GENERATOR = Generator(0)


def _infer_dtype(value: Any) -> numpy.dtype[Any]:
    """PyTorch's dtype for nested Python data: bool < int64 < float32."""
    if isinstance(value, numpy.ndarray | numpy.generic):
        return numpy.dtype(value.dtype)
    if isinstance(value, bool):
        return dtypes.BOOL
    if isinstance(value, int):
        return dtypes.DEFAULT_INT
    if isinstance(value, float):
        return dtypes.DEFAULT_FLOAT
    if isinstance(value, list | tuple):
        if not value:
            return dtypes.DEFAULT_FLOAT
        found = [_infer_dtype(v) for v in value]
        return max(found, key=dtypes.category)
    raise InvalidArgument(f"Could not infer dtype of {type(value).__name__}")


def _finish(array: Any, dtype: numpy.dtype[Any] | None, requires_grad: bool, device: str) -> Tensor:
    if dtype is not None and array.dtype != dtype:
        array = array.astype(dtype)
    if device != "cpu":
        with on_device(device):
            array = xp_for(device).asarray(array)
    t = Tensor(array)
    if requires_grad:
        t._set_requires_grad(True, factory=True)
    return t


@dataclass(frozen=True, slots=True)
class Adopted:
    """An array handed over by its only holder (a decoder that just filled it): ``tensor``
    keeps its memory instead of copying it, when the array owns that memory and may write it,
    or is a whole block of ``HOST_BLOCKS`` (``engine.backend.HostBlocks``).
    """

    array: numpy.ndarray


def tensor(
    data: Any, dtype: str | None = None, requires_grad: bool = False, device: str | None = None
) -> Tensor:
    """A new tensor from nested lists, scalars, arrays or another tensor's values."""
    if isinstance(data, Tensor):
        data = to_numpy(data.data)
    if isinstance(data, Adopted):
        dt = dtypes.dtype_from_name(dtype) or data.array.dtype
        array = data.array.astype(dt, copy=False)
        if not (array.flags.writeable and HOST_BLOCKS.holds(array)):
            array = owned(array)
        return _finish(array, None, requires_grad, parse_device(device))
    dt = dtypes.dtype_from_name(dtype) or _infer_dtype(data)
    if isinstance(data, numpy.ndarray):
        array = numpy.array(data, dtype=dt, copy=True)
    else:
        _check_scalars(data)
        try:
            array = numpy.array(data, dtype=dt)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidArgument(f"could not convert data to a tensor: {exc}") from exc
    return _finish(array, None, requires_grad, parse_device(device))


def _check_scalars(data: Any) -> None:
    """Reject values NumPy would silently convert (None, strings, objects)."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, list | tuple):
            stack.extend(value)
        elif not isinstance(value, bool | int | float | numpy.generic):
            raise InvalidArgument(f"Could not infer dtype of {type(value).__name__}")


def _shape(size: Any) -> Shape:
    if isinstance(size, int):
        size = (size,)
    shape = tuple(int(n) for n in size)
    if any(n < 0 for n in shape):
        dims = ", ".join(map(str, shape))
        raise InvalidArgument(
            f"Trying to create tensor with negative dimension {min(shape)}: [{dims}]"
        )
    return shape


def full(
    size: Any,
    fill_value: bool | int | float,
    dtype: str | None = None,
    requires_grad: bool = False,
    device: str | None = None,
) -> Tensor:
    dt = dtypes.dtype_from_name(dtype) or dtypes.scalar_dtype(fill_value)
    dev = parse_device(device)
    with on_device(dev):
        array = xp_for(dev).full(_shape(size), fill_value, dtype=dt)
    return _finish(array, None, requires_grad, "cpu")


def _sizes(sizes: tuple[Any, ...], size: Any = None) -> Any:
    """PyTorch's spellings of a size: ``zeros(2, 3)``, ``zeros((2, 3))``, ``zeros(size=(2, 3))``."""
    if size is not None:
        return size
    return sizes[0] if len(sizes) == 1 and isinstance(sizes[0], list | tuple) else sizes


def zeros(
    *sizes: Any,
    size: Any = None,
    dtype: str | None = None,
    requires_grad: bool = False,
    device: str | None = None,
) -> Tensor:
    return full(_sizes(sizes, size), 0.0, dtype or "float32", requires_grad, device)


def ones(
    *sizes: Any,
    size: Any = None,
    dtype: str | None = None,
    requires_grad: bool = False,
    device: str | None = None,
) -> Tensor:
    return full(_sizes(sizes, size), 1.0, dtype or "float32", requires_grad, device)


def empty(
    *sizes: Any,
    size: Any = None,
    dtype: str | None = None,
    requires_grad: bool = False,
    device: str | None = None,
) -> Tensor:
    return zeros(*sizes, size=size, dtype=dtype, requires_grad=requires_grad, device=device)


def _like(fill: float, t: Tensor, dtype: str | None, requires_grad: bool) -> Tensor:
    return full(t.shape, fill, dtype or t.dtype, requires_grad, t.device)


def zeros_like(t: Tensor, dtype: str | None = None, requires_grad: bool = False) -> Tensor:
    return _like(0, t, dtype, requires_grad)


def ones_like(t: Tensor, dtype: str | None = None, requires_grad: bool = False) -> Tensor:
    return _like(1, t, dtype, requires_grad)


def full_like(
    t: Tensor, fill_value: float, dtype: str | None = None, requires_grad: bool = False
) -> Tensor:
    return _like(fill_value, t, dtype, requires_grad)


def arange(
    start: float,
    end: float | None = None,
    step: float = 1,
    dtype: str | None = None,
    requires_grad: bool = False,
    device: str | None = None,
) -> Tensor:
    """PyTorch's arange: int64 when every argument is an integer, else float32."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise InvalidArgument("step must be nonzero")
    if (end - start) * step < 0:
        raise InvalidArgument("upper bound and larger bound inconsistent with step sign")
    inferred = (
        dtypes.DEFAULT_FLOAT
        if any(isinstance(v, float) for v in (start, end, step))
        else dtypes.DEFAULT_INT
    )
    dt = dtypes.dtype_from_name(dtype) or inferred
    n = max(0, math.ceil((end - start) / step))
    array = (
        (start + numpy.arange(n, dtype=numpy.float64) * step)
        if dt.kind == "f"
        else (numpy.arange(start, end, step, dtype=numpy.int64))
    )
    return _finish(array, dt, requires_grad, parse_device(device))


def linspace(
    start: float,
    end: float,
    steps: int,
    dtype: str | None = None,
    requires_grad: bool = False,
    device: str | None = None,
) -> Tensor:
    if steps < 0:
        raise InvalidArgument("number of steps must be non-negative")
    array = numpy.linspace(start, end, steps, dtype=numpy.float64)
    dt = dtypes.dtype_from_name(dtype) or dtypes.DEFAULT_FLOAT
    return _finish(array, dt, requires_grad, parse_device(device))


def eye(
    n: int,
    m: int | None = None,
    dtype: str | None = None,
    requires_grad: bool = False,
    device: str | None = None,
) -> Tensor:
    if n < 0 or (m is not None and m < 0):
        raise InvalidArgument(f"n must be greater or equal to 0, got {min(n, m or 0)}")
    dt = dtypes.dtype_from_name(dtype) or dtypes.DEFAULT_FLOAT
    return _finish(numpy.eye(n, m, dtype=dt), None, requires_grad, parse_device(device))


def _random(
    kind: str,
    size: Any,
    generator: Generator | None,
    dtype: str | None,
    requires_grad: bool,
    device: str | None,
) -> Tensor:
    dt = dtypes.dtype_from_name(dtype) or dtypes.DEFAULT_FLOAT
    if dt.kind != "f":
        raise InvalidArgument(f"\"{kind}\" not implemented for '{dtypes.legacy_name(dt)}'")
    gen = generator or _DEFAULT_GENERATOR
    shape = _shape(size)
    array = gen.normal(shape, dt) if kind == "normal_kernel_cpu" else gen.random(shape, dt)
    return _finish(array, None, requires_grad, parse_device(device))


def rand(
    *sizes: Any,
    size: Any = None,
    generator: Generator | None = None,
    dtype: str | None = None,
    requires_grad: bool = False,
    device: str | None = None,
) -> Tensor:
    return _random(
        "check_uniform_bounds", _sizes(sizes, size), generator, dtype, requires_grad, device
    )


def randn(
    *sizes: Any,
    size: Any = None,
    generator: Generator | None = None,
    dtype: str | None = None,
    requires_grad: bool = False,
    device: str | None = None,
) -> Tensor:
    return _random(
        "normal_kernel_cpu", _sizes(sizes, size), generator, dtype, requires_grad, device
    )
