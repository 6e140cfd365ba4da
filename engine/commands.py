"""The command vocabulary both frontends speak: plain, serializable data.

``engine.parsing`` turns a JSON-like dict into one of the commands below (validating shapes of
fields, never touching a session); ``engine.session`` executes them. A command is a named
tuple: immutable, picklable, and built without an ``__init__`` frame, which counts in a
batch of thousands. A tensor reference is a name, or ``{"grad_of": name}`` for that
tensor's ``.grad``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

# Matched with ``fullmatch``: ``$`` would also accept a trailing newline ("%1\n").
AUTO_NAME = re.compile(r"%[0-9]{1,18}")  # server-chosen names: never a client's name
FACTORIES = (
    "tensor", "arange", "zeros", "ones", "full", "empty", "eye", "linspace", "rand", "randn",
    "zeros_like", "ones_like", "full_like",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Ref:
    """A tensor of the session, or its ``.grad`` when ``grad`` is set."""

    name: str
    grad: bool = False

    def __str__(self) -> str:
        return f"{self.name}.grad" if self.grad else self.name


NO_ATTRS: Mapping[str, Any] = MappingProxyType({})  # shared: a command is never changed


class Create(NamedTuple):
    """A new tensor from data or a factory (``arange``, ``randn`` from the session's RNG, ...)."""

    factory: str = "tensor"
    args: Sequence[Any] = ()
    data: Any = None
    dtype: str | None = None
    requires_grad: bool = False
    name: str | None = None

    @property
    def kind(self) -> str:
        return "create"


class Op(NamedTuple):
    """Apply a registered op to inputs (refs, scalars, lists of refs) with attributes."""

    op: str
    inputs: Sequence[Any] = ()
    attrs: Mapping[str, Any] = NO_ATTRS
    name: str | None = None
    names: list[str] | None = None
    no_grad: bool = False

    @property
    def kind(self) -> str:
        return "op"


class Backward(NamedTuple):
    tensor: Ref
    gradient: Ref | None = None
    retain_graph: bool | None = None
    create_graph: bool = False
    inputs: list[Ref] | None = None

    @property
    def kind(self) -> str:
        return "backward"


class Grad(NamedTuple):
    """Functional gradients; results are bound to ``names`` (server-chosen when absent)."""

    outputs: list[Ref]
    inputs: list[Ref]
    grad_outputs: list[Ref] | None = None
    retain_graph: bool | None = None
    create_graph: bool = False
    allow_unused: bool = False
    names: list[str] | None = None

    @property
    def kind(self) -> str:
        return "grad"


class Detach(NamedTuple):
    tensor: Ref
    name: str | None = None

    @property
    def kind(self) -> str:
        return "detach"


class ZeroGrad(NamedTuple):
    """Zero the grads of ``tensors`` in place, or drop them with ``set_to_none``."""

    tensors: list[Ref]
    set_to_none: bool = False

    @property
    def kind(self) -> str:
        return "zero_grad"


class RequiresGrad(NamedTuple):
    tensor: Ref
    requires_grad: bool = True

    @property
    def kind(self) -> str:
        return "requires_grad"


class RetainGrad(NamedTuple):
    tensor: Ref

    @property
    def kind(self) -> str:
        return "retain_grad"


class Get(NamedTuple):
    """Read a tensor: metadata always, and its value, grad and repr when asked."""

    tensor: Ref
    value: bool = False
    grad: bool = False
    repr: bool = False

    @property
    def kind(self) -> str:
        return "get"


class Release(NamedTuple):
    names: list[str]

    @property
    def kind(self) -> str:
        return "release"


Command = (
    Create | Op | Backward | Grad | Detach | ZeroGrad | RequiresGrad | RetainGrad | Get | Release
)

KINDS: dict[str, type[Command]] = {
    "create": Create, "op": Op, "backward": Backward, "grad": Grad, "detach": Detach,
    "zero_grad": ZeroGrad, "requires_grad": RequiresGrad, "retain_grad": RetainGrad,
    "get": Get, "release": Release,
}  # fmt: skip


FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset({"kind", *cls._fields}) for kind, cls in KINDS.items()
}
