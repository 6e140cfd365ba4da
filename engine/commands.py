"""The command vocabulary both frontends speak: plain, serializable data.

``parse`` turns a JSON-like dict into one of the command dataclasses below (validating
shapes of fields, never touching a session); ``engine.session`` executes them. A tensor
reference is a name, or ``{"grad_of": name}`` for that tensor's ``.grad``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.errors import InvalidArgument

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
AUTO_NAME = re.compile(r"^%[0-9]{1,18}$")  # server-chosen names: never a client's name
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


Scalar = bool | int | float
Input = Ref | Scalar | list[Any]


@dataclass(slots=True)
class Create:
    """A new tensor from data or a factory (``arange``, ``randn`` from the session's RNG, ...)."""
    kind: ClassVar[str] = "create"

    factory: str = "tensor"
    args: list[Any] = field(default_factory=list)
    data: Any = None
    dtype: str | None = None
    requires_grad: bool = False
    name: str | None = None


@dataclass(slots=True)
class Op:
    """Apply a registered op to inputs (refs, scalars, lists of refs) with attributes."""
    kind: ClassVar[str] = "op"

    op: str
    inputs: list[Any] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    names: list[str] | None = None
    no_grad: bool = False


@dataclass(slots=True)
class Backward:
    kind: ClassVar[str] = "backward"

    tensor: Ref
    gradient: Ref | None = None
    retain_graph: bool | None = None
    create_graph: bool = False
    inputs: list[Ref] | None = None


@dataclass(slots=True)
class Grad:
    """Functional gradients; results are bound to ``names`` (server-chosen when absent)."""
    kind: ClassVar[str] = "grad"

    outputs: list[Ref]
    inputs: list[Ref]
    grad_outputs: list[Ref] | None = None
    retain_graph: bool | None = None
    create_graph: bool = False
    allow_unused: bool = False
    names: list[str] | None = None


@dataclass(slots=True)
class Detach:
    kind: ClassVar[str] = "detach"

    tensor: Ref
    name: str | None = None


@dataclass(slots=True)
class ZeroGrad:
    """Zero the grads of ``tensors`` in place, or drop them with ``set_to_none``."""
    kind: ClassVar[str] = "zero_grad"

    tensors: list[Ref]
    set_to_none: bool = False


@dataclass(slots=True)
class RequiresGrad:
    kind: ClassVar[str] = "requires_grad"

    tensor: Ref
    requires_grad: bool = True


@dataclass(slots=True)
class RetainGrad:
    kind: ClassVar[str] = "retain_grad"

    tensor: Ref


@dataclass(slots=True)
class Get:
    """Read a tensor: metadata always, and its value, grad and repr when asked."""
    kind: ClassVar[str] = "get"

    tensor: Ref
    value: bool = False
    grad: bool = False
    repr: bool = False


@dataclass(slots=True)
class Release:
    kind: ClassVar[str] = "release"

    names: list[str]


Command = (
    Create | Op | Backward | Grad | Detach | ZeroGrad | RequiresGrad | RetainGrad | Get | Release
)

KINDS: dict[str, type] = {
    "create": Create, "op": Op, "backward": Backward, "grad": Grad, "detach": Detach,
    "zero_grad": ZeroGrad, "requires_grad": RequiresGrad, "retain_grad": RetainGrad,
    "get": Get, "release": Release,
}  # fmt: skip


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidArgument(
            f"invalid tensor name {name!r}: use 1-64 letters, digits or underscores, not "
            "starting with a digit"
        )
    return name


def _ref_name(name: Any) -> str:
    if isinstance(name, str) and AUTO_NAME.match(name):
        return name
    return check_name(name)


def parse_ref(value: Any) -> Ref:
    if isinstance(value, str):
        return Ref(_ref_name(value))
    if isinstance(value, dict) and set(value) == {"grad_of"}:
        return Ref(_ref_name(value["grad_of"]), grad=True)
    raise InvalidArgument(f"expected a tensor name or {{'grad_of': name}}, got {value!r}")


def parse_input(value: Any) -> Any:
    """A ref, a Python scalar, or a list of inputs (for ``cat`` and ``stack``)."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, list):
        return [parse_input(v) for v in value]
    return parse_ref(value)


def _bool(body: dict[str, Any], key: str, default: bool | None) -> Any:
    value = body.get(key, default)
    if value is not None and not isinstance(value, bool):
        raise InvalidArgument(f"'{key}' must be a boolean, got {value!r}")
    return value


def _optional_name(body: dict[str, Any]) -> str | None:
    name = body.get("name")
    return None if name is None else check_name(name)


def _names(body: dict[str, Any]) -> list[str] | None:
    names = body.get("names")
    if names is None:
        return None
    if not isinstance(names, list):
        raise InvalidArgument("'names' must be a list of tensor names")
    return [check_name(n) for n in names]


def _refs(body: dict[str, Any], key: str, required: bool = True) -> list[Ref] | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidArgument(f"'{key}' is required")
        return None
    if not isinstance(value, list):
        value = [value]
    return [parse_ref(v) for v in value]


def parse(body: Any) -> Command:
    """Validate one command given as a dict with a ``kind`` field."""
    if not isinstance(body, dict):
        raise InvalidArgument(f"a command must be an object, got {type(body).__name__}")
    kind = body.get("kind")
    if kind not in KINDS:
        raise InvalidArgument(f"unknown command kind {kind!r}; expected one of {sorted(KINDS)}")
    known = {"kind", *KINDS[kind].__dataclass_fields__}
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidArgument(f"unknown field(s) {unknown} for command '{kind}'")
    if kind == "create":
        factory = body.get("factory", "tensor")
        if factory not in FACTORIES:
            raise InvalidArgument(f"unknown factory {factory!r}; expected one of {list(FACTORIES)}")
        args = body.get("args", [])
        if not isinstance(args, list):
            raise InvalidArgument("'args' must be a list")
        if factory == "tensor" and "data" not in body:
            raise InvalidArgument("'data' is required to create a tensor from data")
        dtype = body.get("dtype")
        if dtype is not None and not isinstance(dtype, str):
            raise InvalidArgument("'dtype' must be a string")
        return Create(
            factory=factory,
            args=[parse_input(a) if isinstance(a, dict) else a for a in args],
            data=body.get("data"),
            dtype=dtype,
            requires_grad=_bool(body, "requires_grad", False),
            name=_optional_name(body),
        )
    if kind == "op":
        op = body.get("op")
        if not isinstance(op, str):
            raise InvalidArgument("'op' must be the name of an op")
        inputs = body.get("inputs", [])
        attrs = body.get("attrs", {})
        if not isinstance(inputs, list):
            raise InvalidArgument("'inputs' must be a list")
        if not isinstance(attrs, dict):
            raise InvalidArgument("'attrs' must be an object")
        return Op(
            op=op,
            inputs=[parse_input(v) for v in inputs],
            attrs=attrs,
            name=_optional_name(body),
            names=_names(body),
            no_grad=_bool(body, "no_grad", False),
        )
    if kind == "backward":
        gradient = body.get("gradient")
        return Backward(
            tensor=parse_ref(body.get("tensor")),
            gradient=None if gradient is None else parse_ref(gradient),
            retain_graph=_bool(body, "retain_graph", None),
            create_graph=_bool(body, "create_graph", False),
            inputs=_refs(body, "inputs", required=False),
        )
    if kind == "grad":
        return Grad(
            outputs=_refs(body, "outputs") or [],
            inputs=_refs(body, "inputs") or [],
            grad_outputs=_refs(body, "grad_outputs", required=False),
            retain_graph=_bool(body, "retain_graph", None),
            create_graph=_bool(body, "create_graph", False),
            allow_unused=_bool(body, "allow_unused", False),
            names=_names(body),
        )
    if kind == "detach":
        return Detach(tensor=parse_ref(body.get("tensor")), name=_optional_name(body))
    if kind == "zero_grad":
        return ZeroGrad(
            tensors=_refs(body, "tensors") or [], set_to_none=_bool(body, "set_to_none", False)
        )
    if kind == "requires_grad":
        return RequiresGrad(
            tensor=parse_ref(body.get("tensor")),
            requires_grad=_bool(body, "requires_grad", True),
        )
    if kind == "retain_grad":
        return RetainGrad(tensor=parse_ref(body.get("tensor")))
    if kind == "get":
        return Get(
            tensor=parse_ref(body.get("tensor")),
            value=_bool(body, "value", False),
            grad=_bool(body, "grad", False),
            repr=_bool(body, "repr", False),
        )
    names = body.get("names")
    if not isinstance(names, list):
        raise InvalidArgument("'names' must be a list of tensor names")
    return Release(names=[_ref_name(n) for n in names])
