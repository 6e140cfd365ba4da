"""Products: dot, mm, mv, bmm and broadcast batched matmul, with their VJPs.

Operands are not promoted to a common dtype: PyTorch refuses mixed dtypes with per-op texts.
"""

from __future__ import annotations

from typing import Any

from engine.dtypes import legacy_name
from engine.errors import InvalidArgument
from engine.ops.registry import INPUTS, KEEP, primitive
from engine.ops.shape import transpose


def _same_dtype(name: str, a: Any, b: Any) -> None:
    if a.dtype != b.dtype:
        raise InvalidArgument(
            f"{name} : expected both vectors to have same dtype, but found "
            f"{legacy_name(a.dtype)} and {legacy_name(b.dtype)}"
        )


def mm_dtype(a: Any, b: Any) -> None:
    if a.dtype != b.dtype:
        raise InvalidArgument(
            "expected m1 and m2 to have the same dtype, but got: "
            f"{_torch_name(a.dtype)} != {_torch_name(b.dtype)}"
        )


def mv_dtype(a: Any, v: Any) -> None:
    if a.dtype != v.dtype:
        raise InvalidArgument(
            "addmv input tensors must have the same dtype, but got "
            f"{legacy_name(v.dtype)}, {legacy_name(a.dtype)}, and {legacy_name(v.dtype)}"
        )


def bmm_dtype(a: Any, b: Any) -> None:
    if a.dtype != b.dtype:
        raise InvalidArgument(
            f"expected scalar type {legacy_name(a.dtype)} but found {legacy_name(b.dtype)}"
        )


def _torch_name(dtype: Any) -> str:
    return {"float32": "float", "float64": "double", "int64": "long int", "int32": "int",
            "bool": "bool"}.get(dtype.name, dtype.name)  # fmt: skip


# Each operand of a product is read only for the other's gradient.
_OTHER = ((1,), (0,))


def _mT(x: Any) -> Any:
    return transpose(x, dim0=-1, dim1=-2)


@primitive("dot", node="DotBackward0", saves=INPUTS, dtype=KEEP, needs=_OTHER)
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


@primitive("mm", node="MmBackward0", saves=INPUTS, dtype=KEEP, needs=_OTHER)
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
    mm_dtype(a, b)
    return a @ b


@mm.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    return mm(g, _mT(b)), mm(_mT(a), g)


@primitive("mv", node="MvBackward0", saves=INPUTS, dtype=KEEP, needs=_OTHER)
def mv(a: Any, v: Any) -> Any:
    if a.ndim != 2 or v.ndim != 1:
        raise InvalidArgument(f"vector + matrix @ vector expected, got 1, {a.ndim}, {v.ndim}")
    if a.shape[1] != v.shape[0]:
        raise InvalidArgument(
            f"size mismatch, got input ({a.shape[0]}), mat ({a.shape[0]}x{a.shape[1]}), "
            f"vec ({v.shape[0]})"
        )
    mv_dtype(a, v)
    return a @ v


@mv.defvjp
def _(g: Any, out: Any, a: Any, v: Any) -> tuple[Any, ...]:
    from engine.ops.shape import unsqueeze

    return unsqueeze(g, dim=1) * unsqueeze(v, dim=0), mv(_mT(a), g)


@primitive("bmm", node="BmmBackward0", saves=INPUTS, dtype=KEEP, needs=_OTHER)
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
    bmm_dtype(a, b)
    return a @ b


@bmm.defvjp
def _(g: Any, out: Any, a: Any, b: Any) -> tuple[Any, ...]:
    return bmm(g, _mT(b)), bmm(_mT(a), g)


def _batched_node(node_name: str = "UnsafeViewBackward0") -> str:
    return node_name


@primitive(
    "matmul_batched",
    public=False,
    node=_batched_node,
    saves=INPUTS,
    dtype=KEEP,
    needs=_OTHER,
)
def matmul_batched(a: Any, b: Any, node_name: str = "UnsafeViewBackward0") -> Any:
    """Broadcast batched matmul; one operand may be a vector, as in NumPy's matmul.

    ``node_name`` is the grad_fn PyTorch's matmul shows, which depends on how it dispatched;
    ``functional.matmul`` checks the operands first, with the texts of that dispatch.
    """
    if min(a.ndim, b.ndim) < 1 or max(a.ndim, b.ndim) < 2:
        raise InvalidArgument(
            "batched matmul expects a matrix or a batch of matrices and a tensor of at least 1 "
            f"dimension, but got {a.ndim}D and {b.ndim}D tensors"
        )
    inner = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if a.shape[-1] != inner:
        raise InvalidArgument(
            "Expected size for first two dimensions of batch2 tensor to be: "
            f"[{b.shape[0]}, {a.shape[-1]}] but got: [{b.shape[0]}, {inner}]."
        )
    bmm_dtype(a, b)
    try:
        return a @ b
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


@matmul_batched.defvjp
def _(g: Any, out: Any, a: Any, b: Any, node_name: str = "") -> tuple[Any, ...]:
    from engine.ops.shape import squeeze, unsqueeze

    # A vector operand is a matrix with one row (a) or one column (b), dropped from g.
    a2 = unsqueeze(a, dim=0) if a.ndim == 1 else a
    b2 = unsqueeze(b, dim=1) if b.ndim == 1 else b
    g2 = unsqueeze(g, dim=-2) if a.ndim == 1 else g
    g2 = unsqueeze(g2, dim=-1) if b.ndim == 1 else g2
    ga = matmul_batched(g2, _mT(b2))
    gb = matmul_batched(_mT(a2), g2)
    return (
        squeeze(ga, dim=-2) if a.ndim == 1 else ga,
        squeeze(gb, dim=-1) if b.ndim == 1 else gb,
    )
