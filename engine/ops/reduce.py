"""Reductions (sum, mean, prod, max, min, norm, logsumexp) and softmax, with their VJPs."""

from __future__ import annotations

import math
from typing import Any

from engine.backend import xp_of
from engine.errors import InvalidArgument
from engine.ops.registry import BOTH, INPUTS, KEEP, OUTPUT, primitive

Dim = int | tuple[int, ...] | list[int] | None


def normalize_dim(dim: int, ndim: int) -> int:
    """A non-negative dim, or PyTorch's IndexError text."""
    low, high = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise InvalidArgument(f"dim must be an integer, got {dim!r}")
    if not low <= dim <= high:
        raise InvalidArgument(
            f"Dimension out of range (expected to be in range of [{low}, {high}], but got {dim})",
            torch_type="IndexError",
        )
    return dim % max(ndim, 1)


def normalize_dims(dim: Dim, ndim: int) -> tuple[int, ...] | None:
    """``None`` for every dim, else a sorted tuple of distinct non-negative dims."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    seen: set[int] = set()
    for d in dims:
        n = normalize_dim(d, ndim)
        if n in seen:
            raise InvalidArgument(f"dim {n} appears multiple times in the list of dims")
        seen.add(n)
    out = tuple(sorted(seen))
    if ndim == 0:
        return ()
    return out


def _axes(x: Any, dim: Dim) -> tuple[int, ...] | None:
    return normalize_dims(dim, x.ndim)


def _node(base: str) -> Any:
    """SumBackward0 for a full reduction, SumBackward1 along dims (PyTorch's names)."""
    return lambda dim=None, **_: f"{base}Backward{0 if dim is None else 1}"


def expand_grad(g: Any, shape: tuple[int, ...], dim: Dim, keepdim: bool) -> Any:
    """Broadcast the gradient of a reduction back to the reduced input's shape."""
    from engine.ops.shape import expand, reshape

    if not keepdim and dim is not None and len(shape):
        kept = list(shape)
        for d in normalize_dims(dim, len(shape)) or ():
            kept[d] = 1
        g = reshape(g, shape=tuple(kept))
    return expand(g, shape=tuple(shape))


def _sum_dtype(x: Any) -> Any:
    return "int64" if x.dtype.kind in "biu" else x.dtype


@primitive("sum", node=_node("Sum"), dtype=KEEP)
def sum(x: Any, dim: Dim = None, keepdim: bool = False) -> Any:
    return x.sum(axis=_axes(x, dim), keepdims=keepdim, dtype=_sum_dtype(x))


@sum.defvjp
def _(g: Any, out: Any, x: Any, dim: Dim = None, keepdim: bool = False) -> tuple[Any, ...]:
    return (expand_grad(g, x.shape, dim, keepdim),)


def _count(shape: tuple[int, ...], dim: Dim) -> int:
    dims = normalize_dims(dim, len(shape))
    return math.prod(shape) if dims is None else math.prod(shape[d] for d in dims)


@primitive("mean", node=_node("Mean"), dtype=KEEP)
def mean(x: Any, dim: Dim = None, keepdim: bool = False) -> Any:
    if x.dtype.kind != "f":
        name = {"i": "Long", "b": "Bool", "u": "Byte"}[x.dtype.kind]
        raise InvalidArgument(
            "mean(): could not infer output dtype. Input dtype must be either a floating point "
            f"or complex dtype. Got: {name}"
        )
    return x.mean(axis=_axes(x, dim), keepdims=keepdim)


@mean.defvjp
def _(g: Any, out: Any, x: Any, dim: Dim = None, keepdim: bool = False) -> tuple[Any, ...]:
    return (expand_grad(g, x.shape, dim, keepdim) / _count(x.shape, dim),)


@primitive("prod", node=_node("Prod"), saves=BOTH, dtype=KEEP)
def prod(x: Any, dim: int | None = None, keepdim: bool = False) -> Any:
    return x.prod(axis=_axes(x, dim), keepdims=keepdim, dtype=_sum_dtype(x))


@prod.defvjp
def _(g: Any, out: Any, x: Any, dim: int | None = None, keepdim: bool = False) -> tuple[Any, ...]:
    if _recording(g):
        return (expand_grad(g, x.shape, dim, keepdim) * _others_recorded(x, dim),)
    # The product of the other elements, exact where x has zeros: exclusive cumulative
    # products from both sides, O(n) on values.
    xp = xp_of(_data(x))
    xv = _data(x)
    axis = None if dim is None or xv.ndim == 0 else normalize_dim(dim, xv.ndim)
    flat = xv.reshape(-1) if axis is None else xp.moveaxis(xv, axis, -1)
    ones = xp.ones_like(flat[..., :1])
    left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = xp.flip(
        xp.cumprod(xp.concatenate([ones, xp.flip(flat, -1)[..., :-1]], axis=-1), axis=-1), -1
    )
    others = left * right
    others = others.reshape(xv.shape) if axis is None else xp.moveaxis(others, -1, axis)
    return (expand_grad(g, x.shape, dim, keepdim) * _like(others, g),)


def _others_recorded(x: Any, dim: int | None) -> Any:
    """The product of the other elements as a graph of registered ops (create_graph).

    Each element's row of the (n, n) matrix repeats the reduced elements with a 1 in its own
    place; its product is differentiable again, zeros included. O(n^2), higher order only.
    """
    from engine.ops.elementwise import where
    from engine.ops.shape import expand, reshape, unsqueeze

    if x.ndim == 0:
        return _like(xp_of(x.data).ones((), dtype=x.data.dtype), x)
    if dim is None:
        return reshape(_others_recorded(reshape(x, shape=(-1,)), 0), shape=tuple(x.shape))
    axis = normalize_dim(dim, x.ndim)
    n = x.shape[axis]
    rows = unsqueeze(x, dim=axis)  # row i at `axis`, its elements j at `axis + 1`
    shape = list(rows.shape)
    shape[axis] = n
    eye_shape = [1] * rows.ndim
    eye_shape[axis] = eye_shape[axis + 1] = n
    eye = xp_of(x.data).eye(n, dtype=bool).reshape(eye_shape)
    return prod(where(eye, 1, expand(rows, shape=tuple(shape))), dim=axis + 1)


def _recording(g: Any) -> bool:
    from engine.tensor import Tensor

    return isinstance(g, Tensor)


def _data(x: Any) -> Any:
    return getattr(x, "data", x) if not hasattr(x, "__array_interface__") else x


def _like(array: Any, ref: Any) -> Any:
    """``array`` as a constant Tensor when ``ref`` is a Tensor (create_graph), else as is."""
    from engine.tensor import Tensor

    return Tensor(array) if isinstance(ref, Tensor) else array


def _extreme(name: str, reducer: str) -> Any:
    @primitive(name, node=f"{name.capitalize()}Backward1", saves=BOTH, dtype=KEEP, public=False)
    def full(x: Any) -> Any:
        if x.size == 0:
            raise InvalidArgument(
                f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                "Specify the reduction dim with the 'dim' argument."
            )
        return getattr(xp_of(x), reducer)(x)

    @full.defvjp
    def _(g: Any, out: Any, x: Any) -> tuple[Any, ...]:
        ties = x == out  # ties share the gradient evenly
        return (ties * g / sum(ties),)

    return full


max_all = _extreme("max", "max")
min_all = _extreme("min", "min")


def _extreme_dim(name: str, arg: str) -> Any:
    @primitive(
        f"{name}_dim", node=f"{name.capitalize()}Backward0", saves=INPUTS, dtype=KEEP, public=False
    )
    def along(x: Any, dim: int, keepdim: bool = False) -> Any:
        xp = xp_of(x)
        axis = normalize_dim(dim, x.ndim)
        if x.ndim == 0:
            return x.copy()
        idx = getattr(xp, arg)(x, axis=axis, keepdims=True)
        values = xp.take_along_axis(x, idx, axis=axis)
        return values if keepdim else values.squeeze(axis)

    @along.defvjp
    def _(g: Any, out: Any, x: Any, dim: int, keepdim: bool = False) -> tuple[Any, ...]:
        xv = _data(x)
        xp = xp_of(xv)
        if xv.ndim == 0:
            return (g,)
        axis = normalize_dim(dim, xv.ndim)
        idx = getattr(xp, arg)(xv, axis=axis, keepdims=True)
        onehot = xp.zeros(xv.shape, dtype=bool)
        xp.put_along_axis(onehot, idx, True, axis=axis)
        return (expand_grad(g, xv.shape, dim, keepdim) * _like(onehot, g),)

    return along


max_dim = _extreme_dim("max", "argmax")
min_dim = _extreme_dim("min", "argmin")


@primitive("argmax", node="ArgmaxBackward0", dtype=KEEP, differentiable=False)
def argmax(x: Any, dim: int | None = None, keepdim: bool = False) -> Any:
    axis = None if dim is None else normalize_dim(dim, x.ndim)
    return xp_of(x).argmax(x, axis=axis, keepdims=keepdim).astype("int64")


@primitive("argmin", node="ArgminBackward0", dtype=KEEP, differentiable=False)
def argmin(x: Any, dim: int | None = None, keepdim: bool = False) -> Any:
    axis = None if dim is None else normalize_dim(dim, x.ndim)
    return xp_of(x).argmin(x, axis=axis, keepdims=keepdim).astype("int64")


@primitive("norm", node="LinalgVectorNormBackward0", saves=BOTH, dtype=KEEP)
def norm(x: Any, p: float = 2, dim: Dim = None, keepdim: bool = False) -> Any:
    if x.dtype.kind != "f":
        raise InvalidArgument(
            "linalg.vector_norm: Expected a floating point or complex tensor as input. Got "
            + {"i": "Long", "b": "Bool", "u": "Byte"}[x.dtype.kind]
        )
    xp = xp_of(x)
    axes = _axes(x, dim)
    a = xp.abs(x)
    if p == math.inf:
        return a.max(axis=axes, keepdims=keepdim)
    if p == 2:
        return xp.sqrt((x * x).sum(axis=axes, keepdims=keepdim))
    if p == 1:
        return a.sum(axis=axes, keepdims=keepdim)
    return ((a**p).sum(axis=axes, keepdims=keepdim)) ** (1.0 / p)


@norm.defvjp
def _(
    g: Any, out: Any, x: Any, p: float = 2, dim: Dim = None, keepdim: bool = False
) -> tuple[Any, ...]:
    from engine.ops.elementwise import abs as abs_
    from engine.ops.elementwise import sign, where

    n = expand_grad(out, x.shape, dim, keepdim)
    ge = expand_grad(g, x.shape, dim, keepdim)
    if p == 1:
        return (ge * sign(x),)
    if p == math.inf:
        ties = abs_(x) == n
        return (ge * sign(x) * ties / expand_grad(sum(ties, dim, keepdim), x.shape, dim, keepdim),)
    if p == 2:
        return (ge * where(n == 0, 0, x / where(n == 0, 1, n)),)
    scale = x * abs_(x) ** (p - 2) / where(n == 0, 1, n) ** (p - 1)
    return (ge * where(n == 0, 0, scale),)


@primitive("logsumexp", node="LogsumexpBackward0", saves=BOTH, dtype=KEEP)
def logsumexp(x: Any, dim: Dim, keepdim: bool = False) -> Any:
    xp = xp_of(x)
    if x.dtype.kind != "f":
        x = x.astype("float32")
    axes = _axes(x, dim)
    m = x.max(axis=axes, keepdims=True) if x.size else xp.zeros((1,) * x.ndim, x.dtype)
    m = xp.where(xp.isfinite(m), m, 0)
    out = xp.log(xp.exp(x - m).sum(axis=axes, keepdims=True)) + m
    return (
        out
        if keepdim
        else out.reshape([n for i, n in enumerate(out.shape) if i not in (axes or range(x.ndim))])
    )


@logsumexp.defvjp
def _(g: Any, out: Any, x: Any, dim: Dim, keepdim: bool = False) -> tuple[Any, ...]:
    from engine.ops.elementwise import exp

    return (
        expand_grad(g, x.shape, dim, keepdim) * exp(x - expand_grad(out, x.shape, dim, keepdim)),
    )


def _check_softmax_dtype(name: str, x: Any, dim: int) -> None:
    if x.dtype.kind != "f":
        kernel = (
            "lastdim_kernel_impl" if normalize_dim(dim, x.ndim) == x.ndim - 1 else "kernel_impl"
        )
        raise InvalidArgument(
            f"\"{name}_{kernel}\" not implemented for '{_legacy(x)}'",
            torch_type="NotImplementedError",
        )


def _legacy(x: Any) -> str:
    from engine.dtypes import legacy_name

    return legacy_name(x.dtype)


@primitive("softmax", node="SoftmaxBackward0", saves=OUTPUT, dtype=KEEP)
def softmax(x: Any, dim: int) -> Any:
    _check_softmax_dtype("softmax", x, dim)
    axis = normalize_dim(dim, x.ndim)
    if x.ndim == 0:
        return xp_of(x).ones_like(x)
    e = xp_of(x).exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@softmax.defvjp
def _(g: Any, out: Any, x: Any, dim: int) -> tuple[Any, ...]:
    return (out * (g - sum(g * out, dim=dim, keepdim=True)),)


@primitive("log_softmax", node="LogSoftmaxBackward0", saves=OUTPUT, dtype=KEEP)
def log_softmax(x: Any, dim: int) -> Any:
    _check_softmax_dtype("log_softmax", x, dim)
    axis = normalize_dim(dim, x.ndim)
    if x.ndim == 0:
        return xp_of(x).zeros_like(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp_of(x).log(xp_of(x).exp(shifted).sum(axis=axis, keepdims=True))


@log_softmax.defvjp
def _(g: Any, out: Any, x: Any, dim: int) -> tuple[Any, ...]:
    from engine.ops.elementwise import exp

    return (g - exp(out) * sum(g, dim=dim, keepdim=True),)
