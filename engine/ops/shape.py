"""Shape ops: reshape, view, expand, squeeze, unsqueeze, transpose, permute, with VJPs.

The forwards return views of their input where NumPy can (as PyTorch does), so in-place
writes through them are seen by the base tensor and share its version counter.
"""

from __future__ import annotations

import math
from typing import Any

from engine.backend import xp_of
from engine.dtypes import legacy_name
from engine.errors import InvalidArgument
from engine.ops.reduce import normalize_dim
from engine.ops.registry import KEEP, primitive


def infer_shape(shape: Any, numel: int) -> tuple[int, ...]:
    """Resolve one -1 in ``shape`` or raise PyTorch's error."""
    shape = tuple(int(n) for n in shape)
    if shape.count(-1) > 1:
        raise InvalidArgument("only one dimension can be inferred")
    known = math.prod(n for n in shape if n != -1)
    if any(n < -1 for n in shape):
        raise InvalidArgument(f"invalid shape dimension {min(shape)}")
    if -1 in shape:
        if known == 0 or numel % known:
            raise InvalidArgument(
                f"shape '[{', '.join(map(str, shape))}]' is invalid for input of size {numel}"
            )
        return tuple(numel // known if n == -1 else n for n in shape)
    if known != numel:
        raise InvalidArgument(
            f"shape '[{', '.join(map(str, shape))}]' is invalid for input of size {numel}"
        )
    return shape


def as_view(x: Any, shape: tuple[int, ...]) -> Any | None:
    """``x`` in ``shape`` without copying, or None where the strides do not allow it."""
    out = xp_of(x).asarray(x).view()  # NumPy's 0-d reductions give scalars: make them arrays
    try:
        out.shape = shape  # raises rather than copy when the memory is not contiguous
    except AttributeError:
        return None
    return out


def _reshape_node(shape: Any = None, node_name: str | None = None) -> str:
    return node_name or "ViewBackward0"


@primitive("reshape", node=_reshape_node, dtype=KEEP, view=True, public=False)
def reshape(x: Any, shape: tuple[int, ...], node_name: str | None = None) -> Any:
    """A view where the strides allow one, else a new array (PyTorch: UnsafeViewBackward0)."""
    new = infer_shape(shape, x.size)
    out = as_view(x, new)
    if out is None:
        out = x.copy(order="C")  # owning its memory: not a view of x
        out.shape = new
    return out


@reshape.defvjp
def _(g: Any, out: Any, x: Any, shape: tuple[int, ...], node_name: Any = None) -> tuple[Any, ...]:
    return (reshape(g, shape=tuple(x.shape)),)


@primitive("view", node="ViewBackward0", dtype=KEEP, view=True)
def view(x: Any, shape: tuple[int, ...]) -> Any:
    out = as_view(x, infer_shape(shape, x.size))
    if out is None:
        raise InvalidArgument(
            "view size is not compatible with input tensor's size and stride (at least one "
            "dimension spans across two contiguous subspaces). Use .reshape(...) instead."
        )
    return out


@view.defvjp
def _(g: Any, out: Any, x: Any, shape: tuple[int, ...]) -> tuple[Any, ...]:
    return (reshape(g, shape=tuple(x.shape)),)


@primitive("expand", node="ExpandBackward0", dtype=KEEP, view=True)
def expand(x: Any, shape: tuple[int, ...]) -> Any:
    shape = tuple(int(n) for n in shape)
    lead = len(shape) - x.ndim
    if lead < 0:
        kind = "CPUBoolType" if x.dtype.kind == "b" else f"torch.{legacy_name(x.dtype)}Tensor"
        sizes, dims = ", ".join(map(str, shape)), ", ".join(map(str, x.shape))
        raise InvalidArgument(
            f"expand({kind}{{[{dims}]}}, size=[{sizes}]): the number of sizes provided "
            f"({len(shape)}) must be greater or equal to the number of dimensions in the tensor "
            f"({x.ndim})"
        )
    target = tuple(x.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(shape))
    for i, n in reversed(list(enumerate(x.shape))):  # PyTorch reports the last mismatch
        if n != 1 and n != target[i + lead]:
            raise InvalidArgument(
                f"The expanded size of the tensor ({target[i + lead]}) must match the existing "
                f"size ({n}) at non-singleton dimension {i + lead}.  Target sizes: "
                f"[{', '.join(map(str, shape))}].  Tensor sizes: [{', '.join(map(str, x.shape))}]"
            )
    return xp_of(x).broadcast_to(x, target)


@expand.defvjp
def _(g: Any, out: Any, x: Any, shape: tuple[int, ...]) -> tuple[Any, ...]:
    return (g,)  # the backward pass sums the broadcast dimensions away


def _squeeze_node(dim: Any = None, node_name: str | None = None) -> str:
    if node_name is not None:
        return node_name
    if dim is None:
        return "SqueezeBackward0"
    return "SqueezeBackward1" if isinstance(dim, int) else "SqueezeBackward2"


@primitive("squeeze", node=_squeeze_node, dtype=KEEP, view=True)
def squeeze(x: Any, dim: int | tuple[int, ...] | None = None, node_name: str | None = None) -> Any:
    if dim is None:
        return x.reshape(tuple(n for n in x.shape if n != 1))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    drop = {normalize_dim(d, x.ndim) for d in dims}
    return x.reshape(tuple(n for i, n in enumerate(x.shape) if not (i in drop and n == 1)))


@squeeze.defvjp
def _(g: Any, out: Any, x: Any, dim: Any = None, node_name: str | None = None) -> tuple[Any, ...]:
    return (reshape(g, shape=tuple(x.shape)),)


@primitive("unsqueeze", node="UnsqueezeBackward0", dtype=KEEP, view=True)
def unsqueeze(x: Any, dim: int) -> Any:
    d = normalize_dim(dim, x.ndim + 1)
    return x.reshape((*x.shape[:d], 1, *x.shape[d:]))


@unsqueeze.defvjp
def _(g: Any, out: Any, x: Any, dim: int) -> tuple[Any, ...]:
    return (reshape(g, shape=tuple(x.shape)),)


def _transpose_node(dim0: int = 0, dim1: int = 1, t: bool = False) -> str:
    return "TBackward0" if t else "TransposeBackward0"


@primitive("transpose", node=_transpose_node, dtype=KEEP, view=True)
def transpose(x: Any, dim0: int, dim1: int, t: bool = False) -> Any:
    if t and x.ndim > 2:
        raise InvalidArgument(f"t() expects a tensor with <= 2 dimensions, but self is {x.ndim}D")
    if x.ndim < 2 and t:
        return x.view()
    return x.swapaxes(normalize_dim(dim0, x.ndim), normalize_dim(dim1, x.ndim))


@transpose.defvjp
def _(g: Any, out: Any, x: Any, dim0: int, dim1: int, t: bool = False) -> tuple[Any, ...]:
    if x.ndim < 2:
        return (g,)
    return (transpose(g, dim0=dim0, dim1=dim1),)


@primitive("permute", node="PermuteBackward0", dtype=KEEP, view=True)
def permute(x: Any, dims: tuple[int, ...]) -> Any:
    axes = tuple(normalize_dim(d, x.ndim) for d in dims)
    if len(axes) != x.ndim:
        raise InvalidArgument(
            "permute(sparse_coo): number of dimensions in the tensor input does not match the "
            f"length of the desired ordering of dimensions i.e. input.dim() = {x.ndim} is not "
            f"equal to len(dims) = {len(axes)}"
        )
    if len(set(axes)) != len(axes):
        raise InvalidArgument("permute(): duplicate dims are not allowed.")
    return x.transpose(axes)


@permute.defvjp
def _(g: Any, out: Any, x: Any, dims: tuple[int, ...]) -> tuple[Any, ...]:
    axes = [normalize_dim(d, x.ndim) for d in dims]
    inverse = tuple(sorted(range(len(axes)), key=axes.__getitem__))
    return (permute(g, dims=inverse),)
