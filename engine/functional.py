"""PyTorch's namespace over the registered ops: ``torch.xxx`` functions and Tensor methods.

Functions here only route (Python scalars on the left, optional dims, overloads such as
``max(x)`` / ``max(x, dim)`` / ``max(a, b)``) to primitives; composites are registered here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy

from engine import autograd
from engine.errors import InvalidArgument
from engine.graph import NO_ATTRS
from engine.ops import elementwise as ew
from engine.ops import index as ix
from engine.ops import linalg as la
from engine.ops import reduce as rd
from engine.ops import shape as sh
from engine.ops.fast import fast_binary
from engine.ops.registry import (
    Primitive,
    apply,
    apply_inplace,
    composite,
)
from engine.tensor import Tensor

Number = bool | int | float
Operand = Tensor | Number


def _is_number(value: Any) -> bool:
    return isinstance(value, bool | int | float | numpy.generic) and not isinstance(value, Tensor)


def _operand(value: Any) -> Operand:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, numpy.generic):
        return value.item()  # type: ignore[no-any-return]
    if isinstance(value, bool | int | float):
        return value
    raise InvalidArgument(f"unsupported operand type: {type(value).__name__}")


# ----- arithmetic with Python scalars on either side -----
# With a Tensor on the left (``x * w``, ``x / 2``: once per op of every user's graph) the call
# goes straight to the op's fast path, which the Tensor operators are themselves (below).
_ADD, _SUB = fast_binary(ew.add, _operand), fast_binary(ew.sub, _operand)
_MUL, _DIV = fast_binary(ew.mul, _operand), fast_binary(ew.div, _operand)


@composite("add")
def add(a: Operand, b: Operand) -> Tensor:
    if isinstance(a, Tensor):
        return _ADD(a, b)
    a, b = _operand(a), _operand(b)
    return ew.add(b, a)  # type: ignore[no-any-return]


def _bool_operand(value: Any) -> bool:
    return type(value) is bool or (type(value) is Tensor and value.data.dtype.kind == "b")


def _raw(value: Any) -> Any:
    return value.data if type(value) is Tensor else value


@composite("sub")
def sub(a: Operand, b: Operand) -> Tensor:
    # Bools are refused here, before type promotion turns a bool tensor into an integer one
    # (inline: ``x - b`` is one op in eight of a typical chain). A tensor with a layout (the
    # fast path's, worked out once: floating) is no bool, and its dtype need not be read.
    if type(a) is Tensor:
        if (
            type(b) is bool
            or (not a._layout and a.data.dtype.kind == "b")
            or (type(b) is Tensor and not b._layout and b.data.dtype.kind == "b")
        ):
            ew.refuse_bool_subtraction(a.data, _raw(b))
        return _SUB(a, b)
    if _bool_operand(a) or _bool_operand(b):
        ew.refuse_bool_subtraction(_raw(a), _raw(b))
    a, b = _operand(a), _operand(b)
    return ew.rsub(b, a)  # type: ignore[no-any-return]


@composite("mul")
def mul(a: Operand, b: Operand) -> Tensor:
    if isinstance(a, Tensor):
        return _MUL(a, b)
    a, b = _operand(a), _operand(b)
    return ew.mul(b, a)  # type: ignore[no-any-return]


@composite("div")
def div(a: Operand, b: Operand) -> Tensor:
    if isinstance(a, Tensor):
        return _DIV(a, b)
    a, b = _operand(a), _operand(b)
    return ew.mul(ew.reciprocal(b), a)  # type: ignore[no-any-return]  # PyTorch: MulBackward0


@composite("pow")
def pow(a: Operand, b: Operand) -> Tensor:
    a, b = _operand(a), _operand(b)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return ew.pow(a, b)  # type: ignore[no-any-return]
    if isinstance(a, Tensor):
        return ew.pow_scalar(a, b)  # type: ignore[no-any-return]
    return ew.rpow(b, a)  # type: ignore[no-any-return]


# ----- reductions with PyTorch's overloads -----


class MaxResult(NamedTuple):
    values: Tensor
    indices: Tensor

    def __repr__(self) -> str:  # torch.return_types.max(...)
        return f"torch.return_types.max(\nvalues={self.values!r},\nindices={self.indices!r})"


class MinResult(MaxResult):
    def __repr__(self) -> str:
        return f"torch.return_types.min(\nvalues={self.values!r},\nindices={self.indices!r})"


@composite("max")
def max(x: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    """``max(x)``, ``max(x, dim)`` (values and indices) or ``max(a, b)`` (elementwise)."""
    if isinstance(dim, Tensor):
        return ew.maximum(x, dim)
    if dim is None:
        return rd.max_all(x)
    return MaxResult(
        rd.max_dim(x, dim=dim, keepdim=keepdim), rd.argmax(x, dim=dim, keepdim=keepdim)
    )


@composite("min")
def min(x: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    """``min(x)``, ``min(x, dim)`` (values and indices) or ``min(a, b)`` (elementwise)."""
    if isinstance(dim, Tensor):
        return ew.minimum(x, dim)
    if dim is None:
        return rd.min_all(x)
    return MinResult(
        rd.min_dim(x, dim=dim, keepdim=keepdim), rd.argmin(x, dim=dim, keepdim=keepdim)
    )


# ----- products -----


@composite("matmul")
def matmul(a: Tensor, b: Tensor) -> Tensor:
    """PyTorch's matmul: dot, mv, mm or broadcast batched matmul by the operands' ranks."""
    if a.ndim == 0 or b.ndim == 0:
        raise InvalidArgument(
            f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and {b.ndim}D"
        )
    if a.ndim == 1 and b.ndim == 1:
        return la.dot(a, b)  # type: ignore[no-any-return]
    if a.ndim == 2 and b.ndim == 1:
        return la.mv(a, b)  # type: ignore[no-any-return]
    if a.ndim == 1 and b.ndim == 2:
        row = la.mm(sh.unsqueeze(a, dim=0), b)
        return sh.squeeze(row, dim=0, node_name="SqueezeBackward4")  # type: ignore[no-any-return]
    if a.ndim == 2 and b.ndim == 2:
        return la.mm(a, b)  # type: ignore[no-any-return]
    path = _matmul_path(a, b)
    _check_batched(a, b, path)
    # Folding a matrix @ batch multiplies the transposed batch, then transposes back and
    # copies (contiguous), which is no copy when a side of the result is 1.
    name = "UnsafeViewBackward0"
    if path == "fold_t" and a.ndim == 2:
        name = "CloneBackward0" if a.shape[0] > 1 and b.shape[-1] > 1 else "TransposeBackward0"
    return la.matmul_batched(a, b, node_name=name)  # type: ignore[no-any-return]


def _foldable(array: Any) -> bool:
    """Whether ``array.view(-1, array.shape[-1])`` needs no copy (PyTorch's should_fold)."""
    s, n = array.strides, array.shape
    return array.size == 0 or all(s[i] == s[i + 1] * n[i + 1] for i in range(array.ndim - 1))


def _matmul_path(a: Tensor, b: Tensor) -> str:
    """How PyTorch's matmul multiplies operands of which one has 3 dims or more.

    "fold": the batch of ``a`` folded into mm/mv rows; "fold_t": the same with ``b``
    transposed; "batched": both expanded to a common batch and multiplied with bmm.
    """
    if a.ndim >= 3 and b.ndim <= 2:
        return "fold" if b._requires_grad or _foldable(a.data) else "batched"
    if b.ndim >= 3 and a._requires_grad:
        return "fold_t"
    if b.ndim >= 3 and a.ndim == 1 and _foldable(b.data.swapaxes(-1, -2)):
        return "fold_t"
    return "batched"


def _check_folded(
    rows: int, k_mat: int, k_other: int, other_cols: int | None, mat: Tensor, other: Tensor
) -> None:
    """A batch folded into one matrix of ``rows`` times ``other``: PyTorch's mm or mv texts."""
    if k_mat != k_other and other_cols is not None:
        raise InvalidArgument(
            f"mat1 and mat2 shapes cannot be multiplied ({rows}x{k_mat} and {k_other}x{other_cols})"
        )
    if k_mat != k_other:
        raise InvalidArgument(
            f"size mismatch, got input ({rows}), mat ({rows}x{k_mat}), vec ({k_other})"
        )
    if other_cols is not None:
        la.mm_dtype(mat.data, other.data)
    else:
        la.mv_dtype(mat.data, other.data)


def _check_batched(a: Tensor, b: Tensor, path: str) -> None:
    """PyTorch's error texts for operands that do not multiply, by the path it takes."""
    k, k2 = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
    if path == "fold":
        other_cols = b.shape[1] if b.ndim == 2 else None
        _check_folded(math.prod(a.shape[:-1]), k, k2, other_cols, a, b)
    elif path == "fold_t":
        other_cols = a.shape[0] if a.ndim == 2 else None
        _check_folded(math.prod(b.shape[:-2]) * b.shape[-1], k2, k, other_cols, b, a)
    else:
        batch_a, batch_b = numpy.empty(a.shape[:-2], bool), numpy.empty(b.shape[:-2], bool)
        ew.broadcast_shape(batch_a, batch_b)
        batch = math.prod(numpy.broadcast_shapes(batch_a.shape, batch_b.shape))
        if k != k2:
            raise InvalidArgument(
                "Expected size for first two dimensions of batch2 tensor to be: "
                f"[{batch}, {k}] but got: [{batch}, {k2}]."
            )
        la.bmm_dtype(a.data, b.data)


@composite("outer")
def outer(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim != 1 or b.ndim != 1:
        raise InvalidArgument(
            f"outer: Expected 1-D argument self, but got {a.ndim}-D"
            if a.ndim != 1
            else f"outer: Expected 1-D argument vec2, but got {b.ndim}-D"
        )
    return ew.mul(sh.unsqueeze(a, dim=1), b)  # type: ignore[no-any-return]


# ----- shapes -----


def _size_args(shape: Sequence[Any]) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], list | tuple):
        return tuple(shape[0])
    return tuple(shape)


@composite("reshape")
def reshape(x: Tensor, shape: Sequence[int]) -> Tensor:
    """A view (ViewBackward0) where the strides allow, else a copy (UnsafeViewBackward0)."""
    target = sh.infer_shape(shape, x.numel())
    name = None if sh.as_view(x.data, target) is not None else "UnsafeViewBackward0"
    return sh.reshape(x, shape=target, node_name=name)  # type: ignore[no-any-return]


@composite("flatten")
def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if x.ndim == 0:
        return reshape(x, (1,))
    s = rd.normalize_dim(start_dim, x.ndim)
    e = rd.normalize_dim(end_dim, x.ndim)
    if s > e:
        raise InvalidArgument("flatten() has invalid args: start_dim cannot come after end_dim")
    if s == e:
        return x  # PyTorch returns the input itself
    return reshape(x, (*x.shape[:s], -1, *x.shape[e + 1 :]))


def _key(key: Any) -> tuple[Any, ...]:
    items = key if isinstance(key, tuple) else (key,)
    out: list[Any] = []
    for item in items:
        if isinstance(item, Tensor):
            if item.dtype not in ("int64", "int32", "int16", "int8", "uint8", "bool"):
                raise InvalidArgument(
                    "tensors used as indices must be long, int, byte or bool tensors",
                    torch_type="IndexError",
                )
            out.append(item.data)
        elif isinstance(item, list):
            out.append(numpy.asarray(item))
        elif isinstance(item, bool | int | slice) or item is None or item is Ellipsis:
            out.append(item)
        elif isinstance(item, numpy.integer):
            out.append(int(item))
        else:
            raise InvalidArgument(
                "only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables "
                "are valid indices",
                torch_type="IndexError",
            )
    return tuple(out)


@composite("index")
def getitem(x: Tensor, key: Any) -> Tensor:
    return ix.getitem(x, key=_key(key))  # type: ignore[no-any-return]


@composite("split")
def split(x: Tensor, split_size_or_sections: int | list[int], dim: int = 0) -> tuple[Tensor, ...]:
    axis = rd.normalize_dim(dim, x.ndim)
    name = (
        "SplitBackward0" if isinstance(split_size_or_sections, int) else "SplitWithSizesBackward0"
    )
    return tuple(
        ix.getitem(x, key=(slice(None),) * axis + (s,), node_name=name)
        for s in ix.split_slices(x.shape[axis], split_size_or_sections)
    )


@composite("chunk")
def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    if chunks <= 0:
        raise InvalidArgument("chunk expects `chunks` to be greater than 0, got: " + str(chunks))
    size = x.shape[rd.normalize_dim(dim, x.ndim)]
    return split(x, -(-size // chunks) if size else 1, dim)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    return ix.cat(*tensors, dim=dim)  # type: ignore[no-any-return]


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    return ix.stack(*tensors, dim=dim)  # type: ignore[no-any-return]


# ----- in-place ops -----


def _inplace(op: Primitive, x: Tensor, other: Operand) -> Tensor:
    """``x op= other``, which must not broadcast ``x`` itself to a bigger shape."""
    if isinstance(other, Tensor) and other.shape != x.shape:
        try:
            shape = numpy.broadcast_shapes(x.shape, other.shape)
        except ValueError:
            shape = x.shape  # not broadcastable: the op raises PyTorch's text
        if shape != x.shape:
            raise InvalidArgument(
                f"output with shape [{', '.join(map(str, x.shape))}] doesn't match the "
                f"broadcast shape [{', '.join(map(str, shape))}]"
            )
    return apply_inplace(op, x, (other,), {})


@composite("add_")
def add_(x: Tensor, other: Operand, alpha: Number = 1) -> Tensor:
    return _inplace(ew.add, x, _operand(other) if alpha == 1 else mul(other, alpha))


@composite("sub_")
def sub_(x: Tensor, other: Operand, alpha: Number = 1) -> Tensor:
    if _bool_operand(x) or _bool_operand(other):
        ew.refuse_bool_subtraction(x.data, _raw(other))
    return _inplace(ew.sub, x, _operand(other) if alpha == 1 else mul(other, alpha))


@composite("mul_")
def mul_(x: Tensor, other: Operand) -> Tensor:
    return _inplace(ew.mul, x, _operand(other))


@composite("div_")
def div_(x: Tensor, other: Operand) -> Tensor:
    return _inplace(ew.div, x, _operand(other))


@composite("zero_")
def zero_(x: Tensor) -> Tensor:
    return apply_inplace(ew.zero, x, (), {})


@composite("copy_")
def copy_(x: Tensor, src: Tensor) -> Tensor:
    return _inplace(ew.copy, x, src)


# ----- autograd -----


@composite("detach")
def detach(x: Tensor) -> Tensor:
    return x.detach()


backward = autograd.backward
grad = autograd.grad


def _unary(prim: Primitive) -> Any:
    if prim.fast:
        return prim.unary

    def method(self: Tensor) -> Tensor:
        return apply(prim, (self,), NO_ATTRS)

    method.__name__ = prim.name
    return method


def _binary(prim: Primitive) -> Any:
    """A function (and method) of two operands; a Primitive is no descriptor, so no method."""

    def method(self: Tensor, other: Operand) -> Tensor:
        return prim(self, _operand(other))  # type: ignore[no-any-return]

    method.__name__ = prim.name
    return method


def _dims_method(prim: Primitive) -> Any:
    def method(self: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
        return prim(self, dim=dim, keepdim=keepdim)  # type: ignore[no-any-return]

    method.__name__ = prim.name
    return method


# ----- torch-namespace functions: a primitive's attributes may come positionally -----

sum = _dims_method(rd.sum)
mean = _dims_method(rd.mean)
prod = _dims_method(rd.prod)
argmax = _dims_method(rd.argmax)
argmin = _dims_method(rd.argmin)


def norm(x: Tensor, p: float = 2, dim: Any = None, keepdim: bool = False) -> Tensor:
    return rd.norm(x, p=p, dim=dim, keepdim=keepdim)  # type: ignore[no-any-return]


def clamp(x: Tensor, min: Number | None = None, max: Number | None = None) -> Tensor:
    return ew.clamp(x, min=min, max=max)  # type: ignore[no-any-return]


def softmax(x: Tensor, dim: int) -> Tensor:
    return rd.softmax(x, dim=dim)  # type: ignore[no-any-return]


def log_softmax(x: Tensor, dim: int) -> Tensor:
    return rd.log_softmax(x, dim=dim)  # type: ignore[no-any-return]


def logsumexp(x: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    return rd.logsumexp(x, dim=dim, keepdim=keepdim)  # type: ignore[no-any-return]


dot, mm, mv, bmm = _binary(la.dot), _binary(la.mm), _binary(la.mv), _binary(la.bmm)
maximum, minimum = _binary(ew.maximum), _binary(ew.minimum)
eq, ne, lt, le, gt, ge = (_binary(p) for p in (ew.eq, ew.ne, ew.lt, ew.le, ew.gt, ew.ge))
logical_and, logical_or = _binary(ew.logical_and), _binary(ew.logical_or)
logical_xor = _binary(ew.logical_xor)


def _reshape(self: Tensor, *shape: Any) -> Tensor:
    return reshape(self, _size_args(shape))


def _view(self: Tensor, *shape: Any) -> Tensor:
    return sh.view(self, shape=_size_args(shape))  # type: ignore[no-any-return]


def _expand(self: Tensor, *shape: Any) -> Tensor:
    return sh.expand(self, shape=_size_args(shape))  # type: ignore[no-any-return]


def _permute(self: Tensor, *dims: Any) -> Tensor:
    return sh.permute(self, dims=_size_args(dims))  # type: ignore[no-any-return]


def _to(self: Tensor, dtype: str) -> Tensor:
    if dtype.removeprefix("torch.") == self.dtype:
        return self
    from engine.dtypes import dtype_from_name

    name = dtype_from_name(dtype)
    assert name is not None
    return ew.to_dtype(self, dtype=name.name)  # type: ignore[no-any-return]


def _setitem(self: Tensor, key: Any, value: Any) -> None:
    apply_inplace(ew.put, self, (_operand(value),), {"key": _key(key)})


_METHODS: dict[str, Any] = {
    "__add__": _ADD, "__radd__": lambda s, o: add(o, s), "__sub__": sub,
    "__rsub__": lambda s, o: sub(o, s), "__mul__": _MUL, "__rmul__": lambda s, o: mul(o, s),
    "__truediv__": _DIV, "__rtruediv__": lambda s, o: div(o, s), "__pow__": pow,
    "__rpow__": lambda s, o: pow(o, s), "__matmul__": matmul, "__neg__": _unary(ew.neg),
    "__floordiv__": lambda s, o: ew.floor_divide(s, _operand(o)),
    "__eq__": eq, "__ne__": ne, "__lt__": lt, "__le__": le, "__gt__": gt, "__ge__": ge,
    "__and__": logical_and, "__or__": logical_or,
    "__invert__": _unary(ew.logical_not),
    "__iadd__": add_, "__isub__": sub_, "__imul__": mul_, "__itruediv__": div_,
    "__getitem__": getitem, "__setitem__": _setitem,
    "add": add, "sub": sub, "mul": mul, "div": div, "pow": pow, "matmul": matmul, "dot": dot,
    "mm": mm, "mv": mv, "bmm": bmm, "outer": outer,
    "exp": _unary(ew.exp), "log": _unary(ew.log), "sqrt": _unary(ew.sqrt), "abs": _unary(ew.abs),
    "sin": _unary(ew.sin), "cos": _unary(ew.cos), "tan": _unary(ew.tan),
    "tanh": _unary(ew.tanh), "sigmoid": _unary(ew.sigmoid), "relu": _unary(ew.relu),
    "neg": _unary(ew.neg), "sign": _unary(ew.sign), "round": _unary(ew.round),
    "floor": _unary(ew.floor), "ceil": _unary(ew.ceil), "reciprocal": _unary(ew.reciprocal),
    "clone": _unary(ew.clone), "maximum": maximum, "minimum": minimum, "clamp": clamp,
    "eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge,
    "logical_and": logical_and, "logical_or": logical_or, "logical_xor": logical_xor,
    "logical_not": _unary(ew.logical_not),
    "sum": sum, "mean": mean, "max": max, "min": min, "prod": prod, "norm": norm,
    "argmax": argmax, "argmin": argmin, "logsumexp": logsumexp, "softmax": softmax,
    "log_softmax": log_softmax,
    "reshape": _reshape, "view": _view, "expand": _expand, "permute": _permute,
    "flatten": flatten, "squeeze": lambda s, dim=None: sh.squeeze(s, dim=dim),
    "unsqueeze": lambda s, dim: sh.unsqueeze(s, dim=dim),
    "transpose": lambda s, dim0, dim1: sh.transpose(s, dim0=dim0, dim1=dim1),
    "t": lambda s: sh.transpose(s, dim0=0, dim1=-1, t=True),
    "T": property(lambda s: sh.permute(s, dims=tuple(reversed(range(s.ndim))))),
    "index_select": lambda s, dim, index: ix.index_select(s, index, dim=dim),
    "split": split, "chunk": chunk, "to": _to,
    "float": lambda s: _to(s, "float32"), "double": lambda s: _to(s, "float64"),
    "long": lambda s: _to(s, "int64"), "bool": lambda s: _to(s, "bool"),
    "add_": add_, "sub_": sub_, "mul_": mul_, "div_": div_, "zero_": zero_, "copy_": copy_,
}  # fmt: skip

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)
