"""An in-process gRPC server on 127.0.0.1 (its own event loop thread), and small helpers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import numpy

from service.config import Settings
from service.dataplane import DataPlane
from service.gen.gradient.v1 import gradient_pb2 as pb
from service.gen.gradient.v1 import gradient_pb2_grpc as pb_grpc
from service.grpc_server import create_grpc_server
from service.protowire import varint
from service.wire import attr_value, bearer, tensor_message, value_message

API_KEY = "test-api-key"
MAX_REQUEST_BYTES = 64 * 1024


class GrpcHarness:
    """A started server for ``settings``, its data plane, and a channel to it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dataplane = DataPlane(settings)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server, self.health, self.port = self._call(self._start())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.GradientStub(self.channel)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    async def _start(self) -> tuple[Any, Any, int]:
        server, health = create_grpc_server(self.dataplane, self.settings)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, health, port

    def close(self) -> None:
        self.channel.close()
        self._call(self.server.stop(None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
        self.dataplane.shutdown()

    def session(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """A new session's id and the call metadata carrying its token."""
        created = self.stub.CreateSession(
            pb.CreateSessionRequest(seed=0), metadata=[("x-api-key", API_KEY)]
        )
        return created.id, bearer(created.token)


def serve() -> Iterator[GrpcHarness]:
    """The test modules' server (``grpc_env`` in conftest.py yields from it)."""
    settings = Settings(
        api_key=API_KEY, max_request_bytes=MAX_REQUEST_BYTES, max_commands_per_batch=64
    )
    harness = GrpcHarness(settings)
    try:
        yield harness
    finally:
        harness.close()


# ----- message builders -----


def ref(name: str, grad: bool = False) -> pb.TensorRef:
    return pb.TensorRef(name=name, grad=grad)


def val(item: Any) -> pb.Value:
    """A Value from a Python scalar, a tensor name, a Value, a TensorRef or a list of those."""
    if isinstance(item, pb.Value):
        return item
    if isinstance(item, pb.TensorRef):
        return pb.Value(tensor=item)
    if isinstance(item, list | tuple):
        return pb.Value(list=pb.ValueList(items=[val(v) for v in item]))
    return value_message(item)


def data(array: Any, dtype: str | None = None) -> pb.TensorData:
    return tensor_message(numpy.asarray(array, dtype=dtype or "float32"))


def create(name: str, factory: str = "tensor", *args: Any, **fields: Any) -> pb.Command:
    return pb.Command(
        create=pb.CreateTensor(name=name, factory=factory, args=[val(a) for a in args], **fields)
    )


def op(
    op_name: str, *inputs: Any, name: str = "", names: tuple[str, ...] = (), **attrs: Any
) -> pb.Command:
    return pb.Command(
        op=pb.ApplyOp(
            op=op_name,
            inputs=[val(v) for v in inputs],
            attrs={k: v if isinstance(v, pb.Value) else attr_value(v) for k, v in attrs.items()},
            name=name,
            names=names,
        )
    )


def get(tensor: str | pb.TensorRef, **flags: bool) -> pb.Command:
    """A GetTensor command; ``flags`` are its value, grad and repr fields."""
    target = ref(tensor) if isinstance(tensor, str) else tensor
    return pb.Command(get=pb.GetTensor(tensor=target, **flags))


def wire_tag(number: int, wire_type: int) -> bytes:
    """A field's tag as protobuf writes it (for requests built byte by byte)."""
    return varint(number << 3 | wire_type)


def wire_field(number: int, value: bytes) -> bytes:
    """A length-delimited field: tag, length, bytes."""
    return wire_tag(number, 2) + varint(len(value)) + value
