"""Parsing: a JSON-like dict into one of the commands of ``engine.commands``, its fields
validated, never touching a session. ``parse`` reads the common op command in one pass and
hands anything else to ``parse_any``, the general parser (tests/engine/test_parse_hot_path.py
compares them); ``parse_batch`` gives a failing command's index.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from engine.commands import (
    AUTO_NAME,
    FACTORIES,
    FIELDS,
    KINDS,
    NO_ATTRS,
    Backward,
    Command,
    Create,
    Detach,
    Get,
    Grad,
    Op,
    Ref,
    Release,
    RequiresGrad,
    RetainGrad,
    ZeroGrad,
)
from engine.dtypes import NUMBERS, dtype_from_name
from engine.errors import EngineError, InvalidArgument

_new = tuple.__new__
_ABSENT: Any = object()

# Names validated once, and Refs to them (a Ref is immutable): a batch names the same few
# tensors over and over. Cleared when full, so a stream of distinct names cannot grow them.
_REFS: dict[str, Ref] = {}
_NAMES: set[str] = set()
_CACHE_MAX = 4096


def check_name(name: Any) -> str:
    # ASCII identifiers are exactly [A-Za-z_][A-Za-z0-9_]*: no regex needed.
    if not (type(name) is str and name.isascii() and name.isidentifier() and len(name) <= 64):
        raise InvalidArgument(
            f"invalid tensor name {name!r}: use 1-64 letters, digits or underscores, not "
            "starting with a digit"
        )
    return name


def _remember(name: str) -> None:
    if len(_NAMES) >= _CACHE_MAX:
        _NAMES.clear()
    _NAMES.add(name)


def _ref_name(name: Any) -> str:
    if isinstance(name, str) and AUTO_NAME.fullmatch(name):
        return name
    return check_name(name)


def parse_ref(value: Any) -> Ref:
    if type(value) is str:
        ref = _REFS.get(value)
        if ref is None:
            ref = Ref(_ref_name(value))
            if len(_REFS) >= _CACHE_MAX:
                _REFS.clear()
            _REFS[value] = ref
        return ref
    if isinstance(value, dict) and set(value) == {"grad_of"}:
        return Ref(_ref_name(value["grad_of"]), grad=True)
    raise InvalidArgument(f"expected a tensor name or {{'grad_of': name}}, got {value!r}")


def parse_input(value: Any, nested: bool = False) -> Any:
    """A ref, a Python scalar, or a list of them (for ``cat`` and ``stack``)."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, list):
        if nested:
            raise InvalidArgument("an input list cannot contain another list")
        return [parse_input(v, nested=True) for v in value]
    return parse_ref(value)


def _bool(body: dict[str, Any], key: str, default: bool | None) -> Any:
    value = body.get(key)
    if value is None:  # absent or null: the default
        return default
    if not isinstance(value, bool):
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
    checked = [check_name(n) for n in names]
    if len(set(checked)) != len(checked):
        raise InvalidArgument(f"'names' must be distinct, got {checked}")
    return checked


def _refs(body: dict[str, Any], key: str, required: bool = True) -> list[Ref] | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidArgument(f"'{key}' is required")
        return None
    if not isinstance(value, list):
        value = [value]
    if required and not value:
        raise InvalidArgument(f"'{key}' cannot be empty")
    return [parse_ref(v) for v in value]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _factory_args(factory: str, args: list[Any]) -> Sequence[Any]:
    """Check a factory's positional arguments: sizes, numbers, and a tensor for ``*_like``."""
    n = len(args)
    if factory == "tensor":
        if args:
            raise InvalidArgument("the 'tensor' factory takes 'data', not 'args'")
        return ()
    if factory.endswith("_like"):
        want = 2 if factory == "full_like" else 1
        if n != want:
            raise InvalidArgument(
                f"{factory} expects {'a tensor and a fill value' if want == 2 else 'a tensor'}"
                f", got {n} argument(s)"
            )
        if want == 2 and not isinstance(args[1], bool | int | float):
            raise InvalidArgument(f"{factory}: the fill value must be a number, got {args[1]!r}")
        return [parse_ref(args[0]), *args[1:]]
    if factory in ("zeros", "ones", "empty", "rand", "randn"):
        size = args[0] if n == 1 and isinstance(args[0], list) else args
        _check_size(factory, size)
        return args
    if factory == "full":
        if n != 2:
            raise InvalidArgument(f"full expects a size and a fill value, got {n} argument(s)")
        _check_size(factory, args[0] if isinstance(args[0], list) else [args[0]])
        if not isinstance(args[1], bool | int | float):
            raise InvalidArgument(f"full: the fill value must be a number, got {args[1]!r}")
        return args
    if factory == "eye":
        if not 1 <= n <= 2 or not all(_is_int(a) for a in args):
            raise InvalidArgument(f"eye expects n and optionally m (integers), got {args!r}")
        return args
    bounds = {"arange": (1, 3), "linspace": (3, 3)}[factory]
    if not bounds[0] <= n <= bounds[1] or not all(_is_number(a) and math.isfinite(a) for a in args):
        usage = "end, or start, end[, step]" if factory == "arange" else "start, end, steps"
        raise InvalidArgument(f"{factory} expects finite numbers ({usage}), got {args!r}")
    if factory == "linspace" and not _is_int(args[2]):
        raise InvalidArgument(f"linspace: steps must be an integer, got {args[2]!r}")
    return args


def _check_size(factory: str, size: list[Any]) -> None:
    if not all(_is_int(d) for d in size):
        raise InvalidArgument(f"{factory}: sizes must be integers, got {size!r}")


def parse_batch(bodies: Any, prepare: Callable[[Any], Any] | None = None) -> list[Command]:
    """Parse a batch; a bad command's error carries its index as ``command_index``.

    ``prepare`` turns each body into what ``parse`` takes first (a frontend decoding the
    tensor payloads of its wire format, say); its errors carry the index too.
    """
    if not isinstance(bodies, list):
        raise InvalidArgument(f"a batch must be a list of commands, got {type(bodies).__name__}")
    commands: list[Command] = []
    append = commands.append
    try:
        if prepare is None:
            for body in bodies:
                append(parse(body))
        else:
            for body in bodies:
                append(parse(prepare(body)))
    except EngineError as exc:
        exc.command_index = len(commands)  # the commands before it parsed
        raise
    return commands


def parse(body: Any) -> Command:
    """Validate one command given as a dict with a ``kind`` field."""
    # The hot path of a batch: an op of one or two inputs, each a name seen before or a
    # number, binding a name seen before or none, and no other field. Anything else, or
    # anything wrong, is the general parser's (which says what is wrong).
    if type(body) is dict and type(kind := body.get("kind")) is str and kind == "op":
        op = body.get("op")
        inputs = body.get("inputs")
        name = body.get("name")
        if (
            type(op) is str
            and type(inputs) is list
            and len(body) == (3 if name is None else 4)
            and (name is None or (type(name) is str and name in _NAMES))
        ):
            n = len(inputs)
            if n == 1:
                a = inputs[0]
                a = a if type(a) in NUMBERS else _REFS.get(a) if type(a) is str else None
                if a is not None:
                    return _new(Op, (op, [a], NO_ATTRS, name, None, False))  # type: ignore[no-any-return]
            elif n == 2:
                a, b = inputs
                a = a if type(a) in NUMBERS else _REFS.get(a) if type(a) is str else None
                b = b if type(b) in NUMBERS else _REFS.get(b) if type(b) is str else None
                if a is not None and b is not None:
                    return _new(Op, (op, [a, b], NO_ATTRS, name, None, False))  # type: ignore[no-any-return]
    return parse_any(body)


def parse_any(body: Any) -> Command:
    """``parse`` without its hot path: every command, and the errors of every bad one."""
    if not isinstance(body, dict):
        raise InvalidArgument(f"a command must be an object, got {type(body).__name__}")
    kind = body.get("kind")
    entry = _PARSERS.get(kind) if type(kind) is str else None
    if entry is None:
        raise InvalidArgument(f"unknown command kind {kind!r}; expected one of {sorted(KINDS)}")
    known, parser = entry
    if not known.issuperset(body):
        unknown = [k for k in body if k not in known]
        raise InvalidArgument(f"unknown field(s) {sorted(map(repr, unknown))} for command '{kind}'")
    return parser(body)


def _parse_op(body: dict[str, Any]) -> Op:
    # The hot path of a batch: plain names and scalars are taken in one pass.
    op = body.get("op")
    if type(op) is not str:
        raise InvalidArgument("'op' must be the name of an op")
    inputs = body.get("inputs", _ABSENT)
    if type(inputs) is list:
        # Most ops take one or two inputs: taken without a comprehension's frame.
        n = len(inputs)
        if n == 2:
            a, b = inputs
            inputs = [
                a if type(a) in NUMBERS else (type(a) is str and _REFS.get(a)) or parse_input(a),
                b if type(b) in NUMBERS else (type(b) is str and _REFS.get(b)) or parse_input(b),
            ]
        elif n == 1:
            a = inputs[0]
            inputs = [
                a if type(a) in NUMBERS else (type(a) is str and _REFS.get(a)) or parse_input(a)
            ]
        else:
            inputs = [
                v if type(v) in NUMBERS else (type(v) is str and _REFS.get(v)) or parse_input(v)
                for v in inputs
            ]
    elif inputs is _ABSENT:
        inputs = []
    else:
        raise InvalidArgument("'inputs' must be a list")
    attrs = body.get("attrs", _ABSENT)
    if attrs is _ABSENT:
        attrs = NO_ATTRS
    elif not isinstance(attrs, dict) or not all(isinstance(k, str) for k in attrs):
        raise InvalidArgument("'attrs' must be an object")
    name = body.get("name")
    if name is not None and (type(name) is not str or name not in _NAMES):
        _remember(check_name(name))
    names = body.get("names")
    if names is not None:
        if name is not None:
            raise InvalidArgument("give 'name' or 'names', not both")
        names = _names(body)
    no_grad = body.get("no_grad")
    if no_grad is not None and no_grad is not True and no_grad is not False:
        _bool(body, "no_grad", False)
    return _new(Op, (op, inputs, attrs, name, names, no_grad is True))  # type: ignore[no-any-return]


def _parse_create(body: dict[str, Any]) -> Create:
    factory = body.get("factory", "tensor")
    if not isinstance(factory, str) or factory not in FACTORIES:
        raise InvalidArgument(f"unknown factory {factory!r}; expected one of {list(FACTORIES)}")
    args = body.get("args", [])
    if not isinstance(args, list):
        raise InvalidArgument("'args' must be a list")
    if factory == "tensor" and "data" not in body:
        raise InvalidArgument("'data' is required to create a tensor from data")
    if factory != "tensor" and "data" in body:
        raise InvalidArgument(f"'data' is only for the 'tensor' factory, not '{factory}'")
    dtype = body.get("dtype")
    if dtype is not None and not isinstance(dtype, str):
        raise InvalidArgument("'dtype' must be a string")
    dtype_from_name(dtype)  # raises for an unknown dtype
    return Create(
        factory=factory,
        args=_factory_args(factory, args),
        data=body.get("data"),
        dtype=dtype,
        requires_grad=_bool(body, "requires_grad", False),
        name=_optional_name(body),
    )


def _parse_backward(body: dict[str, Any]) -> Backward:
    gradient = body.get("gradient")
    return Backward(
        tensor=parse_ref(body.get("tensor")),
        gradient=None if gradient is None else parse_ref(gradient),
        retain_graph=_bool(body, "retain_graph", None),
        create_graph=_bool(body, "create_graph", False),
        inputs=_refs(body, "inputs", required=False),
    )


def _parse_grad(body: dict[str, Any]) -> Grad:
    return Grad(
        outputs=_refs(body, "outputs") or [],
        inputs=_refs(body, "inputs") or [],
        grad_outputs=_refs(body, "grad_outputs", required=False),
        retain_graph=_bool(body, "retain_graph", None),
        create_graph=_bool(body, "create_graph", False),
        allow_unused=_bool(body, "allow_unused", False),
        names=_names(body),
    )


def _parse_detach(body: dict[str, Any]) -> Detach:
    return Detach(tensor=parse_ref(body.get("tensor")), name=_optional_name(body))


def _parse_zero_grad(body: dict[str, Any]) -> ZeroGrad:
    return ZeroGrad(
        tensors=_refs(body, "tensors") or [], set_to_none=_bool(body, "set_to_none", False)
    )


def _parse_requires_grad(body: dict[str, Any]) -> RequiresGrad:
    return RequiresGrad(
        tensor=parse_ref(body.get("tensor")), requires_grad=_bool(body, "requires_grad", True)
    )


def _parse_retain_grad(body: dict[str, Any]) -> RetainGrad:
    return RetainGrad(tensor=parse_ref(body.get("tensor")))


def _parse_get(body: dict[str, Any]) -> Get:
    return Get(
        tensor=parse_ref(body.get("tensor")),
        value=_bool(body, "value", False),
        grad=_bool(body, "grad", False),
        repr=_bool(body, "repr", False),
    )


def _parse_release(body: dict[str, Any]) -> Release:
    names = body.get("names")
    if not isinstance(names, list):
        raise InvalidArgument("'names' must be a list of tensor names")
    released = [_ref_name(n) for n in names]
    if len(set(released)) != len(released):
        raise InvalidArgument(f"'names' must be distinct, got {released}")
    return Release(names=released)


_PARSE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "create": _parse_create, "op": _parse_op, "backward": _parse_backward,
    "grad": _parse_grad, "detach": _parse_detach, "zero_grad": _parse_zero_grad,
    "requires_grad": _parse_requires_grad, "retain_grad": _parse_retain_grad,
    "get": _parse_get, "release": _parse_release,
}  # fmt: skip
# Each kind's fields and parser, found with one lookup.
_PARSERS = {kind: (FIELDS[kind], parser) for kind, parser in _PARSE.items()}
