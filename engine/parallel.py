"""Large elementwise work on several threads: NumPy ufunc calls split into chunks.

PyTorch runs an elementwise kernel on every core; NumPy runs a ufunc on one, but releases the
GIL inside it. A primitive registered with ``elementwise=True`` promises that its forward and
its VJP are made of elementwise array operations. On large C-contiguous NumPy arrays the
engine runs either one through ``run``: the array arguments become ``Split`` views, whose
``__array_ufunc__`` computes each ufunc call (operators included) chunk by chunk on the
thread pool, every chunk written straight into its slice of one output. The rules stay plain
array code; the same code runs serially on small arrays, on CuPy, and on Tensors.

Chunks start at multiples of ``CHUNK`` elements, a multiple of NumPy's SIMD widths and of
its 8192-element ufunc buffer, so every element goes through the same inner loop, in the same
SIMD lane, as in one whole-array call: results are bit-identical to the serial ones.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy

MIN_SIZE = 1 << 17  # elements; below this, waking a thread costs more than it saves
CHUNK = 1 << 17  # elements a thread takes at a time (measured best of 2**15 to 2**18)

_threads = os.cpu_count() or 1
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
# Per thread, during ``run``: the outputs ``_call`` allocated, by id, so that results can be
# told from views of the caller's arrays.
_local = threading.local()


def get_num_threads() -> int:
    """Threads (the caller's included) that large elementwise work is split over."""
    return _threads


def set_num_threads(n: int) -> None:
    """Split large elementwise work over ``n`` threads (1: never), as ``torch.set_num_threads``."""
    global _threads, _pool
    if n < 1:
        raise ValueError(f"set_num_threads expects a positive integer, got {n}")
    with _pool_lock:
        _threads = n
        if _pool is not None:
            _pool.shutdown(wait=False)
            _pool = None


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
            slots = itertools.count(1)
            _pool = ThreadPoolExecutor(
                _threads - 1,
                thread_name_prefix="engine-parallel",
                initializer=_pin,
                initargs=(cpus, slots),
            )
        return _pool


def _pin(cpus: list[int], slots: itertools.count[int]) -> None:
    """Keep worker ``i`` on the i-th allowed CPU (the calling thread itself stays unpinned).

    Woken for each ufunc call, an unpinned worker was often placed on the waking thread's own
    CPU (Linux's wake-affine heuristic; seen on a 2-vCPU VM), and the two then took turns on
    one core while the other idled: the split ran slower than one thread. A pinned worker
    stays on its CPU, and the scheduler moves the caller off it.
    """
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[next(slots) % len(cpus)]})


def _splittable(args: Sequence[Any]) -> tuple[int, ...] | None:
    """The one shape of the NumPy arrays among ``args`` when splitting applies, else None."""
    shape = None
    for a in args:
        if isinstance(a, numpy.ndarray):
            if shape is None:
                shape = a.shape
            elif a.shape != shape:
                return None  # broadcasting: a chunk of one is no chunk of the other
            if not a.flags.c_contiguous:
                return None
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
    if _splittable(args) is None or any(hasattr(v, "shape") for v in kwargs.values()):
        return None
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
    """A view whose elementwise ufunc calls run chunk by chunk on the thread pool."""

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
    """``ufunc(*arrays)`` computed chunk by chunk, each into its slice of ``out`` (or a new one).

    The threads take chunks from a shared counter until none is left, so a slower core (a
    busy neighbour, a vCPU that shares its core) simply takes fewer of them.
    """
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
    n_chunks = -(-size // CHUNK)
    counter = itertools.count()  # next() on it is atomic under the GIL
    errors = numpy.geterr()  # the caller's floating-point error handling, for every thread

    def work() -> None:
        with numpy.errstate(**errors):
            while (i := next(counter)) < n_chunks:
                lo, hi = i * CHUNK, min((i + 1) * CHUNK, size)
                parts = [a[lo:hi] if isinstance(a, numpy.ndarray) else a for a in flat]
                ufunc(*parts, out=dest[lo:hi])

    pool = _workers()
    futures: list[Future[None]] = [pool.submit(work) for _ in range(min(_threads, n_chunks) - 1)]
    try:
        work()
    finally:
        for f in futures:  # every chunk is written before anyone reads ``out``, even on error
            f.exception()
    for f in futures:
        f.result()
    return out
