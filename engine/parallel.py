"""Large elementwise work split into chunks over a small thread pool.

PyTorch runs an elementwise kernel on every core; NumPy runs a ufunc on one, but releases the
GIL inside it. A primitive registered with ``elementwise=True`` promises that its forward and
its VJP map same-shaped arrays element by element; on large C-contiguous NumPy arrays the
engine evaluates either one here, chunk by chunk, each chunk on whichever thread is free, and
copies each chunk's results into one preallocated array while they are still in cache.

A chunk starts at a multiple of ``CHUNK`` elements, a multiple of NumPy's SIMD widths and of
its 8192-element ufunc buffer, so every element goes through the same inner loops as in one
whole-array call: results are bit-identical to the serial call.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy

MIN_SIZE = 1 << 17  # elements; below this, waking a thread costs more than it saves
CHUNK = 1 << 16  # elements per chunk: 256 KiB of float32 stays in L2 until it is copied out
_PROBE = 16  # elements the function first runs on, to learn the layout of its results

_threads = os.cpu_count() or 1
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_local = threading.local()  # ``in_worker``: no chunking inside a chunk


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
            _pool = ThreadPoolExecutor(_threads - 1, thread_name_prefix="engine-parallel")
        return _pool


def _shape(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[int, ...] | None:
    """The one shape of the array arguments when chunking applies to them, else None."""
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
    if shape is None or any(hasattr(v, "shape") for v in kwargs.values()):
        return None
    return shape


def map_chunks(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)`` computed chunk by chunk on the pool, or None when that won't do.

    ``fn`` returns an array, or a tuple of arrays and Nones (a VJP). Arguments that are not
    arrays (scalars, None, shape records) are passed to every chunk whole. Nothing is done and
    None is returned for one thread, small or differently shaped or strided arrays, an array
    among ``kwargs``, or results that are not shaped like the arguments.
    """
    if _threads < 2 or getattr(_local, "in_worker", False):
        return None
    shape = _shape(args, kwargs)
    if shape is None:
        return None
    size = int(numpy.prod(shape))
    if size < MIN_SIZE:
        return None
    flat = [a.reshape(-1) if isinstance(a, numpy.ndarray) else a for a in args]
    pieces = [a[:_PROBE] if isinstance(a, numpy.ndarray) else a for a in flat]
    probe = fn(*pieces, **kwargs)
    single = not isinstance(probe, tuple)
    results: list[Any] = []  # one per output: None, an argument passed through, or a new array
    writes: list[tuple[int, numpy.ndarray]] = []  # (output index, flat view to fill)
    for j, r in enumerate((probe,) if single else probe):
        if r is None:
            results.append(None)
        elif any(r is p for p in pieces):
            results.append(args[next(i for i, p in enumerate(pieces) if r is p)])
        elif isinstance(r, numpy.ndarray) and r.shape == (min(_PROBE, size),):
            out = numpy.empty(shape, dtype=r.dtype)
            results.append(out)
            writes.append((j, out.reshape(-1)))
        else:
            return None
    if writes:
        _run(fn, flat, kwargs, writes, size)
    return results[0] if single else tuple(results)


def _run(
    fn: Callable[..., Any],
    flat: list[Any],
    kwargs: dict[str, Any],
    writes: list[tuple[int, numpy.ndarray]],
    size: int,
) -> None:
    n_chunks = -(-size // CHUNK)
    counter = itertools.count()  # next() on it is atomic under the GIL
    failed = False

    def work() -> None:
        nonlocal failed
        _local.in_worker = True
        try:
            while not failed:
                i = next(counter)
                if i >= n_chunks:
                    return
                lo, hi = i * CHUNK, min((i + 1) * CHUNK, size)
                r = fn(*[a[lo:hi] if isinstance(a, numpy.ndarray) else a for a in flat], **kwargs)
                if not isinstance(r, tuple):
                    r = (r,)
                for j, dest in writes:
                    dest[lo:hi] = r[j]
        except BaseException:
            failed = True
            raise
        finally:
            _local.in_worker = False

    pool = _workers()
    futures: list[Future[None]] = [pool.submit(work) for _ in range(min(_threads, n_chunks) - 1)]
    errors: list[BaseException] = []
    try:
        work()
    except BaseException as exc:
        errors.append(exc)
    for f in futures:  # every chunk is written (or abandoned) before anyone reads the outputs
        exc = f.exception()
        if exc is not None:
            errors.append(exc)
    if errors:
        raise errors[0]
