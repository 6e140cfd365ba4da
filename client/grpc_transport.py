"""gRPC transport: ``gradient.v1.Gradient`` over one channel, commands as proto messages.

Command dicts (the vocabulary the HTTP API takes as JSON) become ``Command`` messages by
``service.wire``, the one encoding of the gradient.v1 format; results come back as the same
``results`` types the HTTP transport returns, and a failed call becomes the same ``Error``:
the server sends the engine's code, ``torch_type`` and ``command_index`` as trailing metadata.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc

from service.gen.gradient.v1 import gradient_pb2 as pb
from service.gen.gradient.v1 import gradient_pb2_grpc as pb_grpc
from service.wire import DTYPE_NAMES, bearer, command_message, tensor_array

from .errors import Error, deadline, unavailable
from .results import CommandResult, SessionInfo, TensorInfo
from .transport import Address, Options, Transport


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
        return _session(self._call(self._stub.GetSession, request, bearer(token), True))

    def close_session(self, session_id: str, token: str) -> None:
        request = pb.CloseSessionRequest(session_id=session_id)
        self._call(self._stub.CloseSession, request, bearer(token), idempotent=True)

    def execute(
        self, session_id: str, token: str, commands: list[dict[str, Any]]
    ) -> list[CommandResult]:
        request = pb.ExecuteRequest(
            session_id=session_id, commands=[command_message(c) for c in commands]
        )
        response = self._call(self._stub.Execute, request, bearer(token), idempotent=False)
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


# ----- messages -> results -----


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
        value=tensor_array(m.value) if m.HasField("value") else None,
        grad=tensor_array(m.grad) if m.HasField("grad") else None,
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
