"""Which saved inputs a backward pass checks for in-place writes, as PyTorch decides it.

PyTorch saves an input of a product only when the other input's gradient will be computed
(``x * 2.0`` and ``x * w`` with ``w`` not requiring grad keep no ``x``), so writing that input
in place before backward is no error; writing an input that is needed is. Each case writes
one operand in place (under no_grad) between forward and backward, on both libraries:
the same error text, or the same gradients.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import numpy
import pytest
import torch

import engine
from tests.engine.side_by_side import Lib, run, same

# name -> (shape of x, shape of w, forward of x and w)
PRODUCTS: dict[str, tuple[tuple[int, ...], tuple[int, ...], Callable[[Lib, Any, Any], Any]]] = {
    "mul_number": ((3,), (3,), lambda L, x, w: x * 2.0),
    "number_mul": ((3,), (3,), lambda L, x, w: 2.0 * x),
    "div_number": ((3,), (3,), lambda L, x, w: x / 2.0),
    "number_div": ((3,), (3,), lambda L, x, w: 2.0 / x),
    "pow_number": ((3,), (3,), lambda L, x, w: x**2.0),
    "mul": ((3,), (3,), lambda L, x, w: x * w),
    "mul_reflected": ((3,), (3,), lambda L, x, w: w * x),
    "mul_broadcast": ((2, 3), (3,), lambda L, x, w: x * w),
    "div": ((3,), (3,), lambda L, x, w: x / w),
    "div_reflected": ((3,), (3,), lambda L, x, w: w / x),
    "dot": ((3,), (3,), lambda L, x, w: L.dot(x, w)),
    "mm": ((2, 3), (3, 2), lambda L, x, w: L.mm(x, w)),
    "mm_reflected": ((3, 2), (2, 3), lambda L, x, w: L.mm(w, x)),
    "mv": ((2, 3), (3,), lambda L, x, w: L.mv(x, w)),
    "bmm": ((2, 2, 3), (2, 3, 2), lambda L, x, w: L.bmm(x, w)),
    "matmul_batched": ((2, 2, 3), (2, 3, 2), lambda L, x, w: L.matmul(x, w)),
    "maximum": ((3,), (3,), lambda L, x, w: L.maximum(x, w)),
    "sin": ((3,), (3,), lambda L, x, w: L.sin(x) * w),
}


def _scenario(
    case: str, written: str, w_grad: bool, dtype: str
) -> Callable[[Lib, Callable[..., None]], None]:
    x_shape, w_shape, forward = PRODUCTS[case]

    def scenario(L: Lib, show: Callable[..., None]) -> None:
        a = L.linspace(0.5, 1.5, _numel(x_shape), dtype=L.dt(dtype)).reshape(x_shape)
        a.requires_grad_(True)
        v = L.linspace(-1.0, 2.0, _numel(w_shape), dtype=L.dt(dtype)).reshape(w_shape)
        v.requires_grad_(w_grad)
        x, w = a * 1, v * 1  # non-leaves: they may be written in place
        y = forward(L, x, w)
        with L.no_grad():
            (x if written == "x" else w).add_(1)
        L.attempt(lambda: y.sum().backward())
        show(a.grad, v.grad)

    return scenario


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("w_grad", [False, True], ids=["w_no_grad", "w_grad"])
@pytest.mark.parametrize("written", ["x", "w"])
@pytest.mark.parametrize("case", sorted(PRODUCTS))
def test_in_place_write_of_a_saved_input(case: str, written: str, w_grad: bool, dtype: str) -> None:
    scenario = _scenario(case, written, w_grad, dtype)
    if case == "matmul_batched" and w_grad:
        # Both refuse; PyTorch's text names the expanded view its batched matmul saved
        # ("output 0 of AsStrided"), the engine's the tensor itself ("of Mul").
        expected = [_as_saved_by_engine(r) for r in run(torch, scenario)]
        assert run(engine, scenario) == expected
        assert expected[0][0] == "error"
        return
    same(scenario)


def _as_saved_by_engine(record: Any) -> Any:
    if record[0] != "error":
        return record
    return (*record[:2], record[2].replace("output 0 of AsStrided", "output 0 of Mul"))


def test_a_product_checks_its_input_once_the_other_needs_it() -> None:
    """``requires_grad`` is read when the op runs: a weight that starts requiring grad
    afterwards does not make the node check ``x``; one that required it does."""

    def scenario(L: Lib, show: Callable[..., None]) -> None:
        a = L.ones(3, requires_grad=True)
        for w_grad_at_forward in (False, True):
            x = a * 1
            w = L.full((3,), 2.0, requires_grad=w_grad_at_forward)
            y = x * w
            w.requires_grad_(True)
            with L.no_grad():
                x.add_(1)
            L.attempt(lambda y=y: y.sum().backward())
            show(a.grad, w.grad)

    same(scenario)


@pytest.mark.parametrize("form", ["mul", "rmul", "div"])
def test_a_small_tensor_times_a_number_keeps_no_reference_to_it(form: str) -> None:
    """The fast path's node for ``x * 2.0`` keeps no ``x`` (nothing reads it), as PyTorch:
    the array is freed once the tensor is."""
    forward = {"mul": lambda x: x * 2.0, "rmul": lambda x: 2.0 * x, "div": lambda x: x / 2.0}
    a = engine.ones(4, requires_grad=True)
    x = engine.sin(a)
    y = forward[form](x)
    data = weakref.ref(x.data)
    del x
    gc.collect()
    assert data() is None
    (g,) = engine.autograd.grad(y.sum(), [a], create_graph=True)
    assert g.grad_fn is not None  # the rule ran as engine ops: differentiable again
    (h,) = engine.autograd.grad(g.sum(), [a])
    factor = 0.5 if form == "div" else 2.0
    numpy.testing.assert_allclose(h.data, -factor * numpy.sin(numpy.ones(4)), rtol=1e-6)
