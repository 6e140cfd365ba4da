"""Gradients added to their running sums inside the job that computes them.

``parallel.run_into`` (and ``trace.Plan``'s ``into``) run a VJP on the threads with some of
its results added to earlier gradients in the same job; ``autograd`` uses it where gradients
meet (a weight used by many ops). The sums must be exactly those of a separate addition, in
place only where the pass owns the sum; anything else is handed back to the caller. A sum of
a gradient that a rule hands on unchanged (``add``) waits for the next job instead
(``parallel.add_later``): it must be done before anything reads it.
"""

from __future__ import annotations

from typing import Any

import numpy
import pytest

import engine
from engine import autograd, parallel, trace
from engine.ops.registry import PRIMITIVES

N = parallel.MIN_SIZE + 12_345


def _same(a: Any, b: Any) -> bool:
    return bool(a.dtype == b.dtype and a.shape == b.shape and numpy.array_equal(a, b, True))


def _arrays(k: int, dtype: str = "float32", seed: int = 3) -> list[numpy.ndarray]:
    rng = numpy.random.default_rng(seed)
    return [rng.standard_normal(N).astype(dtype) for _ in range(k)]


def _mul_vjp() -> Any:
    vjp = PRIMITIVES["mul"].vjp
    assert vjp is not None
    return vjp


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("owned", [True, False])
def test_a_result_is_added_to_its_sum(owned: bool) -> None:
    g, x, y, acc = _arrays(4)
    kept = acc.copy()
    gx, gy = _mul_vjp()(g, None, x, y)
    done = parallel.run_into(_mul_vjp(), (g, None, x, y), {}, [None, (acc, owned)])
    assert done is not None
    (rx, ry), fused = done
    assert fused == [1]
    assert _same(rx, gx) and _same(ry, kept + gy)
    assert (ry is acc) is owned  # in place only into a sum the caller owns
    assert ry.base is None  # a new sum is its own array: .grad takes it without a copy
    assert _same(acc, kept + gy if owned else kept)


@pytest.mark.usefixtures("two_threads")
def test_a_result_that_later_steps_read_is_still_right() -> None:
    g, acc = _arrays(2)
    kept = acc.copy()

    def rule(a: Any) -> tuple[Any, Any]:
        t = a * 2.0
        return t, t + 1.0

    done = parallel.run_into(rule, (g,), {}, [(acc, True), (None)])
    assert done is not None
    (first, second), fused = done
    assert fused == [0] and first is acc
    assert _same(first, kept + g * 2.0) and _same(second, g * 2.0 + 1.0)


@pytest.mark.usefixtures("two_threads")
def test_what_cannot_be_added_in_the_job_is_handed_back() -> None:
    g, x, y, acc = _arrays(4)
    gx, gy = _mul_vjp()(g, None, x, y)
    wide = numpy.zeros(2 * N, dtype="float32")
    frozen = acc.copy()
    frozen.flags.writeable = False
    for target in [
        (acc.astype("float64"), True),  # another dtype: _fit casts first
        (acc.reshape(1, N), True),  # another shape
        (wide[::2], False),  # strided
        (frozen, True),  # read-only
    ]:
        done = parallel.run_into(_mul_vjp(), (g, None, x, y), {}, [None, target])
        assert done is not None
        (rx, ry), fused = done
        assert fused == [] and _same(rx, gx) and _same(ry, gy)
    add = PRIMITIVES["add"].vjp
    assert add is not None
    done = parallel.run_into(add, (g, None, x, y), {}, [(acc, True), (acc, True)])
    assert done is not None and done[1] == [] and done[0][0] is g  # handed on, not computed

    def twice(a: Any) -> tuple[Any, Any]:
        t = a * 3.0
        return t, t

    done = parallel.run_into(twice, (g,), {}, [(acc, True), None])
    assert done is not None and done[1] == [] and done[0][0] is done[0][1]
    assert parallel.run_into(lambda a: (a**2,), (g,), {}, [(acc, True)]) is None  # untraced
    assert parallel.run_into(_mul_vjp(), (g[:10], None, x[:10], y[:10]), {}, [None, None]) is None


def _passes(build: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``build()`` forward and backward, on 1 and 2 threads: the same bits; sums fused on 2."""
    fused: list[int] = []
    real = parallel.run_into

    def spy(*args: Any) -> Any:
        done = real(*args)
        if done is not None:
            fused.extend(done[1])
        return done

    results = []
    for threads in (1, 2):
        before = parallel.get_num_threads()
        parallel.set_num_threads(threads)
        monkeypatch.setattr(parallel, "run_into", spy)
        try:
            results.append(build())
        finally:
            monkeypatch.undo()
            parallel.set_num_threads(before)
    assert fused, "no gradient was added in its rule's job"
    for a, b in zip(*results, strict=True):
        assert type(b) is numpy.ndarray and _same(a, b)


def _leaves(k: int) -> list[Any]:
    return [engine.tensor(a, requires_grad=True) for a in _arrays(k, seed=11)]


def test_a_weight_used_by_many_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    def build() -> list[Any]:
        x, w, b = _leaves(3)
        y = x
        for _ in range(3):
            y = ((y * w + b).sin() / 2.0 - b).cos()
        y.sum().backward()
        return [w.grad.data, b.grad.data, x.grad.data]

    _passes(build, monkeypatch)


def test_an_op_that_uses_one_input_twice_adds_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    def build() -> list[Any]:
        (x,) = _leaves(1)
        a = x * 1.5
        c = a * a  # both edges reach a's node, which already has sin's gradient
        s = a.sin()
        (c + s).sum().backward()
        return [x.grad.data]

    _passes(build, monkeypatch)


def test_a_gradient_shared_by_two_sums_is_not_written_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def build() -> list[Any]:
        x, w = _leaves(2)
        r = x * w
        q = x + w  # add's rule hands one array to both x and w
        (r + q.sin()).sum().backward()
        return [x.grad.data, w.grad.data]

    _passes(build, monkeypatch)


def test_functional_grad_with_retained_and_requested_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def build() -> list[Any]:
        x, w = _leaves(2)
        h = x * w
        h.retain_grad()
        y = (h * w).exp() * w
        gw, gh = autograd.grad(y.sum(), [w, h], retain_graph=True)
        y.sum().backward(inputs=[w])
        assert gw is not None and gh is not None
        return [gw.data, gh.data, w.grad.data]

    _passes(build, monkeypatch)


@pytest.mark.usefixtures("two_threads")
def test_rules_given_metas_are_traced_once_per_shape_and_dtype(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node that keeps no inputs hands its rule a new Meta each time: the recipe is still
    found by the Meta's shape and dtype, and a Meta of another dtype gets its own."""
    from engine.graph import Meta

    g, x, y = _arrays(3)
    sub = PRIMITIVES["sub"].vjp
    assert sub is not None
    traced: list[Any] = []
    real = trace._record

    def spy(*args: Any) -> Any:
        traced.append(args[0])
        return real(*args)

    monkeypatch.setattr(trace, "_record", spy)
    for a, b in [(x, y), (y, x), (x, y.astype("float64"))]:
        ga, gb = parallel.run(sub, (g, None, Meta(a), Meta(b)), {})
        assert _same(ga, g) and _same(gb, -g)
    assert len(traced) <= 2  # the float64 Meta is another kind; the second call found the first


def _deferring(build: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``build()`` on 1 and 2 threads: the same bits; some sum left to a later job on 2."""
    left: list[Any] = []
    real = parallel.add_later

    def spy(*args: Any) -> Any:
        total = real(*args)
        if total is not None:
            left.append(total)
        return total

    results = []
    for threads in (1, 2):
        before = parallel.get_num_threads()
        parallel.set_num_threads(threads)
        monkeypatch.setattr(parallel, "add_later", spy)
        try:
            results.append(build())
        finally:
            monkeypatch.undo()
            parallel.set_num_threads(before)
    assert left, "no sum was left to a later job"
    for a, b in zip(*results, strict=True):
        assert type(b) is numpy.ndarray and _same(a, b)


def test_a_sum_left_to_the_next_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    def build() -> list[Any]:
        x, w = _leaves(2)
        t = x * 2.0
        s1 = t + w  # older: its rule hands its gradient to t, which has sin's already
        s2 = t.sin()
        (s1.exp() + s2).sum().backward()
        return [x.grad.data, w.grad.data]

    _deferring(build, monkeypatch)


def test_a_sum_left_waiting_is_done_before_a_rule_that_is_not_elementwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def build() -> list[Any]:
        x, w = _leaves(2)
        t = engine.softmax(x * 1e-3, dim=0)  # its rule computes with its gradient at once
        s1 = t + w  # older: hands its gradient to t, which has sin's already
        s2 = t.sin()
        (s1.exp() + s2).sum().backward()
        return [x.grad.data, w.grad.data]

    _deferring(build, monkeypatch)


def test_a_sum_left_waiting_is_done_before_a_broadcast_gradient_is_summed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def build() -> list[Any]:
        x, w = _leaves(2)
        u = engine.tensor(numpy.ones(1, dtype="float32"), requires_grad=True)
        q = x * 2.0 + u  # add's rule hands q's gradient to u: summed over N (_fit)
        r1 = q + w  # older: hands its gradient to q, which has sin's already
        r2 = q.sin()
        (r1.exp() + r2).sum().backward()
        return [x.grad.data, w.grad.data, u.grad.data]

    _deferring(build, monkeypatch)


def test_a_sum_left_waiting_is_done_before_a_rule_that_runs_on_split_views(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def build() -> list[Any]:
        x, w = _leaves(2)
        t = x.abs() ** 1.5  # pow's rule is not traced: it runs on Split views
        s1 = t + w
        s2 = t.sin()
        (s1.exp() + s2).sum().backward()
        return [x.grad.data, w.grad.data]

    _deferring(build, monkeypatch)


@pytest.mark.usefixtures("two_threads")
def test_sums_left_waiting_are_done_by_flush_and_dropped_on_error() -> None:
    a, b, c = _arrays(3)
    kept = a.copy()
    with parallel.Deferred():
        total = parallel.add_later(a, b, True)
        other = parallel.add_later(c, b, False)
        assert total is a and other is not None and other is not c
        assert _same(a, kept)  # not yet
        parallel.flush()
        assert _same(a, kept + b) and _same(other, c + b)
    assert parallel.add_later(a, b, True) is None  # outside the block: done at once
    fresh = a.copy()
    with pytest.raises(KeyError), parallel.Deferred():
        parallel.add_later(a, b, True)
        raise KeyError
    assert _same(a, fresh)
    for fn in (lambda v: numpy.where(v > 0, v, 0), lambda v: v.sum()):  # not traced
        fresh = a.copy()
        with parallel.Deferred():
            assert parallel.add_later(a, b, True) is a
            got = parallel.run(fn, (a,), {})
            assert _same(numpy.asarray(got), numpy.asarray(fn(fresh + b)))
    fresh = a.copy()
    with parallel.Deferred():
        assert parallel.add_later(a, b, True) is a
        assert parallel.run(numpy.negative, (a[:9],), {}) is None  # too small: done here
        assert _same(a, fresh + b)  # so what waited is done first
    bigger = numpy.ones(N + parallel.CHUNK, dtype="float32")
    fresh = a.copy()
    with parallel.Deferred():
        assert parallel.add_later(a, b, True) is a
        parallel.run(numpy.negative, (bigger,), {})  # another size: what waits runs first
        assert _same(a, fresh + b)
        expected = fresh + b
        for _ in range(parallel.MAX_ADDS):  # at most so many wait: the last one runs them
            assert parallel.add_later(a, b, True) is a
            expected = expected + b
        assert _same(a, expected)
    untraced = lambda v: (v**2,)
    for fn, args in [(_mul_vjp(), (c[:9], None, c[:9], c[:9])), (untraced, (c,))]:
        fresh = a.copy()
        with parallel.Deferred():
            assert parallel.add_later(a, b, True) is a
            assert parallel.run_into(fn, args, {}, [None, None]) is None
            assert _same(a, fresh + b)
    fresh = a.copy()
    with parallel.Deferred():
        assert parallel.add_later(a, b.astype("float64"), True) is None
        assert parallel.add_later(a[:10], b[:10], True) is None
        assert parallel.add_later(a, b, True) is a
    assert _same(a, fresh + b)  # leaving the block did it


@pytest.mark.usefixtures("two_threads")
def test_a_nested_block_leaves_the_additions_to_the_outer_one() -> None:
    a, b = _arrays(2)
    fresh = a.copy()
    with parallel.Deferred():
        with parallel.Deferred():
            assert parallel.add_later(a, b, True) is a
        assert _same(a, fresh)
    assert _same(a, fresh + b)
