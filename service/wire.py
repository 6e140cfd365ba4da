"""The gradient.v1 wire format that both ends write: plain Python values to messages and back.

The server (``service.grpc_messages``), the client's gRPC transport and the tests share this
one implementation of the dtype enum, attribute ``Value`` trees, ``TensorData`` bytes, call
metadata and command messages. It imports neither the engine nor a web framework, so that
``gradserve`` uses it without loading either.

Command dicts are the HTTP API's JSON vocabulary, with tensor data as a NumPy array.
Decoding what a client sends, with its checks, is ``service.grpc_messages``'s part.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy
from google.protobuf import struct_pb2

from service.gen.gradient.v1 import gradient_pb2 as pb

# DTYPE_FLOAT32 <-> "float32": the enum spells PyTorch's names, so the table is derived.
DTYPE_NAMES: dict[pb.DType, str] = {
    number: name.removeprefix("DTYPE_").lower()
    for name, number in pb.DType.items()
    if number != pb.DTYPE_UNSPECIFIED
}
DTYPE_ENUMS: dict[str, pb.DType] = {name: number for number, name in DTYPE_NAMES.items()}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries a session token."""
    return (("authorization", f"Bearer {token}"),)


# ----- tensor data -----


def to_bytes(array: numpy.ndarray) -> bytes:
    """Little-endian bytes of an array, row-major: TensorData's ``data``, JSON's ``b64``."""
    return numpy.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def tensor_message(array: numpy.ndarray) -> pb.TensorData:
    return pb.TensorData(
        shape=array.shape, dtype=DTYPE_ENUMS[array.dtype.name], data=to_bytes(array)
    )


def tensor_array(message: pb.TensorData) -> numpy.ndarray:
    """The array a server's TensorData holds, as a writable copy in native byte order
    (unchecked: ``grpc_messages.tensor_data`` checks what a client sends)."""
    dtype = numpy.dtype(DTYPE_NAMES[message.dtype])
    flat = numpy.frombuffer(message.data, dtype=dtype.newbyteorder("<")).astype(dtype)
    return flat.reshape(tuple(message.shape))


# ----- values -----


def ref_message(item: Any) -> pb.TensorRef:
    """A tensor reference: a name, or ``{"grad_of": name}`` for a tensor's ``.grad``."""
    if isinstance(item, dict):
        return pb.TensorRef(name=item["grad_of"], grad=True)
    return pb.TensorRef(name=item)


def _refs(items: Any) -> list[pb.TensorRef]:
    """A list of references; one reference alone stands for a list of it, as in the JSON."""
    return [ref_message(r) for r in (items if isinstance(items, list | tuple) else [items])]


def _number(item: Any) -> pb.Value | None:
    """The Value of a Python bool, int or float (None for anything else)."""
    if isinstance(item, bool):  # before int: a bool is an int to isinstance
        return pb.Value(boolean=item)
    if isinstance(item, int):
        return pb.Value(integer=item)
    if isinstance(item, float):
        return pb.Value(number=item)
    return None


def value_message(item: Any) -> pb.Value:
    """An op input or factory argument: a tensor reference, a scalar, or a list of them."""
    number = _number(item)
    if number is not None:
        return number
    if isinstance(item, list | tuple):
        return pb.Value(list=pb.ValueList(items=[value_message(v) for v in item]))
    return pb.Value(tensor=ref_message(item))


def attr_value(item: Any) -> pb.Value:
    """The Value of an attribute's JSON value (``grpc_messages.attribute`` reads it back equal):
    ints stay ints, a string is text, None is none."""
    if item is None:
        return pb.Value(none=struct_pb2.NULL_VALUE)
    number = _number(item)
    if number is not None:
        return number
    if isinstance(item, str):
        return pb.Value(text=item)
    if isinstance(item, list | tuple):
        return pb.Value(list=pb.ValueList(items=[attr_value(v) for v in item]))
    if isinstance(item, dict):
        return pb.Value(map=pb.ValueMap(items={k: attr_value(v) for k, v in item.items()}))
    raise TypeError(f"no gradient.v1 Value for {type(item).__name__} {item!r}")


# ----- command dicts -> messages -----


def _create(c: dict[str, Any]) -> pb.Command:
    m = pb.CreateTensor(
        name=c.get("name") or "",
        factory=c.get("factory", "tensor"),
        args=[value_message(a) for a in c.get("args", ())],
        requires_grad=c.get("requires_grad", False),
    )
    if c.get("dtype"):
        m.dtype = DTYPE_ENUMS[c["dtype"]]  # type: ignore[assignment]
    if c.get("data") is not None:
        m.data.CopyFrom(tensor_message(c["data"]))
    return pb.Command(create=m)


def _op(c: dict[str, Any]) -> pb.Command:
    m = pb.ApplyOp(
        op=c["op"],
        inputs=[value_message(v) for v in c.get("inputs", ())],
        name=c.get("name") or "",
        names=c.get("names") or (),
        no_grad=c.get("no_grad", False),
    )
    for key, item in (c.get("attrs") or {}).items():
        m.attrs[key].CopyFrom(attr_value(item))
    return pb.Command(op=m)


def _backward(c: dict[str, Any]) -> pb.Command:
    m = pb.Backward(
        tensor=ref_message(c["tensor"]),
        create_graph=c.get("create_graph", False),
        inputs=_refs(c.get("inputs") or ()),
    )
    if c.get("gradient") is not None:
        m.gradient.CopyFrom(ref_message(c["gradient"]))
    if c.get("retain_graph") is not None:
        m.retain_graph = c["retain_graph"]
    return pb.Command(backward=m)


def _grad(c: dict[str, Any]) -> pb.Command:
    m = pb.Grad(
        outputs=_refs(c["outputs"]),
        inputs=_refs(c["inputs"]),
        grad_outputs=_refs(c.get("grad_outputs") or ()),
        create_graph=c.get("create_graph", False),
        allow_unused=c.get("allow_unused", False),
        names=c.get("names") or (),
    )
    if c.get("retain_graph") is not None:
        m.retain_graph = c["retain_graph"]
    return pb.Command(grad=m)


# Keyed by the field names of Command's oneof, which are the engine's command kinds.
_ENCODERS: dict[str, Callable[[dict[str, Any]], pb.Command]] = {
    "create": _create,
    "op": _op,
    "backward": _backward,
    "grad": _grad,
    "detach": lambda c: pb.Command(
        detach=pb.Detach(tensor=ref_message(c["tensor"]), name=c.get("name") or "")
    ),
    "zero_grad": lambda c: pb.Command(
        zero_grad=pb.ZeroGrad(tensors=_refs(c["tensors"]), set_to_none=c.get("set_to_none", False))
    ),
    "requires_grad": lambda c: pb.Command(
        requires_grad=pb.RequiresGrad(
            tensor=ref_message(c["tensor"]), requires_grad=c.get("requires_grad", True)
        )
    ),
    "retain_grad": lambda c: pb.Command(retain_grad=pb.RetainGrad(tensor=ref_message(c["tensor"]))),
    "get": lambda c: pb.Command(
        get=pb.GetTensor(
            tensor=ref_message(c["tensor"]),
            value=c.get("value", False),
            grad=c.get("grad", False),
            repr=c.get("repr", False),
        )
    ),
    "release": lambda c: pb.Command(release=pb.Release(names=c["names"])),
}


def command_message(c: dict[str, Any]) -> pb.Command:
    """The Command message of a command dict."""
    encode = _ENCODERS.get(c["kind"])
    if encode is None:
        raise ValueError(f"no gradient.v1 form for command kind {c['kind']!r}")
    return encode(c)
