"""``Tensor``: a proxy for a tensor of a remote session, with PyTorch's API.

Operations queue commands on the session and return new proxies at once. What a proxy knows
(shape, dtype, flags, value, repr) sits in a ``State``; what it does not know yet is asked
of the server when needed, which is when the session sends its queue. A proxy's name is
released on the server when the proxy is garbage-collected.
"""

from __future__ import annotations

import builtins
import math
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import dtypes
from .errors import Error, invalid

if TYPE_CHECKING:
    from .session import Session

PENDING, LIVE, FAILED, ABSENT = 0, 1, 2, 3
UNKNOWN_FN = ""  # State.grad_fn while the server has not said (None: no grad_fn)


class State:
    """What the client knows of a tensor (or of a tensor's grad); None where it does not.

    ``value`` and ``repr`` hold while the session's epochs equal their stamps.
    """

    __slots__ = ("dtype", "grad_fn", "is_leaf", "repr", "repr_at", "requires_grad", "shape",
                 "value", "value_at")  # fmt: skip

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """Everything may have changed (a failed in-place op, a grad set to None)."""
        self.shape: tuple[int, ...] | None = None
        self.dtype: str | None = None
        self.requires_grad: bool | None = None
        self.is_leaf: bool | None = None
        self.grad_fn: str | None = UNKNOWN_FN
        self.value: np.ndarray | None = None
        self.value_at: Any = None
        self.repr: str | None = None
        self.repr_at: Any = None


class GradFn:
    """A result's ``grad_fn``: its node's name, as PyTorch's objects show it."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<{self._name} object at {id(self):#x}>"


class _ReturnType(NamedTuple):
    values: Tensor
    indices: Tensor


class max_result(_ReturnType):
    def __repr__(self) -> str:
        return f"torch.return_types.max(\nvalues={self.values!r},\nindices={self.indices!r})"


class min_result(_ReturnType):
    def __repr__(self) -> str:
        return f"torch.return_types.min(\nvalues={self.values!r},\nindices={self.indices!r})"


def _sizes(args: tuple[Any, ...]) -> list[int]:
    """Sizes given as numbers (``view(2, 3)``) or as one sequence (``view((2, 3))``)."""
    if len(args) == 1 and isinstance(args[0], list | tuple):
        args = tuple(args[0])
    return [int(a) for a in args]


def _dims(dim: Any, keepdim: bool) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if dim is not None:
        attrs["dim"] = list(dim) if isinstance(dim, tuple | list) else dim
    if keepdim:
        attrs["keepdim"] = True
    return attrs


def _operand(value: Any) -> bool:
    return isinstance(value, Tensor | builtins.bool | int | float | np.generic | np.ndarray)


def _unary(op: str) -> Callable[[Tensor], Tensor]:
    def method(self: Tensor) -> Tensor:
        return self._s._op(op, [self])

    method.__name__ = op
    return method


def _binary(op: str, reflected: builtins.bool = False) -> Callable[[Tensor, Any], Any]:
    def method(self: Tensor, other: Any) -> Any:
        if not _operand(other):
            return NotImplemented
        return self._s._op(op, [other, self] if reflected else [self, other])

    method.__name__ = op
    return method


def _inplace(op: str) -> Callable[[Tensor, Any], Any]:
    def method(self: Tensor, other: Any) -> Any:
        if not _operand(other):
            return NotImplemented
        return self._s._inplace(op, self, [other])

    method.__name__ = op
    return method


def _reduction(op: str) -> Callable[..., Tensor]:
    def method(self: Tensor, dim: Any = None, keepdim: builtins.bool = False) -> Tensor:
        return self._s._op(op, [self], _dims(dim, keepdim))

    method.__name__ = op
    return method


class Tensor:
    """A tensor of a remote session; behaves as ``torch.Tensor``."""

    __slots__ = ("__weakref__", "_error", "_fn", "_g", "_grad", "_has_grad", "_has_grad_at",
                 "_m", "_name", "_owner", "_retains_grad", "_s", "_state")  # fmt: skip
    __hash__ = object.__hash__

    def __init__(self, session: Session, name: str | None, owner: Tensor | None = None) -> None:
        self._s = session
        self._name = name
        self._owner = owner  # for a grad: the tensor whose .grad this is
        self._state = PENDING if owner is None else LIVE
        self._error: Error | None = None
        self._m = State() if owner is None else owner._grad_state()
        self._g: State | None = None  # this tensor's grad's State
        self._grad: weakref.ref[Tensor] | None = None  # its proxy, while one is alive
        self._has_grad: builtins.bool | None = False
        self._has_grad_at = 0
        self._retains_grad = False
        self._fn: GradFn | None = None

    def __del__(self) -> None:
        try:
            if self._name is not None and self._state in (PENDING, LIVE):
                self._s._release(self._name)
        except Exception:  # interpreter shutdown, half-built proxies: nothing to release
            pass

    def _ref(self) -> Any:
        """This tensor in commands: its name, or ``{"grad_of": name}`` for a grad."""
        if self._owner is not None:
            return {"grad_of": self._owner._name}
        return self._name

    def _grad_state(self) -> State:
        if self._g is None:
            self._g = State()
        return self._g

    # ----- metadata -----

    @property
    def shape(self) -> dtypes.Size:
        return dtypes.Size(self._s._meta(self, "shape"))

    def size(self, dim: int | None = None) -> Any:
        shape = self.shape
        if dim is None:
            return shape
        if not shape:
            raise invalid(
                f"Dimension specified as {dim} but tensor has no dimensions", "IndexError"
            )
        if not -len(shape) <= dim < len(shape):
            raise invalid(
                f"Dimension out of range (expected to be in range of [{-len(shape)}, "
                f"{len(shape) - 1}], but got {dim})",
                "IndexError",
            )
        return shape[dim]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return math.prod(self.shape)

    nelement = numel

    @property
    def dtype(self) -> dtypes.dtype:
        return dtypes.of(self._s._meta(self, "dtype"))

    def is_floating_point(self) -> builtins.bool:
        return self.dtype.is_floating_point

    @property
    def device(self) -> dtypes.device:
        return dtypes.device(self._s.device_name)

    @property
    def requires_grad(self) -> builtins.bool:
        return builtins.bool(self._s._meta(self, "requires_grad"))

    @requires_grad.setter
    def requires_grad(self, flag: builtins.bool) -> None:
        self.requires_grad_(flag)

    @property
    def is_leaf(self) -> builtins.bool:
        return builtins.bool(self._s._meta(self, "is_leaf"))

    @property
    def grad_fn(self) -> GradFn | None:
        name = self._s._meta(self, "grad_fn")
        if name is None:
            return None
        if self._fn is None or self._fn.name() != name:
            self._fn = GradFn(name)
        return self._fn

    @property
    def retains_grad(self) -> builtins.bool:
        return self._retains_grad

    @property
    def grad(self) -> Tensor | None:
        if self._owner is not None or not self._s._has_grad(self):
            return None
        grad = self._grad() if self._grad is not None else None
        if grad is None:  # held weakly: the grad holds this tensor, not the other way round
            grad = Tensor(self._s, None, owner=self)
            self._grad = weakref.ref(grad)
        return grad

    @grad.setter
    def grad(self, value: Any) -> None:
        if value is not None:
            raise Error(
                "unimplemented",
                "assigning a tensor to .grad is not supported; only None (zero_grad)",
                torch_type="NotImplementedError",
            )
        self._s._zero_grad([self], set_to_none=True)

    @property
    def data(self) -> Tensor:
        return self.detach()

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    # ----- values -----

    def __repr__(self) -> str:
        return self._s._repr(self)

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        if self.ndim == 0:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def item(self) -> Any:
        value = self._s._value(self)
        if value.size != 1:
            raise invalid(f"a Tensor with {value.size} elements cannot be converted to Scalar")
        return value.reshape(()).item()

    def tolist(self) -> Any:
        return self._s._value(self).tolist()

    def numpy(self, force: builtins.bool = False) -> np.ndarray:
        if self.requires_grad and not force:
            raise Error(
                "failed_precondition",
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead.",
            )
        return self._s._value(self).copy()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def _scalar(self) -> Any:
        if self.numel() != 1:
            raise invalid(
                "only one element tensors can be converted to Python scalars", "ValueError"
            )
        return self.item()

    def __bool__(self) -> builtins.bool:
        numel = self.numel()
        if numel != 1:
            more = "no values" if numel == 0 else "more than one value"
            raise invalid(f"Boolean value of Tensor with {more} is ambiguous")
        return builtins.bool(self.item())

    def __float__(self) -> float:
        return float(self._scalar())

    def __int__(self) -> int:
        return int(self._scalar())

    def __index__(self) -> int:
        if self.dtype.is_floating_point or self.numel() != 1:
            raise invalid(
                "only integer tensors of a single element can be converted to an index", "TypeError"
            )
        return int(self.item())

    def __len__(self) -> int:
        shape = self.shape
        if not shape:
            raise invalid("len() of a 0-d tensor", "TypeError")
        return shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        if not self.shape:
            raise invalid("iteration over a 0-d tensor", "TypeError")
        return (self[i] for i in range(len(self)))

    # ----- autograd -----

    def backward(
        self,
        gradient: Any = None,
        retain_graph: builtins.bool | None = None,
        create_graph: builtins.bool = False,
        inputs: Any = None,
    ) -> None:
        self._s._backward(self, gradient, retain_graph, create_graph, inputs)

    def detach(self) -> Tensor:
        return self._s._detach(self)

    def requires_grad_(self, requires_grad: builtins.bool = True) -> Tensor:
        return self._s._requires_grad(self, requires_grad)

    def retain_grad(self) -> None:
        self._s._retain_grad(self)

    def zero_(self) -> Tensor:
        if self._owner is not None:  # x.grad.zero_(): the server's grad, in place
            self._s._zero_grad([self._owner], set_to_none=False)
            return self
        return self._s._inplace("zero_", self, [])

    # ----- arithmetic, comparisons, logic -----

    __add__, __radd__ = _binary("add"), _binary("add", reflected=True)
    __sub__, __rsub__ = _binary("sub"), _binary("sub", reflected=True)
    __mul__, __rmul__ = _binary("mul"), _binary("mul", reflected=True)
    __truediv__, __rtruediv__ = _binary("div"), _binary("div", reflected=True)
    __pow__, __rpow__ = _binary("pow"), _binary("pow", reflected=True)
    __matmul__, __rmatmul__ = _binary("matmul"), _binary("matmul", reflected=True)
    __floordiv__ = _binary("floor_divide")
    __rfloordiv__ = _binary("floor_divide", reflected=True)
    __eq__ = _binary("eq")  # type: ignore[assignment]
    __ne__ = _binary("ne")  # type: ignore[assignment]
    __lt__, __le__ = _binary("lt"), _binary("le")
    __gt__, __ge__ = _binary("gt"), _binary("ge")
    __and__, __or__, __xor__ = _binary("logical_and"), _binary("logical_or"), _binary("logical_xor")
    __neg__ = _unary("neg")
    __abs__ = _unary("abs")
    __invert__ = _unary("logical_not")
    __iadd__, __isub__ = _inplace("add_"), _inplace("sub_")
    __imul__, __itruediv__ = _inplace("mul_"), _inplace("div_")

    def __pos__(self) -> Tensor:
        return self

    add, sub, mul, div, pow = (_binary(n) for n in ("add", "sub", "mul", "div", "pow"))
    matmul, dot, mm, mv, bmm, outer = (
        _binary(n) for n in ("matmul", "dot", "mm", "mv", "bmm", "outer")
    )
    maximum, minimum = _binary("maximum"), _binary("minimum")
    eq, ne, lt, le, gt, ge = (_binary(n) for n in ("eq", "ne", "lt", "le", "gt", "ge"))
    logical_and, logical_or = _binary("logical_and"), _binary("logical_or")
    logical_xor, logical_not = _binary("logical_xor"), _unary("logical_not")
    exp, log, sqrt, abs = _unary("exp"), _unary("log"), _unary("sqrt"), _unary("abs")
    sin, cos, tan, tanh = _unary("sin"), _unary("cos"), _unary("tan"), _unary("tanh")
    sigmoid, relu, neg, sign = _unary("sigmoid"), _unary("relu"), _unary("neg"), _unary("sign")
    round, floor, ceil = _unary("round"), _unary("floor"), _unary("ceil")
    reciprocal, clone = _unary("reciprocal"), _unary("clone")
    mul_, div_ = _inplace("mul_"), _inplace("div_")

    def add_(self, other: Any, alpha: Any = 1) -> Tensor:
        return self._s._inplace("add_", self, [other], {"alpha": alpha} if alpha != 1 else None)

    def sub_(self, other: Any, alpha: Any = 1) -> Tensor:
        return self._s._inplace("sub_", self, [other], {"alpha": alpha} if alpha != 1 else None)

    def copy_(self, src: Tensor) -> Tensor:
        return self._s._inplace("copy_", self, [src])

    # ----- reductions -----

    sum, mean, prod = _reduction("sum"), _reduction("mean"), _reduction("prod")
    argmax, argmin = _reduction("argmax"), _reduction("argmin")

    def norm(self, p: Any = "fro", dim: Any = None, keepdim: builtins.bool = False) -> Tensor:
        attrs = _dims(dim, keepdim)
        if p not in ("fro", 2):
            attrs["p"] = p
        return self._s._op("norm", [self], attrs)

    def max(self, dim: Any = None, keepdim: builtins.bool = False) -> Any:
        return self._extreme("max", max_result, dim, keepdim)

    def min(self, dim: Any = None, keepdim: builtins.bool = False) -> Any:
        return self._extreme("min", min_result, dim, keepdim)

    def _extreme(self, op: str, kind: type[_ReturnType], dim: Any, keepdim: builtins.bool) -> Any:
        if isinstance(dim, Tensor):
            return self._s._op(op, [self, dim])
        if dim is None:
            return self._s._op(op, [self])
        values, indices = self._s._op_many(op, [self], _dims(dim, keepdim), 2)
        return kind(values, indices)

    def logsumexp(self, dim: Any, keepdim: builtins.bool = False) -> Tensor:
        return self._s._op("logsumexp", [self], _dims(dim, keepdim))

    def softmax(self, dim: int) -> Tensor:
        return self._s._op("softmax", [self], {"dim": dim})

    def log_softmax(self, dim: int) -> Tensor:
        return self._s._op("log_softmax", [self], {"dim": dim})

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        attrs = {k: v for k, v in (("min", min), ("max", max)) if v is not None}
        return self._s._op("clamp", [self], attrs)

    clip = clamp

    # ----- shapes and indexing -----

    def reshape(self, *shape: Any) -> Tensor:
        return self._s._op("reshape", [self], {"shape": _sizes(shape)})

    def view(self, *shape: Any) -> Tensor:
        return self._s._op("view", [self], {"shape": _sizes(shape)})

    def expand(self, *sizes: Any) -> Tensor:
        return self._s._op("expand", [self], {"shape": _sizes(sizes)})

    def permute(self, *dims: Any) -> Tensor:
        return self._s._op("permute", [self], {"dims": _sizes(dims)})

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return self._s._op("flatten", [self], {"start_dim": start_dim, "end_dim": end_dim})

    def squeeze(self, dim: Any = None) -> Tensor:
        return self._s._op("squeeze", [self], {} if dim is None else {"dim": dim})

    def unsqueeze(self, dim: int) -> Tensor:
        return self._s._op("unsqueeze", [self], {"dim": dim})

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        return self._s._op("transpose", [self], {"dim0": dim0, "dim1": dim1})

    def t(self) -> Tensor:
        return self._s._op("transpose", [self], {"dim0": 0, "dim1": -1, "t": True})

    def index_select(self, dim: int, index: Tensor) -> Tensor:
        return self._s._op("index_select", [self, index], {"dim": dim})

    def split(self, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
        sizes = split_size_or_sections
        return self._s._pieces("split", self, {"split_size_or_sections": sizes, "dim": dim})

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        return self._s._pieces("chunk", self, {"chunks": chunks, "dim": dim})

    def __getitem__(self, key: Any) -> Tensor:
        return self._s._op("index", [self], {"key": self._s._key(key)})

    def __setitem__(self, key: Any, value: Any) -> None:
        raise Error(
            "unimplemented",
            "item assignment is not in gradserve's command API; build the tensor with where() "
            "or cat()",
            torch_type="NotImplementedError",
        )

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        target = kwargs.get("dtype", args[0] if args else None)
        if isinstance(target, dtypes.device) or (
            isinstance(target, str) and target.split(":")[0] in ("cpu", "cuda")
        ):
            if dtypes.device(str(target)) != self.device:
                raise invalid(f"this session's tensors live on {self.device}, not {target}")
            return self
        return self._to(dtypes.name_of(target))

    def _to(self, name: str) -> Tensor:
        if self._s._meta(self, "dtype") == name:
            return self
        return self._s._op("to_dtype", [self], {"dtype": name})

    def float(self) -> Tensor:
        return self._to("float32")

    def double(self) -> Tensor:
        return self._to("float64")

    def half(self) -> Tensor:
        return self._to("float16")

    def long(self) -> Tensor:
        return self._to("int64")

    def int(self) -> Tensor:
        return self._to("int32")

    def bool(self) -> Tensor:
        return self._to("bool")

    def cpu(self) -> Tensor:
        return self.to("cpu")
