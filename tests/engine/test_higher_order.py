"""Higher-order gradients against torch: every VJP recorded under ``create_graph=True``.

For each case the first gradient (a vector-Jacobian product for a random cotangent) is
taken with ``create_graph=True`` and differentiated again along a random direction, which
gives the second derivative contracted with both (a Hessian-vector product where the
output is a scalar).  Inputs are float64, so the tolerances are tight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy
import pytest
import torch

import engine as E
from tests.engine.test_ops import assert_same, rng_for, tensors_of

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # see test_ops.py

TOL = {"rtol": 1e-9, "atol": 1e-10}
Fn = Callable[..., Any]


def grad(M: Any, outputs: Any, inputs: Any, **kw: Any) -> tuple[Any, ...]:
    return M.autograd.grad(outputs, inputs, **kw)  # type: ignore[no-any-return]


def draw(case_id: str, shapes: tuple[tuple[int, ...], ...], domain: str) -> list[numpy.ndarray]:
    rng = rng_for(case_id)
    if domain == "positive":
        return [rng.uniform(0.5, 2.0, s) for s in shapes]
    if domain == "small":
        return [rng.uniform(-1.0, 1.0, s) for s in shapes]
    return [rng.standard_normal(s) for s in shapes]


CASES: list[tuple[str, Fn, tuple[tuple[int, ...], ...], str]] = [
    # elementwise
    ("exp", lambda M, x: M.exp(x), ((3, 2),), "real"),
    ("log", lambda M, x: M.log(x), ((3, 2),), "positive"),
    ("sqrt", lambda M, x: M.sqrt(x), ((3, 2),), "positive"),
    ("sin", lambda M, x: M.sin(x), ((3, 2),), "real"),
    ("cos", lambda M, x: M.cos(x), ((3, 2),), "real"),
    ("tan", lambda M, x: M.tan(x), ((3, 2),), "small"),
    ("tanh", lambda M, x: M.tanh(x), ((3, 2),), "real"),
    ("sigmoid", lambda M, x: M.sigmoid(x), ((3, 2),), "real"),
    ("relu", lambda M, x: M.relu(x), ((3, 2),), "real"),
    ("abs", lambda M, x: M.abs(x), ((3, 2),), "real"),
    ("neg-square", lambda M, x: -(x * x), ((3, 2),), "real"),
    ("reciprocal", lambda M, x: x.reciprocal(), ((3, 2),), "positive"),
    ("pow-scalar", lambda M, x: x**3, ((3, 2),), "real"),
    ("pow-negative", lambda M, x: x**-1.5, ((3, 2),), "positive"),
    ("pow-tensor", lambda M, x, y: x**y, ((3, 2), (2,)), "positive"),
    ("rpow", lambda M, x: 2.5**x, ((3, 2),), "real"),
    ("mul", lambda M, x, y: x * y, ((3, 2), (3, 1)), "real"),
    ("div", lambda M, x, y: x / y, ((3, 2), (2,)), "positive"),
    ("rdiv", lambda M, x: 3 / x, ((3, 2),), "positive"),
    ("sub-mul", lambda M, x, y: (x - y) * (1 - x), ((3, 2), (3, 2)), "real"),
    ("maximum", lambda M, x, y: M.maximum(x, y), ((3, 2), (3, 2)), "real"),
    ("maximum-product", lambda M, x, y: M.maximum(x * y, y), ((3, 2), (3, 2)), "real"),
    ("minimum-product", lambda M, x, y: M.minimum(x * y, x), ((3, 2), (2,)), "real"),
    ("clamp", lambda M, x: x.clamp(-0.5, 0.5), ((3, 2),), "real"),
    ("clamp-product", lambda M, x: (x * x).clamp(max=0.5) * x, ((3, 2),), "real"),
    ("where", lambda M, x, y: M.where(x > 0, x * y, y * y), ((3, 2), (3, 2)), "real"),
    ("to-dtype", lambda M, x: x.float().double() * x, ((3,),), "real"),
    ("clone", lambda M, x: x.clone() * x, ((3,),), "real"),
    # reductions
    ("sum-square", lambda M, x: (x * x).sum(dim=1), ((3, 2),), "real"),
    ("mean-cube", lambda M, x: (x**3).mean(dim=0, keepdim=True), ((3, 2),), "real"),
    ("prod", lambda M, x: x.prod(), ((2, 3),), "real"),
    ("prod-dim", lambda M, x: x.prod(dim=1), ((2, 3),), "real"),
    ("prod-keepdim", lambda M, x: x.prod(dim=0, keepdim=True), ((3, 2),), "real"),
    ("prod-zero", lambda M, x: (x * M.tensor([1.0, 0.0, 1.0])).prod(), ((3,),), "real"),
    ("max", lambda M, x: x.max(), ((3, 2),), "real"),
    ("max-square", lambda M, x: (x * x).max(), ((3, 2),), "real"),
    ("max-dim-square", lambda M, x: (x * x).max(dim=1).values, ((3, 2),), "real"),
    ("min-dim-square", lambda M, x: (x * x).min(dim=0, keepdim=True).values, ((3, 2),), "real"),
    ("norm", lambda M, x: x.norm(), ((3, 2),), "real"),
    ("norm-dim", lambda M, x: x.norm(dim=1), ((3, 2),), "real"),
    ("norm-1", lambda M, x: (x * x).norm(p=1), ((3, 2),), "real"),
    ("norm-3", lambda M, x: x.norm(p=3, dim=0), ((3, 2),), "real"),
    ("norm-inf", lambda M, x: (x * x).norm(p=math.inf), ((3, 2),), "real"),
    ("logsumexp", lambda M, x: M.logsumexp(x, dim=1), ((3, 2),), "real"),
    ("softmax", lambda M, x: M.softmax(x, dim=1), ((3, 4),), "real"),
    ("log-softmax", lambda M, x: M.log_softmax(x, dim=0), ((3, 4),), "real"),
    # products
    ("dot", lambda M, x, y: M.dot(x, y) * M.dot(x, x), ((4,), (4,)), "real"),
    ("mm", lambda M, x, y: M.mm(x, y) ** 2, ((2, 3), (3, 4)), "real"),
    ("mv", lambda M, x, y: M.mv(x, y).sin(), ((2, 3), (3,)), "real"),
    ("bmm", lambda M, x, y: M.bmm(x, y).tanh(), ((2, 2, 3), (2, 3, 4)), "real"),
    ("outer", lambda M, x, y: M.outer(x, y) ** 2, ((3,), (4,)), "real"),
    ("matmul-1d-2d", lambda M, x, y: (x @ y).exp(), ((3,), (3, 2)), "real"),
    ("matmul-batched", lambda M, x, y: (x @ y) ** 2, ((2, 3, 4), (4, 5)), "real"),
    ("matmul-vector-batch", lambda M, x, y: (x @ y) ** 2, ((4,), (2, 4, 3)), "real"),
    ("matmul-batch-vector", lambda M, x, y: (x @ y) ** 2, ((2, 3, 4), (4,)), "real"),
    ("matmul-2d-3d", lambda M, x, y: (x @ y) ** 2, ((3, 4), (2, 4, 5)), "real"),
    # shapes and indexing between nonlinear ops
    ("reshape", lambda M, x: x.reshape(3, 2).sin() * x.t(), ((2, 3),), "real"),
    ("transpose-reshape", lambda M, x: x.t().reshape(6) ** 2, ((2, 3),), "real"),
    ("view-expand", lambda M, x: x.view(3, 1).expand(3, 2).exp(), ((3,),), "real"),
    ("permute", lambda M, x: x.permute(2, 0, 1).sin(), ((2, 3, 2),), "real"),
    ("squeeze", lambda M, x: x.unsqueeze(0).squeeze().tanh(), ((3, 1),), "real"),
    ("index", lambda M, x: x[M.tensor([0, 2, 0])] ** 2, ((4,),), "real"),
    ("index-slice", lambda M, x: x[1:, ::2] ** 3, ((3, 4),), "real"),
    ("index-mask", lambda M, x: x[x > 0] ** 2, ((3, 4),), "real"),
    ("index-select", lambda M, x: x.index_select(0, M.tensor([2, 2, 0])).sin(), ((3, 2),), "real"),
    ("cat", lambda M, x, y: M.cat([x * y, y]).exp(), ((2, 3), (1, 3)), "real"),
    ("stack", lambda M, x, y: M.stack([x, y], dim=1) ** 2, ((3,), (3,)), "real"),
    ("split", lambda M, x: [p**2 for p in x.split([1, 2])], ((3, 2),), "real"),
    ("chunk", lambda M, x: [p.sin() for p in x.chunk(2, dim=1)], ((2, 4),), "real"),
]


def _first_and_second(M: Any, fn: Fn, arrays: list[numpy.ndarray], case_id: str) -> Any:
    """First VJP (create_graph) and its derivative along a seeded random direction."""
    rng = rng_for("second/" + case_id)
    xs = [M.tensor(a, requires_grad=True) for a in arrays]
    outs = [o for o in tensors_of(fn(M, *xs)) if o.requires_grad]
    cots = [M.tensor(rng.standard_normal(tuple(o.shape))) for o in outs]
    firsts = grad(M, outs, xs, grad_outputs=cots, create_graph=True)
    needs = [g.requires_grad for g in firsts]
    if not any(needs):
        return firsts, needs, None
    dirs = [M.tensor(rng.standard_normal(a.shape)) for a in arrays]
    total = sum((g * d).sum() for g, d, n in zip(firsts, dirs, needs, strict=True) if n)
    seconds = grad(M, total, xs, allow_unused=True)
    return firsts, needs, seconds


@pytest.mark.parametrize(
    ("fn", "shapes", "domain"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_second_order_matches_torch(fn: Fn, shapes: Any, domain: str, request: Any) -> None:
    case_id = request.node.callspec.id
    arrays = draw(case_id, shapes, domain)
    fe, ne, se = _first_and_second(E, fn, arrays, case_id)
    ft, nt, st = _first_and_second(torch, fn, arrays, case_id)
    for i, (e, t) in enumerate(zip(fe, ft, strict=True)):
        assert_same(e, t, f"first gradient {i}", **TOL)
    assert ne == nt, "which first gradients depend on the inputs"
    if st is None:
        return
    for i, (e, t) in enumerate(zip(se, st, strict=True)):
        if t is None:  # torch: no path; the engine may know it is zero
            assert e is None or not e.numpy().any(), f"second gradient {i}"
        else:
            assert e is not None, f"second gradient {i}"
            assert_same(e, t, f"second gradient {i}", **TOL)


def test_second_order_cases_are_named_uniquely() -> None:
    assert len({c[0] for c in CASES}) == len(CASES)


# ----- Hessian-vector products (double backward) -----


def _mlp_loss(M: Any, w1: Any, w2: Any, x: Any) -> Any:
    h = M.tanh(x @ w1)
    return (M.log_softmax(h @ w2, dim=1) * M.softmax(h, dim=1)[:, :3]).sum() + w1.norm() ** 2


def _hvp(M: Any, arrays: list[numpy.ndarray], vs: list[numpy.ndarray]) -> list[Any]:
    w1, w2 = (M.tensor(a, requires_grad=True) for a in arrays[:2])
    x = M.tensor(arrays[2])
    loss = _mlp_loss(M, w1, w2, x)
    g1, g2 = grad(M, loss, [w1, w2], create_graph=True)
    v1, v2 = (M.tensor(v) for v in vs)
    return list(grad(M, [g1, g2], [w1, w2], grad_outputs=[v1, v2]))


def test_hessian_vector_product_matches_torch() -> None:
    rng = rng_for("hvp")
    arrays = [rng.standard_normal(s) for s in ((4, 5), (5, 3), (6, 4))]
    vs = [rng.standard_normal(s) for s in ((4, 5), (5, 3))]
    for e, t in zip(_hvp(E, arrays, vs), _hvp(torch, arrays, vs), strict=True):
        assert_same(e, t, "Hv", **TOL)
    # and torch's own hvp agrees with the double-backward formulation
    _, expected = torch.autograd.functional.hvp(
        lambda a, b: _mlp_loss(torch, a, b, torch.tensor(arrays[2])),
        tuple(torch.tensor(a) for a in arrays[:2]),
        tuple(torch.tensor(v) for v in vs),
    )
    for e, t in zip(_hvp(E, arrays, vs), expected, strict=True):
        assert_same(e, t, "Hv", **TOL)


@pytest.mark.filterwarnings("ignore:Using backward.. with create_graph=True")
def test_hessian_vector_product_through_backward_create_graph() -> None:
    """``backward(create_graph=True)`` leaves a ``.grad`` that can be differentiated again."""
    rng = rng_for("hvp-backward")
    a, v = rng.standard_normal((3, 3)), rng.standard_normal(3)
    results = []
    for M in (E, torch):
        x = M.tensor(rng_for("x").standard_normal(3), requires_grad=True)
        A = M.tensor(a)
        ((x @ A @ x).exp() + x.sin().sum()).backward(create_graph=True)
        first = x.grad
        x.grad = None
        (first * M.tensor(v)).sum().backward()
        results.append((first, x.grad))
    (fe, he), (ft, ht) = results
    assert_same(fe, ft, "gradient", **TOL)
    assert_same(he, ht, "Hv", **TOL)


@pytest.mark.parametrize("retain", [False, True])
def test_backward_create_graph_with_one_gradient_for_several_leaves(retain: bool) -> None:
    """``add`` hands one gradient to both its inputs: each ``.grad`` is its own tensor (was an
    AttributeError: a Tensor has no ``copy``)."""
    grads = []
    for M in (E, torch):
        x = M.tensor([2.0, 3.0], requires_grad=True)
        w = M.tensor([2.0, 1.0], requires_grad=True)
        y = x + w
        if retain:
            y.retain_grad()
        (y * y).sum().backward(create_graph=True)
        assert x.grad is not w.grad
        grads.append([x.grad, w.grad, *([y.grad] if retain else [])])
        second = x.grad.sum() + 2 * w.grad.sum()
        x.grad = w.grad = None
        second.backward()
        grads[-1] += [x.grad, w.grad]
    for e, t in zip(*grads, strict=True):
        assert_same(e, t, "grad", **TOL)
        assert (e.grad_fn is None) == (t.grad_fn is None)


# ----- reference section 7 -----


def test_third_derivative_of_sin() -> None:
    x = E.tensor([0.0, 1.0, 2.0], requires_grad=True)
    d1 = E.autograd.grad(E.sin(x).sum(), x, create_graph=True)[0]
    assert repr(d1) == "tensor([ 1.0000,  0.5403, -0.4161], grad_fn=<MulBackward0>)"
    d2 = E.autograd.grad(d1.sum(), x, create_graph=True)[0]
    assert repr(d2) == "tensor([-0.0000, -0.8415, -0.9093], grad_fn=<MulBackward0>)"
    d3 = E.autograd.grad(d2.sum(), x)[0]
    assert repr(d3) == "tensor([-1.0000, -0.5403,  0.4161])"
    assert x.grad is None


def test_repeated_derivatives_of_cube() -> None:
    x = E.tensor(2.0, requires_grad=True)
    y = x**3
    (g,) = E.autograd.grad(y, x, create_graph=True)
    assert repr(g) == "tensor(12., grad_fn=<MulBackward0>)"
    (g2,) = E.autograd.grad(g, x, create_graph=True)
    assert repr(g2) == "tensor(12., grad_fn=<MulBackward0>)"
    (g3,) = E.autograd.grad(g2, x)
    assert repr(g3) == "tensor(6.)"


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_nth_derivative_of_sin_matches_torch(order: int) -> None:
    values = numpy.linspace(-2.0, 2.0, 7)
    results = []
    for M in (E, torch):
        x = M.tensor(values, requires_grad=True)
        y = M.sin(x * 1.5)
        for _ in range(order):
            (y,) = grad(M, y.sum(), x, create_graph=True)
        results.append(y)
    assert_same(*results, f"derivative {order}", **TOL)
