"""Large elementwise work split over threads (engine/parallel.py) gives the serial results.

Bit for bit: every elementwise primitive's forward and VJP, run through ``parallel.run``,
against the same call on one thread; and whole forward/backward passes with 1 and 2 threads.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import numpy
import pytest

import engine
from engine import parallel, trace
from engine.ops.registry import PRIMITIVES

N = parallel.MIN_SIZE + 12_345  # large enough to split, not a multiple of a chunk
ELEMENTWISE = sorted(name for name, op in PRIMITIVES.items() if op.elementwise)


def _operands(name: str, dtype: str) -> list[tuple[Any, ...]]:
    rng = numpy.random.default_rng(abs(hash(name)) % 2**32)
    x = rng.uniform(0.1, 2.0, N).astype(dtype)
    y = rng.uniform(-2.0, 2.0, N).astype(dtype)
    arity = len(inspect.signature(PRIMITIVES[name].forward).parameters)
    if name == "where":
        return [(x > 1, x, y)]
    if name in ("logical_and", "logical_or", "logical_xor"):
        return [(x > 1, y > 0)]
    if name == "logical_not":
        return [(x > 1,)]
    if name == "clamp":
        return [(y,)]
    if name == "pow":  # two tensors; a Python exponent or base goes to pow_scalar or rpow
        return [(x, y)]
    if name in ("pow_scalar", "rpow"):
        return [(x, 2.5), (y, 3)]
    if arity == 1:
        return [(x,), (y,)]
    return [(x, y), (y, x), (x, 2.5), (y, 3)]


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(a.dtype == b.dtype and a.shape == b.shape and numpy.array_equal(a, b, True))


@pytest.mark.usefixtures("two_threads")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log and sqrt of negatives: nan
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_forward_and_vjp_are_bit_identical_to_serial(name: str, dtype: str) -> None:
    op = PRIMITIVES[name]
    attrs = {"min": -0.5, "max": 0.5} if name == "clamp" else {}
    g = numpy.random.default_rng(1).standard_normal(N).astype(dtype)
    for args in _operands(name, dtype):
        serial = op.forward(*args, **attrs)
        split = parallel.run(op.forward, args, attrs)
        assert split is not None
        assert type(split) is numpy.ndarray and split.base is None
        assert _same(serial, split), name
        if op.vjp is None or serial.dtype.kind != "f":
            continue
        vjp_args = (g.astype(serial.dtype), serial, *args)
        try:
            expected = op.vjp(*vjp_args, **attrs)
        except engine.EngineError:
            continue  # a rule that refuses (floor_divide) refuses on both paths
        got = parallel.run(op.vjp, vjp_args, attrs)
        assert len(got) == len(expected)
        for e, r in zip(expected, got, strict=True):
            assert type(r) is not parallel.Split
            assert _same(e, r), name


@pytest.mark.usefixtures("two_threads")
def test_arguments_passed_through_stay_the_same_objects() -> None:
    g = numpy.ones(N, dtype="float32")
    ga, gb = parallel.run(PRIMITIVES["add"].vjp, (g, None, g, g), {})
    assert ga is g and gb is g


def test_small_broadcast_or_strided_arrays_are_not_split() -> None:
    big = numpy.ones(N, dtype="float32")
    assert parallel.run(numpy.add, (big[:100], big[:100]), {}) is None
    assert parallel.run(numpy.add, (big, numpy.ones(1, dtype="float32")), {}) is None
    assert parallel.run(numpy.add, (big[::2], big[::2]), {}) is None


def _chain(threads: int) -> tuple[list[Any], list[Any]]:
    before = parallel.get_num_threads()
    parallel.set_num_threads(threads)
    try:
        rng = numpy.random.default_rng(7)
        x, w, b = (engine.tensor(rng.uniform(-1, 1, N).astype("float32"), requires_grad=True)
                   for _ in range(3))  # fmt: skip
        y = x
        for _ in range(3):  # w and b collect several gradients: accumulated in place
            y = ((y * w + b).sin().exp().tanh() / 2.0 - b).cos()
        loss = y.sum()
        loss.backward()
        return [y.data], [t.grad.data for t in (x, w, b) if t.grad is not None]
    finally:
        parallel.set_num_threads(before)


def test_a_whole_pass_on_two_threads_matches_one_thread_bit_for_bit() -> None:
    values_1, grads_1 = _chain(1)
    values_2, grads_2 = _chain(2)
    assert len(grads_1) == len(grads_2) == 3
    for a, b in zip(values_1 + grads_1, values_2 + grads_2, strict=True):
        assert type(b) is numpy.ndarray and _same(a, b)


def test_set_num_threads_rejects_nonpositive() -> None:
    with pytest.raises(ValueError):
        parallel.set_num_threads(0)


# ----- traced functions (engine/trace.py) -----

CHAIN_RULES = ["mul", "add", "sin", "exp", "tanh", "div", "sub", "cos"]


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("name", CHAIN_RULES)
def test_the_chain_ops_are_traced_not_split(name: str) -> None:
    """The ops of a large chain run as traced steps, each rule in one pass over memory."""
    op = PRIMITIVES[name]
    x = numpy.linspace(-1, 1, N, dtype="float32")
    for args in [(x, x + 2), (x, 2.0)] if op.forward.__code__.co_argcount == 2 else [(x,)]:
        out = op.forward(*args)
        assert trace.trace(op.forward, args, {}, x.shape) is not None
        assert op.vjp is not None
        assert trace.trace(op.vjp, (x, out, *args), {}, x.shape) is not None


@pytest.mark.usefixtures("two_threads")
def test_what_cannot_be_traced_runs_on_split_views_with_the_same_result() -> None:
    x = numpy.linspace(-2, 2, N, dtype="float32")

    def powers(a: Any) -> Any:  # ndarray picks ``square`` for ** 2: not traced
        return a**2 + a**0.5

    def cast(a: Any) -> Any:
        return (a * 2).astype("float64")

    def where(a: Any) -> Any:
        return numpy.where(a > 0, a, -a)

    for fn in (powers, cast, where):
        assert trace.trace(fn, (x,), {}, x.shape) is None
        with numpy.errstate(invalid="ignore"):
            assert _same(fn(x), parallel.run(fn, (x,), {}))


@pytest.mark.usefixtures("two_threads")
def test_temporaries_of_several_dtypes_and_weak_scalars() -> None:
    rng = numpy.random.default_rng(3)
    a, b = (rng.uniform(-1, 1, N).astype("float32") for _ in range(2))
    i = rng.integers(-5, 5, N)

    def rule(a: Any, b: Any, i: Any) -> tuple[Any, ...]:
        mask = (a > b) & (b < 0.5)
        t = (a - 1) * (2.5 - b * b) / 3
        return t * mask + (a == b) * 0.5, i * 3 + True, -t, i / 2, a

    plan = trace.trace(rule, (a, b, i), {}, a.shape)
    assert plan is not None
    expected = rule(a, b, i)
    got = plan.execute()
    assert got[-1] is a  # an argument handed back is the argument itself
    for e, r in zip(expected, got, strict=True):
        assert _same(e, r)


@pytest.mark.usefixtures("two_threads")
def test_in_place_accumulation_writes_the_argument() -> None:
    import operator

    rng = numpy.random.default_rng(4)
    a, b = (rng.standard_normal(N).astype("float32") for _ in range(2))
    expected = a + b
    before = a
    total = parallel.run(operator.iadd, (a, b), {})
    assert total is before and _same(expected, a)


@pytest.mark.usefixtures("two_threads")
def test_floating_point_errors_follow_the_callers_errstate_on_every_thread() -> None:
    big = numpy.full(N, 100.0, dtype="float32")
    with numpy.errstate(over="raise"), pytest.raises(FloatingPointError):
        parallel.run(numpy.exp, (big,), {})
    with numpy.errstate(over="ignore"):
        assert numpy.isinf(parallel.run(numpy.exp, (big,), {})).all()


@pytest.mark.usefixtures("two_threads")
def test_a_failing_chunk_fails_the_call_after_every_chunk_ran() -> None:
    ran: list[tuple[int, int]] = []

    def chunk(lo: int, hi: int, scratch: dict[Any, Any]) -> None:
        ran.append((lo, hi))
        if lo:
            raise KeyError(lo)

    size = 5 * parallel.CHUNK + 1
    with pytest.raises(KeyError) as info:
        parallel.run_chunks(chunk, size)
    ran.sort()
    assert ran[0][0] == 0 and ran[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ran))  # each element once
    assert info.value.args == (ran[1][0],)  # the first failing chunk's error


def test_more_threads_than_cores_and_many_calls_in_a_row() -> None:
    before = parallel.get_num_threads()
    parallel.set_num_threads(3)
    try:
        x = numpy.linspace(-1, 1, N, dtype="float32")
        expected = numpy.tanh(numpy.sin(x) * 2.0)
        for _ in range(50):
            got = parallel.run(lambda a: numpy.tanh(numpy.sin(a) * 2.0), (x,), {})
            assert _same(expected, got)
    finally:
        parallel.set_num_threads(before)


@pytest.mark.usefixtures("two_threads")
def test_a_broadcast_gradient_splits_like_a_contiguous_one() -> None:
    """The gradient of a sum is one value broadcast: its rules still run on the team."""
    g = numpy.broadcast_to(numpy.float32(0.5), (N,))
    x = numpy.linspace(-1, 1, N, dtype="float32")
    op = PRIMITIVES["cos"]
    assert op.vjp is not None
    plan = trace.trace(op.vjp, (g, op.forward(x), x), {}, x.shape)
    assert plan is not None
    (expected,) = op.vjp(g, op.forward(x), x)
    (got,) = plan.execute()
    assert _same(expected, got)
    assert parallel.run(numpy.add, (g, g[::-1]), {}) is not None
    assert parallel.run(numpy.add, (x[::2], x[::2]), {}) is None  # strided: not split


@pytest.mark.usefixtures("two_threads")
def test_a_recipe_is_reused_only_for_the_same_kinds_of_arguments() -> None:
    """Recipes are cached by function, dtypes, layout and exact scalar values."""
    x = numpy.linspace(-1, 1, N, dtype="float32")

    def branchy(a: Any, s: Any) -> Any:
        return a * s if s > 0 else a - s

    for s in (2.0, -3.0, 0.0, -0.0, 2, True, numpy.float64(-0.0)):
        assert _same(branchy(x, s), parallel.run(branchy, (x, s), {}))
    for dtype in ("float64", "float32"):
        y = x.astype(dtype)
        assert _same(branchy(y, 0.5), parallel.run(branchy, (y, 0.5), {}))
    before = len(trace._RECIPES)
    parallel.run(branchy, (x, 2.0), {})
    assert len(trace._RECIPES) == before  # seen: no new trace


@pytest.mark.usefixtures("two_threads")
def test_a_function_that_cannot_be_traced_is_remembered_and_still_split() -> None:
    x = numpy.linspace(0, 1, N, dtype="float32")

    def square(a: Any) -> Any:
        return a**2

    for _ in range(2):
        assert trace.trace(square, (x,), {}, x.shape) is None
        assert _same(x**2, parallel.run(square, (x,), {}))
