"""gRPC transport: ``gradient.v1.Gradient`` over one channel, commands as proto messages.

Command dicts (the vocabulary the HTTP API takes as JSON) become ``Command`` messages here,
results come back as the same ``results`` types the HTTP transport returns, and a failed call
becomes the same ``Error``: the server sends the engine's code, ``torch_type`` and
``command_index`` as trailing metadata.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
import numpy
from google.protobuf import struct_pb2

from service.gen.gradient.v1 import gradient_pb2 as pb
from service.gen.gradient.v1 import gradient_pb2_grpc as pb_grpc

from .errors import Error, deadline, unavailable
from .results import CommandResult, SessionInfo, TensorInfo
from .transport import Address, Options, Transport

DTYPE_ENUMS: dict[str, Any] = {
    name.removeprefix("DTYPE_").lower(): number
    for name, number in pb.DType.items()
    if number != pb.DTYPE_UNSPECIFIED
}
DTYPE_NAMES = {number: name for name, number in DTYPE_ENUMS.items()}


class GrpcTransport(Transport):
    def __init__(self, address: Address, options: Options) -> None:
        super().__init__(address, options)
        limit = options.max_message_bytes
        channel_options = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
        if address.secure:
            roots = None
            if options.ca_file:
                with open(options.ca_file, "rb") as f:
                    roots = f.read()
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            self._channel = grpc.secure_channel(address.target, credentials, channel_options)
        else:
            self._channel = grpc.insecure_channel(address.target, channel_options)
        self._stub = pb_grpc.GradientStub(self._channel)
        self._lock = threading.Lock()

    def create_session(self, device: str | None, seed: int, ttl: float | None) -> SessionInfo:
        request = pb.CreateSessionRequest(device=device or "", seed=seed)
        if ttl is not None:
            request.ttl_seconds = ttl
        metadata = (("x-api-key", self.options.api_key),) if self.options.api_key else ()
        return _session(self._call(self._stub.CreateSession, request, metadata, idempotent=False))

    def session_info(self, session_id: str, token: str) -> SessionInfo:
        request = pb.GetSessionRequest(session_id=session_id)
        return _session(self._call(self._stub.GetSession, request, _bearer(token), True))

    def close_session(self, session_id: str, token: str) -> None:
        request = pb.CloseSessionRequest(session_id=session_id)
        self._call(self._stub.CloseSession, request, _bearer(token), idempotent=True)

    def execute(
        self, session_id: str, token: str, commands: list[dict[str, Any]]
    ) -> list[CommandResult]:
        request = pb.ExecuteRequest(session_id=session_id, commands=[_command(c) for c in commands])
        response = self._call(self._stub.Execute, request, _bearer(token), idempotent=False)
        return [_result(r) for r in response.results]

    def close(self) -> None:
        self._channel.close()

    def _call(
        self,
        method: Callable[..., Any],
        request: Any,
        metadata: tuple[tuple[str, str], ...],
        idempotent: bool,
    ) -> Any:
        def once() -> Any:
            self.round_trips += 1
            try:
                return method(request, metadata=metadata, timeout=self.options.timeout)
            except grpc.RpcError as exc:
                raise _error(exc, self.address, self.options.timeout) from None

        def safe(exc: Error) -> bool:
            return exc.not_sent or (idempotent and exc.code == "unavailable")

        with self._lock:
            return self.retrying(once, safe)


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _error(exc: Any, address: Address, timeout: float) -> Error:
    code: grpc.StatusCode = exc.code()
    details = exc.details() or ""
    metadata = dict(exc.trailing_metadata() or ())
    if "code" in metadata:  # the server's own error
        index = metadata.get("command_index")
        return Error(
            str(metadata["code"]),
            details,
            torch_type=metadata.get("torch_type") or None,
            command_index=int(index) if index is not None else None,
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        error = unavailable(f"cannot reach gradserve at {address}: {details}")
        # gRPC retries by itself what never left; a failed connection is all that is left safe.
        error.not_sent = "failed to connect" in details.lower()
        return error
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return deadline(f"no response from gradserve at {address} within {timeout:g} s")
    return Error(code.name.lower(), details or code.name)


# ----- command dicts -> messages -----


def _ref(value: Any) -> pb.TensorRef:
    if isinstance(value, dict):
        return pb.TensorRef(name=value["grad_of"], grad=True)
    return pb.TensorRef(name=value)


def _value(value: Any) -> pb.Value:
    if isinstance(value, bool):
        return pb.Value(boolean=value)
    if isinstance(value, int):
        return pb.Value(integer=value)
    if isinstance(value, float):
        return pb.Value(number=value)
    if isinstance(value, list | tuple):
        return pb.Value(list=pb.ValueList(items=[_value(v) for v in value]))
    return pb.Value(tensor=_ref(value))


def _attr(item: Any) -> pb.Value:
    """An attribute, spelled as its JSON value: ints stay ints, "..." is text, None is none."""
    if item is None:
        return pb.Value(none=struct_pb2.NULL_VALUE)
    if isinstance(item, bool):
        return pb.Value(boolean=item)
    if isinstance(item, int):
        return pb.Value(integer=item)
    if isinstance(item, float):
        return pb.Value(number=item)
    if isinstance(item, str):
        return pb.Value(text=item)
    if isinstance(item, list | tuple):
        return pb.Value(list=pb.ValueList(items=[_attr(v) for v in item]))
    return pb.Value(map=pb.ValueMap(items={k: _attr(v) for k, v in item.items()}))


def _data(array: numpy.ndarray) -> pb.TensorData:
    little = numpy.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return pb.TensorData(
        shape=array.shape, dtype=DTYPE_ENUMS[array.dtype.name], data=little.tobytes()
    )


def _create(c: dict[str, Any]) -> pb.Command:
    m = pb.CreateTensor(
        name=c.get("name") or "",
        factory=c.get("factory", "tensor"),
        args=[_value(a) for a in c.get("args", ())],
        requires_grad=c.get("requires_grad", False),
    )
    if c.get("dtype"):
        m.dtype = DTYPE_ENUMS[c["dtype"]]  # type: ignore[assignment]
    if c.get("data") is not None:
        m.data.CopyFrom(_data(c["data"]))
    return pb.Command(create=m)


def _op(c: dict[str, Any]) -> pb.Command:
    m = pb.ApplyOp(
        op=c["op"],
        inputs=[_value(v) for v in c.get("inputs", ())],
        name=c.get("name") or "",
        names=c.get("names") or (),
        no_grad=c.get("no_grad", False),
    )
    for key, item in (c.get("attrs") or {}).items():
        m.attrs[key].CopyFrom(_attr(item))
    return pb.Command(op=m)


def _backward(c: dict[str, Any]) -> pb.Command:
    m = pb.Backward(
        tensor=_ref(c["tensor"]),
        create_graph=c.get("create_graph", False),
        inputs=[_ref(r) for r in c.get("inputs") or ()],
    )
    if c.get("gradient") is not None:
        m.gradient.CopyFrom(_ref(c["gradient"]))
    if c.get("retain_graph") is not None:
        m.retain_graph = c["retain_graph"]
    return pb.Command(backward=m)


def _grad(c: dict[str, Any]) -> pb.Command:
    m = pb.Grad(
        outputs=[_ref(r) for r in c["outputs"]],
        inputs=[_ref(r) for r in c["inputs"]],
        grad_outputs=[_ref(r) for r in c.get("grad_outputs") or ()],
        create_graph=c.get("create_graph", False),
        allow_unused=c.get("allow_unused", False),
        names=c.get("names") or (),
    )
    if c.get("retain_graph") is not None:
        m.retain_graph = c["retain_graph"]
    return pb.Command(grad=m)


_ENCODERS: dict[str, Callable[[dict[str, Any]], pb.Command]] = {
    "create": _create,
    "op": _op,
    "backward": _backward,
    "grad": _grad,
    "detach": lambda c: pb.Command(
        detach=pb.Detach(tensor=_ref(c["tensor"]), name=c.get("name") or "")
    ),
    "zero_grad": lambda c: pb.Command(
        zero_grad=pb.ZeroGrad(
            tensors=[_ref(r) for r in c["tensors"]], set_to_none=c.get("set_to_none", False)
        )
    ),
    "requires_grad": lambda c: pb.Command(
        requires_grad=pb.RequiresGrad(
            tensor=_ref(c["tensor"]), requires_grad=c.get("requires_grad", True)
        )
    ),
    "retain_grad": lambda c: pb.Command(retain_grad=pb.RetainGrad(tensor=_ref(c["tensor"]))),
    "get": lambda c: pb.Command(
        get=pb.GetTensor(
            tensor=_ref(c["tensor"]),
            value=c.get("value", False),
            grad=c.get("grad", False),
            repr=c.get("repr", False),
        )
    ),
    "release": lambda c: pb.Command(release=pb.Release(names=c["names"])),
}


def _command(c: dict[str, Any]) -> pb.Command:
    return _ENCODERS[c["kind"]](c)


# ----- messages -> results -----


def _array(m: pb.TensorData) -> numpy.ndarray:
    dtype = numpy.dtype(DTYPE_NAMES[m.dtype])
    flat = numpy.frombuffer(m.data, dtype=dtype.newbyteorder("<")).astype(dtype)
    return flat.reshape(tuple(m.shape))


def _info(m: pb.TensorInfo) -> TensorInfo | None:
    if m.absent:
        return None
    return TensorInfo(
        name=m.name,
        shape=tuple(m.shape),
        dtype=DTYPE_NAMES[m.dtype],
        requires_grad=m.requires_grad,
        is_leaf=m.is_leaf,
        grad_fn=m.grad_fn or None,
        has_grad=m.has_grad,
        value=_array(m.value) if m.HasField("value") else None,
        grad=_array(m.grad) if m.HasField("grad") else None,
        repr=m.repr or None,
    )


def _result(m: pb.CommandResult) -> CommandResult:
    return CommandResult(m.kind, tuple(_info(t) for t in m.tensors))


def _session(m: pb.Session) -> SessionInfo:
    return SessionInfo(
        id=m.id,
        device=m.device,
        seed=m.seed,
        ttl_seconds=m.ttl_seconds,
        tensors=m.tensors,
        bytes_held=m.bytes_held,
        token=m.token or None,
    )
