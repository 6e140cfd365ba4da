"""Large elementwise work split over threads (engine/parallel.py) gives the serial results.

Bit for bit: every elementwise primitive's forward and VJP, run through ``parallel.run``,
against the same call on one thread; and whole forward/backward passes with 1 and 2 threads.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import numpy
import pytest

import engine
from engine import parallel
from engine.ops.registry import PRIMITIVES

N = parallel.MIN_SIZE + 12_345  # large enough to split, not a multiple of a chunk
ELEMENTWISE = sorted(name for name, op in PRIMITIVES.items() if op.elementwise)


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = parallel.get_num_threads()
    parallel.set_num_threads(2)
    yield
    parallel.set_num_threads(before)


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
