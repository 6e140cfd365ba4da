"""Products: dot, mm, mv, bmm and broadcast batched matmul, with their VJPs."""

from __future__ import annotations

from typing import Any

from engine.dtypes import legacy_name
from engine.errors import InvalidArgument
from engine.ops.registry import INPUTS, primitive
from engine.ops.shape import transpose


def _same_dtype(name: str, a: Any, b: Any) -> None:
    if a.dtype != b.dtype:
        raise InvalidArgument(
            f"{name} : expected both vectors to have same dtype, but found "
            f"{legacy_name(a.dtype)} and {legacy_name(b.dtype)}"
        )


def _mat_dtype(a: Any, b: Any) -> None:
    if a.dtype != b.dtype:
        raise InvalidArgument(
            "expected m1 and m2 to have the same dtype, but got: "
            f"{_torch_name(a.dtype)} != {_torch_name(b.dtype)}"
        )


def _torch_name(dtype: Any) -> str:
    return {"float32": "float", "float64": "double", "int64": "long int", "int32": "int",
            "bool": "bool"}.get(dtype.name, dtype.name)  # fmt: skip


def _mT(x: Any) -> Any:
    return transpose(x, dim0=-1, dim1=-2)


@primitive("dot", node="DotBackward0", saves=INPUTS)
def dot(a: Any, b: Any) -> Any:
    if a.ndim != 1 or b.ndim != 1:
        raise InvalidArgument(f"1D tensors expected, but got {a.ndim}D and {b.ndim}D tensors")
    _same_dtype("dot", a, b)
    if a.shape[0] != b.shape[0]:
        raise InvalidArgument(
            f"inconsistent tensor size, expected tensor [{a.shape[0]}] and src [{b.shape[0]}] to "
            f"have the same number of elements, but got {a.shape[0]} and {b.shape[0]} elements "
            "respectively"
        )
    return a @ b


@dot.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    return g * b, g * a


@primitive("mm", node="MmBackward0", saves=INPUTS)
def mm(a: Any, b: Any) -> Any:
    if a.ndim != 2:
        raise InvalidArgument("self must be a matrix")
    if b.ndim != 2:
        raise InvalidArgument("mat2 must be a matrix")
    if a.shape[1] != b.shape[0]:
        raise InvalidArgument(
            f"mat1 and mat2 shapes cannot be multiplied ({a.shape[0]}x{a.shape[1]} and "
            f"{b.shape[0]}x{b.shape[1]})"
        )
    _mat_dtype(a, b)
    return a @ b


@mm.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    return mm(g, _mT(b)), mm(_mT(a), g)


@primitive("mv", node="MvBackward0", saves=INPUTS)
def mv(a: Any, v: Any) -> Any:
    if a.ndim != 2 or v.ndim != 1:
        raise InvalidArgument(f"vector + matrix @ vector expected, got 1, {a.ndim}, {v.ndim}")
    if a.shape[1] != v.shape[0]:
        raise InvalidArgument(
            f"size mismatch, got input ({a.shape[0]}), mat ({a.shape[0]}x{a.shape[1]}), "
            f"vec ({v.shape[0]})"
        )
    _mat_dtype(a, v)
    return a @ v


@mv.defvjp
def _(g: Any, out: Any, a: Any, v: Any) -> tuple[Any, ...]:
    from engine.ops.shape import unsqueeze

    return unsqueeze(g, dim=1) * unsqueeze(v, dim=0), mv(_mT(a), g)


@primitive("bmm", node="BmmBackward0", saves=INPUTS)
def bmm(a: Any, b: Any) -> Any:
    if a.ndim != 3:
        raise InvalidArgument("batch1 must be a 3D tensor")
    if b.ndim != 3:
        raise InvalidArgument("batch2 must be a 3D tensor")
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise InvalidArgument(
            f"Expected size for first two dimensions of batch2 tensor to be: [{a.shape[0]}, "
            f"{a.shape[2]}] but got: [{b.shape[0]}, {b.shape[1]}]."
        )
    _mat_dtype(a, b)
    return a @ b


@bmm.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    return bmm(g, _mT(b)), bmm(_mT(a), g)


@primitive("matmul_batched", node="UnsafeViewBackward0", saves=INPUTS)
def matmul_batched(a: Any, b: Any) -> Any:
    """Broadcast batched matmul of two tensors of at least two dimensions."""
    if a.shape[-1] != b.shape[-2]:
        raise InvalidArgument(
            "Expected size for first two dimensions of batch2 tensor to be: "
            f"[{b.shape[0]}, {a.shape[-1]}] but got: [{b.shape[0]}, {b.shape[-2]}]."
        )
    _mat_dtype(a, b)
    try:
        return a @ b
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


@matmul_batched.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    return matmul_batched(g, _mT(b)), matmul_batched(_mT(a), g)
