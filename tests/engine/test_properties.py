"""Property tests: random op graphs over 1-3 broadcastable tensors, values and gradients
equal to torch's.

A program draws its input shapes from one base shape (trailing dims, some of them 1, so
every pair broadcasts), then 1-5 steps, each applying a unary, binary or reducing op
(reductions keep their dims, so results stay broadcastable) to earlier values.  Every
value the steps produce is an output; backward runs with a seeded random cotangent on
each, in the engine and in torch, on the same float64 inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine as E
from tests.engine.test_ops import assert_same

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # see test_ops.py

TOL = {"rtol": 1e-7, "atol": 1e-9}
Op = Callable[..., Any]

# Each op keeps values finite and away from singular points for any real input.
UNARY: dict[str, Op] = {
    "neg": lambda M, x: -x,
    "exp": lambda M, x: M.exp(x * 0.3),
    "log": lambda M, x: M.log(x * x + 1),
    "sqrt": lambda M, x: M.sqrt(x.abs() + 0.5),
    "sin": lambda M, x: M.sin(x),
    "cos": lambda M, x: x.cos(),
    "tan": lambda M, x: M.tan(M.tanh(x)),
    "tanh": lambda M, x: M.tanh(x),
    "sigmoid": lambda M, x: x.sigmoid(),
    "relu": lambda M, x: M.relu(x),
    "abs": lambda M, x: M.abs(x),
    "square": lambda M, x: x * x,
    "pow-scalar": lambda M, x: (x.abs() + 0.5) ** 1.5,
    "rpow": lambda M, x: 1.5 ** M.tanh(x),
    "reciprocal": lambda M, x: 1 / (x * x + 1),
    "clamp": lambda M, x: x.clamp(-0.8, 0.8),
    "affine": lambda M, x: 2 - x * 0.5,
    "clone": lambda M, x: x.clone(),
}
BINARY: dict[str, Op] = {
    "add": lambda M, a, b: a + b,
    "sub": lambda M, a, b: a - b,
    "mul": lambda M, a, b: a * b,
    "div": lambda M, a, b: a / (b * b + 1),
    "maximum": lambda M, a, b: M.maximum(a, b),
    "minimum": lambda M, a, b: M.minimum(a, b),
    "pow": lambda M, a, b: (a.abs() + 0.5) ** M.tanh(b),
    "where": lambda M, a, b: M.where(a > b, a * b, b),
    "stack-sum": lambda M, a, b: M.stack([a + b * 0, a * 0 + b]).sum(dim=0),
}
REDUCE: dict[str, Op] = {  # (M, x, dim): dims kept, so results broadcast with the rest
    "sum": lambda M, x, d: x.sum(dim=d, keepdim=True),
    "mean": lambda M, x, d: x.mean(dim=d, keepdim=True),
    "prod": lambda M, x, d: x.prod(dim=d, keepdim=True),
    "max-dim": lambda M, x, d: x.max(dim=d, keepdim=True).values,
    "min-dim": lambda M, x, d: x.min(dim=d, keepdim=True)[0],
    "max-all": lambda M, x, d: x.max(),
    "norm": lambda M, x, d: x.norm(dim=d, keepdim=True),
    "norm-3": lambda M, x, d: x.norm(p=3, dim=d, keepdim=True),
    "logsumexp": lambda M, x, d: M.logsumexp(x, dim=d, keepdim=True),
    "softmax": lambda M, x, d: M.softmax(x, dim=d),
    "log-softmax": lambda M, x, d: M.log_softmax(x, dim=d),
    "mean-all": lambda M, x, d: x.mean(),
}
TABLES = {"unary": UNARY, "binary": BINARY, "reduce": REDUCE}


@st.composite
def programs(draw: Any) -> tuple[list[tuple[int, ...]], list[tuple[str, str, list[int], int]], int]:
    ndim = draw(st.integers(0, 3))
    base = draw(st.tuples(*[st.integers(1, 4)] * ndim))
    shapes = []
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.integers(0, ndim))
        ones = draw(st.lists(st.booleans(), min_size=k, max_size=k))
        shapes.append(tuple(1 if one else n for n, one in zip(base[ndim - k :], ones, strict=True)))
    steps = []
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(sorted(TABLES)))
        name = draw(st.sampled_from(sorted(TABLES[kind])))
        arity = 2 if kind == "binary" else 1
        pool = len(shapes) + i
        operands = draw(st.lists(st.integers(0, pool - 1), min_size=arity, max_size=arity))
        steps.append((kind, name, operands, draw(st.integers(-3, 2))))
    return shapes, steps, draw(st.integers(0, 2**32 - 1))


def run(M: Any, arrays: list[numpy.ndarray], steps: list[Any], cot_seed: int) -> Any:
    leaves = [M.tensor(a, requires_grad=True) for a in arrays]
    pool = list(leaves)
    for kind, name, operands, dim in steps:
        args = [pool[i] for i in operands]
        if kind == "reduce":
            out = REDUCE[name](M, args[0], dim % max(args[0].ndim, 1))
        else:
            out = TABLES[kind][name](M, *args)
        pool.append(out)
    outs = pool[len(leaves) :]
    rng = numpy.random.default_rng(cot_seed)
    cots = [M.tensor(rng.standard_normal(tuple(o.shape))) for o in outs]
    M.autograd.backward(outs, cots)
    return outs, [x.grad for x in leaves]


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(programs())
def test_random_graph_matches_torch(program: Any) -> None:
    shapes, steps, seed = program
    rng = numpy.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes]
    outs_e, grads_e = run(E, arrays, steps, seed + 1)
    outs_t, grads_t = run(torch, arrays, steps, seed + 1)
    for i, (e, t) in enumerate(zip(outs_e, outs_t, strict=True)):
        assert_same(e, t, f"step {i}", **TOL)
        assert e.grad_fn.name == type(t.grad_fn).__name__, f"step {i}"
    for i, (e, t) in enumerate(zip(grads_e, grads_t, strict=True)):
        assert (e is None) == (t is None), f"grad of input {i}"
        if t is not None:
            assert_same(e, t, f"grad of input {i}", **TOL)
