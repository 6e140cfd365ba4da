"""The fast paths, ``Primitive.unary`` and ``Primitive.binary``: an elementwise op on small
floating tensors (not 0-d) of one layout (``Tensor.layout``), or on one such tensor and a
Python number. No promotion, no broadcasting, no threads: this runs once per op of every
graph, so the common case goes first and straight. Anything else takes the general path,
``registry._apply``. Each op gets its own function, built once: Tensor methods are that function
itself (one Python call an op fewer than a method calling ``apply``), and what it reads of
``op`` are closure cells rather than attribute loads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine import grad_mode
from engine.dtypes import CONSTANTS32, CONSTANTS64, FLOAT32, FLOAT64, NDARRAY, NUMBERS
from engine.graph import NO_ATTRS, Node, next_order
from engine.ops import registry
from engine.tensor import Layout, Tensor, new_tensor

if TYPE_CHECKING:
    from engine.ops.registry import Primitive

_OPERANDS = NUMBERS | {Tensor}  # right operands that ``fast_binary``'s ``operand`` keeps


_new = object.__new__
_UNARY = (None,)  # what a plain node that keeps no inputs holds for them: None for a tensor
_BINARY = (None, None)
_V0, _V0N, _V00 = (0,), (0, None), (0, 0)  # the versions of inputs that were never written


def _closure_fields(op: Primitive) -> tuple[Callable[..., Any] | None, str, bool, bool, bool]:
    """What a fast path reads of its op, to keep in closure cells."""
    return op.ufunc, op.fixed_name, op.saves_inputs, op.saves_output, op.differentiable


def fast_unary(op: Primitive) -> Callable[[Any], Tensor]:
    """``apply(op, (a,), {})`` as a function of ``a``, for an op with ``op.fast``."""
    ufunc, name, saves_inputs, saves_output, differentiable = _closure_fields(op)
    off, mode = grad_mode.OFF, grad_mode.GRAD_MODE
    general = registry._apply

    def unary(a: Any) -> Tensor:
        layout = a._layout if type(a) is Tensor else False
        if layout is None:
            layout = a.layout()
        if not layout:
            return general(op, (a,), NO_ATTRS)
        x = a.data
        if ufunc is not None and type(x) is NDARRAY:
            out = ufunc(x)  # of the input's dtype, for floats
        else:
            out = _forward(op, (x,))
            if not _fits(out, layout):
                return _other(op, (a,), (x,), out, a._requires_grad)
        if not (
            a._requires_grad
            and differentiable
            and (off.threads == 0 or mode.enabled)  # is_grad_enabled()
        ):
            return new_tensor(out, False, None, layout)
        edges = (a.grad_fn if a.grad_fn is not None else a.edge(),)
        if saves_inputs:
            versions = _V0 if a._version is None else (a._version.value,)
            arrays, inputs = (x,), (a,)
        else:  # the rule gets the gradient in place of the input (see Node)
            arrays, inputs, versions = _UNARY, None, None
        # The plain node (new_node's fields; arrays double as metas) and its output Tensor,
        # set here: a function call for them cost ~430 instructions an op (tests/engine/
        # test_fast_path.py checks that every slot of both is set).
        node = _new(Node)
        node.op = op
        node.name = name
        node.attrs = NO_ATTRS
        node.edges = edges
        node.arrays = node.metas = arrays
        node.inputs = inputs
        node.versions = versions
        node.plain = True
        node.freed = False
        node.retained = node.out_version = None
        node.out = out if saves_output else None  # its counter comes with the output's
        node.out_versions = 0
        node.order = next_order()
        t = _new(Tensor)
        t.data = out
        t._requires_grad = True
        t.grad = t._version = t._base = t._accumulator = None
        t.grad_fn = node
        t._retains_grad = False
        t._layout = layout
        return t

    unary.__name__ = unary.__qualname__ = op.name
    return unary


def fast_binary(
    op: Primitive, operand: Callable[[Any], Any] | None = None
) -> Callable[[Any, Any], Tensor]:
    """``apply(op, (a, b), {})`` as a function of ``a`` and ``b``, for an op with ``op.fast``.

    ``operand``, for operators: what turns a right operand other than a Tensor or a Python
    number into one (NumPy scalars) or raises, before the op sees it.
    """
    ufunc, name, saves_inputs, saves_output, differentiable = _closure_fields(op)
    off, mode = grad_mode.OFF, grad_mode.GRAD_MODE
    general = registry._apply
    # Whose gradients read each input (Primitive.needs): a for a's, a for b's, b for a's, ...
    needs = op.needs or ((0, 1), (0, 1))
    a_for_a, a_for_b, b_for_a, b_for_b = (i in needs[k] for k in (0, 1) for i in (0, 1))
    every = op.needs is None

    def binary(a: Any, b: Any) -> Tensor:
        layout = a._layout if type(a) is Tensor else False
        if layout is None:
            layout = a.layout()
        if not layout:
            if operand is not None and type(b) not in _OPERANDS:
                b = operand(b)
            return general(op, (a, b), NO_ATTRS)
        x = a.data
        if type(b) is Tensor:
            other = b._layout
            if other is None:
                other = b.layout()
            if other is not layout and other != layout:
                return general(op, (a, b), NO_ATTRS)
            y = b.data
            needs_grad = a._requires_grad or b._requires_grad
        elif type(b) in NUMBERS:
            y = b
            needs_grad = a._requires_grad
            # A ufunc takes a Python number faster as a 0-d array of the tensor's dtype
            # (dtypes.constant, inline: the layout has the dtype at hand).
            dtype = layout[1]
            if dtype is FLOAT32:
                c = CONSTANTS32[b]
            elif dtype is FLOAT64:
                c = CONSTANTS64[b]
            else:
                c = b
        elif operand is not None:
            return op.binary(a, operand(b))  # whose fallback for what is left is _apply
        else:
            return general(op, (a, b), NO_ATTRS)
        if ufunc is not None and type(x) is NDARRAY:
            out = ufunc(x, y if y is not b else c)  # of the inputs' dtype (NEP 50 for numbers)
        else:
            out = _forward(op, (x, y))
            if not _fits(out, layout):
                return _other(op, (a, b), (x, y), out, needs_grad)
        if not (
            needs_grad
            and differentiable
            and (off.threads == 0 or mode.enabled)  # is_grad_enabled()
        ):
            return new_tensor(out, False, None, layout)
        edge_a = None
        if a._requires_grad:
            edge_a = a.grad_fn if a.grad_fn is not None else a.edge()
        versions: tuple[int | None, ...] | None = None
        arrays: tuple[Any, ...]
        inputs: tuple[Any, ...] | None = None
        if y is b:  # a Python number
            edges: tuple[Any, ...] = (edge_a, None)
            if saves_inputs and a_for_a:
                versions = _V0N if a._version is None else (a._version.value, None)
                arrays, inputs = (x, y), (a, b)
            else:  # the rule gets the gradient in place of the tensor (see Node): ``x * 2.0``
                arrays = (None, y)  # keeps no x, as PyTorch (only the number's grad reads x)
        else:
            edge_b = None
            if b._requires_grad:
                edge_b = b.grad_fn
                if edge_b is None:  # a leaf (a weight): its accumulator without calling edge()
                    ref = b._accumulator
                    edge_b = ref() if ref is not None else None
                    if edge_b is None:
                        edge_b = b.edge()
            edges = (edge_a, edge_b)
            if saves_inputs:
                if every:
                    unwritten = a._version is None and b._version is None
                    versions = _V00 if unwritten else (a.version, b.version)
                else:
                    ra, rb = a._requires_grad, b._requires_grad
                    versions = (
                        a.version if (a_for_a and ra) or (a_for_b and rb) else None,
                        b.version if (b_for_a and ra) or (b_for_b and rb) else None,
                    )
                arrays, inputs = (x, y), (a, b)
            else:
                arrays = _BINARY
        # The plain node (new_node's fields; arrays double as metas) and its output Tensor,
        # set here: a function call for them cost ~430 instructions an op (tests/engine/
        # test_fast_path.py checks that every slot of both is set).
        node = _new(Node)
        node.op = op
        node.name = name
        node.attrs = NO_ATTRS
        node.edges = edges
        node.arrays = node.metas = arrays
        node.inputs = inputs
        node.versions = versions
        node.plain = True
        node.freed = False
        node.retained = node.out_version = None
        node.out = out if saves_output else None  # its counter comes with the output's
        node.out_versions = 0
        node.order = next_order()
        t = _new(Tensor)
        t.data = out
        t._requires_grad = True
        t.grad = t._version = t._base = t._accumulator = None
        t.grad_fn = node
        t._retains_grad = False
        t._layout = layout
        return t

    binary.__name__ = binary.__qualname__ = op.name
    return binary


def _forward(op: Primitive, arrays: tuple[Any, ...]) -> Any:
    """The fast paths' forward where no ufunc does (another op, another backend)."""
    out = op.forward(*arrays)
    if type(out) is not NDARRAY:
        out = registry._as_array(out, arrays[0])  # a CuPy array
    return out


def _fits(out: Any, layout: Layout) -> bool:
    """Whether ``out`` has the inputs' layout (it has not where an op makes bools, say)."""
    assert layout
    return out.dtype == layout[1] and out.shape == layout[2] and type(out) is layout[0]


def _other(
    op: Primitive, args: tuple[Any, ...], arrays: tuple[Any, ...], out: Any, needs_grad: bool
) -> Tensor:
    """The fast paths' result where ``out`` does not fit the inputs: a general node."""
    record = needs_grad and op.differentiable and grad_mode.is_grad_enabled()
    result = Tensor(out, record and out.dtype.kind == "f")
    if result._requires_grad:
        result.grad_fn = Node.record(op, args, list(arrays), NO_ATTRS, result)
    return result
