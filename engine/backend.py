"""The array backend: NumPy always, CuPy where a device is a GPU.

This is the only module that imports cupy. Every op takes its namespace from its arrays
(``xp_of``), so each rule is written once for both backends.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy

from engine.errors import InvalidArgument, ResourceExhausted

try:  # pragma: no cover - exercised on GPU machines only
    import cupy

    _cupy: ModuleType | None = cupy
except Exception:
    _cupy = None

Array = Any  # numpy.ndarray or cupy.ndarray


def gpu_available() -> bool:
    """Whether CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return bool(_cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:
        return False


def parse_device(device: str | None) -> str:
    """Normalise a device string: "cpu", "cuda" or "cuda:N"."""
    if device is None or device == "cpu":
        return "cpu"
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not gpu_available():
            raise InvalidArgument(f"device {device!r} requested but no CUDA GPU is available")
        return "cuda:0" if device == "cuda" else device
    raise InvalidArgument(
        f"Expected one of cpu, cuda device type at start of device string: {device}"
    )


def xp_for(device: str) -> ModuleType:
    """The array namespace that holds arrays of ``device``."""
    if device == "cpu":
        return numpy
    assert _cupy is not None
    return _cupy


def xp_of(array: Array) -> ModuleType:
    """The array namespace an array belongs to."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy
    return numpy


def device_of(array: Array) -> str:
    """The device string of an array."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return f"cuda:{array.device.id}"
    return "cpu"


def to_numpy(array: Array) -> numpy.ndarray:
    """A host copy (or the array itself when it already lives on the host)."""
    if isinstance(array, numpy.ndarray):
        return array
    return array.get()


def on_device(device: str) -> contextlib.AbstractContextManager[None]:
    """Make ``device`` current for array creation, mapping GPU OOM to ResourceExhausted."""
    if device == "cpu":
        return _OOM_AS_RESOURCE_EXHAUSTED
    return _on_gpu(device)


@contextlib.contextmanager
def _on_gpu(device: str) -> Iterator[None]:
    assert _cupy is not None
    with _cupy.cuda.Device(int(device.split(":")[1])), _OOM_AS_RESOURCE_EXHAUSTED:
        yield


class _OomAsResourceExhausted:
    """Out of memory, on the host or a GPU, raised as ResourceExhausted. A class without
    state, not a ``contextlib`` generator: one instance serves every CPU batch."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc_type is None:
            return
        if issubclass(exc_type, MemoryError):
            raise ResourceExhausted(f"out of memory: {exc}") from exc
        if _cupy is not None and isinstance(exc, _cupy.cuda.memory.OutOfMemoryError):
            raise ResourceExhausted(f"GPU out of memory: {exc}") from exc


_OOM_AS_RESOURCE_EXHAUSTED = _OomAsResourceExhausted()


def pool_bytes() -> int:
    """Bytes held by the CuPy memory pool (0 without a GPU)."""
    if not gpu_available():
        return 0
    assert _cupy is not None
    return int(_cupy.get_default_memory_pool().used_bytes())


def synchronize() -> None:
    """Wait for queued GPU work to finish (timings of CuPy code need it; no-op on the CPU)."""
    if gpu_available():
        assert _cupy is not None
        _cupy.cuda.Device().synchronize()


# glibc's allocator, when it is the process's: None elsewhere (musl, macOS).
_LIBC = None
if ctypes.util.find_library("c") == "libc.so.6":
    try:
        _LIBC = ctypes.CDLL("libc.so.6")
    except OSError:
        _LIBC = None
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_host_allocator(keep_bytes: int = 256 << 20, mmap_bytes: int = 32 << 20) -> bool:
    """Let glibc keep up to ``keep_bytes`` of freed heap for reuse; map only larger blocks.

    By default glibc gives a freed multi-megabyte array back to the kernel, so the next one
    of the same size faults its pages in again: a 1M-element chain ran 1.75x slower for it
    (bench/RESULTS.md, "host allocator"). Sessions closing call ``release_host_memory``.
    Returns whether the settings took (glibc only); call it once, at process start.
    """
    if _LIBC is None:
        return False
    mapped = _LIBC.mallopt(_M_MMAP_THRESHOLD, mmap_bytes)
    kept = _LIBC.mallopt(_M_TRIM_THRESHOLD, keep_bytes)
    return bool(mapped and kept)


def release_host_memory() -> None:
    """Give freed memory back: glibc's free heap to the kernel, CuPy's cached blocks, the
    free blocks of ``HOST_BLOCKS``."""
    HOST_BLOCKS.release()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    if _cupy is not None and gpu_available():
        _cupy.get_default_memory_pool().free_all_blocks()


class HostBlocks:
    """Large host arrays kept for the next one of the same size, as glibc keeps small ones.

    glibc maps every block over its mmap threshold (32 MiB: ``tune_host_allocator``) afresh
    and unmaps it when freed, so each large array written from scratch (a ``.npy`` upload)
    faults its pages in again: twice the time of writing warm memory, and, where the kernel
    compacts memory for a huge page, ten times more now and then (bench/RESULTS.md, service,
    perf-http4). ``empty`` hands out a view of a kept block; a block is free again once no
    view of it is alive (every view holds its block: NumPy sets a view's base to the array
    that owns the memory). At most ``keep_bytes`` are kept, in use or free; past that,
    ``empty`` allocates as NumPy does. ``release`` drops the free ones.
    """

    def __init__(self, min_bytes: int = 32 << 20, keep_bytes: int = 256 << 20) -> None:
        self.min_bytes = min_bytes
        self.keep_bytes = keep_bytes
        self._blocks: list[numpy.ndarray] = []
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype: numpy.dtype[Any]) -> numpy.ndarray:
        """A new C-ordered array, its memory its own (``holds`` says so) until it dies."""
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < self.min_bytes:
            return numpy.empty(shape, dtype)
        with self._lock:
            block = self._take(nbytes)
        if block is None:  # past the bound: an array of NumPy's own, adopted as it is
            return numpy.empty(shape, dtype)
        return block.view(dtype).reshape(shape)

    def holds(self, array: numpy.ndarray) -> bool:
        """Whether ``array`` is a whole block that ``empty`` handed out."""
        base = array.base
        return (
            type(base) is numpy.ndarray
            and base.nbytes == array.nbytes
            and any(block is base for block in self._blocks)
        )

    def release(self) -> None:
        with self._lock:
            self._blocks = [block for block in self._blocks if _refs(block) > _FREE_REFS]

    def _take(self, nbytes: int) -> numpy.ndarray | None:
        """A free block of ``nbytes``, a new one kept, or None where none may be kept."""
        for block in self._blocks:
            if block.nbytes == nbytes and _refs(block) <= _FREE_REFS:
                return block
        held = sum(block.nbytes for block in self._blocks)
        if held + nbytes > self.keep_bytes:  # make room: the free ones go
            self._blocks = [block for block in self._blocks if _refs(block) > _FREE_REFS]
            held = sum(block.nbytes for block in self._blocks)
        if held + nbytes > self.keep_bytes:
            return None
        block = numpy.empty(nbytes, numpy.uint8)
        _no_huge_pages(block)
        self._blocks.append(block)
        return block


_MADV_NOHUGEPAGE = 15
_PAGE = 4096


def _no_huge_pages(block: numpy.ndarray) -> None:
    """Small pages for a new block (NumPy asks for huge ones past 4 MiB). Where the kernel
    compacts memory to find a huge page, the first write of a 64 MiB block took 170-215 ms
    instead of 15; small pages take 34 ms, and a block is written from scratch only once."""
    if _LIBC is None:
        return
    start = -(-block.ctypes.data // _PAGE) * _PAGE
    end = (block.ctypes.data + block.nbytes) // _PAGE * _PAGE
    if end > start:
        _LIBC.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_NOHUGEPAGE)


def _refs(block: numpy.ndarray) -> int:
    return sys.getrefcount(block)


def _free_refs() -> int:
    """What ``_refs`` says of a block with no view alive, read as ``HostBlocks`` reads them:
    in a loop over a list of blocks (the list, the loop's name, the arguments)."""
    for block in [numpy.empty(1, numpy.uint8)]:
        return _refs(block)
    raise AssertionError


_FREE_REFS = _free_refs()


HOST_BLOCKS = HostBlocks()
