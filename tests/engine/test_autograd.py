"""Autograd semantics, side by side with torch (reference sections 1-7 and 13).

Each scenario runs the same code on ``torch`` and on ``engine`` (see ``side_by_side``);
values, reprs, identities and error texts must agree. Engine-only properties (freed buffers,
deep graphs, the journal) are tested directly.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy
import pytest

import engine as E
from engine import journal
from engine.errors import FailedPrecondition
from engine.graph import Node
from tests.engine.side_by_side import Lib, same

FREED = "Trying to backward through the graph a second time"

# ----- 1. .grad: None by default, accumulation, zero_() -----


def test_grad_is_none_then_accumulates_in_place() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        show(x, x.grad is None, x.is_leaf, x.requires_grad, x.grad_fn is None)
        y = (x * x).sum()
        show(y.backward())
        show(x.grad)
        g = x.grad
        (x * x).sum().backward()  # a new graph: accumulated into the same tensor
        show(x.grad, g is x.grad, g)
        show(x.grad.requires_grad, L.dtype_of(x.grad), tuple(x.grad.shape), x.grad.is_leaf)
        show(x.grad.grad_fn is None)
        z = x.grad.zero_()
        show(z, z is x.grad, x.grad, g)
        (x * 3).sum().backward()
        show(x.grad, g is x.grad)
        L.set_grad(x, None)
        show(x.grad is None)
        (x * 3).sum().backward()
        show(x.grad, g is x.grad, g)

    same(scenario)


def test_zero_on_missing_grad_is_python_attribute_error() -> None:
    def scenario(L: Lib, show: Any) -> None:
        w = L.ones(3, requires_grad=True)
        L.attempt(lambda: w.grad.zero_())

    record = same(scenario)
    assert record[0][1] == "AttributeError"


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_grad_keeps_leaf_dtype_and_shape(dtype: str) -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.ones((2, 3), dtype=L.dt(dtype), requires_grad=True)
        y = (x * L.arange(3.0)).sum()  # float32 operand: the result follows promotion
        show(y)
        y.backward()
        show(x.grad, L.dtype_of(x.grad), tuple(x.grad.shape), x.grad.requires_grad)

    same(scenario)


def test_several_paths_sum_and_leaf_backward() -> None:
    def scenario(L: Lib, show: Any) -> None:
        s = L.tensor(3.0, requires_grad=True)
        (s * s + s).backward()
        show(s.grad)
        t = L.tensor(2.0, requires_grad=True)
        t.backward()
        show(t.grad)
        t.backward()  # a leaf has no buffers to free
        show(t.grad)
        v = L.tensor([1.0, 2.0], requires_grad=True)
        v.backward(L.tensor([5.0, 6.0]))
        show(v.grad)
        q = L.tensor(2.0, requires_grad=True)
        (q * q).backward(L.tensor(10.0))  # an explicit gradient for a scalar scales it
        show(q.grad)
        a = L.arange(3.0, requires_grad=True)
        b = a * 2
        (b * a + b.exp() * a + a.sin()).sum().backward()  # diamond paths
        show(a.grad)

    same(scenario)


def test_backward_on_tensor_without_graph() -> None:
    def scenario(L: Lib, show: Any) -> None:
        L.attempt(lambda: L.tensor(1.0).backward())
        L.attempt(lambda: L.ones(3).sum().backward())
        with L.no_grad():
            y = (L.ones(3, requires_grad=True) * 2).sum()
        L.attempt(lambda: y.backward())

    same(scenario)


def test_leaves_sharing_one_gradient_get_their_own_grad() -> None:
    """``add`` passes one gradient to both inputs: accumulating into one leaves the other."""

    def scenario(L: Lib, show: Any) -> None:
        a = L.ones(3, requires_grad=True)
        b = L.ones(3, requires_grad=True)
        (a + b).backward(L.ones(3))
        (a * 2).sum().backward()
        show(a.grad, b.grad)
        c = L.ones(2, requires_grad=True)
        y = c * 2
        y.retain_grad()
        (y + c).sum().backward()
        c.grad.add_(100)
        show(y.grad, c.grad)

    same(scenario)


# ----- 2. Backward on a non-scalar output -----


def test_non_scalar_backward() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        y = x * x
        L.attempt(lambda: y.backward())
        L.attempt(lambda: y.backward(gradient=L.ones(3)))
        L.attempt(lambda: y.backward(gradient=L.ones(1)))
        L.attempt(lambda: y.backward(gradient=L.ones((2, 2))))
        L.attempt(lambda: y.backward(gradient=L.tensor(1.0)))
        show(x.grad is None)
        y.backward(gradient=L.tensor([1.0, 0.0, 0.0, 2.0]))  # the graph is still intact
        show(x.grad)
        L.set_grad(x, None)
        (x * x).backward(gradient=L.ones(4, dtype=L.dt("int64")))
        show(x.grad, L.dtype_of(x.grad))
        L.set_grad(x, None)
        (x * x).backward(gradient=L.ones(4, dtype=L.dt("float64")))
        show(x.grad, L.dtype_of(x.grad))
        L.set_grad(x, None)
        (x * x)[1:2].backward()  # one element, shape (1,)
        show(x.grad)
        L.set_grad(x, None)
        (x * x).reshape(2, 2)[1:, 1:].backward()  # shape (1, 1)
        show(x.grad)
        L.set_grad(x, None)
        L.attempt(lambda: y.sum().backward())  # y's graph was freed above
        show(x.grad is None)
        (x * x).sum().backward()
        show(x.grad)

    same(scenario)


def test_vector_jacobian_product_of_a_matrix_output() -> None:
    def scenario(L: Lib, show: Any) -> None:
        a = L.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        b = L.tensor([0.5, -1.0], requires_grad=True)
        y = (a * b).exp()
        y.backward(L.tensor([[1.0, 0.0], [2.0, 3.0]]))
        show(a.grad, b.grad)

    same(scenario)


# ----- 3. Backward twice through one graph; retain_graph -----

SAVING = {
    "two_dot": lambda L, x: 2 * L.dot(x, x),
    "mul_scalar": lambda L, x: (x * 2).sum(),
    "mul_self": lambda L, x: (x * x).sum(),
    "pow": lambda L, x: (x**2).sum(),
    "norm": lambda L, x: x.norm(),
    "exp": lambda L, x: x.exp().sum(),
}
NOT_SAVING = {
    "sum": lambda L, x: x.sum(),
    "mean": lambda L, x: x.mean(),
    "add_scalar": lambda L, x: (x + 1).sum(),
    "sub_neg": lambda L, x: (-x - 3).sum(),
}


@pytest.mark.parametrize("name", sorted(SAVING))
def test_second_backward_through_saved_tensors_fails(name: str) -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        y = SAVING[name](L, x)
        y.backward()
        g = x.grad
        show(g)
        L.attempt(lambda: y.backward())
        show(x.grad, x.grad is g)  # the failed call left .grad unchanged

    record = same(scenario)
    assert FREED in record[1][2]


@pytest.mark.parametrize("name", sorted(NOT_SAVING))
def test_second_backward_through_nodes_without_buffers_accumulates(name: str) -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        y = NOT_SAVING[name](L, x)
        y.backward()
        y.backward()
        show(x.grad)

    same(scenario)


def test_second_backward_with_two_leaves() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        k = L.ones(4, requires_grad=True)
        a2 = (x + k).sum()
        a2.backward()
        a2.backward()
        show(x.grad, k.grad)

    same(scenario)


def test_retain_graph() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        y = (x * x).sum()
        y.backward(retain_graph=True)
        show(x.grad)
        y.backward(retain_graph=True)
        show(x.grad)
        y.backward()  # frees now
        show(x.grad)
        L.attempt(lambda: y.backward())
        show(x.grad)
        z = (x.exp() * x).sum()
        show(L.autograd.grad(z, x, retain_graph=True))
        show(L.autograd.grad(z, x))
        L.attempt(lambda: L.autograd.grad(z, x))

    same(scenario)


def test_a_failed_second_pass_frees_nothing_else() -> None:
    """The second pass fails at the freed node; a shared subgraph retained elsewhere still works."""

    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        h = x.exp()
        y = (h * 2).sum()
        z = h.sum()
        y.backward()  # frees ExpBackward0's result and Mul's saved operand
        show(x.grad)
        L.attempt(lambda: z.backward())  # through the freed Exp node
        show(x.grad)

    same(scenario)


def test_backward_frees_saved_buffers_unless_retained() -> None:
    x = E.arange(4.0, requires_grad=True)
    y = (x * x).sum()
    mul = y.grad_fn.edges[0]
    assert isinstance(mul, Node) and mul.name == "MulBackward0"
    assert not mul.freed
    y.backward(retain_graph=True)
    assert not mul.freed and mul.saved_bytes() > 0
    y.backward()
    assert mul.freed and mul.saved_bytes() == 0
    with pytest.raises(FailedPrecondition, match=FREED):
        y.backward()


# ----- 4. requires_grad_, leaves, retain_grad() -----


def test_requires_grad_and_leaves() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0)
        show(x.requires_grad, x.is_leaf)
        show(x.requires_grad_(True))
        r = x.requires_grad_()
        show(r, r is x)
        y = x * 2
        show(y.is_leaf, y.requires_grad)
        L.attempt(lambda: y.requires_grad_(False))
        show(y.requires_grad_(True), y.requires_grad_() is y)
        L.attempt(lambda: L.arange(4).requires_grad_())
        show(L.arange(4).requires_grad_(False))
        L.attempt(lambda: L.arange(4, requires_grad=True))
        L.attempt(lambda: L.tensor([1, 2], requires_grad=True))
        L.attempt(lambda: L.tensor([True, False], requires_grad=True))
        L.attempt(lambda: L.zeros(2, dtype=L.dt("int32"), requires_grad=True))
        show(L.zeros(2, dtype=L.dt("float64"), requires_grad=True))
        show(L.arange(4) * x)
        show(y.grad)  # a non-leaf's grad is None (torch also warns)
        n = L.arange(3.0)
        show(n.is_leaf, (n * 2).is_leaf, (n * 2).requires_grad, (n * 2).grad_fn is None)
        x.requires_grad_(False)
        show(x, x.is_leaf, (x * 2).is_leaf)
        with L.no_grad():
            w = L.ones(2, requires_grad=True) * 2
        show(w, w.is_leaf)

    same(scenario)


def test_retain_grad() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        y = x * 2
        y.retain_grad()
        y.retain_grad()  # twice: still retained once
        show(y.retains_grad, x.retains_grad)
        z = (y * y).sum()
        z.backward(retain_graph=True)
        show(y.grad, x.grad, z.grad)
        g = y.grad
        z.backward()  # accumulates into the retained grad as well
        show(y.grad, g is y.grad, x.grad)
        x.retain_grad()  # on a leaf: a no-op
        show(x.retains_grad)
        L.attempt(lambda: L.ones(2).retain_grad())
        u = x * 3
        u.retain_grad()
        v = u.exp()
        show(L.autograd.grad(v.sum(), x), u.grad)  # autograd.grad fills retained grads too

    same(scenario)


def test_retain_grad_follows_an_in_place_op() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        y = x * 2
        y.retain_grad()
        y.add_(1)
        show(y, y.retains_grad)
        (y * y).sum().backward()
        show(y.grad, x.grad)

    same(scenario)


# ----- 5. detach(), no_grad, leaving the graph -----


def test_detach_shares_storage_and_version() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        y = x * x
        u = y.detach()
        show(u, u.requires_grad, u.grad_fn is None, u.is_leaf)
        u[0] = 100.0
        show(y, L.version(y), L.version(u))
        z = u * x
        z.sum().backward()
        show(x.grad)
        L.set_grad(x, None)
        e = x.exp()
        d = e.detach()
        show(d.zero_(), e)
        L.attempt(lambda: e.sum().backward())
        show(x.grad is None)
        a = x.detach()
        a.add_(1)  # writes the leaf itself, outside any graph
        show(x, L.version(x), a)
        show(x.detach().requires_grad_())

    same(scenario)


def test_grad_mode_nesting() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        show(L.is_grad_enabled())
        with L.no_grad():
            n = x * 2
            show(L.is_grad_enabled())
            with L.enable_grad():
                m = x * 2
                show(L.is_grad_enabled())
                with L.set_grad_enabled(False):
                    k = x + 1
                    show(L.is_grad_enabled())
                show(L.is_grad_enabled())
            show(L.is_grad_enabled())
        show(L.is_grad_enabled())
        show(n, n.requires_grad, n.grad_fn is None, n.is_leaf, m, k)
        with L.set_grad_enabled(True):
            show(x + 1)

        @L.no_grad()
        def double(t: Any) -> Any:
            return t * 2

        show(double(x), double(x), L.is_grad_enabled())

        def fail() -> None:
            with L.no_grad():
                raise KeyError("inside")

        with pytest.raises(KeyError):
            fail()
        show(L.is_grad_enabled())
        L.set_grad_enabled(False)  # a plain call switches the mode
        show(L.is_grad_enabled(), x * 2)
        L.set_grad_enabled(True)
        show(L.is_grad_enabled(), x * 2)

    same(scenario)


def test_grad_mode_is_thread_local() -> None:
    def scenario(L: Lib, show: Any) -> None:
        seen: list[bool] = []
        with L.no_grad():
            thread = threading.Thread(target=lambda: seen.append(L.is_grad_enabled()))
            thread.start()
            thread.join()
            show(seen, L.is_grad_enabled())

    same(scenario)


def test_leaving_the_graph_conversions() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        L.attempt(lambda: x.numpy())
        show(x.detach().numpy().tolist(), x.detach().numpy().dtype.name)
        show(x.tolist(), float(x.sum()), x.sum().item())
        L.attempt(lambda: x.item())
        show(L.tensor([1.5]).item(), float(L.tensor([[2.0]])), int(L.tensor([7])))
        L.attempt(lambda: L.ones((2, 2)).item())
        L.attempt(lambda: L.zeros(0).item())
        show(L.tensor(True).item(), L.tensor(3).item())

    same(scenario)


# ----- 6. In-place operations and the version counter -----


def test_in_place_on_leaf_requiring_grad() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        L.attempt(lambda: x.add_(1))
        L.attempt(lambda: x.mul_(2))
        L.attempt(lambda: x.zero_())

        def iadd() -> None:
            nonlocal x
            x += 1

        L.attempt(iadd)

        def setitem() -> None:
            x[0] = 5.0

        L.attempt(setitem)
        L.attempt(lambda: x[1:].add_(1))
        L.attempt(lambda: x[:, None][2].mul_(2))
        L.attempt(lambda: x.view(2, 2).zero_())
        show(x, L.version(x))
        with L.no_grad():
            x.add_(1)
            x -= 0.5
            x[0] = 0.25
        show(x, L.version(x), x.is_leaf, x.requires_grad, x.grad_fn is None)

    same(scenario)


def test_in_place_on_an_element_view_of_a_leaf() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        L.attempt(lambda: x[0].mul_(2))
        with L.no_grad():
            x[1].add_(10)  # writes through the view into x
        show(x, L.version(x))

    same(scenario)


def test_in_place_on_non_leaf_is_recorded() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        y = x * 2
        show(y.add_(1), y, L.version(y), L.node(y), y.is_leaf)
        y.sum().backward()
        show(x.grad)
        L.set_grad(x, None)
        y = x * 2
        y.mul_(x)
        y.sub_(1)
        y.div_(2)
        show(y, L.node(y), L.version(y))
        y.sum().backward()
        show(x.grad)
        L.set_grad(x, None)
        s = x.sin()
        c = s.clone()
        show(c.add_(1))  # modifying a copy is fine
        s.sum().backward()
        show(x.grad)
        L.set_grad(x, None)
        y = x * 1.0
        y[1] = 10.0
        show(y, L.node(y), L.version(y))
        (y * y).sum().backward()
        show(x.grad)

    same(scenario)


def test_in_place_on_a_tensor_not_requiring_grad_with_one_that_does() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        a = L.ones(4)
        show(a.mul_(x), a.is_leaf, a.requires_grad, L.node(a))
        (a * a).sum().backward()
        show(x.grad)

    same(scenario)


VERSION_ERRORS = {
    "add_on_saved_input": lambda L, x: _saved_then(L, x, lambda y: y.add_(1)),
    "exp_output": lambda L, x: _exp_then_add(L, x),
    "detached_alias_mul": lambda L, x: _detached_alias(L, x),
    "copy_slices": lambda L, x: _copy_slices(L, x),
    "sub_then_mul": lambda L, x: _sub_then_mul(L, x),
    "tanh_detached": lambda L, x: _tanh_detached(L, x),
    "leaf_under_no_grad": lambda L, x: _leaf_no_grad(L),
    "sigmoid_out_float64": lambda L, x: _sigmoid64(L),
}


def _saved_then(L: Lib, x: Any, write: Any) -> Any:
    y = x * 2
    z = y * y
    write(y)
    return z.sum()


def _exp_then_add(L: Lib, x: Any) -> Any:
    e = x.exp()
    e.add_(1)
    return e.sum()


def _detached_alias(L: Lib, x: Any) -> Any:
    y = x * 2
    z = y.sin()
    y.detach().zero_()
    return z.sum()


def _copy_slices(L: Lib, x: Any) -> Any:
    y = x * 2
    z = y * y
    y[0] = 1.0
    return z.sum()


def _sub_then_mul(L: Lib, x: Any) -> Any:
    y = x * 2
    z = y.sin()
    y.sub_(1)
    y.mul_(2)
    return z.sum()


def _tanh_detached(L: Lib, x: Any) -> Any:
    t = x.tanh()
    t.detach().zero_()
    return t.sum()


def _leaf_no_grad(L: Lib) -> Any:
    w = L.ones(4, requires_grad=True)
    p = w * w
    with L.no_grad():
        w.add_(1)
    return p.sum()


def _sigmoid64(L: Lib) -> Any:
    w = L.ones((2, 3), dtype=L.dt("float64"), requires_grad=True)
    s = w.sigmoid()
    s.detach().mul_(2)
    return s.sum()


@pytest.mark.parametrize("name", sorted(VERSION_ERRORS))
def test_version_counter_errors(name: str) -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(4.0, requires_grad=True)
        loss = VERSION_ERRORS[name](L, x)
        L.attempt(lambda: loss.backward())
        show(x.grad is None)

    record = same(scenario)
    assert "modified by an inplace operation" in record[0][2]


# ----- 7. create_graph, higher order, autograd.grad -----


def test_autograd_grad_higher_order() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.tensor(2.0, requires_grad=True)
        y = x**3
        (g,) = L.autograd.grad(y, x, create_graph=True)
        show(g, g.requires_grad, g.is_leaf)
        show(L.autograd.grad(y, x))  # retain_graph defaulted to create_graph
        L.attempt(lambda: L.autograd.grad(y, x))
        (g2,) = L.autograd.grad(g, x, create_graph=True)
        show(g2)
        (g3,) = L.autograd.grad(g2, x)
        show(g3)
        show(x.grad is None)
        show(L.autograd.grad(x**3, x), L.autograd.grad(x**3, x)[0].requires_grad)
        show(L.autograd.grad(x**3, [x]))
        show(type(L.autograd.grad(x**3, x)).__name__)

    same(scenario)


def test_autograd_grad_options() -> None:
    def scenario(L: Lib, show: Any) -> None:
        v = L.arange(3.0, requires_grad=True)
        w = L.ones(2, requires_grad=True)
        show(L.autograd.grad((v**3).sum(), v, create_graph=True))
        L.attempt(lambda: L.autograd.grad((v**3).sum(), [v, w]))
        show(L.autograd.grad((v**3).sum(), [v, w], allow_unused=True))
        show(L.autograd.grad((v**3).sum(), [v, w], allow_unused=True, materialize_grads=True))
        L.attempt(lambda: L.autograd.grad((v**3).sum(), [L.ones(3)]))
        L.attempt(lambda: L.autograd.grad(v**3, v))
        show(L.autograd.grad(v**3, v, grad_outputs=L.ones(3)))
        show(L.autograd.grad(v**3, v, grad_outputs=L.tensor([1.0, 0.0, 2.0])))
        show(L.autograd.grad(v**3, v, grad_outputs=[L.tensor([1.0, 0.0, 2.0])]))
        L.attempt(lambda: L.autograd.grad(v**3, v, grad_outputs=L.ones(2)))
        L.attempt(lambda: L.autograd.grad(L.ones(3).sum(), v))
        show(v.grad is None, w.grad is None)
        y = v * w.sum()
        show(L.autograd.grad([y.sum(), (v * v).sum()], [w, v], retain_graph=True))
        show(L.autograd.grad(y, [v, w], grad_outputs=L.tensor([1.0, 2.0, 3.0])))

    same(scenario)


def test_autograd_grad_intermediate_input() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(3.0, requires_grad=True)
        h = x * 2
        y = (h.exp() * h).sum()
        show(L.autograd.grad(y, h, retain_graph=True))
        show(L.autograd.grad(y, [h, x]))
        show(x.grad is None)

    same(scenario)


def test_autograd_grad_fills_retained_grads_on_the_way() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(3.0, requires_grad=True)
        w = x * 2
        w.retain_grad()
        q = x * 5
        q.retain_grad()
        show(L.autograd.grad((w * q).sum(), q), w.grad, q.grad, x.grad)
        show(L.autograd.grad([], [x], allow_unused=True))
        show(L.autograd.grad((x * x).sum(), [x, x]))

    same(scenario)


def test_backward_with_inputs() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(3.0, requires_grad=True)
        k = L.ones(3, requires_grad=True)
        (x * k).sum().backward(inputs=[k])
        show(x.grad, k.grad)
        (x * k * x).sum().backward(inputs=[x, x])  # a repeated input is filled once
        show(x.grad, k.grad)
        (x * x).sum().backward(inputs=k)  # not reached: nothing happens
        show(k.grad)
        u = x * 3
        u.retain_grad()
        r = u * u
        r.retain_grad()
        (r * 2).sum().backward(inputs=[u])
        show(u.grad, r.grad, x.grad)
        y = x * 2
        z = (y * y).sum()
        z.backward(inputs=[y], retain_graph=True)
        g = y.grad
        z.backward(inputs=[y])  # a non-leaf input's grad is replaced, not written in place
        show(y.grad, g, y.grad is g, y.retains_grad)
        L.autograd.backward([])
        show(x.grad)

    same(scenario)


def test_extra_grad_outputs_are_ignored() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.arange(3.0, requires_grad=True)
        show(L.autograd.grad((x * x).sum(), x, grad_outputs=[L.tensor(2.0), L.tensor(3.0)]))
        L.autograd.backward([(x * x).sum()], grad_tensors=[L.tensor(2.0), L.ones(5)])
        show(x.grad)

    same(scenario)


def test_create_graph_accumulation_nodes() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.tensor(2.0, requires_grad=True)
        (x**3).backward(create_graph=True)
        g1 = x.grad
        (x**3).backward(create_graph=True)
        show(x.grad, g1, x.grad is g1)
        L.set_grad(x, None)
        (x**3).backward()
        g = x.grad
        (x**3).backward(create_graph=True)
        show(x.grad, x.grad is g)
        x2 = L.tensor(2.0, requires_grad=True)
        y = x2 * 3
        y.retain_grad()
        (y**2).backward(create_graph=True)
        show(y.grad)
        (y**2).backward(create_graph=True)
        show(y.grad)
        c = L.tensor([1.0, 2.0], requires_grad=True)
        (c * 2).sum().backward(create_graph=True)  # the gradient has no graph of its own
        show(c.grad, c.grad.requires_grad)

    same(scenario)


def test_repeated_differentiation_of_sin() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.tensor([0.0, 1.0, 2.0], requires_grad=True)
        d1 = L.autograd.grad(L.sin(x).sum(), x, create_graph=True)[0]
        show(d1, L.cos(x))
        d2 = L.autograd.grad(d1.sum(), x, create_graph=True)[0]
        show(d2)
        d3 = L.autograd.grad(d2.sum(), x)[0]
        show(d3)

    same(scenario)


def test_backward_with_create_graph() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.tensor(2.0, requires_grad=True)
        (x**3).backward(create_graph=True)
        show(x.grad, x.grad.requires_grad)
        gx = x.grad
        L.set_grad(x, None)
        gx.backward()
        show(x.grad)

    same(scenario)


def test_second_order_through_several_ops() -> None:
    def scenario(L: Lib, show: Any) -> None:
        a = L.tensor([[0.5, -1.0], [2.0, 0.25]], requires_grad=True)
        b = L.tensor([1.5, -0.5], requires_grad=True)
        y = (L.tanh(a @ b) * b.exp()).sum() + (a**2).mean() + L.log_softmax(a, dim=1).sum()
        ga, gb = L.autograd.grad(y, [a, b], create_graph=True)
        hb = L.autograd.grad((ga * ga).sum() + gb.sum(), b)
        show(hb)

    # Repr compares 4 significant digits; float32 op order may differ past that.
    same(scenario)


def test_grad_outputs_with_create_graph() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.tensor([1.0, 2.0], requires_grad=True)
        v = L.tensor([3.0, 4.0], requires_grad=True)
        (g,) = L.autograd.grad(x**2, x, grad_outputs=v, create_graph=True)
        show(g)
        show(L.autograd.grad(g.sum(), [x, v]))

    same(scenario)


# ----- 13. Gradients at special points -----


def test_gradients_at_special_points() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.tensor([-1.0, 0.0, 2.0], requires_grad=True)
        for f in (
            lambda t: L.relu(t),
            lambda t: t.abs(),
            lambda t: t.clamp(0.0, 2.0),
            lambda t: t.clamp(min=0.0),
            lambda t: t.sign() + t.round() + t.floor() + t.ceil(),
        ):
            f(x).sum().backward()
            show(x.grad)
            L.set_grad(x, None)
        z = L.tensor([0.0, 4.0], requires_grad=True)
        z.sqrt().sum().backward()
        show(z.grad)
        o = L.zeros(3, requires_grad=True)
        o.norm().backward()
        show(o.grad)
        t = L.tensor([1.0, 3.0, 3.0], requires_grad=True)
        t.max().backward()
        show(t.grad)
        L.set_grad(t, None)
        show(t.max(dim=0).values, t.max(dim=0).indices)
        t.max(dim=0).values.backward()
        show(t.grad)
        u = L.tensor([2.0, 1.0, 1.0, 1.0], requires_grad=True)
        u.min().backward()
        show(u.grad)
        p = L.tensor([2.0, 1.0], requires_grad=True)
        q = L.tensor([2.0, 5.0], requires_grad=True)
        L.maximum(p, q).sum().backward()
        show(p.grad, q.grad)
        L.minimum(p, q).sum().backward()
        show(p.grad, q.grad)
        r = L.tensor([0.4, 1.6], requires_grad=True)
        (r.round() + r.floor() + r.sign()).sum().backward()
        show(r.grad)
        lg = L.tensor([0.0, 1.0], requires_grad=True)
        show(lg.log())
        lg.log().sum().backward()
        show(lg.grad)
        h = L.tensor([0.0, 1.0], requires_grad=True)
        (h**0.5).sum().backward()
        show(h.grad)
        k = L.tensor(0.0, requires_grad=True)
        (k**2).backward()
        show(k.grad)
        (k**0).backward()
        show(k.grad)
        m = L.tensor([[1.0, 5.0], [5.0, 2.0]], requires_grad=True)
        m.max(dim=1).values.sum().backward()
        show(m.grad)

    same(scenario)


def test_control_flow_follows_the_branch_taken() -> None:
    def f(L: Lib, a: Any) -> Any:
        b = a * 2
        while b.norm() < 1000:
            b = b * 2
        return b if b.sum() > 0 else 100 * b

    def scenario(L: Lib, show: Any) -> None:
        for value in (0.75, -0.3):
            a = L.tensor(value, requires_grad=True)
            d = f(L, a)
            d.backward()
            show(d, a.grad, a.grad == d / a)

    same(scenario)


# ----- deep graphs -----


def test_deep_chain_needs_no_recursion() -> None:
    limit = sys.getrecursionlimit()
    x = E.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.sum().backward()
    assert x.grad is not None and x.grad.tolist() == [1.0]
    assert sys.getrecursionlimit() == limit


def test_deep_chain_of_saving_nodes_frees_buffers() -> None:
    n = 20_000
    x = E.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(n):
        y = y * 1.0001
    nodes: list[Node] = []
    node: Any = y.grad_fn
    while isinstance(node, Node):
        nodes.append(node)
        node = node.edges[0]
    assert len(nodes) == n
    y.backward(retain_graph=True)
    assert not any(node.freed for node in nodes)
    y.backward()
    assert all(node.freed for node in nodes)
    assert x.grad is not None
    numpy.testing.assert_allclose(x.grad.data, [2 * 1.0001**n], rtol=1e-3)
    with pytest.raises(FailedPrecondition, match=FREED):
        y.backward()


def test_wide_and_deep_graph_matches_torch() -> None:
    def scenario(L: Lib, show: Any) -> None:
        x = L.tensor([0.5, -0.25], requires_grad=True)
        y = x
        for i in range(300):
            y = (y * 0.99 + x.sin() * 0.01) if i % 2 else (y + y.tanh() * 0.001)
        y.sum().backward()
        show(x.grad)

    same(scenario)


# ----- the journal: transactions roll back every mutation -----


class Boom(Exception):
    pass


def test_transaction_restores_grads_and_buffers_after_a_backward() -> None:
    x = E.arange(4.0, requires_grad=True)
    y = (x * x).sum()
    mul = y.grad_fn.edges[0]
    saved = (mul.inputs, mul.arrays, mul.out)
    with pytest.raises(Boom), journal.transaction():
        y.backward()
        assert x.grad is not None and mul.freed
        raise Boom
    assert x.grad is None
    assert not mul.freed
    assert (mul.inputs, mul.arrays, mul.out) == saved
    assert all(a is b for a, b in zip(mul.arrays, saved[1], strict=True))
    y.backward()  # the graph works again
    assert x.grad.tolist() == [0.0, 2.0, 4.0, 6.0]


def test_transaction_restores_an_accumulated_grad_in_place() -> None:
    x = E.arange(4.0, requires_grad=True)
    (x * 3).sum().backward()
    g = x.grad
    version = g.version
    with pytest.raises(Boom), journal.transaction():
        (x * x).sum().backward()
        assert x.grad is g and g.tolist() == [3.0, 5.0, 7.0, 9.0]
        g.zero_()
        raise Boom
    assert x.grad is g
    assert g.tolist() == [3.0, 3.0, 3.0, 3.0]
    assert g.version == version


def test_transaction_restores_in_place_values_versions_and_graph() -> None:
    x = E.arange(4.0, requires_grad=True)
    y = x * 2
    node = y.grad_fn
    z = y * y
    alias = y.detach()
    with pytest.raises(Boom), journal.transaction():
        y.add_(1)
        alias.mul_(3)
        with E.no_grad():
            x.sub_(1)
        assert y.version == 2 and x.version == 1 and y.grad_fn is not node
        raise Boom
    assert y.tolist() == [0.0, 2.0, 4.0, 6.0] and y.version == 0 and alias.version == 0
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0] and x.version == 0
    assert y.grad_fn is node and repr(y) == "tensor([0., 2., 4., 6.], grad_fn=<MulBackward0>)"
    z.sum().backward()  # no version error: the saved y is back at version 0
    assert x.grad.tolist() == [0.0, 8.0, 16.0, 24.0]


def test_transaction_restores_flags_and_retained_grads() -> None:
    a = E.arange(3.0)
    x = E.arange(3.0, requires_grad=True)
    y = x * 2
    z = x * 3
    z.retain_grad()
    (z * y).sum().backward(retain_graph=True)
    zg = z.grad
    with pytest.raises(Boom), journal.transaction():
        a.requires_grad_()
        x.requires_grad_(False)
        y.retain_grad()
        x.set_grad(None)
        (z * y).sum().backward()
        assert y.grad is not None
        raise Boom
    assert not a.requires_grad and x.requires_grad
    assert not y.retains_grad and y.grad is None
    assert z.retains_grad and z.grad is zg and zg.tolist() == [0.0, 2.0, 4.0]
    assert x.grad.tolist() == [0.0, 12.0, 24.0]
    (z * y).sum().backward()  # buffers were restored, and y no longer retains its grad
    assert y.grad is None and z.grad.tolist() == [0.0, 4.0, 8.0] and zg.tolist() == [0.0, 2.0, 4.0]


def test_transaction_restores_buffers_freed_by_autograd_grad() -> None:
    x = E.arange(3.0, requires_grad=True)
    y = (x.exp() * x).sum()
    with pytest.raises(Boom), journal.transaction():
        (g,) = E.autograd.grad(y, x)
        raise Boom
    (again,) = E.autograd.grad(y, x)
    assert again.tolist() == g.tolist()


def test_transaction_commits_without_exception() -> None:
    x = E.arange(3.0, requires_grad=True)
    y = (x * x).sum()
    with journal.transaction():
        y.backward()
    assert x.grad.tolist() == [0.0, 2.0, 4.0]
    with pytest.raises(FailedPrecondition, match=FREED):
        y.backward()
    assert not journal.active()


def test_nested_transactions() -> None:
    x = E.arange(3.0, requires_grad=True)
    y = (x * x).sum()
    w = E.zeros(3)
    with pytest.raises(Boom), journal.transaction():
        w.add_(1)
        with pytest.raises(KeyError), journal.transaction():
            w.add_(10)
            raise KeyError
        assert w.tolist() == [1.0, 1.0, 1.0]  # only the inner block was undone
        with journal.transaction():
            y.backward()
            w.add_(100)
        assert x.grad is not None and w.tolist() == [101.0] * 3
        raise Boom  # the outer block undoes the committed inner one too
    assert x.grad is None and w.tolist() == [0.0] * 3 and w.version == 0
    y.backward()
    assert x.grad.tolist() == [0.0, 2.0, 4.0]


def test_a_failing_backward_inside_a_transaction_changes_nothing() -> None:
    x = E.arange(3.0, requires_grad=True)
    y = x * 2
    ok = (x * x).sum()
    bad = (y * y).sum()
    y.add_(1)
    with pytest.raises(FailedPrecondition), journal.transaction():
        ok.backward()
        bad.backward()
    assert x.grad is None
    ok.backward()
    assert x.grad.tolist() == [0.0, 2.0, 4.0]


def test_transaction_rolls_back_a_failed_write() -> None:
    e = E.ones(3).expand(2, 3)  # a broadcast view: more than one element per memory location
    with pytest.raises(E.EngineError), journal.transaction():
        e.add_(1)
    assert e.version == 0 and e.tolist() == [[1.0] * 3] * 2


def test_transaction_restores_grads_filled_through_inputs_and_autograd_grad() -> None:
    x = E.arange(3.0, requires_grad=True)
    y = x * 2
    u = y * 3
    u.retain_grad()
    z = (u * u).sum()
    with pytest.raises(Boom), journal.transaction():
        z.backward(inputs=[y], retain_graph=True)  # y now retains its grad
        E.autograd.grad(z, x)  # fills u.grad on the way
        assert y.retains_grad and y.grad is not None and u.grad is not None
        raise Boom
    assert not y.retains_grad and y.grad is None and u.grad is None and x.grad is None
    (g,) = E.autograd.grad(z, x)  # buffers are back
    assert g.tolist() == [0.0, 72.0, 144.0] and u.grad.tolist() == [0.0, 12.0, 24.0]


def test_transaction_restores_create_graph_grads() -> None:
    x = E.tensor(2.0, requires_grad=True)
    (x**3).backward(create_graph=True)
    g = x.grad
    with pytest.raises(Boom), journal.transaction():
        (x**3).backward(create_graph=True)
        assert repr(x.grad) == "tensor(24., grad_fn=<AddBackward0>)"
        raise Boom
    assert x.grad is g and repr(g) == "tensor(12., grad_fn=<CopyBackwards>)"
