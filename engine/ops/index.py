"""Indexing and joining: getitem, index_select, cat, stack, and the slices behind split."""

from __future__ import annotations

import builtins
import itertools
from typing import Any

from engine.backend import xp_of
from engine.errors import InvalidArgument
from engine.ops.reduce import normalize_dim
from engine.ops.registry import INPUTS, KEEP, primitive

# A key is a tuple of ints, slices, None, Ellipsis and integer or bool index arrays.
Key = tuple[Any, ...]


def _is_advanced(item: Any) -> bool:
    return hasattr(item, "shape") or isinstance(item, list)


def _node_name(key: Key, node_name: str | None = None) -> str:
    if node_name is not None:
        return node_name
    if any(_is_advanced(k) for k in key):
        return "IndexBackward0"
    for item in reversed(key):
        if isinstance(item, int):
            return "SelectBackward0"
        if isinstance(item, slice):
            return "SliceBackward0"
    return "AliasBackward0"


@primitive("getitem", public=False, node=_node_name, dtype=KEEP, view=True)
def getitem(x: Any, key: Key, node_name: str | None = None) -> Any:
    if x.ndim == 0 and any(isinstance(k, int) and not isinstance(k, bool) for k in key):
        raise InvalidArgument(
            "invalid index of a 0-dim tensor. Use `tensor.item()` in Python or "
            "`tensor.item<T>()` in C++ to convert a 0-dim tensor to a number",
            torch_type="IndexError",
        )
    if not any(k is Ellipsis or _is_advanced(k) for k in key):
        key = (*key, Ellipsis)  # NumPy gives a scalar copy for x[0] of a vector, x[0, ...] a view
    try:
        return x[key]
    except IndexError as exc:
        text = str(exc)
        if text.startswith("too many indices"):
            text = f"too many indices for tensor of dimension {x.ndim}"
        raise InvalidArgument(text.replace("axis", "dimension"), torch_type="IndexError") from exc


@getitem.defvjp
def _(g: Any, out: Any, x: Any, key: Key, node_name: str | None = None) -> tuple[Any, ...]:
    return (index_backward(g, shape=tuple(x.shape), key=key),)


@primitive("index_backward", public=False, node="IndexPutBackward0", dtype=KEEP)
def index_backward(g: Any, shape: tuple[int, ...], key: Key) -> Any:
    """Scatter-add ``g`` into zeros of ``shape`` at ``key``: the VJP of getitem."""
    xp = xp_of(g)
    out = xp.zeros(shape, dtype=g.dtype)
    if any(_is_advanced(k) for k in key):
        xp.add.at(out, key, g)
    else:
        out[key] = g
    return out


@index_backward.defvjp
def _(gg: Any, out: Any, g: Any, shape: tuple[int, ...], key: Key) -> tuple[Any, ...]:
    return (getitem(gg, key=key),)


@primitive("index_select", node="IndexSelectBackward0", saves=INPUTS, dtype=KEEP)
def index_select(x: Any, index: Any, dim: int) -> Any:
    axis = normalize_dim(dim, x.ndim)
    if index.ndim > 1 or index.dtype.kind not in "iu":
        raise InvalidArgument(
            "index_select(): Index is supposed to be a vector", torch_type="IndexError"
        )
    size = x.shape[axis] if x.ndim else 1
    if index.size and (int(index.max()) >= size or int(index.min()) < -size):
        raise InvalidArgument("index out of range in self", torch_type="IndexError")
    return xp_of(x).take(x, index, axis=axis if x.ndim else None)


@index_select.defvjp
def _(g: Any, out: Any, x: Any, index: Any, dim: int) -> tuple[Any, ...]:
    axis = normalize_dim(dim, len(x.shape))
    key = (slice(None),) * axis + (getattr(index, "data", index),)
    return index_backward(g, shape=tuple(x.shape), key=key), None


@primitive("cat", node="CatBackward0")
def cat(*tensors: Any, dim: int = 0) -> Any:
    if not tensors:
        raise InvalidArgument(
            "torch.cat(): expected a non-empty list of Tensors", torch_type="ValueError"
        )
    for i, t in enumerate(tensors):
        if t.ndim == 0:
            raise InvalidArgument(
                f"zero-dimensional tensor (at position {i}) cannot be concatenated"
            )
        if t.ndim != tensors[0].ndim:
            raise InvalidArgument(
                f"Tensors must have same number of dimensions: got {tensors[0].ndim} and {t.ndim}"
            )
    axis = normalize_dim(dim, tensors[0].ndim)
    for i, t in enumerate(tensors):
        for d in range(t.ndim):
            if d != axis and t.shape[d] != tensors[0].shape[d]:
                raise InvalidArgument(
                    f"Sizes of tensors must match except in dimension {axis}. Expected size "
                    f"{tensors[0].shape[d]} but got size {t.shape[d]} for tensor number {i} in "
                    "the list."
                )
    return xp_of(tensors[0]).concatenate(tensors, axis=axis)


@cat.defvjp
def _(g: Any, out: Any, *tensors: Any, dim: int = 0) -> tuple[Any, ...]:
    axis = normalize_dim(dim, len(tensors[0].shape))
    grads = []
    start = 0
    for t in tensors:
        stop = start + t.shape[axis]
        grads.append(getitem(g, key=(slice(None),) * axis + (slice(start, stop),)))
        start = stop
    return tuple(grads)


@primitive("stack", node="StackBackward0")
def stack(*tensors: Any, dim: int = 0) -> Any:
    if not tensors:
        raise InvalidArgument("stack expects a non-empty TensorList")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise InvalidArgument(
                "stack expects each tensor to be equal size, but got "
                f"[{', '.join(map(str, tensors[0].shape))}] at entry 0 and "
                f"[{', '.join(map(str, t.shape))}] at entry {i}"
            )
    axis = normalize_dim(dim, tensors[0].ndim + 1)
    return xp_of(tensors[0]).stack(tensors, axis=axis)


@stack.defvjp
def _(g: Any, out: Any, *tensors: Any, dim: int = 0) -> tuple[Any, ...]:
    axis = normalize_dim(dim, len(tensors[0].shape) + 1)
    return tuple(getitem(g, key=(slice(None),) * axis + (i,)) for i in range(len(tensors)))


def split_slices(size: int, split_size: int | list[int]) -> list[slice]:
    """The slices of a dimension of ``size`` that ``split`` returns."""
    if isinstance(split_size, int):
        if split_size <= 0 and size:
            raise InvalidArgument(
                f"split_size can only be 0 if dimension size is 0, but got dimension size of {size}"
            )
        step = builtins.max(split_size, 1)
        return [
            slice(i, builtins.min(i + step, size)) for i in range(0, builtins.max(size, 1), step)
        ]
    if builtins.sum(split_size) != size:
        raise InvalidArgument(
            f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's size "
            f"at dimension 0), but got split_sizes={list(split_size)}"
        )
    bounds = [0]
    for n in split_size:
        bounds.append(bounds[-1] + n)
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]
