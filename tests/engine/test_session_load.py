"""Sessions under load: many threads at once, and memory given back when tensors and
sessions go away."""

from __future__ import annotations

import gc
import os
import threading
import time
import tracemalloc
from collections.abc import Iterator

import numpy
import pytest

from engine import creation
from engine.errors import EngineError
from engine.parsing import parse_batch
from engine.session import SessionManager
from tests.engine.session_state import backward, create, get, op, open_session, run, value

THREADS = 32
ROUNDS = 100


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.fixture
def tracing() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


# ----- threads -----


def test_threads_lose_no_update_and_see_only_their_own_tensors() -> None:
    manager = SessionManager(sweep_interval=0.005)  # the sweeper runs throughout
    try:
        shared_id, shared_token = manager.create()
        run(
            manager.get(shared_id, shared_token),
            create("a", 0.0, dtype="float64"),
            create("b", 0.0, dtype="float64"),
        )
        failures: list[BaseException] = []
        start = threading.Barrier(THREADS)

        def worker(i: int) -> None:
            try:
                start.wait()
                own_id, own_token = manager.create(seed=i)
                mine = manager.get(own_id, own_token)
                run(
                    mine,
                    create("mine", [float(i)] * 4),
                    {"kind": "create", "factory": "randn", "args": [[2]], "name": "r"},
                )
                expected_r = creation.Generator(i).normal((2,), numpy.dtype("float32"))
                for k in range(ROUNDS):
                    # One command: an in-place add. Two commands: a read-modify-write that only
                    # stays exact when batches of one session never interleave.
                    manager.execute(
                        shared_id, shared_token, parse_batch([op(None, "add_", "a", 1)])
                    )
                    manager.execute(
                        shared_id,
                        shared_token,
                        parse_batch([op("t", "add", "b", 1), op(None, "copy_", "b", "t")]),
                    )
                    run(mine, op(None, "add_", "mine", 1.0))
                    assert value(mine, "mine").tolist() == [float(i + k + 1)] * 4
                    if k % 10 == 0:  # sessions come and go meanwhile
                        tmp_id, tmp_token = manager.create(ttl=0.5)  # expires during the test
                        manager.execute(tmp_id, tmp_token, parse_batch([create("x", [1.0, 2.0])]))
                numpy.testing.assert_array_equal(value(mine, "r"), expected_r)
                manager.close(own_id, own_token)
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in threads), "deadlock: threads still running"
        assert failures == []
        shared = manager.get(shared_id, shared_token)
        assert value(shared, "a").item() == THREADS * ROUNDS
        assert value(shared, "b").item() == THREADS * ROUNDS
    finally:
        manager.shutdown()


def test_one_session_runs_one_batch_at_a_time(manager: SessionManager) -> None:
    """A batch that fails in one thread never undoes another thread's batch."""
    session = open_session(manager)
    run(session, create("n", 0.0, dtype="float64"))
    errors: list[BaseException] = []

    def worker(fail: bool) -> None:
        for _ in range(100):
            try:
                batch = [op(None, "add_", "n", 1)] + ([get("missing")] if fail else [])
                run(session, *batch)
            except EngineError:
                pass
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads) and errors == []
    assert value(session, "n").item() == 400  # only the batches that succeeded count


# ----- memory -----


def test_release_close_and_expiry_give_memory_back(tracing: None) -> None:
    manager = SessionManager(sweep_interval=0.01)
    try:
        megabytes = [
            {
                "kind": "create",
                "factory": "randn",
                "args": [[250_000]],
                "requires_grad": True,
                "name": "x",
            },
            op("y", "exp", "x"),
            op("s", "sum", "y"),
            backward("s", retain_graph=True),  # x.grad, and exp's saved output
        ]
        base = traced()
        session = open_session(manager)
        run(session, *megabytes)
        assert session.bytes_held() == 3_000_004
        assert traced() - base > 3_000_000
        run(session, {"kind": "release", "names": ["x", "y", "s"]})
        assert session.bytes_held() == 0
        assert traced() - base < 100_000

        session_id, token = manager.create()
        run(manager.get(session_id, token), *megabytes)
        assert traced() - base > 3_000_000
        manager.close(session_id, token)
        assert traced() - base < 100_000

        # Long enough that the session outlives the count below on a loaded machine.
        session = open_session(manager, ttl=2.0)
        run(session, *megabytes)
        assert traced() - base > 3_000_000
        deadline = time.monotonic() + 10
        while not session.closed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.closed and manager.count() == 1
        assert traced() - base < 100_000
    finally:
        manager.shutdown()


def test_a_failed_batch_keeps_no_memory(tracing: None, manager: SessionManager) -> None:
    session = open_session(manager)
    run(session, create("x", [1.0, 2.0]))
    base = traced()
    for _ in range(3):
        with pytest.raises(EngineError):
            run(
                session,
                {"kind": "create", "factory": "zeros", "args": [[500_000]]},
                op(None, "add_", "x", 1.0),
                get("missing"),
            )
    assert traced() - base < 50_000


def _rss() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


SOAK = [
    {"kind": "create", "factory": "randn", "args": [[64]], "requires_grad": True, "name": "x"},
    op("y", "tanh", "x"),
    op("s", "sum", "y"),
    backward("s"),
    get("x", value=True, grad=True, repr=True),
]


@pytest.mark.slow
def test_soak_ten_thousand_sessions_without_growth() -> None:
    """Create, use and close 10,000 sessions: the first 1,000 and the last 1,000 retain
    nothing (tracemalloc), and the process does not grow in between (RSS)."""
    manager = SessionManager(sweep_interval=0.01)
    commands = parse_batch(SOAK)

    def cycle() -> None:
        session_id, token = manager.create()
        manager.execute(session_id, token, commands)
        manager.close(session_id, token)

    def traced_window(count: int) -> int:
        tracemalloc.start()
        try:
            base = traced()
            for _ in range(count):
                cycle()
            return traced() - base
        finally:
            tracemalloc.stop()

    try:
        started = time.thread_time()  # CPU time: the bound holds on a loaded machine too
        for _ in range(200):  # warm caches (imports, interned names) before measuring
            cycle()
        first = traced_window(1000)
        rss_first = _rss()
        for _ in range(7800):
            cycle()
        last = traced_window(1000)
        rss_last = _rss()
        assert manager.count() == 0
        assert first < 20_000 and last < 20_000, (first, last)  # < 20 bytes per session
        if rss_first is not None and rss_last is not None:
            assert rss_last - rss_first < 8 << 20, (rss_first, rss_last)
        assert time.thread_time() - started < 20
    finally:
        manager.shutdown()
