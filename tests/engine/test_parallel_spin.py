"""Waits that poll memory without the GIL (engine/_spin.c) and the thread team that uses them.

The team must give the same results and the same guarantees (every chunk finished before a
call returns, errors after every chunk ran) with polling workers and with blocking ones, the
fallback where the C module was not built.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest

from engine import parallel
from tests.engine.test_parallel import _chain, _same

spin: Any = pytest.importorskip("engine._spin")


def _word() -> tuple[numpy.ndarray, int]:
    words = numpy.zeros(2, dtype=numpy.int64)
    return words, words.ctypes.data


def test_wait_change_times_out_on_an_unchanged_word_and_stores_first() -> None:
    words, address = _word()
    words[0] = 7
    start = time.perf_counter()
    assert spin.wait_change(address, 7, 2_000_000, 0, address + 8, 42) is False
    assert time.perf_counter() - start >= 0.002
    assert words[1] == 42
    assert spin.wait_change(address, 8, 0, 0, 0, 0) is True  # already another value


def test_wait_equal_times_out_or_sees_the_value() -> None:
    words, address = _word()
    assert spin.wait_equal(address, 3, 1_000_000) is False
    words[0] = 3
    assert spin.wait_equal(address, 3, 1_000_000) is True


def test_waits_release_the_gil_while_they_poll() -> None:
    """A Python thread writes the word while another polls for it: it could not run if the
    poll held the GIL, and the poll would time out."""
    words, address = _word()

    def write() -> None:
        words[0] = 1
        time.sleep(0.01)
        words[0] = 2

    writer = threading.Thread(target=write)
    writer.start()
    assert spin.wait_equal(address, 2, 5_000_000_000)
    writer.join()
    assert spin.wait_change(address, 2, 0, 0, 0, 0) is False


@pytest.fixture(params=["polling", "blocking"])
def team_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Two threads whose worker polls (engine._spin), or blocks as where it is not built."""
    if request.param == "blocking":
        monkeypatch.setattr(parallel, "_spin", None)
    before = parallel.get_num_threads()
    parallel.set_num_threads(2)
    yield request.param
    parallel.set_num_threads(before)


def test_a_team_polls_only_where_the_module_is_and_each_thread_has_a_core(team_kind: str) -> None:
    team = parallel._get_team()
    cores = min(len(parallel.os.sched_getaffinity(0)), parallel.cpu_quota())
    assert (team.spin is not None) == (team_kind == "polling" and cores >= 2)


def test_a_team_over_its_cgroups_cpu_quota_does_not_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "cpu_quota", lambda: 1.5)  # docker run --cpus=1.5
    before = parallel.get_num_threads()
    parallel.set_num_threads(2)
    try:
        assert parallel._get_team().spin is None
    finally:
        parallel.set_num_threads(before)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000\n", math.inf), ("200000 100000\n", 2.0), ("150000 100000", 1.5), ("", math.inf)],
)
def test_the_cpu_quota_is_read_from_cgroup_v2(tmp_path: Path, text: str, cpus: float) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert parallel.cpu_quota(str(path)) == cpus
    assert parallel.cpu_quota(str(tmp_path / "absent")) == math.inf


def test_a_whole_pass_matches_one_thread_bit_for_bit(team_kind: str) -> None:
    values_1, grads_1 = _chain(1)
    values_2, grads_2 = _chain(2)
    for a, b in zip(values_1 + grads_1, values_2 + grads_2, strict=True):
        assert _same(a, b)


@pytest.mark.parametrize("wait_ns", [0, 300_000, 10_000_000_000])
def test_a_call_returns_only_after_the_workers_last_chunk(
    team_kind: str, wait_ns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's chunk outlasts the caller's poll (0, 0.3 ms: it blocks then) or not."""
    monkeypatch.setattr(parallel, "WAIT_NS", wait_ns)
    caller = threading.get_ident()
    worker_started = threading.Event()
    finished: list[int] = []

    def chunk(lo: int, hi: int, scratch: dict[Any, Any]) -> None:
        if threading.get_ident() == caller:
            worker_started.wait(timeout=5)  # leave a chunk to the worker
        else:
            worker_started.set()
            time.sleep(0.02)
        finished.append(lo)

    for _ in range(3):
        finished.clear()
        worker_started.clear()
        parallel.run_chunks(chunk, 4 * parallel.CHUNK)
        assert sorted(finished) == [0, parallel.CHUNK, 2 * parallel.CHUNK, 3 * parallel.CHUNK]


@pytest.mark.parametrize("pause", [0.0, 0.01])
def test_jobs_in_a_row_or_after_the_worker_went_to_sleep(
    team_kind: str, pause: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Back to back, a polling worker takes the next job without a wake-up; after a pause
    longer than its poll it blocks, and the bell wakes it."""
    monkeypatch.setattr(parallel, "SPIN_NS", 1_000_000)
    x = numpy.linspace(-1, 1, parallel.MIN_SIZE * 3, dtype="float32")
    expected = numpy.exp(numpy.cos(x) * 0.5)
    for _ in range(10):
        got = parallel.run(lambda a: numpy.exp(numpy.cos(a) * 0.5), (x,), {})
        assert _same(expected, got)
        time.sleep(pause)


def test_a_polling_worker_leaves_when_its_team_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "SPIN_NS", 60_000_000_000)  # it would poll for a minute
    before = parallel.get_num_threads()
    parallel.set_num_threads(2)
    try:
        team = parallel._get_team()
        if team.spin is None:
            pytest.skip("fewer cores than threads: this team blocks")
        parallel.run_chunks(lambda lo, hi, scratch: None, 2 * parallel.CHUNK)
        deadline = time.monotonic() + 5
        while team.words[1] != team.generation and time.monotonic() < deadline:
            time.sleep(0.001)  # until the worker polls: it tells the job it saw
        assert team.words[1] == team.generation
        threads = [w.thread for w in team.workers]
    finally:
        parallel.set_num_threads(before)  # stops the team
    for t in threads:
        t.join(timeout=5)
        assert not t.is_alive()
