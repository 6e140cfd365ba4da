"""An undo log for the engine's in-place mutations, so a batch of commands can roll back.

Every place in the engine that mutates existing state (a tensor's values, version, grad,
flags; a node's saved buffers) calls ``record`` with a closure that undoes it. Outside a
transaction the call costs one attribute read. A session's names, rebound by most commands
of a batch, keep their own log of (name, previous tensor) instead: no closure per binding.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class _Journal(threading.local):
    entries: list[Callable[[], None]] | None = None


_JOURNAL = _Journal()


def active() -> bool:
    return _JOURNAL.entries is not None


def record(undo: Callable[[], None]) -> None:
    """Remember how to undo a mutation that is about to happen (no-op outside a transaction)."""
    entries = _JOURNAL.entries
    if entries is not None:
        entries.append(undo)


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """Run the block atomically: when it raises, every recorded mutation is undone."""
    outer = _JOURNAL.entries
    entries: list[Callable[[], None]] = []
    _JOURNAL.entries = entries
    try:
        yield
    except BaseException:
        for undo in reversed(entries):
            undo()
        raise
    finally:
        _JOURNAL.entries = outer
    if outer is not None:
        outer.extend(entries)
