"""``apply``'s fast path and the backward pass's shortcuts, at their boundaries, against torch.

The fast path (``Primitive.unary`` and ``Primitive.binary``, built by ``fast_unary`` and
``fast_binary``) takes elementwise ops on small floating tensors of one layout, or on one such
tensor and a Python number, and records plain nodes.
Every case below runs on both libraries; each also asserts which path the engine took, so
that a case meant for the general path cannot silently take the fast one (or the reverse).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy
import pytest
import torch

import engine as E
from engine import grad_mode, parallel
from engine.errors import InvalidArgument
from engine.graph import Node
from engine.ops.registry import PRIMITIVES
from tests.engine.side_by_side import Lib, same

RNG = numpy.random.default_rng(7)

UNARY = ["exp", "log", "sqrt", "abs", "sign", "sin", "cos", "tan", "tanh", "sigmoid", "relu",
         "neg", "reciprocal", "floor", "ceil", "round"]  # fmt: skip
BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "rsub": lambda a, b: b - a,
    "rdiv": lambda a, b: b / a,
    "maximum": lambda a, b: a.maximum(b),
    "pow": lambda a, b: a**b,
}


def _array(shape: tuple[int, ...], dtype: str, low: float = 0.2) -> numpy.ndarray:
    if dtype == "bool":
        return RNG.integers(0, 2, shape).astype(bool)
    if dtype.startswith("int"):
        return RNG.integers(1, 5, shape).astype(dtype)
    return RNG.uniform(low, 2.0, shape).astype(dtype)


def _leaf(lib: Any, array: numpy.ndarray) -> Any:
    grad = array.dtype.kind == "f"
    if lib is torch:
        return torch.tensor(array, requires_grad=grad)
    return E.tensor(array, requires_grad=grad)


def _compare(fn: Callable[[Any, Any, Any], Any], arrays: list[Any], plain: bool | None) -> None:
    """Values, grads and node names of ``fn(lib, *leaves)`` on both libraries.

    ``plain``: whether the engine's result node must be a plain one (None: not checked).
    """
    results = {}
    for lib in (torch, E):
        leaves = [_leaf(lib, a) if isinstance(a, numpy.ndarray) else a for a in arrays]
        out = fn(lib, *leaves)
        if lib is E and plain is not None:
            assert out.grad_fn is not None and out.grad_fn.plain is plain
        grads: list[Any] = []
        if out.requires_grad:
            out.sum().backward()
            grads = [t.grad for t in leaves if hasattr(t, "requires_grad") and t.requires_grad]
        name = None
        if out.grad_fn is not None:
            name = out.grad_fn.name if lib is E else type(out.grad_fn).__name__
        values = [out.detach().numpy()] + [None if g is None else g.numpy() for g in grads]
        results[lib] = (name, str(out.dtype).removeprefix("torch."), values)
    (t_name, t_dtype, t_values), (e_name, e_dtype, e_values) = results[torch], results[E]
    assert (e_name, e_dtype) == (t_name, t_dtype)
    assert len(e_values) == len(t_values)
    for e, t in zip(e_values, t_values, strict=True):
        assert (e is None) == (t is None)
        if e is not None:
            assert e.shape == t.shape and e.dtype == t.dtype
            numpy.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", UNARY)
def test_unary_fast_path(name: str, dtype: str) -> None:
    _compare(lambda L, x: getattr(x, name)(), [_array((3, 4), dtype)], plain=True)


@pytest.mark.parametrize("name", UNARY)
def test_unary_on_0d_takes_the_general_path(name: str) -> None:
    _compare(lambda L, x: getattr(x, name)(), [_array((), "float32")], plain=False)


@pytest.mark.parametrize("name", ["exp", "sin", "abs", "neg", "relu"])
@pytest.mark.parametrize("dtype", ["int64", "bool"])
def test_unary_on_integers_and_bools(name: str, dtype: str) -> None:
    def fn(L: Any, x: Any) -> Any:
        try:
            return getattr(x, name)()
        except Exception as e:  # both refuse some (neg, relu, abs of bool): same message
            return str(e)

    a = _array((5,), dtype)
    results = [fn(lib, lib.tensor(a)) for lib in (torch, E)]
    if isinstance(results[0], str):
        assert results[1] == results[0]
        return
    t, e = results
    assert str(t.dtype).removeprefix("torch.") == e.dtype
    numpy.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_fast_path_with_two_tensors(name: str, dtype: str) -> None:
    a, b = _array((2, 3), dtype), _array((2, 3), dtype)
    _compare(lambda L, x, y: BINARY[name](x, y), [a, b], plain=True)


@pytest.mark.parametrize("scalar", [2, 0.5, True, -3])
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "rsub", "rdiv", "pow"])
def test_binary_fast_path_with_python_numbers(name: str, scalar: Any) -> None:
    if scalar is True and name in ("sub", "rsub"):
        _same_error(lambda L, x: BINARY[name](x, True), _array((4,), "float32"))
        return
    _compare(lambda L, x, s: BINARY[name](x, s), [_array((4,), "float32"), scalar], plain=True)


@pytest.mark.parametrize("name", ["add", "mul", "div", "sub"])
@pytest.mark.parametrize(
    ("sa", "da", "sb", "db"),
    [
        ((4,), "float32", (4,), "float64"),  # two dtypes: promotion
        ((4,), "float32", (1,), "float32"),  # broadcasting
        ((3, 1), "float32", (4,), "float32"),
        ((4,), "float32", (), "float32"),  # a 0-d tensor
        ((), "float64", (4,), "float32"),  # a 0-d tensor of a wider dtype
        ((4,), "float32", (4, 1), "float64"),
        ((2, 3), "float32", (3, 2), "float32"),  # same size, other shape: an error
    ],
)
def test_binary_boundaries_take_the_general_path(
    name: str, sa: tuple[int, ...], da: str, sb: tuple[int, ...], db: str
) -> None:
    a, b = _array(sa, da), _array(sb, db)
    if (sa, sb) == ((2, 3), (3, 2)):
        for lib in (torch, E):
            with pytest.raises(Exception, match="must match the size"):
                BINARY[name](_leaf(lib, a), _leaf(lib, b))
        return
    _compare(lambda L, x, y: BINARY[name](x, y), [a, b], plain=False)


@pytest.mark.parametrize("scalar", [2, 2.5, True])
@pytest.mark.parametrize("dtype", ["int64", "bool"])
@pytest.mark.parametrize("name", ["add", "mul", "div", "sub"])
def test_integer_and_bool_tensors_with_numbers(name: str, dtype: str, scalar: Any) -> None:
    a = _array((4,), dtype)
    if name == "sub" and (dtype == "bool" or scalar is True):
        _same_error(lambda L, x: BINARY[name](x, scalar), a)
        _same_error(lambda L, x: BINARY["rsub"](x, scalar), a)
        return
    outs = []
    for lib in (torch, E):
        try:
            outs.append(BINARY[name](lib.tensor(a), scalar))
        except Exception as e:
            outs.append(type(e).__name__)
    t, e = outs
    if isinstance(t, str):
        assert isinstance(e, str)
        return
    assert str(t.dtype).removeprefix("torch.") == e.dtype
    numpy.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-6)


def _same_error(fn: Callable[[Any, Any], Any], a: numpy.ndarray) -> None:
    """torch and the engine both refuse ``fn`` on a tensor of ``a``, in the same words."""
    messages = []
    for lib in (torch, E):
        with pytest.raises(Exception) as info:
            fn(lib, lib.tensor(a))
        messages.append(str(info.value))
    assert messages[1] == messages[0]


def test_numpy_scalar_operands_and_non_contiguous_views() -> None:
    a, b = _array((3, 4), "float32"), _array((4, 3), "float32")
    _compare(lambda L, x, y: x * numpy.float32(1.5) + x * numpy.float64(0.5), [a, b], plain=True)
    _compare(lambda L, x, y: (x.t() * y).sin(), [a, b], plain=True)  # a transposed view
    _compare(lambda L, x, y: (x[1:] * x[:-1]).exp(), [a, b], plain=True)


@pytest.mark.parametrize("array", [[1.5, 2.5], [1, 2], 1.5], ids=["fast", "int", "0-d"])
def test_operators_convert_numpy_scalars_and_refuse_other_operands(array: Any) -> None:
    # Operators convert a right operand that is neither a Tensor nor a Python number on every
    # path (fast, and the general one taken before the operand is looked at).
    scalars = [numpy.float64(2.5), numpy.int64(2), numpy.float32(0.5)]
    for scalar in scalars:
        for fn in (BINARY["add"], BINARY["sub"], BINARY["mul"], BINARY["div"]):
            t, e = fn(torch.tensor(array), scalar), fn(E.tensor(array), scalar)
            assert str(t.dtype).removeprefix("torch.") == e.dtype
            numpy.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-6)
    for fn in (BINARY["add"], BINARY["mul"]):
        with pytest.raises(InvalidArgument, match="unsupported operand type: str"):
            fn(E.tensor(array), "a")


def test_equal_layouts_take_the_fast_path_interned_or_not(monkeypatch: Any) -> None:
    a, b = _array((2, 5), "float32"), _array((2, 5), "float32")
    x, y = E.tensor(a), E.tensor(b)
    assert x.layout() is y.layout()  # interned (Tensor.layout)
    _compare(lambda L, x, y: x * y - y, [a, b], plain=True)
    monkeypatch.setattr(sys.modules["engine.tensor"], "_MAX_LAYOUTS", 0)  # (E.tensor: a function)
    c, d = _array((3, 7), "float64"), _array((3, 7), "float64")
    x, y = E.tensor(c), E.tensor(d)
    assert x.layout() == y.layout() and x.layout() is not y.layout()  # past the bound
    _compare(lambda L, x, y: x * y - y, [c, d], plain=True)


def test_large_tensors_take_the_general_path() -> None:
    n = parallel.MIN_SIZE
    _compare(lambda L, x, y: x * y, [_array((n,), "float32"), _array((n,), "float32")], False)
    _compare(lambda L, x: x.exp(), [_array((n - 1,), "float32")], plain=True)


def test_comparisons_on_the_fast_path_give_bools_without_grad() -> None:
    a, b = _array((5,), "float32"), _array((5,), "float32")
    for op in ("lt", "ge", "eq"):
        t = getattr(torch.tensor(a, requires_grad=True), op)(torch.tensor(b))
        e = getattr(E.tensor(a, requires_grad=True), op)(E.tensor(b))
        assert e.dtype == "bool" and not e.requires_grad and e.grad_fn is None
        assert e.tolist() == t.tolist()


def test_in_place_write_after_save_is_caught_on_plain_nodes() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.tensor([0.5, 1.0, 1.5], requires_grad=True)
        a = x * 2.0  # plain
        y = a.sin()  # saves a
        e = a.exp()  # saves its output
        u = L.tensor([1.0, 2.0, 3.0])
        u.add_(1)  # a write elsewhere: nothing to report
        z = y.cos()  # made after the write
        L.attempt(lambda: z.sum().backward(retain_graph=True))
        show(x.grad)
        a.add_(1)
        L.attempt(lambda: y.sum().backward())
        e.mul_(2)
        L.attempt(lambda: e.sum().backward())
        w = a.tanh()  # a node made after every write runs
        L.attempt(lambda: w.sum().backward())
        show(x.grad)

    same(scenario)


def test_saved_outputs_of_plain_nodes_share_their_counter_once_needed() -> None:
    # A plain node saving its output (exp, tanh) gets the output's version counter only when
    # the output first needs one (Tensor.counter): writes through views and detached aliases,
    # and versions, must still be seen.
    def scenario(L: Lib, show: Any) -> None:
        x = L.tensor([0.5, 1.0, 1.5], requires_grad=True)
        e = x.exp()
        show(e._version if L.is_torch else e.version)
        with L.no_grad():
            e[1:].mul_(2)  # through a view
        show(e._version if L.is_torch else e.version)
        L.attempt(lambda: e.sum().backward(retain_graph=True))
        t = (x * 2.0).tanh()
        d = t.detach()
        d.add_(1)  # through a detached alias
        show(t._version if L.is_torch else t.version, d._version if L.is_torch else d.version)
        L.attempt(lambda: t.sum().backward())
        s = (x * 3.0).tanh()
        v = s[:2]  # a view made before any write
        s2 = s * s  # saves s
        show(v._version if L.is_torch else v.version)
        (g,) = L.autograd.grad(s2.sum(), x, create_graph=True)
        show(g)
        (g * g).sum().backward()
        show(x.grad)
        with L.no_grad():
            v.add_(1)
        L.attempt(lambda: s2.sum().backward())
        L.attempt(lambda: s.sum().backward())

    same(scenario)


def test_second_backward_through_a_plain_chain() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.tensor([0.5, 1.0], requires_grad=True)
        w = L.tensor([2.0, 3.0], requires_grad=True)
        y = ((x * w).sin() - w).tanh() / 2.0
        y.sum().backward(retain_graph=True)
        show(x.grad, w.grad)
        y.sum().backward()
        show(x.grad, w.grad)
        L.attempt(lambda: y.sum().backward())
        s = x + w  # a node without saved tensors runs again
        s.sum().backward()
        s.sum().backward()
        show(x.grad, w.grad)

    same(scenario)


def test_create_graph_through_plain_nodes() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.tensor([0.3, 0.7, 1.1], requires_grad=True)
        w = L.tensor([1.5, -0.5, 2.0], requires_grad=True)
        y = ((x * w).exp() + x.sin() * w - w / 3.0).tanh()
        (gx, gw) = L.autograd.grad(y.sum(), (x, w), create_graph=True)
        show(gx, gw)
        (gx * gw).sum().backward()
        show(x.grad, w.grad)

    same(scenario)


def test_retained_and_diamond_graphs_through_plain_nodes() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.tensor([0.2, 0.4, 0.6], requires_grad=True)
        a = x * x  # both edges to one leaf
        a.retain_grad()
        b = a.sin()
        c = a.cos()
        d = (b * c + b - c * 2.0).exp()  # b and c reach d by several paths
        e = d + a  # a reaches e directly and through d
        e.sum().backward(retain_graph=True)
        show(x.grad, a.grad)
        (g,) = L.autograd.grad((b * c).sum(), (a,))
        show(g)

    same(scenario)


def test_unary_chains_that_meet_and_part() -> None:
    # The backward pass follows a chain of one-input nodes without its heap only while the next
    # node is the newest with a gradient: here ``a``'s node is older than ``b``'s, pending.
    def chain(L: Any, x: Any, w: Any) -> Any:
        a = (x * 2.0).tanh()
        b = (x * w).exp()
        c = a.sin().cos()
        d = c + b
        return d.exp() + (a.sin() * b).cos() + w.tanh()

    _compare(chain, [_array((3,), "float32"), _array((3,), "float32")], plain=True)


@pytest.mark.parametrize("uses", [2, 3, 4, 9])
@pytest.mark.parametrize(
    ("dtype", "shape"),  # the last above autograd._PART_SIZE (float64: float32 drifts from torch)
    [("float32", (2, 3)), ("float64", (2, 3)), ("float64", (2, 513))],
)
def test_a_leaf_used_by_many_plain_nodes(uses: int, dtype: str, shape: tuple[int, int]) -> None:
    # A small leaf's gradients from plain nodes are summed at the end of the pass, one way
    # for a few, another for more (autograd._add_up); 2-D, so that the parts keep their shape.
    def chain(L: Any, x: Any, w: Any, b: Any) -> Any:
        for _ in range(uses):
            x = (x * w + b).sin() - b
        return x

    arrays = [_array(shape, dtype), _array(shape, dtype), _array(shape, dtype)]
    _compare(chain, arrays, plain=True)


def test_a_leaf_reached_by_plain_and_general_nodes() -> None:
    def scenario(L: Lib, show: Any) -> None:
        v = L.tensor([0.5, 1.0, 1.5], requires_grad=True)
        w = L.tensor([2.0, 3.0, 4.0], requires_grad=True)
        s = L.tensor(2.0, requires_grad=True)
        y = v * s + v * w + (v * v).exp() + v * s.exp() + v.sin() * v  # 0-d s: general nodes
        y.sum().backward(retain_graph=True)
        show(v.grad, w.grad, s.grad)
        y.sum().backward(retain_graph=True)  # accumulates into .grad
        show(v.grad, w.grad, s.grad)
        show(L.autograd.grad(y.sum(), [v, s], retain_graph=True))
        show(L.autograd.grad([y.sum(), (v * v * v).sum()], [w, v], retain_graph=True))
        v.grad = None
        y.sum().backward(inputs=[v])
        show(v.grad, w.grad)

    same(scenario)


def test_no_grad_in_another_thread_leaves_this_one_recording() -> None:
    x = E.tensor([1.0, 2.0], requires_grad=True)
    inside = threading.Event()
    release = threading.Event()
    seen: list[Any] = []

    def worker() -> None:
        with E.no_grad():
            seen.append((x * x).requires_grad)
            inside.set()
            release.wait(10)
        seen.append((x * x).requires_grad)

    thread = threading.Thread(target=worker)
    thread.start()
    assert inside.wait(10)
    assert grad_mode.OFF.threads == 1
    assert (x * x).requires_grad and isinstance((x.sin()).grad_fn, Node)
    release.set()
    thread.join()
    assert seen == [False, True]
    assert grad_mode.OFF.threads == 0
    with E.no_grad():
        assert not (x * x).requires_grad and not E.is_grad_enabled()
        with E.enable_grad():
            assert (x * x).requires_grad
        E.set_grad_enabled(True)
        assert (x * x).requires_grad
    assert grad_mode.OFF.threads == 0 and E.is_grad_enabled()


def test_sign_of_bools_and_in_place_subtraction_of_bools() -> None:
    a = numpy.array([True, False, True])
    t, e = torch.tensor(a).sign(), E.tensor(a).sign()
    assert str(t.dtype).removeprefix("torch.") == e.dtype
    numpy.testing.assert_array_equal(e.numpy(), t.numpy())
    f = numpy.array([1.0, 2.0], dtype=numpy.float32)
    _same_error(lambda L, x: x.sub_(True), f)
    _same_error(lambda L, x: x.sub_(L.tensor([True, False])), f)
    _same_error(lambda L, x: True - x, f)


NUMBERS = [2.0, 0.1, -3.5, 1, 7, True, 0, 0.0, -0.0, float("nan"), float("inf"), -float("inf"),
           1e300, 1e-300, 10**40, 2**25 + 1, 2**60]  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("number", NUMBERS, ids=repr)
def test_python_numbers_as_cached_constants_compute_numpys_values(number: Any, dtype: str) -> None:
    """The fast path and the mul/div rules hand ufuncs a cached 0-d array for a Python number
    (dtypes.Constants): bit for bit what NumPy computes with the number itself (NEP 50)."""
    a = _array((4,), dtype, low=-2.0)
    with numpy.errstate(all="ignore"):
        for name, fn in [("mul", numpy.multiply), ("div", numpy.divide), ("add", numpy.add)]:
            x = E.tensor(a, requires_grad=True)
            out = BINARY[name](x, number)
            assert out.grad_fn is not None and out.grad_fn.plain
            numpy.testing.assert_array_equal(out.detach().numpy(), fn(a, number), strict=True)
            g = _array((4,), dtype, low=-2.0)
            out.backward(E.tensor(g))
            assert x.grad is not None
            want = {"mul": g * number, "div": g / number, "add": g}[name]
            numpy.testing.assert_array_equal(x.grad.numpy(), want, strict=True)
    constant = E.dtypes.constant(number, a)
    if isinstance(constant, numpy.ndarray):
        assert constant.shape == () and constant.dtype == a.dtype
        assert not constant.flags.writeable
        assert type(number) is float or constant.item() == number  # ints only where exact
    else:
        assert constant is number


def test_constant_tables_are_bounded_and_keep_other_operands() -> None:
    table = E.dtypes.Constants(numpy.dtype("float32"))
    for i in range(table._MAX + 10):
        table[i + 0.5]
    assert len(table) == table._MAX
    assert table[10**6 + 0.5] == 10**6 + 0.5  # past the bound: the number itself
    t = E.tensor([1.0, 2.0])
    assert E.dtypes.constant(2.0, t) == 2.0  # next to a Tensor (create_graph): the number
    assert E.dtypes.constant(2.0, numpy.ones(2, numpy.float16)) == 2.0  # no table for float16


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tanh_rule_with_a_constant_one(dtype: str) -> None:
    _compare(lambda L, x: x.tanh(), [_array((3, 4), dtype, low=-2.0)], plain=True)
    a = _array((4,), dtype, low=-2.0)
    x = E.tensor(a, requires_grad=True)
    x.tanh().sum().backward()
    assert x.grad is not None
    out = numpy.tanh(a)
    numpy.testing.assert_array_equal(x.grad.numpy(), 1 - out * out, strict=True)


@pytest.mark.parametrize(
    "fn",
    [lambda x, w: x.sin(), lambda x, w: x.exp(), lambda x, w: x.neg(), lambda x, w: x * w,
     lambda x, w: x / 2.0, lambda x, w: x + w, lambda x, w: x - 1],
    ids=["sin", "exp", "neg", "mul", "div-number", "add", "sub-number"],
)  # fmt: skip
def test_plain_results_set_every_field(fn: Callable[[Any, Any], Any]) -> None:
    """The fast paths set every field of a plain node and its output (engine.ops.fast)."""
    x = E.tensor(_array((4,), "float32"), requires_grad=True)
    w = E.tensor(_array((4,), "float32"), requires_grad=True)
    out = fn(x, w)
    node = out.grad_fn
    assert node is not None and node.plain
    for obj, slots in ((node, Node.__slots__), (out, E.Tensor.__slots__)):
        for slot in slots:
            if slot != "__weakref__":
                getattr(obj, slot)  # an unset slot raises AttributeError
    assert out._layout is x._layout and out._version is None and node.attrs == {}


FAST = sorted(name for name, p in PRIMITIVES.items() if p.fast)


@pytest.mark.parametrize("name", FAST)
def test_an_op_given_the_wrong_number_of_tensors_refuses_and_writes_nothing(name: str) -> None:
    """A unary ufunc given two arrays writes the second (``out``): an op's fast path is taken
    only with as many operands as its forward takes."""
    prim = PRIMITIVES[name]
    x = E.tensor([-1.5, 0.25, 2.0, 3.0], requires_grad=True)
    y = E.tensor([5.0, 6.0, 7.0, 8.0])
    too_many = [x, y, y][: prim.operands + 1]
    with pytest.raises(TypeError):
        prim(*too_many)
    assert y.data.tolist() == [5.0, 6.0, 7.0, 8.0] and y.version == 0
    with pytest.raises(TypeError):
        prim(*too_many[: prim.operands - 1])
