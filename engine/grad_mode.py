"""Whether operations record a graph: thread-local, as in PyTorch."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import TracebackType


class _GradMode(threading.local):
    enabled: bool = True


GRAD_MODE = _GradMode()


def is_grad_enabled() -> bool:
    return GRAD_MODE.enabled


class set_grad_enabled:
    """Record (True) or do not record (False) graphs on this thread.

    As in PyTorch, the call itself switches the mode; used as a context manager, the block's
    end restores the previous one.
    """

    __slots__ = ("previous",)

    def __init__(self, mode: bool) -> None:
        self.previous = GRAD_MODE.enabled
        GRAD_MODE.enabled = mode

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        GRAD_MODE.enabled = self.previous


@contextlib.contextmanager
def _mode(mode: bool) -> Iterator[None]:
    previous = GRAD_MODE.enabled
    GRAD_MODE.enabled = mode
    try:
        yield
    finally:
        GRAD_MODE.enabled = previous


def no_grad() -> contextlib.AbstractContextManager[None]:
    """Do not record inside the block (also a decorator: ``@no_grad()``)."""
    return _mode(False)


def enable_grad() -> contextlib.AbstractContextManager[None]:
    """Record inside the block, even within ``no_grad`` (also a decorator)."""
    return _mode(True)
