"""A cheap upper bound on the bytes any one session can hold, to skip the exact count.

The exact count (``Session.bytes_held``) walks every tensor and graph node a session keeps:
after a batch of a thousand commands it costs as much as a third of the batch's own work.
But a session can only hold memory the process has allocated. When everything the process
has allocated is under the session's limit, the session is too, and the walk is not needed.

The bound adds up, from the allocators themselves:
- glibc's heap in use (``mallinfo2``: arena chunks and mapped blocks), where NumPy allocates
  array buffers;
- Python's small-object blocks (at most 512 bytes each), where an array may view the memory
  of a small ``bytes`` object;
- the CuPy memory pool's blocks in use, where GPU arrays live.
The engine's arrays own buffers from these allocators or view Python objects; none maps a
file.

Where glibc's ``malloc`` is not the allocator (musl, macOS, a preloaded jemalloc) there is no
bound and the walk always runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from typing import Any

from engine.backend import pool_bytes

# Python's object allocator serves requests of up to this many bytes (Objects/obmalloc.c).
_SMALL_REQUEST_MAX = 512


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mallinfo2() -> Callable[[], _Mallinfo2] | None:
    """glibc's ``mallinfo2`` (2.33 and later), if glibc's ``malloc`` is the process's."""
    if ctypes.util.find_library("c") != "libc.so.6":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
        process = ctypes.CDLL(None)  # what the process's own calls resolve to
    except (OSError, AttributeError):
        return None
    # A preloaded allocator (jemalloc, tcmalloc) takes malloc over: glibc's heap says nothing.
    if _address(process.malloc) != _address(libc.malloc):
        return None
    fn.restype = _Mallinfo2
    fn.argtypes = []
    return fn  # type: ignore[no-any-return]


def _address(fn: Any) -> int | None:
    return ctypes.cast(fn, ctypes.c_void_p).value


_MALLINFO2 = _mallinfo2()


def process_bytes_bound() -> int | None:
    """At least the bytes of every array alive in the process; None where unknown."""
    if _MALLINFO2 is None:
        return None
    heap = _MALLINFO2()
    small = sys.getallocatedblocks() * _SMALL_REQUEST_MAX
    return int(heap.uordblks + heap.hblkhd) + small + pool_bytes()
