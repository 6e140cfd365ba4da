"""Whether operations record a graph: thread-local, as in PyTorch."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class _GradMode(threading.local):
    enabled: bool = True


GRAD_MODE = _GradMode()


def is_grad_enabled() -> bool:
    return GRAD_MODE.enabled


@contextlib.contextmanager
def set_grad_enabled(mode: bool) -> Iterator[None]:
    """Record (True) or do not record (False) graphs inside the block, on this thread."""
    previous = GRAD_MODE.enabled
    GRAD_MODE.enabled = mode
    try:
        yield
    finally:
        GRAD_MODE.enabled = previous


def no_grad() -> contextlib.AbstractContextManager[None]:
    return set_grad_enabled(False)


def enable_grad() -> contextlib.AbstractContextManager[None]:
    return set_grad_enabled(True)
