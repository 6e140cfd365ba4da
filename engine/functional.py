"""PyTorch's namespace over the registered ops: ``torch.xxx`` functions and Tensor methods.

Functions here only route (Python scalars on the left, optional dims, overloads such as
``max(x)`` / ``max(x, dim)`` / ``max(a, b)``) to primitives; composites are registered here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy

from engine import autograd
from engine.errors import InvalidArgument
from engine.ops import elementwise as ew
from engine.ops import index as ix
from engine.ops import linalg as la
from engine.ops import reduce as rd
from engine.ops import shape as sh
from engine.ops.registry import Primitive, apply_inplace, composite
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


@composite("add")
def add(a: Operand, b: Operand) -> Tensor:
    a, b = _operand(a), _operand(b)
    return ew.add(a, b) if isinstance(a, Tensor) else ew.add(b, a)  # type: ignore[no-any-return]


@composite("sub")
def sub(a: Operand, b: Operand) -> Tensor:
    a, b = _operand(a), _operand(b)
    return ew.sub(a, b) if isinstance(a, Tensor) else ew.rsub(b, a)  # type: ignore[no-any-return]


@composite("mul")
def mul(a: Operand, b: Operand) -> Tensor:
    a, b = _operand(a), _operand(b)
    return ew.mul(a, b) if isinstance(a, Tensor) else ew.mul(b, a)  # type: ignore[no-any-return]


@composite("div")
def div(a: Operand, b: Operand) -> Tensor:
    a, b = _operand(a), _operand(b)
    if isinstance(a, Tensor):
        return ew.div(a, b)  # type: ignore[no-any-return]
    return ew.mul(ew.reciprocal(b), a)  # type: ignore[no-any-return]  # PyTorch: MulBackward0


@composite("pow")
def pow(a: Operand, b: Operand) -> Tensor:
    a, b = _operand(a), _operand(b)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return ew.pow(a, b)  # type: ignore[no-any-return]
    if isinstance(a, Tensor):
        return ew.pow_scalar(a, b)  # type: ignore[no-any-return]
    return ew.rpow(b, a)  # type: ignore[no-any-return]


def _compare(prim: Primitive, a: Operand, b: Operand) -> Tensor:
    return prim(_operand(a), _operand(b))  # type: ignore[no-any-return]


# ----- reductions with PyTorch's overloads -----


class MaxResult(NamedTuple):
    values: Tensor
    indices: Tensor


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
    return MaxResult(
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
        if a.shape[0] != b.shape[0]:
            raise InvalidArgument(
                f"size mismatch, got input ({a.shape[0]}), mat ({b.shape[1]}x{b.shape[0]}), "
                f"vec ({a.shape[0]})"
            )
        return sh.squeeze(la.mm(sh.unsqueeze(a, dim=0), b), dim=0, node_name="SqueezeBackward4")  # type: ignore[no-any-return]
    if a.ndim == 2 and b.ndim == 2:
        return la.mm(a, b)  # type: ignore[no-any-return]
    if a.ndim == 1:
        return sh.squeeze(la.matmul_batched(sh.unsqueeze(a, dim=0), b), dim=-2)  # type: ignore[no-any-return]
    if b.ndim == 1:
        return sh.squeeze(la.matmul_batched(a, sh.unsqueeze(b, dim=1)), dim=-1)  # type: ignore[no-any-return]
    return la.matmul_batched(a, b)  # type: ignore[no-any-return]


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


@composite("flatten")
def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if x.ndim == 0:
        return sh.reshape(x, shape=(1,))  # type: ignore[no-any-return]
    s = rd.normalize_dim(start_dim, x.ndim)
    e = rd.normalize_dim(end_dim, x.ndim)
    if s > e:
        raise InvalidArgument("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = (*x.shape[:s], -1, *x.shape[e + 1:])
    return sh.reshape(x, shape=shape)  # type: ignore[no-any-return]


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


@composite("add_")
def add_(x: Tensor, other: Operand, alpha: Number = 1) -> Tensor:
    value = _operand(other) if alpha == 1 else mul(other, alpha)
    return apply_inplace(ew.add, x, (value,), {})


@composite("sub_")
def sub_(x: Tensor, other: Operand, alpha: Number = 1) -> Tensor:
    value = _operand(other) if alpha == 1 else mul(other, alpha)
    return apply_inplace(ew.sub, x, (value,), {})


@composite("mul_")
def mul_(x: Tensor, other: Operand) -> Tensor:
    return apply_inplace(ew.mul, x, (_operand(other),), {})


@composite("div_")
def div_(x: Tensor, other: Operand) -> Tensor:
    return apply_inplace(ew.div, x, (_operand(other),), {})


@composite("zero_")
def zero_(x: Tensor) -> Tensor:
    return apply_inplace(ew.zero, x, (), {})


@composite("copy_")
def copy_(x: Tensor, src: Tensor) -> Tensor:
    return apply_inplace(ew.copy, x, (src,), {})


# ----- autograd -----


@composite("detach")
def detach(x: Tensor) -> Tensor:
    return x.detach()


backward = autograd.backward
grad = autograd.grad


def _unary(prim: Primitive) -> Any:
    def method(self: Tensor) -> Tensor:
        return prim(self)  # type: ignore[no-any-return]

    method.__name__ = prim.name
    return method


def _dims_method(prim: Primitive) -> Any:
    def method(self: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
        return prim(self, dim=dim, keepdim=keepdim)  # type: ignore[no-any-return]

    method.__name__ = prim.name
    return method


def _reshape(self: Tensor, *shape: Any) -> Tensor:
    return sh.reshape(self, shape=_size_args(shape))  # type: ignore[no-any-return]


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


def _norm(self: Tensor, p: float = 2, dim: Any = None, keepdim: bool = False) -> Tensor:
    return rd.norm(self, p=p, dim=dim, keepdim=keepdim)  # type: ignore[no-any-return]


def _setitem(self: Tensor, key: Any, value: Any) -> None:
    apply_inplace(ew.put, self, (_operand(value),), {"key": _key(key)})


_METHODS: dict[str, Any] = {
    "__add__": add, "__radd__": lambda s, o: add(o, s), "__sub__": sub,
    "__rsub__": lambda s, o: sub(o, s), "__mul__": mul, "__rmul__": lambda s, o: mul(o, s),
    "__truediv__": div, "__rtruediv__": lambda s, o: div(o, s), "__pow__": pow,
    "__rpow__": lambda s, o: pow(o, s), "__matmul__": matmul, "__neg__": _unary(ew.neg),
    "__floordiv__": lambda s, o: ew.floor_divide(s, _operand(o)),
    "__eq__": lambda s, o: _compare(ew.eq, s, o), "__ne__": lambda s, o: _compare(ew.ne, s, o),
    "__lt__": lambda s, o: _compare(ew.lt, s, o), "__le__": lambda s, o: _compare(ew.le, s, o),
    "__gt__": lambda s, o: _compare(ew.gt, s, o), "__ge__": lambda s, o: _compare(ew.ge, s, o),
    "__and__": lambda s, o: ew.logical_and(s, _operand(o)),
    "__or__": lambda s, o: ew.logical_or(s, _operand(o)),
    "__invert__": _unary(ew.logical_not),
    "__iadd__": add_, "__isub__": sub_, "__imul__": mul_, "__itruediv__": div_,
    "__getitem__": getitem, "__setitem__": _setitem,
    "add": add, "sub": sub, "mul": mul, "div": div, "pow": pow, "matmul": matmul, "dot": la.dot,
    "mm": la.mm, "mv": la.mv, "bmm": la.bmm, "outer": outer,
    "exp": _unary(ew.exp), "log": _unary(ew.log), "sqrt": _unary(ew.sqrt), "abs": _unary(ew.abs),
    "sin": _unary(ew.sin), "cos": _unary(ew.cos), "tan": _unary(ew.tan),
    "tanh": _unary(ew.tanh), "sigmoid": _unary(ew.sigmoid), "relu": _unary(ew.relu),
    "neg": _unary(ew.neg), "sign": _unary(ew.sign), "round": _unary(ew.round),
    "floor": _unary(ew.floor), "ceil": _unary(ew.ceil), "reciprocal": _unary(ew.reciprocal),
    "clone": _unary(ew.clone), "maximum": ew.maximum, "minimum": ew.minimum,
    "clamp": lambda s, min=None, max=None: ew.clamp(s, min=min, max=max),
    "eq": ew.eq, "ne": ew.ne, "lt": ew.lt, "le": ew.le, "gt": ew.gt, "ge": ew.ge,
    "logical_and": ew.logical_and, "logical_or": ew.logical_or,
    "logical_not": _unary(ew.logical_not),
    "sum": _dims_method(rd.sum), "mean": _dims_method(rd.mean), "max": max, "min": min,
    "prod": _dims_method(rd.prod), "norm": _norm,
    "argmax": lambda s, dim=None, keepdim=False: rd.argmax(s, dim=dim, keepdim=keepdim),
    "argmin": lambda s, dim=None, keepdim=False: rd.argmin(s, dim=dim, keepdim=keepdim),
    "logsumexp": lambda s, dim, keepdim=False: rd.logsumexp(s, dim=dim, keepdim=keepdim),
    "softmax": lambda s, dim: rd.softmax(s, dim=dim),
    "log_softmax": lambda s, dim: rd.log_softmax(s, dim=dim),
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
