"""PyTorch's module namespace on a session: factories, functions, grad modes, ``autograd``.

Everything here turns a ``torch.xxx`` call into the commands of ``Session``; what the engine
supports is what is here (``engine/ops`` names the ops, ``engine/functional.py`` the methods).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy

from . import dtypes, known
from .errors import invalid
from .tensor import Tensor, _sizes

F = TypeVar("F", bound=Callable[..., Any])

UNARY = (
    "exp", "log", "sqrt", "abs", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "neg", "sign",
    "round", "floor", "ceil", "reciprocal", "clone", "logical_not",
)  # fmt: skip
BINARY = (
    "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "logical_and",
    "logical_or", "logical_xor", "dot", "mm", "mv", "bmm", "outer", "matmul",
)  # fmt: skip
ALIASES = {"multiply": "mul", "true_divide": "div", "divide": "div", "negative": "neg"}


class _GradMode:
    """``no_grad()`` / ``enable_grad()``: a context manager, or a decorator (``@no_grad()``)."""

    def __init__(self, session: Namespace, enabled: bool) -> None:
        self._session = session
        self._enabled = enabled
        self._previous: list[bool] = []

    def __enter__(self) -> None:
        self._previous.append(self._session.is_grad_enabled())
        self._session._local.grad_enabled = self._enabled

    def __exit__(self, *exc: Any) -> None:
        self._session._local.grad_enabled = self._previous.pop()

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _GradMode(self._session, self._enabled):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class set_grad_enabled(_GradMode):
    """Switches the mode now; as a context manager, its end restores the previous one."""

    def __init__(self, session: Namespace, mode: bool) -> None:
        super().__init__(session, mode)
        self._previous.append(session.is_grad_enabled())
        session._local.grad_enabled = mode

    def __enter__(self) -> None:
        return None


class Autograd:
    """``torch.autograd``: ``grad`` and ``backward``."""

    def __init__(self, session: Namespace) -> None:
        self._session = session

    def grad(
        self,
        outputs: Any,
        inputs: Any,
        grad_outputs: Any = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        allow_unused: bool | None = None,
    ) -> tuple[Tensor | None, ...]:
        return self._session._grad(
            outputs, inputs, grad_outputs, retain_graph, create_graph, bool(allow_unused)
        )

    def backward(
        self,
        tensors: Any,
        grad_tensors: Any = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        inputs: Any = None,
    ) -> None:
        items = [tensors] if isinstance(tensors, Tensor) else list(tensors)
        grads = [grad_tensors] if isinstance(grad_tensors, Tensor) else list(grad_tensors or [])
        if len(items) != 1 or len(grads) > 1:
            raise invalid("gradserve's backward takes one tensor (and at most one gradient)")
        items[0].backward(grads[0] if grads else None, retain_graph, create_graph, inputs)


def _tensor(value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise invalid(f"expected a Tensor, got {type(value).__name__}", "TypeError")
    return value


def _plain(data: Any) -> Any:
    """Nested data with any tensors replaced by their values."""
    if isinstance(data, Tensor):
        return data.tolist()
    if isinstance(data, list | tuple):
        return [_plain(d) for d in data]
    return data


def _size(size: Any, args: tuple[Any, ...]) -> list[int]:
    if size is not None:
        return _sizes((size,))
    return _sizes(args)


class Namespace:
    """The ``torch`` module's functions, on a session's commands."""

    if TYPE_CHECKING:
        device_name: str
        _local: Any

        def _op(
            self, op: str, inputs: Sequence[Any], attrs: dict[str, Any] | None = ...
        ) -> Tensor: ...
        def _op_many(
            self, op: str, inputs: Sequence[Any], attrs: dict[str, Any], count: int
        ) -> tuple[Tensor, ...]: ...

        _create: Callable[..., Tensor]

        def _grad(self, *args: Any) -> tuple[Tensor | None, ...]: ...

    # ----- types and constants (Tensor, Size, dtype, device: set below the class) -----

    @property
    def autograd(self) -> Autograd:
        return Autograd(self)

    def is_tensor(self, value: Any) -> bool:
        return isinstance(value, Tensor)

    def numel(self, x: Tensor) -> int:
        return _tensor(x).numel()

    # ----- grad modes -----

    def is_grad_enabled(self) -> bool:
        return bool(getattr(self._local, "grad_enabled", True))

    def no_grad(self) -> _GradMode:
        return _GradMode(self, False)

    def enable_grad(self) -> _GradMode:
        return _GradMode(self, True)

    def set_grad_enabled(self, mode: bool) -> _GradMode:
        return set_grad_enabled(self, mode)

    def inference_mode(self, mode: bool = True) -> _GradMode:
        return _GradMode(self, not mode)

    # ----- factories -----

    def _device(self, device: Any) -> None:
        if device is not None and dtypes.device(str(device)) != dtypes.device(self.device_name):
            raise invalid(f"this session's tensors live on {self.device_name}, not {device}")

    def tensor(
        self, data: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
    ) -> Tensor:
        self._device(device)
        array = dtypes.as_array(_plain(data), None if dtype is None else dtypes.name_of(dtype))
        small = array.size <= known.MAX_ELEMENTS
        return self._create(
            "tensor",
            [],
            data=array,
            requires_grad=requires_grad,
            shape=array.shape,
            out_dtype=array.dtype.name,
            value=array.copy() if small else None,
        )

    as_tensor = tensor

    def arange(
        self,
        *args: Any,
        dtype: Any = None,
        device: Any = None,
        requires_grad: bool = False,
        **bounds: Any,
    ) -> Tensor:
        self._device(device)
        values = list(args)
        if bounds:
            values = [bounds.get("start", 0), bounds["end"], bounds.get("step", 1)]
        values = [v.item() if isinstance(v, numpy.generic) else v for v in values]
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        name = dtypes.name_of(dtype) if dtype is not None else ("int64" if ints else "float32")
        shape = value = None
        if ints and 1 <= len(values) <= 3 and (len(values) < 3 or values[2] != 0):
            start, end, step = ([0, *values, 1] if len(values) == 1 else [*values, 1])[:3]
            shape = (len(range(start, end, step)),)
            if name == "int64" and shape[0] <= known.MAX_ELEMENTS:
                value = numpy.arange(start, end, step, dtype=numpy.int64)
        return self._create(
            "arange",
            values,
            dtype=None if dtype is None else name,
            requires_grad=requires_grad,
            shape=shape,
            out_dtype=name,
            value=value,
        )

    def _filled(
        self, factory: str, size: list[int], dtype: Any, requires_grad: bool, fill: Any = None
    ) -> Tensor:
        name = dtypes.name_of(dtype) if dtype is not None else "float32"
        if factory == "full":
            name = dtypes.name_of(dtype) if dtype is not None else dtypes.name_of(type(fill))
        shape = tuple(size)
        value = None
        exact = {"zeros": 0, "ones": 1, "full": fill}
        if (
            factory in exact
            and all(n >= 0 for n in shape)
            and numpy.prod(shape) <= known.MAX_ELEMENTS
        ):
            value = numpy.full(shape, exact[factory], dtype=name)
        args: list[Any] = [size] if factory != "full" else [size, fill]
        return self._create(
            factory,
            args,
            dtype=None if dtype is None else name,
            requires_grad=requires_grad,
            shape=shape,
            out_dtype=name,
            value=value,
        )

    def zeros(self, *size: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False, **kw: Any) -> Tensor:  # fmt: skip
        self._device(device)
        return self._filled("zeros", _size(kw.get("size"), size), dtype, requires_grad)

    def ones(self, *size: Any, dtype: Any = None, device: Any = None,
             requires_grad: bool = False, **kw: Any) -> Tensor:  # fmt: skip
        self._device(device)
        return self._filled("ones", _size(kw.get("size"), size), dtype, requires_grad)

    def empty(self, *size: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False, **kw: Any) -> Tensor:  # fmt: skip
        self._device(device)
        return self._filled("empty", _size(kw.get("size"), size), dtype, requires_grad)

    def rand(self, *size: Any, dtype: Any = None, device: Any = None,
             requires_grad: bool = False, **kw: Any) -> Tensor:  # fmt: skip
        self._device(device)
        return self._filled("rand", _size(kw.get("size"), size), dtype, requires_grad)

    def randn(self, *size: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False, **kw: Any) -> Tensor:  # fmt: skip
        self._device(device)
        return self._filled("randn", _size(kw.get("size"), size), dtype, requires_grad)

    def full(self, size: Any, fill_value: Any, *, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:  # fmt: skip
        self._device(device)
        return self._filled("full", _size(size, ()), dtype, requires_grad, fill_value)

    def eye(self, n: int, m: int | None = None, *, dtype: Any = None, device: Any = None,
            requires_grad: bool = False) -> Tensor:  # fmt: skip
        self._device(device)
        name = dtypes.name_of(dtype) if dtype is not None else "float32"
        return self._create(
            "eye",
            [n] if m is None else [n, m],
            dtype=None if dtype is None else name,
            requires_grad=requires_grad,
            shape=(n, n if m is None else m),
            out_dtype=name,
        )

    def linspace(self, start: Any, end: Any, steps: int, *, dtype: Any = None,
                 device: Any = None, requires_grad: bool = False) -> Tensor:  # fmt: skip
        self._device(device)
        name = dtypes.name_of(dtype) if dtype is not None else "float32"
        return self._create(
            "linspace",
            [start, end, steps],
            dtype=None if dtype is None else name,
            requires_grad=requires_grad,
            shape=(steps,),
            out_dtype=name,
        )

    def _like(
        self, factory: str, x: Any, args: list[Any], dtype: Any, requires_grad: bool
    ) -> Tensor:
        x = _tensor(x)
        name = None if dtype is None else dtypes.name_of(dtype)
        return self._create(
            factory,
            [x._ref(), *args],
            dtype=name,
            requires_grad=requires_grad,
            shape=x._m.shape,
            out_dtype=name or x._m.dtype,
        )

    def zeros_like(self, x: Tensor, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return self._like("zeros_like", x, [], dtype, requires_grad)

    def ones_like(self, x: Tensor, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return self._like("ones_like", x, [], dtype, requires_grad)

    def full_like(self, x: Tensor, fill_value: Any, *, dtype: Any = None,
                  requires_grad: bool = False) -> Tensor:  # fmt: skip
        return self._like("full_like", x, [fill_value], dtype, requires_grad)

    # ----- functions -----

    def add(self, a: Any, b: Any, *, alpha: Any = 1) -> Tensor:
        return self._op("add", [a, b if alpha == 1 else self._op("mul", [b, alpha])])

    def sub(self, a: Any, b: Any, *, alpha: Any = 1) -> Tensor:
        return self._op("sub", [a, b if alpha == 1 else self._op("mul", [b, alpha])])

    subtract = sub

    def sum(self, x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _tensor(x).sum(dim, keepdim)

    def mean(self, x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _tensor(x).mean(dim, keepdim)

    def prod(self, x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _tensor(x).prod(dim, keepdim)

    def argmax(self, x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _tensor(x).argmax(dim, keepdim)

    def argmin(self, x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _tensor(x).argmin(dim, keepdim)

    def norm(self, x: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Tensor:
        return _tensor(x).norm(p, dim, keepdim)

    def max(self, x: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
        return _tensor(x).max(dim, keepdim)

    def min(self, x: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
        return _tensor(x).min(dim, keepdim)

    def logsumexp(self, x: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
        return _tensor(x).logsumexp(dim, keepdim)

    def softmax(self, x: Tensor, dim: int) -> Tensor:
        return _tensor(x).softmax(dim)

    def log_softmax(self, x: Tensor, dim: int) -> Tensor:
        return _tensor(x).log_softmax(dim)

    def clamp(self, x: Tensor, min: Any = None, max: Any = None) -> Tensor:
        return _tensor(x).clamp(min, max)

    clip = clamp

    def where(self, condition: Tensor, x: Any, y: Any) -> Tensor:
        return self._op("where", [condition, x, y])

    def cat(self, tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
        return self._op("cat", [list(tensors)], {"dim": dim} if dim else None)

    concat = concatenate = cat

    def stack(self, tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
        return self._op("stack", [list(tensors)], {"dim": dim} if dim else None)

    def split(self, x: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
        return _tensor(x).split(split_size_or_sections, dim)

    def chunk(self, x: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        return _tensor(x).chunk(chunks, dim)

    def reshape(self, x: Tensor, shape: Sequence[int]) -> Tensor:
        return _tensor(x).reshape(shape)

    def flatten(self, x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return _tensor(x).flatten(start_dim, end_dim)

    def squeeze(self, x: Tensor, dim: Any = None) -> Tensor:
        return _tensor(x).squeeze(dim)

    def unsqueeze(self, x: Tensor, dim: int) -> Tensor:
        return _tensor(x).unsqueeze(dim)

    def transpose(self, x: Tensor, dim0: int, dim1: int) -> Tensor:
        return _tensor(x).transpose(dim0, dim1)

    def permute(self, x: Tensor, dims: Sequence[int]) -> Tensor:
        return _tensor(x).permute(dims)

    def t(self, x: Tensor) -> Tensor:
        return _tensor(x).t()

    def index_select(self, x: Tensor, dim: int, index: Tensor) -> Tensor:
        return _tensor(x).index_select(dim, index)

    def detach(self, x: Tensor) -> Tensor:
        return _tensor(x).detach()

    def is_floating_point(self, x: Tensor) -> bool:
        return _tensor(x).is_floating_point()


def _unary_fn(op: str) -> Callable[[Namespace, Any], Tensor]:
    def fn(self: Namespace, x: Any) -> Tensor:
        return self._op(op, [_tensor(x)])

    fn.__name__ = op
    return fn


def _binary_fn(op: str) -> Callable[[Namespace, Any, Any], Tensor]:
    def fn(self: Namespace, a: Any, b: Any) -> Tensor:
        return self._op(op, [a, b])

    fn.__name__ = op
    return fn


# After the class: as class attributes in its body, they would shadow its annotations.
Namespace.Tensor = Tensor  # type: ignore[attr-defined]
Namespace.Size = dtypes.Size  # type: ignore[attr-defined]
Namespace.dtype = dtypes.dtype  # type: ignore[attr-defined]
Namespace.device = dtypes.device  # type: ignore[attr-defined]
for _name in UNARY:
    setattr(Namespace, _name, _unary_fn(_name))
for _name in BINARY:
    setattr(Namespace, _name, _binary_fn(_name))
for _alias, _target in ALIASES.items():
    setattr(Namespace, _alias, getattr(Namespace, _target))
for _dtype_name, _dtype in dtypes.DTYPES.items():
    setattr(Namespace, _dtype_name, _dtype)
for _alias, _dtype_name in dtypes.ALIASES.items():
    setattr(Namespace, _alias, dtypes.DTYPES[_dtype_name])
