"""Large elementwise work on several threads: NumPy ufunc calls run chunk by chunk.

PyTorch runs an elementwise kernel on every core; NumPy runs a ufunc on one, but releases the
GIL inside it. A primitive registered with ``elementwise=True`` promises that its forward and
its VJP are made of elementwise array operations. On large C-contiguous NumPy arrays the
engine runs either one through ``run`` (a broadcast single value, such as the gradient of a
sum, counts as contiguous), which first traces the function (``engine.trace``):
it is called once on stand-ins that record its ufunc calls, and the recorded steps then run
chunk by chunk on a team of threads, each chunk through every step before the next chunk: a
rule such as tanh's ``g * (1 - y * y)`` is one job for the team instead of three (each job
costs a wake-up), its temporaries chunk-sized. A function that does anything else
(``where``, ``astype`` to another dtype, a power) runs on ``Split`` views instead, whose
``__array_ufunc__`` splits each ufunc call the same way. The rules stay plain array code;
the same code runs serially on small arrays, on CuPy, and on Tensors.

Chunks start at multiples of ``CHUNK`` elements, a multiple of NumPy's SIMD widths and of
its 8192-element ufunc buffer, so every element goes through the same inner loop, in the same
SIMD lane, as in one whole-array call: results are bit-identical to the serial ones.

The team is the calling thread and one pinned worker per other core. A job is published,
the worker woken if it sleeps, and the caller starts on the chunks at once; it waits only
for chunks a worker has taken, never for a worker that has not woken yet. Waking a sleeping
thread costs ~30 us of latency on the 2-vCPU VM, and ~17 us of the waker's own time; a
Python thread sleeps whenever it waits, for a job or for the GIL (a worker polling with
``os.sched_yield`` slept on the GIL instead). Where the optional C module ``engine._spin``
was built, a worker polls a word of memory without the GIL for a while after each job
(``SPIN_NS``), sees the next job of a chain at once, and takes the GIL only after the caller
let go of it in its first ufunc call (``SETTLE_NS``); the caller polls the same way for a
worker's last chunk (``WAIT_NS``). Each falls back to blocking when its time is up.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import queue
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy

try:
    from engine import _spin
except ImportError:  # built without a C compiler: the team blocks between jobs
    _spin = None  # type: ignore[assignment]

MIN_SIZE = 1 << 17  # elements; below this, waking a thread costs more than it saves
CHUNK = 1 << 17  # elements a thread takes at a time (measured best of 2**16 to 2**18)
Chunk = Callable[[int, int, dict[Any, Any]], None]  # computes elements lo:hi with its scratch
# With engine._spin (nanoseconds): a worker polls for the next job this long before it blocks
# (a chain of large ops publishes one every ~40 us); once it sees one it leaves the GIL to the
# caller this long (the caller holds it until its first ufunc call; a worker asking for it
# meanwhile would sleep on it: measured best of 0-24 us); the caller polls this long for the
# workers' last chunks (a chunk takes ~100 us) before it blocks. Short, and the poll offers
# its CPU to other threads every few microseconds: on a loaded machine polling must not take
# time from the thread it waits for (measured: no slower than blocking there).
SPIN_NS = 200_000
SETTLE_NS = 10_000
WAIT_NS = 150_000

_threads = os.cpu_count() or 1
_team: _Team | None = None
_team_lock = threading.Lock()
# Per thread, during a ``Split`` run: the outputs ``_call`` allocated, by id, so that results
# can be told from views of the caller's arrays.
_local = threading.local()


CPU_MAX = "/sys/fs/cgroup/cpu.max"  # cgroup v2: "max 100000", or "200000 100000" for 2 CPUs


def cpu_quota(path: str = CPU_MAX) -> float:
    """The CPUs this process's cgroup may use (``inf`` without a quota or a cgroup v2)."""
    try:
        with open(path) as f:
            quota, period = f.read().split()
        return math.inf if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return math.inf


def get_num_threads() -> int:
    """Threads (the caller's included) that large elementwise work is split over."""
    return _threads


def set_num_threads(n: int) -> None:
    """Split large elementwise work over ``n`` threads (1: never), as ``torch.set_num_threads``."""
    global _threads, _team
    if n < 1:
        raise ValueError(f"set_num_threads expects a positive integer, got {n}")
    with _team_lock:
        _threads = n
        if _team is not None:
            _team.stop()
            _team = None


class _Job:
    """``n`` chunks of work that the caller and the workers take from a shared counter.

    The threads take chunks until none is left, so a slower core (a busy neighbour, a vCPU
    that shares its core) simply takes fewer of them. ``chunk(lo, hi, scratch)`` computes
    elements ``lo:hi``; ``scratch`` is the thread's own dict for buffers it reuses from chunk
    to chunk, dropped with the job (kept, they would be memory that nothing visible holds).
    """

    __slots__ = (
        "bounds",
        "chunk",
        "claim",
        "done",
        "errors",
        "finished",
        "n",
        "numpy_errors",
        "waiter",
    )

    def __init__(self, chunk: Chunk, bounds: tuple[int, ...]) -> None:
        self.chunk = chunk
        self.bounds = bounds
        self.n = len(bounds) - 1
        self.claim = itertools.count()  # next() on it is atomic under the GIL
        self.done = itertools.count()
        self.finished: list[int] = []
        self.errors: dict[int, BaseException] = {}
        self.waiter: Any = None  # a held lock the caller blocks on, released by the last chunk
        self.numpy_errors = numpy.geterr()  # the caller's floating-point error handling

    def work(self) -> None:
        n, chunk, bounds = self.n, self.chunk, self.bounds
        scratch: dict[Any, Any] = {}
        while (i := next(self.claim)) < n:
            try:
                chunk(bounds[i], bounds[i + 1], scratch)
            except BaseException as exc:  # re-raised by the caller once every chunk is done
                self.errors[i] = exc
            self.finished.append(i)
            if next(self.done) == n - 1 and self.waiter is not None:
                self.waiter.release()


class _Worker:
    def __init__(self, team: _Team, slot: int, cpus: list[int]) -> None:
        self.team = team
        self.asleep = False
        self.bell: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.thread = threading.Thread(
            target=self._serve, args=(slot, cpus), name=f"engine-parallel-{slot}", daemon=True
        )
        self.thread.start()

    def _serve(self, slot: int, cpus: list[int]) -> None:
        _pin(slot, cpus)
        team = self.team
        numpy_errors = numpy.geterr()
        seen = 0  # the last job generation taken
        # Where this worker tells that it is done with job ``seen``: written once the GIL is
        # released, so that a caller polling for it takes the GIL without waiting.
        done = team.address + 8 * slot
        spin = team.spin
        while team.alive:
            if team.generation == seen:
                if spin is not None and spin.wait_change(
                    team.address, seen, SPIN_NS, SETTLE_NS, done, seen
                ):
                    continue
                self.asleep = True
                if team.generation == seen and team.alive:  # else a job came meanwhile
                    self.bell.get()
                self.asleep = False
                continue
            seen = team.generation
            job = team.job
            if job is not None:
                if job.numpy_errors != numpy_errors:
                    numpy_errors = job.numpy_errors
                    numpy.seterr(**numpy_errors)
                job.work()
                job = None  # keep no arrays alive while idle


def _pin(slot: int, cpus: list[int]) -> None:
    """Keep worker ``slot`` on the slot-th allowed CPU (the calling thread itself stays unpinned).

    Woken for each ufunc call, an unpinned worker was often placed on the waking thread's own
    CPU (Linux's wake-affine heuristic; seen on a 2-vCPU VM), and the two then took turns on
    one core while the other idled: the split ran slower than one thread. A pinned worker
    stays on its CPU, and the scheduler moves the caller off it.
    """
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[slot % len(cpus)]})


class _Team:
    """The calling thread and ``size - 1`` workers."""

    def __init__(self, size: int) -> None:
        self.alive = True
        self.job: _Job | None = None
        self.generation = 0
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        # Polling only pays where every thread has a core of its own: on fewer cores (or a
        # container's CPU quota below the team) a polling worker would hold up the thread it
        # waits for.
        self.spin = _spin if min(len(cpus), cpu_quota()) >= size else None
        # [0]: the generation, for workers that poll; [slot]: the last job worker slot is done with.
        self.words = numpy.zeros(size, dtype=numpy.int64)
        self.address: int = self.words.ctypes.data
        self.workers = [_Worker(self, slot, cpus) for slot in range(1, size)]

    def stop(self) -> None:
        self.alive = False
        self.generation += 1
        self.words[0] = self.generation  # a polling worker sees it and leaves
        for w in self.workers:
            w.bell.put(None)

    def run(self, chunk: Chunk, bounds: tuple[int, ...]) -> None:
        """Run ``chunk`` for each pair of consecutive ``bounds`` on the team; re-raise a failure."""
        job = _Job(chunk, bounds)
        self.job = job
        self.generation += 1
        self.words[0] = self.generation
        for w in self.workers:
            if w.asleep:
                w.asleep = False
                w.bell.put(None)
        try:
            job.work()
        finally:
            self.job = None
            self._wait(job)  # every chunk is written before anyone reads the output, even on error
        if job.errors:
            raise job.errors[min(job.errors)]

    def _wait(self, job: _Job) -> None:
        """Return once every chunk of ``job`` is finished (the caller's own are)."""
        if len(job.finished) < job.n and self.spin is not None:
            # A worker is done with the job once it tells this generation: every worker does,
            # the one that took no chunk too (it saw the job, or no job, and went on polling).
            for slot in range(1, len(self.workers) + 1):
                if not self.spin.wait_equal(self.address + 8 * slot, self.generation, WAIT_NS):
                    break
        _block(job)


def _block(job: _Job) -> None:
    """Return once every chunk of ``job`` is finished, blocking."""
    if len(job.finished) < job.n:
        waiter = threading.Lock()
        waiter.acquire()
        job.waiter = waiter
        if len(job.finished) < job.n:  # the last chunk's thread releases it, exactly once
            waiter.acquire()


def _get_team() -> _Team:
    global _team
    with _team_lock:
        if _team is None:
            _team = _Team(_threads)
        return _team


def _forget_team_in_child() -> None:
    global _team
    _team = None  # a forked child has none of the parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_team_in_child)


def run_chunks(chunk: Chunk, size: int) -> None:
    """``chunk(lo, hi, scratch)`` over ``range(size)`` in chunks, on the team; additions
    waiting (``add_later``) on as many elements are done first in each chunk."""
    adds: list[tuple[numpy.ndarray, ...]] | None = getattr(_local, "adds", None)
    if adds:
        if _local.adds_size != size:
            flush()
        else:
            chunk = _after_adds(list(adds), chunk)
            adds.clear()
    _get_team().run(chunk, _bounds(size))


def _after_adds(adds: list[tuple[numpy.ndarray, ...]], chunk: Chunk | None) -> Chunk:
    def both(lo: int, hi: int, scratch: dict[Any, Any]) -> None:
        for a, b, out in adds:
            numpy.add(a[lo:hi], b[lo:hi], out=out[lo:hi])
        if chunk is not None:
            chunk(lo, hi, scratch)

    return both


MAX_ADDS = 8  # additions waiting at most; each keeps its operands alive


class Deferred:
    """Within this, on this thread, ``add_later`` may leave an addition to the next job.

    A backward pass adds gradients that meet at a node (``add``'s rule hands one gradient to
    two inputs); an addition alone is a job of its own, a wake-up of the team. Left waiting,
    it runs in each chunk of the next job on as many elements, before that job's own work
    (the next rule usually reads the same gradient), with the same values. What reads arrays
    other than through ``run_chunks`` must call ``flush`` first; ``run`` and ``run_into`` do
    when they leave the work to their caller. Leaving the block flushes, except on an
    exception: the additions are then dropped with the pass. (A class, not a generator: it
    is entered once per backward pass, small ones included.)
    """

    __slots__ = ("outer",)

    def __enter__(self) -> None:
        self.outer = getattr(_local, "adds", None) is not None  # nested: the outer flushes
        if not self.outer:
            _local.adds = []

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if self.outer:
            return
        try:
            if kind is None:
                flush()
        finally:
            _local.adds = None


def add_later(a: Any, b: Any, owned: bool) -> Any:
    """``a + b`` (into ``a`` itself where ``owned``), computed with the next job, within
    ``Deferred``; None where that does not apply (the caller adds them itself)."""
    adds: list[tuple[numpy.ndarray, ...]] | None = getattr(_local, "adds", None)
    if (
        adds is None
        or type(a) is not numpy.ndarray
        or type(b) is not numpy.ndarray
        or a.dtype != b.dtype
        or a.shape != b.shape
        or not (a.flags.c_contiguous and b.flags.c_contiguous)
        or (owned and not a.flags.writeable)
        or _splittable((a, b)) is None
    ):
        return None
    if adds and _local.adds_size != a.size:
        flush()
    out = a if owned else numpy.empty_like(a)
    adds.append((a.reshape(-1), b.reshape(-1), out.reshape(-1)))
    _local.adds_size = a.size
    if len(adds) >= MAX_ADDS:
        flush()
    return out


def flush() -> None:
    """Do the additions ``add_later`` left waiting, now."""
    adds: list[tuple[numpy.ndarray, ...]] | None = getattr(_local, "adds", None)
    if adds:
        chunk = _after_adds(list(adds), None)
        adds.clear()
        _get_team().run(chunk, _bounds(_local.adds_size))


@functools.lru_cache(maxsize=64)
def _bounds(size: int) -> tuple[int, ...]:
    """Chunk starts, and the end.

    Equal chunks: tapering the last ones (2**15 elements for the last 2**18) to even out
    the threads' finish made the chain 5-17% slower: each chunk is one more GIL hand-over.
    """
    return (*range(0, size, CHUNK), size)


def _splittable(args: Sequence[Any]) -> tuple[int, ...] | None:
    """The one shape of the NumPy arrays among ``args`` when splitting applies, else None."""
    shape = None
    for a in args:
        if isinstance(a, numpy.ndarray):
            if shape is None:
                shape = a.shape
            elif a.shape != shape:
                return None  # broadcasting: a chunk of one is no chunk of the other
            if not a.flags.c_contiguous and any(a.strides):
                return None  # strided; but a broadcast value (a sum's gradient) splits
        elif hasattr(a, "__cuda_array_interface__"):
            return None
    if shape is None or _threads < 2 or math.prod(shape) < MIN_SIZE:
        return None
    return shape


def run(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)`` with its ufunc calls split over threads; None if that won't do.

    ``fn`` returns an array, or a tuple of arrays and Nones (a VJP). Arguments that are not
    arrays (scalars, None, shape records) are passed as they are. Nothing is done, and None
    is returned, for one thread, for small, differently shaped or strided arrays, or for an
    array among ``kwargs``.
    """
    shape = _splittable(args)
    if shape is None or any(hasattr(v, "shape") for v in kwargs.values()):
        flush()  # the caller computes on the arrays itself
        return None
    from engine import trace

    plan = trace.trace(fn, args, kwargs, shape)
    if plan is not None:
        return plan.execute()
    flush()  # a Split call may compute on the arrays serially
    return _run_split(fn, args, kwargs)


def run_into(
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    into: Sequence[tuple[Any, bool] | None],
) -> tuple[Any, list[int]] | None:
    """``run`` for a VJP whose gradients may each be added to a running sum in the same job.

    ``into`` has an entry for each gradient: None, or ``(acc, owned)``: the sum it is to be
    added to (in place where ``owned``). Returns the gradients, with ``acc + gradient`` in
    place of each one added, and the positions of those; None where ``run`` would return
    None or the function cannot be traced (the caller then adds them itself).
    """
    shape = _splittable(args)
    if shape is None or any(hasattr(v, "shape") for v in kwargs.values()):
        flush()
        return None
    from engine import trace

    plan = trace.trace(fn, args, kwargs, shape, into)
    if plan is None:
        flush()
        return None
    return plan.execute(), plan.fused


def _run_split(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    originals: dict[int, Any] = {}  # each Split view handed to fn -> the caller's array
    views = []
    for a in args:
        if isinstance(a, numpy.ndarray):
            view = a.view(Split)
            originals[id(view)] = a
            views.append(view)
        else:
            views.append(a)
    fresh: dict[int, weakref.ref[numpy.ndarray]] = {}
    _local.fresh = fresh
    try:
        result = fn(*views, **kwargs)
    finally:
        _local.fresh = None
    if isinstance(result, tuple):
        return tuple(_plain(r, originals, fresh) for r in result)
    return _plain(result, originals, fresh)


def _plain(
    value: Any, originals: dict[int, Any], fresh: dict[int, weakref.ref[numpy.ndarray]]
) -> Any:
    """A result as the caller would have had it from a serial call: no Split left."""
    if not isinstance(value, Split):
        return value
    if id(value) in originals:  # an argument passed through (``add``'s rule returns g, g)
        return originals[id(value)]
    base = value.base
    ref = fresh.get(id(base))
    if ref is not None and base is not None and ref() is base and base.shape == value.shape:
        return base  # an output ``_call`` allocated: the plain array itself, no view
    return value.view(numpy.ndarray)


class Split(numpy.ndarray):
    """A view whose elementwise ufunc calls run chunk by chunk on the thread team."""

    def __array_ufunc__(self, ufunc: numpy.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        arrays = [x.view(numpy.ndarray) if isinstance(x, Split) else x for x in inputs]
        out = kwargs.get("out")
        if method == "__call__" and ufunc.nout == 1 and kwargs.keys() <= {"out"}:
            dest = None if out is None else out[0]
            shape = _splittable(arrays if dest is None else [*arrays, dest])
            if shape is not None:
                if dest is None:
                    return _call(ufunc, arrays, shape, None).view(Split)
                _call(ufunc, arrays, shape, dest.view(numpy.ndarray))
                return dest  # ``a += b``: the Split view the caller holds
        if out is not None:
            kwargs["out"] = tuple(x.view(numpy.ndarray) if isinstance(x, Split) else x for x in out)
        result = getattr(ufunc, method)(*arrays, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return result.view(Split) if type(result) is numpy.ndarray else result


def _call(
    ufunc: numpy.ufunc, arrays: list[Any], shape: tuple[int, ...], out: numpy.ndarray | None
) -> numpy.ndarray:
    """``ufunc(*arrays)`` computed chunk by chunk, each into its slice of ``out`` (or a new one)."""
    flat = [a.reshape(-1) if isinstance(a, numpy.ndarray) else a for a in arrays]
    if out is None:
        # The output dtype as NumPy resolves it for these operands (Python numbers stay weak).
        probe = ufunc(*[a[:1] if isinstance(a, numpy.ndarray) else a for a in flat])
        out = numpy.empty(shape, dtype=probe.dtype)
        fresh = getattr(_local, "fresh", None)
        if fresh is not None:
            fresh[id(out)] = weakref.ref(out)
    dest = out.reshape(-1)
    size = dest.size

    def chunk(lo: int, hi: int, scratch: dict[Any, Any]) -> None:
        ufunc(*[a[lo:hi] if isinstance(a, numpy.ndarray) else a for a in flat], out=dest[lo:hi])

    run_chunks(chunk, size)
    return out
