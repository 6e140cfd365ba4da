"""Where the data plane runs a batch: a small, cheap op on the event loop, anything else on the
engine's threads, with the same outcome either way.

``finish`` runs on the thread that ran the batch, so each result says where it ran.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy
import pytest

from engine.errors import EngineError, NotFound
from engine.session import Result, Session
from service.config import Settings
from service.dataplane import DataPlane, _broadcast_numel, render

pytestmark = pytest.mark.anyio

LIMIT = 64  # inline_max_elements of these tests


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def _plane(**settings: Any) -> Iterator[DataPlane]:
    # A generous time bound: on a loaded machine a small op can take over the default 0.5 ms,
    # and these tests are about which path runs, not about the bound (tested on its own).
    defaults = {"inline_max_elements": LIMIT, "inline_max_seconds": 1.0}
    plane = DataPlane(Settings(**{**defaults, **settings}))
    try:
        yield plane
    finally:
        plane.shutdown()


@pytest.fixture
def plane() -> Iterator[DataPlane]:
    with _plane() as plane:
        yield plane


@pytest.fixture
def pooled_plane() -> Iterator[DataPlane]:
    """Every batch on the pool: the reference for the inline path."""
    with _plane(inline_max_elements=0) as plane:
        yield plane


SETUP: list[dict[str, Any]] = [
    {"kind": "create", "name": "x", "data": [0.5, -1.0, 2.0, 3.0], "requires_grad": True},
    {"kind": "create", "name": "col", "data": [[1.0], [2.0], [3.0]]},
    {"kind": "create", "name": "row", "data": [[1.0, 2.0, 3.0, 4.0]]},
    {"kind": "create", "name": "big", "factory": "ones", "args": [LIMIT + 1]},
    {"kind": "create", "name": "tall", "factory": "ones", "args": [LIMIT, 1]},
    {"kind": "create", "name": "wide", "factory": "ones", "args": [1, 2]},
    {"kind": "create", "name": "flag", "data": [True, False, True, False]},
    {"kind": "op", "op": "sum", "inputs": ["x"], "name": "s"},
    {"kind": "backward", "tensor": "s"},
]


def op(name: str, *inputs: Any, out: str = "y", **attrs: Any) -> dict[str, Any]:
    return {"kind": "op", "op": name, "inputs": list(inputs), "attrs": attrs, "name": out}


# Small enough for the loop: each is one elementwise op on at most LIMIT elements.
SMALL = [
    op("mul", "x", 1.5),
    op("add", 2, "x", alpha=3),
    op("sub", "col", "row"),  # broadcast to 3 x 4 = 12 elements
    op("where", "flag", "x", 0.0),
    op("clamp", "x", min=-0.5, max=2.5),
    op("mul", {"grad_of": "x"}, "x"),
    op("sin", "x", out="x"),  # rebinding a name
    {**op("exp", "x"), "no_grad": True},
    op("div", "x", "col"),  # broadcast to 3 x 4
    op("mul", "x", "col"),  # does not broadcast: an error, from the engine
    op("mul", "nope", 2),  # no such tensor
    op("mul", {"grad_of": "col"}, 2),  # no grad
    op("add", "x", "x", alpha="two"),  # a bad attribute
    op("maximum", "x"),  # too few inputs
]

# For the pool, whatever their cost would be.
LARGE = [
    op("mul", "big", 2),  # too many elements
    op("add", "tall", "wide"),  # small inputs, large broadcast: LIMIT x 2
    op("sum", "x"),  # not elementwise
    op("mul_", "col", 2),  # in place: not a primitive of its own
    {"kind": "get", "tensor": "x", "value": True},
    {"kind": "backward", "tensor": "s", "retain_graph": True},
]


async def _open(plane: DataPlane) -> Session:
    info = plane.create_session(seed=3)
    assert info.token is not None
    session = plane.session(info.id, info.token)
    await plane.submit(session, SETUP, lambda results: None)
    return session


def _where(results: list[Result]) -> tuple[str, list[Any]]:
    return threading.current_thread().name, [render(r) for r in results]


async def _run(plane: DataPlane, session: Session, commands: list[dict[str, Any]]) -> Any:
    """Where the batch ran and what it gave (or the error), then the session's state."""
    try:
        thread, results = await plane.submit(session, commands, _where)
        outcome: Any = results
    except EngineError as exc:
        thread, outcome = "raised", (type(exc).__name__, exc.code, exc.command_index, str(exc))
    return thread, outcome, _state(plane, session)


def _state(plane: DataPlane, session: Session) -> Any:
    names = sorted(session.tensors)
    gets = [{"kind": "get", "tensor": n, "value": True, "grad": True, "repr": True} for n in names]
    return [render(r) for r in plane.execute(session, gets)]


async def _warm(plane: DataPlane, session: Session) -> None:
    """One small op on the pool: it measures the session, so the next may run on the loop."""
    thread, _ = await plane.submit(session, [op("mul", "x", 1.0, out="warm")], _where)
    assert thread.startswith("engine")


@pytest.mark.parametrize("command", SMALL, ids=lambda c: f"{c['op']}{c['inputs']}")
async def test_a_small_op_runs_on_the_loop_as_on_the_pool(
    plane: DataPlane, pooled_plane: DataPlane, command: dict[str, Any]
) -> None:
    inline, pooled = await _open(plane), await _open(pooled_plane)
    await _warm(plane, inline)
    await _warm(pooled_plane, pooled)
    assert plane._is_small(inline, [command])
    thread, *outcome = await _run(plane, inline, [command])
    reference_thread, *reference = await _run(pooled_plane, pooled, [command])
    assert outcome == reference
    if thread != "raised":  # the loop's thread is this test's own
        assert (thread, reference_thread[:6]) == (threading.current_thread().name, "engine")


# What the engine parses and refuses: the pool reports it.
MALFORMED: list[Any] = [
    op("mul", ["x"], 2),
    op("clamp", "x", min=[0.0]),
    {"kind": "op", "op": "mul", "inputs": "x"},
    {"kind": "op", "op": "mul", "inputs": ["x", 2], "attrs": ["alpha"]},
    {"kind": "op", "op": "mul", "inputs": [{"grad_of": 3}, 2]},
    {"kind": "op", "op": "mul", "inputs": [{"name": "x"}, 2]},
    {"kind": "op", "op": "mul", "inputs": [None, 2]},
    {"kind": "op", "op": ["mul"], "inputs": ["x", 2]},
    {"kind": "nope"},
    "mul",
]


@pytest.mark.parametrize("command", MALFORMED, ids=str)
async def test_a_malformed_command_is_for_the_pool(plane: DataPlane, command: Any) -> None:
    session = await _open(plane)
    assert not plane._is_small(session, [command])


@pytest.mark.parametrize("command", LARGE, ids=lambda c: str(c.get("op", c["kind"])))
async def test_anything_else_runs_on_the_pool(plane: DataPlane, command: dict[str, Any]) -> None:
    session = await _open(plane)
    await _warm(plane, session)
    assert not plane._is_small(session, [command])
    thread, *_ = await _run(plane, session, [command])
    assert thread.startswith("engine")


async def test_batches_of_more_than_one_command_run_on_the_pool(plane: DataPlane) -> None:
    session = await _open(plane)
    await _warm(plane, session)
    thread, _ = await plane.submit(session, [op("mul", "x", 2), op("neg", "y")], _where)
    assert thread.startswith("engine")


async def test_a_batch_given_as_a_decoder_is_decoded_and_run_on_the_pool(
    plane: DataPlane,
) -> None:
    session = await _open(plane)
    await _warm(plane, session)
    decoded_on: list[str] = []

    def decode() -> list[dict[str, Any]]:
        decoded_on.append(threading.current_thread().name)
        return [op("mul", "x", 2)]

    thread, _ = await plane.submit(session, decode, _where)
    assert thread.startswith("engine") and decoded_on == [thread]


async def test_the_first_op_and_the_first_after_a_large_batch_are_measured_on_the_pool(
    plane: DataPlane,
) -> None:
    session = await _open(plane)
    small = [op("mul", "x", 2)]
    threads = [(await plane.submit(session, small, _where))[0] for _ in range(3)]
    assert threads[0].startswith("engine") and threads[1:] == [threading.current_thread().name] * 2
    chain = [op("sin", "y", out="y")] * 20  # a larger graph: the next op is measured again
    await plane.submit(session, chain, _where)
    threads = [(await plane.submit(session, small, _where))[0] for _ in range(2)]
    assert threads[0].startswith("engine") and threads[1] == threading.current_thread().name


async def test_a_small_op_measured_before_a_large_batch_ran_is_measured_again() -> None:
    """One engine thread runs, in order: a hold of the session, a small op (queued behind the
    hold), a larger batch. The small op reports its cost after the larger batch was submitted:
    that cost is stale once the batch has grown the graph."""
    with _plane(workers=1) as plane:
        session = await _open(plane)
        await _warm(plane, session)
        release = threading.Event()
        holder = asyncio.ensure_future(
            plane.call(session.id, _token(plane, session), lambda s: release.wait(10))
        )
        await asyncio.sleep(0.05)
        small = asyncio.ensure_future(plane.submit(session, [op("mul", "x", 2)], _where))
        await asyncio.sleep(0.05)
        chain = asyncio.ensure_future(plane.submit(session, [op("sin", "y", out="y")] * 20, _where))
        await asyncio.sleep(0.05)
        release.set()
        await holder
        assert (await small)[0].startswith("engine") and (await chain)[0].startswith("engine")
        thread, _ = await plane.submit(session, [op("mul", "x", 2)], _where)
        assert thread.startswith("engine")


async def test_a_session_slower_than_the_bound_stays_on_the_pool() -> None:
    with _plane(inline_max_seconds=0.0) as plane:
        session = await _open(plane)
        threads = {(await plane.submit(session, [op("mul", "x", 2)], _where))[0] for _ in range(3)}
        assert all(thread.startswith("engine") for thread in threads)


async def test_a_small_op_waits_on_the_pool_while_its_session_is_busy(plane: DataPlane) -> None:
    """A session that a pool thread holds (or will hold) never runs on the loop: the loop
    would wait for its lock. Other sessions keep running on the loop meanwhile."""
    busy, other = await _open(plane), await _open(plane)
    await _warm(plane, busy)
    await _warm(plane, other)
    release = threading.Event()

    def hold(session: Session) -> None:
        with session.lock:
            release.wait(10)

    holder = asyncio.ensure_future(plane.call(busy.id, _token(plane, busy), hold))
    await asyncio.sleep(0.05)
    waiting = asyncio.ensure_future(plane.submit(busy, [op("mul", "x", 2)], _where))
    await asyncio.sleep(0.05)  # it starts, and waits for the session on a pool thread
    for _ in range(3):  # the other session on the loop, at once, while `busy` is held
        thread, _ = await plane.submit(other, [op("mul", "x", 2)], _where)
        assert thread == threading.current_thread().name
    assert not waiting.done()
    release.set()
    await holder
    thread, _ = await waiting
    assert thread.startswith("engine")
    assert plane._pooled == {}


async def test_a_cancelled_call_that_never_started_releases_its_session() -> None:
    with _plane(workers=1) as plane:
        first, second = await _open(plane), await _open(plane)
        release = threading.Event()
        blocker = asyncio.ensure_future(
            plane.call(first.id, _token(plane, first), lambda s: release.wait(10))
        )
        queued = asyncio.ensure_future(plane.submit(second, [op("mul", "x", 2)], _where))
        await asyncio.sleep(0.05)
        assert set(plane._pooled) == {first, second}
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        release.set()
        await blocker
        assert plane._pooled == {}


async def test_session_info_and_close_go_through_the_pool(plane: DataPlane) -> None:
    session = await _open(plane)
    token = _token(plane, session)
    info = await plane.session_info(session.id, token)
    assert (info.id, info.tensors, info.token) == (session.id, len(SETUP) - 1, None)
    await plane.close_session(session.id, token)
    with pytest.raises(EngineError):
        plane.session(session.id, token)
    assert plane._pooled == {}


def _token(plane: DataPlane, session: Session) -> str:
    # The tests keep no token around: the session's own, read back for the calls that take it.
    return str(session._token)


@pytest.mark.parametrize(
    "shapes",
    [[()], [(3,)], [(2, 3), (3,)], [(4, 1), (1, 5)], [(2, 1, 3), (4, 1), ()], [], [(0, 3), (3,)]],
)
def test_broadcast_numel_is_numpy_s(shapes: list[tuple[int, ...]]) -> None:
    shape = numpy.broadcast_shapes(*shapes) if shapes else ()
    assert _broadcast_numel(shapes) == int(numpy.prod(shape))


def test_broadcast_numel_bounds_shapes_that_do_not_broadcast() -> None:
    # The engine refuses them at once; the bound only has to stay near their sizes.
    assert _broadcast_numel([(3,), (4,)]) == 4
    assert _broadcast_numel([(2, 3), (5, 1)]) == 15
    assert _broadcast_numel([(0,), (3,)]) == 3


async def test_an_unknown_session_fails_before_anything_runs(plane: DataPlane) -> None:
    start = time.perf_counter()
    with pytest.raises(EngineError) as caught:
        plane.session("0" * 32, "nope")
    assert caught.value.code == "unauthenticated" and time.perf_counter() - start < 1
    assert not isinstance(caught.value, NotFound)
