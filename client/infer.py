"""Shapes and dtypes of op results, inferred on the client where they are certain.

A tensor's metadata comes from the server's result when its batch runs; until then the client
answers ``shape``, ``dtype`` and ``requires_grad`` from these rules, which are PyTorch's (and
so the engine's). Anything not covered, or inputs that would make the op fail, give ``None``:
the property then waits for the server.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy

Shape = tuple[int, ...]


class Meta(NamedTuple):
    """What is known of a tensor operand; None where unknown."""

    shape: Shape | None
    dtype: str | None


Out = tuple[Shape | None, str | None]
_FLOATS = frozenset({"float16", "float32", "float64"})
UNKNOWN: Out = (None, None)

BINARY = frozenset({"add", "sub", "mul", "pow", "maximum", "minimum", "floor_divide"})
COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
LOGICAL = frozenset({"logical_and", "logical_or", "logical_xor"})
TO_FLOAT = frozenset({"exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "reciprocal"})
SAME = frozenset({"neg", "abs", "relu", "sign", "round", "floor", "ceil", "clone", "detach"})
REDUCTIONS = frozenset({"sum", "prod", "mean", "norm", "logsumexp", "argmax", "argmin"})
# Ops whose results never require grad; for the others in RULES, a float result of an input
# that requires grad does (the engine records every differentiable op it runs).
NOT_DIFFERENTIABLE = COMPARISONS | LOGICAL | {"logical_not", "argmax", "argmin", "floor_divide"}
KNOWN = (
    BINARY | COMPARISONS | LOGICAL | TO_FLOAT | SAME | REDUCTIONS
    | {"div", "where", "logical_not", "to_dtype", "softmax", "log_softmax", "clamp", "max", "min",
       "dot", "mm", "mv", "bmm", "matmul", "outer", "reshape", "view", "transpose", "permute",
       "unsqueeze", "squeeze", "flatten", "expand", "index", "cat", "stack", "split", "chunk",
       "index_select"}
)  # fmt: skip


def category(name: str) -> int:
    return 2 if name.startswith("float") else (0 if name == "bool" else 1)


def promote(a: str, b: str) -> str:
    """PyTorch's promote_types."""
    if a == b:
        return a
    ca, cb = category(a), category(b)
    if ca != cb:
        return a if ca > cb else b
    return str(numpy.promote_types(a, b).name)


def _scalar_dtype(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "int64" if isinstance(value, int) else "float32"


def result_type(operands: Sequence[Any]) -> str | None:
    """PyTorch's result_type over Meta operands and Python scalars; None if a dtype is unknown."""
    first = operands[0] if operands else None
    # The common case: a float tensor with Python numbers or tensors of its dtype.
    if (
        isinstance(first, Meta)
        and first.dtype in _FLOATS
        and first.shape is not None
        and all(
            (isinstance(o, Meta) and o.dtype == first.dtype and o.shape is not None)
            or (not isinstance(o, Meta) and not isinstance(o, bool))
            for o in operands
        )
    ):
        return first.dtype
    groups: list[str | None] = [None, None, None]  # dim > 0 tensors, 0-dim tensors, scalars
    for op in operands:
        if isinstance(op, Meta):
            if op.dtype is None or op.shape is None:
                return None
            slot, dt = (0 if op.shape else 1), op.dtype
        else:
            slot, dt = 2, _scalar_dtype(op)
        groups[slot] = dt if groups[slot] is None else promote(groups[slot], dt)  # type: ignore[arg-type]
    return _combine(groups[0], _combine(groups[1], groups[2]))


def _combine(higher: str | None, lower: str | None) -> str | None:
    # c10's combine_categories: a lower-priority group only raises the category.
    if higher is None:
        return lower
    if lower is None or category(higher) == 2:
        return higher
    if higher == "bool" or category(lower) == 2:
        return promote(higher, lower)
    return higher


def broadcast(*shapes: Shape | None) -> Shape | None:
    first = shapes[0]
    if all(s == first for s in shapes):
        return first
    if any(s is None for s in shapes):
        return None
    out: list[int] = []
    ndim = max((len(s) for s in shapes if s is not None), default=0)
    for i in range(1, ndim + 1):
        sizes = {s[-i] for s in shapes if s is not None and len(s) >= i}
        sizes.discard(1)
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(reversed(out))


def _dim(d: Any, ndim: int) -> int | None:
    if isinstance(d, bool) or not isinstance(d, int):
        return None
    low, high = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    return d % max(ndim, 1) if low <= d <= high else None


def _reduce(shape: Shape, dim: Any, keepdim: bool) -> Shape | None:
    if dim is None:
        return (1,) * len(shape) if keepdim else ()
    dims = [_dim(d, len(shape)) for d in (dim if isinstance(dim, list | tuple) else [dim])]
    if any(d is None for d in dims) or len(set(dims)) != len(dims):
        return None
    if not shape:
        return ()
    if keepdim:
        return tuple(1 if i in dims else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in dims)


def _reshape(shape: Shape, target: Sequence[Any]) -> Shape | None:
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in target):
        return None
    numel = math.prod(shape)
    free = [i for i, n in enumerate(target) if n == -1]
    known = math.prod(n for n in target if n != -1)
    if len(free) > 1 or any(n < -1 for n in target):
        return None
    if free:
        if known == 0 or numel % known:
            return None
        return tuple(numel // known if n == -1 else n for n in target)
    return tuple(target) if known == numel else None


def _matmul(a: Shape, b: Shape) -> Shape | None:
    if not a or not b:
        return None
    if len(a) == 1 and len(b) == 1:
        return () if a == b else None
    left = (1, *a) if len(a) == 1 else a
    right = (*b, 1) if len(b) == 1 else b
    if left[-1] != right[-2]:
        return None
    batch = broadcast(left[:-2], right[:-2])
    if batch is None:
        return None
    out = (*batch, left[-2], right[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _index(shape: Shape, key: Any) -> Shape | None:
    items = list(key) if isinstance(key, list) else [key]
    if sum(1 for k in items if k == "...") > 1:
        return None
    used = sum(1 for k in items if k is not None and k != "...")
    if used > len(shape):
        return None
    out: list[int] = []
    dim = 0
    for item in items:
        if item is None:
            out.append(1)
        elif item == "...":
            skip = len(shape) - used
            out.extend(shape[dim : dim + skip])
            dim += skip
        elif isinstance(item, bool) or not isinstance(item, int | dict):
            return None
        elif isinstance(item, int):
            if not -shape[dim] <= item < shape[dim]:
                return None
            dim += 1
        elif set(item) == {"slice"}:
            start, stop, step = [*item["slice"], None, None, None][:3]
            if step is not None and step <= 0:
                return None
            out.append(len(range(*slice(start, stop, step).indices(shape[dim]))))
            dim += 1
        else:
            return None
    return (*out, *shape[dim:])


def split_sizes(size: int, split: Any) -> list[int] | None:
    """The lengths ``split(split_size_or_sections)`` cuts a dimension of ``size`` into."""
    if isinstance(split, int) and not isinstance(split, bool):
        if split <= 0:
            return [size] if split == 0 and size == 0 else None
        return [min(split, size - i) for i in range(0, size, split)] or [0]
    if isinstance(split, list | tuple) and all(isinstance(n, int) for n in split):
        return list(split) if sum(split) == size and all(n >= 0 for n in split) else None
    return None


def _one(op: str, args: Sequence[Any], attrs: dict[str, Any]) -> Out:
    tensors = [a for a in args if isinstance(a, Meta)]
    if not tensors:
        return UNKNOWN
    x = tensors[0]
    shape, dtype = x.shape, x.dtype
    if op in BINARY or op in COMPARISONS or op in LOGICAL or op == "div" or op == "where":
        out_shape = broadcast(*(a.shape for a in tensors))
        if op in COMPARISONS or op in LOGICAL:
            return out_shape, "bool"
        values = args[1:] if op == "where" else args
        dt = result_type(values)
        if op == "div" and dt is not None and category(dt) != 2:
            dt = "float32"
        return out_shape, dt
    if shape is None:
        return UNKNOWN
    if op in TO_FLOAT:
        return shape, None if dtype is None else (dtype if category(dtype) == 2 else "float32")
    if op in SAME:
        return shape, dtype
    if op == "logical_not":
        return shape, "bool"
    if op == "to_dtype":
        return shape, attrs.get("dtype")
    if op in ("softmax", "log_softmax"):
        return (shape if _dim(attrs.get("dim"), len(shape)) is not None else None), dtype
    if op == "clamp":
        bounds = [v for v in (attrs.get("min"), attrs.get("max")) if v is not None]
        return shape, result_type([x, *bounds])
    if op in REDUCTIONS or op in ("max", "min"):
        if op in ("max", "min") and len(tensors) == 2:  # elementwise maximum / minimum
            return broadcast(shape, tensors[1].shape), result_type(tensors)
        out = _reduce(shape, attrs.get("dim"), bool(attrs.get("keepdim", False)))
        if op in ("argmax", "argmin"):
            return (
                out if attrs.get("dim") is not None or not attrs.get("keepdim") else None
            ), "int64"
        if op in ("sum", "prod") and dtype is not None and category(dtype) != 2:
            return out, "int64"
        return out, dtype
    if op in ("dot", "mm", "mv", "bmm", "matmul", "outer"):
        if len(tensors) != 2 or tensors[1].shape is None:
            return UNKNOWN
        a, b = shape, tensors[1].shape
        dt = dtype if dtype == tensors[1].dtype else None
        ranks = {"dot": (1, 1), "mm": (2, 2), "mv": (2, 1), "bmm": (3, 3), "outer": (1, 1)}
        if op in ranks and (len(a), len(b)) != ranks[op]:
            return UNKNOWN
        if op == "outer":
            return (a[0], b[0]), (result_type(tensors) if dt is None else dt)
        if op == "bmm" and a[0] != b[0]:
            return UNKNOWN
        return _matmul(a, b), dt
    return _shape_op(op, shape, attrs), dtype


def _shape_op(op: str, shape: Shape, attrs: dict[str, Any]) -> Shape | None:
    ndim = len(shape)
    if op in ("reshape", "view"):
        return _reshape(shape, attrs.get("shape", ()))
    if op == "transpose":
        d0, d1 = _dim(attrs.get("dim0"), ndim), _dim(attrs.get("dim1"), ndim)
        if attrs.get("t"):
            return tuple(reversed(shape)) if ndim <= 2 else None
        if d0 is None or d1 is None or ndim == 0:
            return shape if ndim == 0 and d0 is not None and d1 is not None else None
        out = list(shape)
        out[d0], out[d1] = out[d1], out[d0]
        return tuple(out)
    if op == "permute":
        dims = [_dim(d, ndim) for d in attrs.get("dims", ())]
        if len(dims) != ndim or None in dims or len(set(dims)) != ndim:
            return None
        return tuple(shape[d] for d in dims)  # type: ignore[index]
    if op == "unsqueeze":
        d = attrs.get("dim")
        pos = _dim(d, ndim + 1)
        return None if pos is None else (*shape[:pos], 1, *shape[pos:])
    if op == "squeeze":
        d = attrs.get("dim")
        if d is None:
            return tuple(n for n in shape if n != 1)
        dims = [_dim(i, ndim) for i in (d if isinstance(d, list | tuple) else [d])]
        if None in dims:
            return None
        return tuple(n for i, n in enumerate(shape) if not (i in dims and n == 1))
    if op == "flatten":
        if ndim == 0:
            return (1,)
        s, e = _dim(attrs.get("start_dim", 0), ndim), _dim(attrs.get("end_dim", -1), ndim)
        if s is None or e is None or s > e:
            return None
        return (*shape[:s], math.prod(shape[s : e + 1]), *shape[e + 1 :])
    if op == "expand":
        target = list(attrs.get("shape", ()))
        if len(target) < ndim:
            return None
        lead = len(target) - ndim
        out = []
        for i, n in enumerate(target):
            old = shape[i - lead] if i >= lead else None
            if n == -1 and old is not None:
                n = old
            if n < 0 or (old is not None and old not in (1, n)):
                return None
            out.append(n)
        return tuple(out)
    if op == "index":
        return _index(shape, attrs.get("key"))
    return None


def infer(op: str, args: Sequence[Any], attrs: dict[str, Any], count: int) -> list[Out]:
    """The (shape, dtype) of each of an op's ``count`` results."""
    if op in ("cat", "stack"):
        return [_join(op, args[0] if args else [], attrs)]
    if op in ("split", "chunk") and args and isinstance(args[0], Meta):
        return _split(op, args[0], attrs, count)
    if op in ("max", "min") and "dim" in attrs and count == 2:
        shape, dtype = _one(op, args, attrs)
        return [(shape, dtype), (shape, "int64")]
    if count != 1:
        return [UNKNOWN] * count
    return [_one(op, args, attrs)]


def _join(op: str, items: Sequence[Any], attrs: dict[str, Any]) -> Out:
    metas = [m for m in items if isinstance(m, Meta)]
    if not metas or len(metas) != len(items) or any(m.shape is None for m in metas):
        return UNKNOWN
    first = metas[0].shape
    assert first is not None
    dtypes = {m.dtype for m in metas}
    dtype = dtypes.pop() if len(dtypes) == 1 else None
    if op == "stack":
        d = _dim(attrs.get("dim", 0), len(first) + 1)
        if d is None or any(m.shape != first for m in metas):
            return None, dtype
        return (*first[:d], len(metas), *first[d:]), dtype
    d = _dim(attrs.get("dim", 0), len(first))
    if d is None or any(
        m.shape is None
        or len(m.shape) != len(first)
        or m.shape[:d] + m.shape[d + 1 :] != first[:d] + first[d + 1 :]
        for m in metas
    ):
        return None, dtype
    total = sum(m.shape[d] for m in metas if m.shape is not None)
    return (*first[:d], total, *first[d + 1 :]), dtype


def _split(op: str, x: Meta, attrs: dict[str, Any], count: int) -> list[Out]:
    if x.shape is None:
        return [UNKNOWN] * count
    sizes = split_count(op, x.shape, attrs)
    d = _dim(attrs.get("dim", 0), len(x.shape))
    if sizes is None or d is None or len(sizes) != count:
        return [UNKNOWN] * count
    return [((*x.shape[:d], n, *x.shape[d + 1 :]), x.dtype) for n in sizes]


def split_count(op: str, shape: Shape, attrs: dict[str, Any]) -> list[int] | None:
    """The lengths of the pieces of ``split`` / ``chunk``, or None if they are not certain."""
    d = _dim(attrs.get("dim", 0), len(shape))
    if d is None or not shape:
        return None
    size = shape[d]
    if op == "chunk":
        chunks = attrs.get("chunks")
        if not isinstance(chunks, int) or chunks <= 0:
            return None
        return split_sizes(size, -(-size // chunks) if size else 1)
    return split_sizes(size, attrs.get("split_size_or_sections"))


def requires_grad(
    op: str, dtype: str | None, inputs: Sequence[bool | None], recording: bool
) -> bool | None:
    """Whether an op's result requires grad: None where the rules above do not say."""
    if not recording or op in NOT_DIFFERENTIABLE:
        return False
    if op not in KNOWN:
        return None
    if dtype is not None and category(dtype) != 2:
        return False
    if any(flag is None for flag in inputs):
        return None
    return any(inputs)
