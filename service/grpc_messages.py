"""gradient.v1 messages to and from the engine's plain data: command dicts, results, sessions.

Decoding yields exactly the dicts ``engine.parsing.parse`` takes (the HTTP frontend sends
the same ones as JSON), so both wires share one validation. Proto3 cannot tell an empty
string or list from an absent one: empty names, ``names`` and ``grad_outputs`` mean "not
given". Attributes are ``Value`` trees that spell the HTTP API's JSON exactly (an ``integer``
is an int, a ``number`` a float, even when whole). The other direction, plain values to
messages, is ``service.wire``'s, which the client shares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.dtypes import DTYPES
from engine.errors import EngineError, InvalidArgument
from engine.session import Result, TensorInfo
from service import codec
from service.dataplane import SessionInfo
from service.errors import GENERIC_DETAIL, status_of
from service.gen.gradient.v1 import gradient_pb2 as pb
from service.wire import DTYPE_ENUMS, DTYPE_NAMES, tensor_message


def dtype_name(value: pb.DType, default: str | None) -> str | None:
    """The engine's dtype name for a DType enum value; ``default`` when unspecified."""
    if value == pb.DTYPE_UNSPECIFIED:
        return default
    if value not in DTYPE_NAMES:
        raise InvalidArgument(f"unknown dtype enum value {value}")
    return DTYPE_NAMES[value]


# ----- messages -> command dicts -----


def tensor_data(message: pb.TensorData, payload: bytes | memoryview | None = None) -> Any:
    """An array from TensorData (float32 when the dtype is unspecified); ``payload``, when
    given, stands for its ``data`` (``service.grpc_upload``)."""
    name = dtype_name(message.dtype, "float32")
    shape = tuple(message.shape)
    if any(n < 0 for n in shape):
        raise InvalidArgument(f"shape must be a list of non-negative integers, got {list(shape)}")
    try:
        raw = message.data if payload is None else payload
        return codec.from_bytes(raw, shape, DTYPES[str(name)])
    except ValueError as exc:  # a shape numpy cannot hold, e.g. [0, 2**62]
        raise InvalidArgument(f"invalid tensor shape {list(shape)}: {exc}") from exc


def ref(message: pb.TensorRef) -> Any:
    """A tensor reference as ``parse_ref`` takes it."""
    return {"grad_of": message.name} if message.grad else message.name


# What an op input or factory argument may be; the other kinds are for attributes only.
_INPUT_KINDS = ("tensor", "number", "integer", "boolean", "list")
_SCALAR_KINDS = frozenset(("number", "integer", "boolean"))
_ALL_KINDS = ", ".join(field.name for field in pb.Value.DESCRIPTOR.oneofs_by_name["kind"].fields)


def value(message: pb.Value) -> Any:
    """An op input or factory argument: a tensor reference, a scalar, or a list of them."""
    kind = message.WhichOneof("kind")
    if kind == "tensor":  # the commonest, first
        return ref(message.tensor)
    if kind in _SCALAR_KINDS:
        return getattr(message, kind)
    if kind == "list":
        return [value(item) for item in message.list.items]
    if kind is None:
        raise InvalidArgument(f"a Value must set one of {', '.join(_INPUT_KINDS)}")
    raise InvalidArgument(
        f"a Value's {kind} is for attributes only; inputs and factory arguments take "
        + ", ".join(_INPUT_KINDS)
    )


def attrs(items: Mapping[str, pb.Value]) -> dict[str, Any]:
    """Attributes as the JSON values the HTTP API takes: ints stay ints and floats floats."""
    if not items:  # most ops have none; iterating an empty map still costs a Python loop
        return {}
    return {key: attribute(item) for key, item in items.items()}


def attribute(message: pb.Value) -> Any:
    """One attribute's JSON value; a tensor is its reference (a name, or ``{"grad_of": name}``)."""
    kind = message.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(f"an attribute's Value must set one of {_ALL_KINDS}")
    if kind == "tensor":
        return ref(message.tensor)
    if kind == "list":
        return [attribute(item) for item in message.list.items]
    if kind == "map":
        return attrs(message.map.items)
    if kind == "none":
        return None
    return getattr(message, kind)


def create_command(m: pb.CreateTensor, payload: bytes | memoryview | None = None) -> dict[str, Any]:
    """A create command's dict; ``payload`` stands for ``m.data.data`` when given."""
    body: dict[str, Any] = {
        "kind": "create",
        "factory": m.factory or "tensor",
        "args": [value(v) for v in m.args],
        "dtype": dtype_name(m.dtype, None),
        "requires_grad": m.requires_grad,
        "name": m.name or None,
    }
    if m.HasField("data"):  # left out otherwise, so that parse() says what is missing
        body["data"] = tensor_data(m.data, payload)
    return body


def _op(m: pb.ApplyOp) -> dict[str, Any]:
    return {
        "kind": "op",
        "op": m.op,
        "inputs": [value(v) for v in m.inputs],
        "attrs": attrs(m.attrs),
        "name": m.name or None,
        "names": list(m.names) or None,
        "no_grad": m.no_grad,
    }


def _backward(m: pb.Backward) -> dict[str, Any]:
    return {
        "kind": "backward",
        "tensor": ref(m.tensor),
        "gradient": ref(m.gradient) if m.HasField("gradient") else None,
        "retain_graph": m.retain_graph if m.HasField("retain_graph") else None,
        "create_graph": m.create_graph,
        "inputs": [ref(r) for r in m.inputs] or None,
    }


def _grad(m: pb.Grad) -> dict[str, Any]:
    return {
        "kind": "grad",
        "outputs": [ref(r) for r in m.outputs],
        "inputs": [ref(r) for r in m.inputs],
        "grad_outputs": [ref(r) for r in m.grad_outputs] or None,
        "retain_graph": m.retain_graph if m.HasField("retain_graph") else None,
        "create_graph": m.create_graph,
        "allow_unused": m.allow_unused,
        "names": list(m.names) or None,
    }


def _detach(m: pb.Detach) -> dict[str, Any]:
    return {"kind": "detach", "tensor": ref(m.tensor), "name": m.name or None}


def _zero_grad(m: pb.ZeroGrad) -> dict[str, Any]:
    return {
        "kind": "zero_grad",
        "tensors": [ref(r) for r in m.tensors],
        "set_to_none": m.set_to_none,
    }


def _requires_grad(m: pb.RequiresGrad) -> dict[str, Any]:
    return {"kind": "requires_grad", "tensor": ref(m.tensor), "requires_grad": m.requires_grad}


def _retain_grad(m: pb.RetainGrad) -> dict[str, Any]:
    return {"kind": "retain_grad", "tensor": ref(m.tensor)}


def _get(m: pb.GetTensor) -> dict[str, Any]:
    return {
        "kind": "get",
        "tensor": ref(m.tensor),
        "value": m.value,
        "grad": m.grad,
        "repr": m.repr,
    }


def _release(m: pb.Release) -> dict[str, Any]:
    return {"kind": "release", "names": list(m.names)}


# Keyed by the field names of Command's oneof, which are the engine's command kinds.
DECODERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "create": create_command, "op": _op, "backward": _backward, "grad": _grad, "detach": _detach,
    "zero_grad": _zero_grad, "requires_grad": _requires_grad, "retain_grad": _retain_grad,
    "get": _get, "release": _release,
}  # fmt: skip


def command(kind: str, message: Any) -> dict[str, Any]:
    """The command dict for one command message of the given kind."""
    return DECODERS[kind](message)


def batch(commands: Sequence[pb.Command]) -> list[dict[str, Any]]:
    """Command dicts for a batch; a command that cannot be decoded reports its index."""
    out = []
    for index, message in enumerate(commands):
        try:
            kind = message.WhichOneof("kind")
            if kind is None:
                raise InvalidArgument(f"a Command must set one of {sorted(DECODERS)}")
            out.append(command(kind, getattr(message, kind)))
        except EngineError as exc:
            exc.command_index = index
            raise
    return out


# ----- engine data -> messages -----


def tensor_info(info: TensorInfo | None) -> pb.TensorInfo:
    message = pb.TensorInfo()
    _fill_tensor_info(message, info)
    return message


def result(r: Result) -> pb.CommandResult:
    message = pb.CommandResult(kind=r.kind)
    _add_tensors(message.tensors, r.tensors)
    return message


def _add_tensors(messages: Any, infos: Sequence[TensorInfo | None]) -> None:
    for info in infos:
        _fill_tensor_info(messages.add(), info)


def _fill_tensor_info(message: pb.TensorInfo, info: TensorInfo | None) -> None:
    if info is None:  # an unused input's gradient from Grad(allow_unused=True)
        message.absent = True
        return
    message.name = info.name
    message.shape.extend(info.shape)
    message.dtype = DTYPE_ENUMS[info.dtype]
    message.requires_grad = info.requires_grad
    message.is_leaf = info.is_leaf
    message.grad_fn = info.grad_fn or ""
    message.has_grad = info.has_grad
    message.repr = info.repr or ""
    if info.value is not None:
        message.value.CopyFrom(tensor_message(info.value))
    if info.grad is not None:
        message.grad.CopyFrom(tensor_message(info.grad))


def session(info: SessionInfo) -> pb.Session:
    return pb.Session(
        id=info.id,
        token=info.token or "",
        device=info.device,
        seed=info.seed,
        ttl_seconds=info.ttl,
        tensors=info.tensors,
        bytes_held=info.bytes_held,
    )


def error(exc: BaseException) -> pb.Error:
    """A failed batch for a stream; unexpected errors get the generic detail."""
    status = status_of(exc)
    if not isinstance(exc, EngineError):
        return pb.Error(
            code="internal", status=status.grpc.value[0], detail=GENERIC_DETAIL, command_index=-1
        )
    return pb.Error(
        code=exc.code,
        status=status.grpc.value[0],
        detail=str(exc),
        command_index=-1 if exc.command_index is None else exc.command_index,
        torch_type=exc.torch_type,
    )
