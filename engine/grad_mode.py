"""Whether operations record a graph: thread-local, as in PyTorch."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import TracebackType


class _GradMode(threading.local):
    enabled: bool = True


GRAD_MODE = _GradMode()


class _Off:
    """How many threads have grad mode off.

    While none has, every thread records, and ``enabled()`` need not read the thread-local
    mode, which costs more than the rest of the test on every op. A thread that ends with
    the mode off leaves the count up: the test is then only slower.
    """

    __slots__ = ("threads",)

    def __init__(self) -> None:
        self.threads = 0


OFF = _Off()
_LOCK = threading.Lock()


def _switch(mode: bool) -> bool:
    """Set this thread's mode; return the previous one."""
    with _LOCK:
        previous = GRAD_MODE.enabled
        if previous != mode:
            GRAD_MODE.enabled = mode
            OFF.threads += -1 if mode else 1
    return previous


def is_grad_enabled() -> bool:
    return OFF.threads == 0 or GRAD_MODE.enabled


class set_grad_enabled:
    """Record (True) or do not record (False) graphs on this thread.

    As in PyTorch, the call itself switches the mode; used as a context manager, the block's
    end restores the previous one.
    """

    __slots__ = ("previous",)

    def __init__(self, mode: bool) -> None:
        self.previous = _switch(mode)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _switch(self.previous)


@contextlib.contextmanager
def _mode(mode: bool) -> Iterator[None]:
    previous = _switch(mode)
    try:
        yield
    finally:
        _switch(previous)


def no_grad() -> contextlib.AbstractContextManager[None]:
    """Do not record inside the block (also a decorator: ``@no_grad()``)."""
    return _mode(False)


def enable_grad() -> contextlib.AbstractContextManager[None]:
    """Record inside the block, even within ``no_grad`` (also a decorator)."""
    return _mode(True)
