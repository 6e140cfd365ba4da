"""The one op registry: primitives (forward + vector-Jacobian product) and composites.

A primitive is registered in its family module with its forward, written on arrays of any
backend, and its VJP right beside it:

    @primitive("exp", node="ExpBackward0", saves=OUTPUT)
    def exp(x):
        return xp_of(x).exp(x)

    @exp.defvjp
    def _(g, out, x):
        return (g * out,)

Every VJP has the signature ``vjp(g, out, *inputs, **attrs)`` and returns one gradient (or
None) per input. It runs on raw arrays in an ordinary backward pass and on Tensors (so the
rule itself is recorded) under ``create_graph=True``; it therefore uses only Python
operators and registered ops, which accept both. Gradients come back in the shape the rule
computes them; the backward pass sums broadcast dimensions away in one place.

A composite is a function over Tensors built from other ops (``matmul``, ``outer``, ...).
Both kinds are looked up by name through ``OPS``, which is how commands call them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy

from engine import dtypes, grad_mode, parallel
from engine.backend import device_of, xp_of
from engine.dtypes import NDARRAY
from engine.errors import FailedPrecondition, InvalidArgument
from engine.graph import Node
from engine.ops.fast import fast_binary, fast_unary
from engine.tensor import Tensor

# What a node keeps for its backward rule.
NOTHING = 0  # only shapes and dtypes: the node can run again after its buffers are freed
INPUTS = 1  # the inputs
OUTPUT = 2  # the output
BOTH = 3

# How the result dtype follows from the inputs.
PROMOTE = "promote"  # PyTorch's result_type over every input
FLOAT = "float"  # result_type, then integers and bool become float32 (true division)
KEEP = "keep"  # the forward decides (shape ops, reductions, indexing)


class Primitive:
    """An op with a forward on arrays and a VJP; calling it on Tensors records the graph."""

    outputs_first = False  # its node checks its saved inputs for in-place writes first
    fused = False  # engine.fusion.Chain is the op of a fused node

    def __init__(
        self,
        name: str,
        forward: Callable[..., Any],
        *,
        node: str | Callable[..., str],
        saves: int,
        dtype: str,
        view: bool,
        differentiable: bool,
        elementwise: bool = False,
        ufunc: str | None = None,
        needs: tuple[tuple[int, ...], ...] | None = None,
    ) -> None:
        self.name = name
        self.forward = forward
        self.node = node
        self.saves = saves
        self.saves_inputs = bool(saves & INPUTS)
        self.saves_output = bool(saves & OUTPUT)
        # For each input, the inputs whose gradients its rule reads it for (None: all of them).
        # A saved input that no input requiring grad needs is not checked for in-place
        # writes: PyTorch does not save it (``x * 2.0`` keeps no ``x``).
        self.needs = needs
        self.dtype = dtype
        self.view = view
        self.differentiable = differentiable
        self.elementwise = elementwise
        # The NumPy ufunc that the forward is on NumPy arrays of floats (see ``primitive``).
        self.ufunc: Callable[..., Any] | None = None if ufunc is None else getattr(numpy, ufunc)
        self.vjp: Callable[..., tuple[Any, ...]] | None = None
        self.fixed_name = node if isinstance(node, str) else ""  # the node's name, if fixed
        # Whether ``apply`` may take its fast path (see there): an elementwise op of one or
        # two operands whose dtype follows the inputs and whose node has a fixed name.
        self.fast = elementwise and dtype != KEEP and not view and bool(self.fixed_name)
        # The operands its forward takes: ``apply`` takes the fast path only with that many (a
        # unary ufunc given two arrays would write the second: ``out``).
        self.operands = sum(
            p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD
            for p in inspect.signature(forward).parameters.values()
        )
        # ``apply`` of one and of two operands where ``fast`` (see ``fast_unary``).
        self.unary: Callable[[Any], Tensor] = _no_fast
        self.binary: Callable[[Any, Any], Tensor] = _no_fast
        if self.fast and self.operands == 1:
            self.unary = fast_unary(self)
        elif self.fast and self.operands == 2:
            self.binary = fast_binary(self)

    def defvjp(self, rule: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
        self.vjp = rule
        return rule

    def __call__(self, *args: Any, **attrs: Any) -> Any:
        # Rules call unary ops on arrays (``cos(x)`` in sin's): the ufunc is the forward there.
        if self.ufunc is not None and len(args) == 1 and type(args[0]) is NDARRAY:
            return self.ufunc(args[0])
        for a in args:
            if isinstance(a, Tensor):
                return apply(self, args, attrs)
        return self.forward(*args, **attrs)

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


def _no_fast(*args: Any) -> Tensor:
    raise AssertionError("an op without a fast path")


OPS: dict[str, Callable[..., Any]] = {}
PRIMITIVES: dict[str, Primitive] = {}


def _register(name: str, fn: Callable[..., Any]) -> None:
    if name in OPS:
        raise ValueError(f"op {name!r} is registered twice")
    OPS[name] = fn


def primitive(
    name: str,
    *,
    node: str | Callable[..., str],
    saves: int = NOTHING,
    dtype: str = PROMOTE,
    view: bool = False,
    differentiable: bool = True,
    elementwise: bool = False,
    ufunc: str | None = None,
    public: bool = True,
    needs: tuple[tuple[int, ...], ...] | None = None,
) -> Callable[[Callable[..., Any]], Primitive]:
    """Register a primitive whose forward is the decorated function.

    A primitive that a composite of the same name wraps (``add`` handles a Python scalar on
    the left) is registered with ``public=False``: commands reach it through the composite.
    ``elementwise=True`` promises that the forward and the VJP map same-shaped arrays element
    by element, so that large calls may run in chunks on threads (``engine.parallel``).
    ``ufunc`` names the NumPy ufunc that the forward computes on NumPy arrays: of any dtype
    for an op of one operand, of one floating dtype and shape for two. ``apply`` and rules
    call it directly on small arrays, where the forward's own dispatch would cost as much.
    ``needs`` says, for each input, the inputs whose gradients read it (``((1,), (0,))`` for
    ``mul``: each input only for the other's gradient), as PyTorch's derivative formulas do.
    """

    def wrap(forward: Callable[..., Any]) -> Primitive:
        op = Primitive(
            name,
            forward,
            node=node,
            saves=saves,
            dtype=dtype,
            view=view,
            differentiable=differentiable,
            elementwise=elementwise,
            ufunc=ufunc,
            needs=needs,
        )
        if name in PRIMITIVES:
            raise ValueError(f"primitive {name!r} is registered twice")
        PRIMITIVES[name] = op
        if public:
            _register(name, op)
        return op

    return wrap


def composite(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function over Tensors under ``name``."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        _register(name, fn)
        return fn

    return wrap


def _result_dtype(op: Primitive, args: tuple[Any, ...]) -> numpy.dtype[Any] | None:
    if op.dtype == KEEP:
        return None
    operands: list[Any] = []
    for a in args:
        if isinstance(a, Tensor):
            operands.append((a.data.dtype, a.data.ndim))
        elif isinstance(a, bool | int | float):
            operands.append(a)
    if not operands:
        return None
    result = dtypes.result_type(operands)
    if op.dtype == FLOAT and result.kind != "f":
        return dtypes.DEFAULT_FLOAT
    return result


def _as_array(value: Any, like: Any) -> Any:
    if isinstance(value, numpy.ndarray) or hasattr(value, "__cuda_array_interface__"):
        return value
    return xp_of(like).asarray(value)


_NUMBERS = (int, float)  # bool is an int; a tuple is tested faster than a union


def apply(op: Primitive, args: tuple[Any, ...], attrs: dict[str, Any]) -> Tensor:
    """Run ``op`` on Tensors (and Python scalars), recording a node when a grad is needed."""
    if op.fast and not attrs and len(args) == op.operands:
        return op.unary(args[0]) if len(args) == 1 else op.binary(args[0], args[1])
    return _apply(op, args, attrs)


def _apply(op: Primitive, args: tuple[Any, ...], attrs: dict[str, Any]) -> Tensor:
    """``apply``'s general path."""
    # One pass over the arguments gathers everything below.
    arrays: list[Any] = []
    first: Any = None  # the first tensor's array
    mixed = False  # tensors of more than one dtype
    numbers = False  # Python numbers among the arguments
    needs_grad = False
    for a in args:
        if isinstance(a, Tensor):
            data = a.data
            if first is None:
                first = data
            else:
                if type(data) is not type(first) and isinstance(data, numpy.ndarray) != isinstance(
                    first, numpy.ndarray
                ):
                    raise InvalidArgument(
                        "Expected all tensors to be on the same device, but found at least two "
                        f"devices, {device_of(first)} and {device_of(data)}!"
                    )
                if data.dtype != first.dtype:
                    mixed = True
            arrays.append(data)
            if a._requires_grad:
                needs_grad = True
        else:
            if isinstance(a, _NUMBERS):
                numbers = True
            arrays.append(a)
    if first is not None and op.dtype != KEEP:
        # Tensors of one floating dtype (or of one dtype, without Python numbers) keep it:
        # PyTorch's promotion need not run for the common case.
        kind = first.dtype.kind
        if mixed or (kind != "f" and (numbers or op.dtype == FLOAT)):
            dtype = _result_dtype(op, args)
            arrays = [
                x.astype(dtype) if isinstance(a, Tensor) and x.dtype != dtype else x
                for a, x in zip(args, arrays, strict=True)
            ]
    out = None
    if op.elementwise and first is not None and first.size >= parallel.MIN_SIZE:
        out = parallel.run(op.forward, arrays, attrs)
    if out is None:
        out = op.forward(*arrays, **attrs) if attrs else op.forward(*arrays)
    if first is not None and type(out) is not NDARRAY:
        out = _as_array(out, first)  # NumPy gives scalars for 0-d results
    record = needs_grad and op.differentiable and grad_mode.is_grad_enabled()
    if record and out.dtype.kind != "f":
        record = False
    result = Tensor(out, record)
    if op.view and first is not None and out.base is not None:
        source = _first_tensor(args)
        result._version = source.counter()
        result._base = source._base if source._base is not None else source
    if record:
        result.grad_fn = Node.record(op, args, arrays, attrs, result)
    return result


def _first_tensor(args: tuple[Any, ...]) -> Tensor:
    for a in args:
        if isinstance(a, Tensor):
            return a
    raise AssertionError("no tensor among the arguments")


_VIEW_OF_LEAF = (
    "a view of a leaf Variable that requires grad is being used in an in-place operation."
)


def apply_inplace(
    op: Primitive, target: Tensor, args: tuple[Any, ...], attrs: dict[str, Any]
) -> Tensor:
    """Run ``op`` with ``target`` as its first input and write the result into ``target``."""
    recording = grad_mode.is_grad_enabled()
    if recording and target._requires_grad:
        base = target._base
        if base is None and target.grad_fn is None:
            # Item assignment writes through a view of its target (PyTorch's CopySlices).
            if op.node == "CopySlices":
                raise FailedPrecondition(_VIEW_OF_LEAF)
            raise FailedPrecondition(
                "a leaf Variable that requires grad is being used in an in-place operation."
            )
        if base is not None and base._requires_grad and base.grad_fn is None:
            raise FailedPrecondition(_VIEW_OF_LEAF)
        if base is not None:
            raise InvalidArgument(
                "in-place operations on a view of a tensor that requires grad are not supported; "
                "apply the operation out of place"
            )
    # The node must see the old value, which the write below overwrites.
    snapshot = target
    if (
        recording
        and op.saves & INPUTS
        and (target._requires_grad or any(isinstance(a, Tensor) and a._requires_grad for a in args))
    ):
        snapshot = Tensor(target.data.copy(), requires_grad=target._requires_grad)
        snapshot.grad_fn = target.grad_fn
    result = apply(op, (snapshot, *args), attrs)
    if result.data.dtype != target.data.dtype and not numpy.can_cast(
        result.data.dtype, target.data.dtype, casting="same_kind"
    ):
        raise InvalidArgument(
            f"result type {dtypes.legacy_name(result.data.dtype)} can't be cast to the desired "
            f"output type {dtypes.legacy_name(target.data.dtype)}"
        )
    target.write_(result.data)
    if result.grad_fn is not None:
        node = result.grad_fn
        node.adopt_output(target)
        target.set_graph_(node)
    return target
