"""What the server returns, as the same types over HTTP and gRPC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to build, by the thousand
class TensorInfo:
    """What a command reports about one tensor (``name`` is ``x.grad`` for a grad)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    is_leaf: bool
    grad_fn: str | None
    has_grad: bool
    value: numpy.ndarray | None = None
    grad: numpy.ndarray | None = None
    repr: str | None = None


@dataclass(slots=True)
class CommandResult:
    """One command's result: the tensors it created or read; None for an unused gradient."""

    kind: str
    tensors: tuple[TensorInfo | None, ...]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session as the server describes it; ``token`` only when it was just created."""

    id: str
    device: str
    seed: int
    ttl_seconds: float
    tensors: int
    bytes_held: int
    token: str | None = None
