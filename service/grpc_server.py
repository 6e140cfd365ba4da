"""The gRPC frontend: the ``gradient.v1.Gradient`` servicer, its error interceptor, the factory.

Each method only decodes its request (``service.grpc_messages``), calls the data plane, and
encodes what comes back. Errors are not handled per method: the servicer raises, and one
interceptor maps every exception through the table in ``service.errors``.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from engine.errors import EngineError, InvalidArgument, Unauthenticated
from engine.session import Result, Session
from service import grpc_messages as messages
from service.config import Settings
from service.dataplane import DataPlane, Lane
from service.errors import GENERIC_DETAIL, status_of
from service.gen.gradient.v1 import gradient_pb2 as pb
from service.gen.gradient.v1 import gradient_pb2_grpc as pb_grpc
from service.grpc_apply import ApplyOpCall, deserialize_apply_op, encode_result
from service.grpc_batch import (
    ExecuteBatch,
    deserialize_execute_request,
    encode_results,
    serialize_response,
)
from service.grpc_upload import CreateTensorUpload, deserialize_create_tensor

log = logging.getLogger(__name__)

STREAM_AHEAD = 8  # batches of one ExecuteStream submitted and not yet answered, at most

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["Gradient"].full_name
HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item[0] == key:
            return str(item[1])
    return None


def token_of(context: grpc.aio.ServicerContext) -> str:
    """The session token from ``authorization: Bearer <token>`` metadata."""
    scheme, _, token = (_metadata(context, "authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "missing session token: send 'authorization: Bearer <token>' metadata"
        )
    return token.strip()


class GradientServicer(pb_grpc.GradientServicer):
    """One method per rpc, each a translation to one data-plane call."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def CreateSession(
        self, request: pb.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Session:
        info = await self.dataplane.run(
            self.dataplane.create_session,
            device=request.device or None,
            seed=request.seed,
            ttl=request.ttl_seconds if request.HasField("ttl_seconds") else None,
            api_key=_metadata(context, "x-api-key"),
        )
        return messages.session(info)

    async def GetSession(
        self, request: pb.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Session:
        token = token_of(context)
        info = await self.dataplane.session_info(request.session_id, token)
        return messages.session(info)

    async def CloseSession(
        self, request: pb.CloseSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CloseSessionResponse:
        token = token_of(context)
        await self.dataplane.close_session(request.session_id, token)
        return pb.CloseSessionResponse()

    async def CreateTensor(
        self,
        request: pb.CreateTensorRequest | CreateTensorUpload,
        context: grpc.aio.ServicerContext,
    ) -> pb.CommandResult:
        if isinstance(request, CreateTensorUpload):  # a large tensor, its bytes not copied out
            session = self.dataplane.session(request.session_id, token_of(context))
            return await self.dataplane.submit(session, lambda: [request.command()], _first_result)
        return await self._one("create", request, context)

    async def ApplyOp(
        self, request: pb.ApplyOpRequest | ApplyOpCall, context: grpc.aio.ServicerContext
    ) -> pb.CommandResult | bytes:
        if isinstance(request, ApplyOpCall):
            session = self.dataplane.session(request.session_id, token_of(context))
            return await self.dataplane.submit(session, request.commands(), encode_result)
        return await self._one("op", request, context)

    async def Backward(
        self, request: pb.BackwardRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommandResult:
        return await self._one("backward", request, context)

    async def Grad(
        self, request: pb.GradRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommandResult:
        return await self._one("grad", request, context)

    async def Detach(
        self, request: pb.DetachRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommandResult:
        return await self._one("detach", request, context)

    async def ZeroGrad(
        self, request: pb.ZeroGradRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommandResult:
        return await self._one("zero_grad", request, context)

    async def SetRequiresGrad(
        self, request: pb.SetRequiresGradRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommandResult:
        return await self._one("requires_grad", request, context)

    async def RetainGrad(
        self, request: pb.RetainGradRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommandResult:
        return await self._one("retain_grad", request, context)

    async def GetTensor(
        self, request: pb.GetTensorRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommandResult:
        return await self._one("get", request, context)

    async def Release(
        self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommandResult:
        return await self._one("release", request, context)

    async def Execute(
        self, request: pb.ExecuteRequest | ExecuteBatch, context: grpc.aio.ServicerContext
    ) -> bytes:
        session = self.dataplane.session(request.session_id, token_of(context))
        return await self._submit(session, request)

    async def ExecuteStream(
        self,
        requests: AsyncIterator[pb.ExecuteRequest | ExecuteBatch],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ExecuteResponse | bytes]:
        """Batches answered in order. Each request is submitted as soon as it is read (up to
        ``STREAM_AHEAD`` unanswered), through one lane of the data plane, so that the batches
        run one after another in their order while responses are written and requests read."""
        stream = _Stream(self, token_of(context))
        answers: asyncio.Queue[asyncio.Future[pb.ExecuteResponse | bytes] | None]
        answers = asyncio.Queue()
        room = asyncio.Semaphore(STREAM_AHEAD)

        async def read() -> None:
            try:
                async for request in requests:
                    await room.acquire()
                    answers.put_nowait(asyncio.ensure_future(stream.batch(request)))
            finally:
                answers.put_nowait(None)

        reader = asyncio.ensure_future(read())
        reader.add_done_callback(_retrieved)  # its error, if the call ends before it is read
        try:
            while (answer := await answers.get()) is not None:
                response = await answer
                room.release()
                yield response
            await reader  # a request that did not parse fails the call, after the answers before it
        finally:
            reader.cancel()
            while not answers.empty():
                pending = answers.get_nowait()
                if pending is not None:
                    pending.cancel()

    async def _one(
        self, kind: str, request: Any, context: grpc.aio.ServicerContext
    ) -> pb.CommandResult:
        session = self.dataplane.session(request.session_id, token_of(context))
        if kind == "op":  # an op carries no payload: decoded here, it may run here
            commands: Any = [messages.command(kind, request.command)]
        else:
            commands = lambda: [messages.command(kind, request.command)]
        return await self.dataplane.submit(session, commands, _first_result)

    async def _submit(
        self,
        session: Session,
        request: pb.ExecuteRequest | ExecuteBatch,
        lane: Lane | None = None,
    ) -> bytes:
        plane = self.dataplane
        if isinstance(request, ExecuteBatch):
            if len(request) != 1:  # decoded on the engine's threads
                return await plane.submit(session, request.commands, encode_results, lane)
            request = request.message()  # one op may run on the loop: see service.dataplane
        commands = request.commands
        if len(commands) == 1 and commands[0].WhichOneof("kind") == "op":
            decoded: Any = messages.batch(commands)
        else:  # decoding copies tensor payloads: on the engine's threads
            decoded = functools.partial(messages.batch, commands)
        return await plane.submit(session, decoded, encode_results, lane)


class _Stream:
    """One ExecuteStream's session, named by its first request that names one, and its lane."""

    def __init__(self, servicer: GradientServicer, token: str) -> None:
        self.servicer = servicer
        self.token = token
        self.session_id = ""
        self.lane = servicer.dataplane.lane()

    async def batch(self, request: pb.ExecuteRequest | ExecuteBatch) -> pb.ExecuteResponse | bytes:
        """The request's response; a failed batch is reported in-band, and the stream goes on."""
        try:
            self.session_id = self.session_id or request.session_id
            if request.session_id not in ("", self.session_id):
                raise InvalidArgument(
                    f"this stream runs on session '{self.session_id}'; open another stream "
                    "for another session"
                )
            session = self.servicer.dataplane.session(self.session_id, self.token)
            return await self.servicer._submit(session, request, self.lane)
        except Exception as exc:
            if not isinstance(exc, EngineError):
                log.exception("unexpected error in a batch of ExecuteStream")
            return pb.ExecuteResponse(error=messages.error(exc))


def _retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _first_result(results: list[Result]) -> pb.CommandResult:
    return messages.result(results[0])


# ----- errors -----


def trailing_metadata(exc: EngineError) -> tuple[tuple[str, str], ...]:
    """What a failed call carries besides its code and detail."""
    items = [("code", exc.code), ("torch_type", exc.torch_type)]
    if exc.command_index is not None:
        items.append(("command_index", str(exc.command_index)))
    return tuple(items)


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    status = status_of(exc)
    if isinstance(exc, EngineError):
        await context.abort(status.grpc, str(exc), trailing_metadata(exc))
    else:
        log.error("unexpected error in %s", method, exc_info=exc)
        await context.abort(status.grpc, GENERIC_DETAIL, (("code", "internal"),))


class _Undecodable:
    """What a request deserializes to when its bytes are not the message."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    # gRPC would answer UNKNOWN, naming the exception; a malformed message is the client's.
    if deserializer is None:
        return None

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:
            return _Undecodable(exc)

    return deserialize


def _checked(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise InvalidArgument(f"malformed request message: {request.error}")
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _checked(request)


def _guarded(
    behavior: Callable[..., Any], streaming_requests: bool, method: str
) -> Callable[..., Any] | None:
    """``behavior`` with its exceptions turned into statuses; None if it is not async."""
    check = _checked_stream if streaming_requests else _checked
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for response in behavior(check(request), context):
                    yield response
            except grpc.aio.AbortError:
                raise  # the handler chose its status itself
            except Exception as exc:
                await _abort(context, exc, method)

        return stream
    if inspect.iscoroutinefunction(behavior):

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await behavior(check(request), context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc, method)

        return call
    return None  # a synchronous handler: grpc.aio runs none here (no migration thread pool)


_HANDLER_KINDS: dict[str, Callable[..., grpc.RpcMethodHandler]] = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """An interceptor that wraps each method's handler in ``wrap`` once, and keeps it: only
    what a call carries is read per call."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        wrapped = self._handlers.get(method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:
                return None  # no such method: nothing kept for a name a client made up
            wrapped = self._handlers[method] = self.wrap(method, handler)
        return wrapped

    @abc.abstractmethod
    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler that runs in place of ``handler``."""


class ErrorInterceptor(WrappingInterceptor):
    """Maps what any handler raises to a status, by the one table in ``service.errors``.

    An engine error becomes its row's code, its message the detail, and ``code``,
    ``torch_type`` and ``command_index`` trailing metadata; anything else is INTERNAL with a
    generic detail, its traceback logged. A request that does not parse is INVALID_ARGUMENT.
    Being an interceptor, no method can forget it.
    """

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        for kind, make in _HANDLER_KINDS.items():
            behavior = getattr(handler, kind)
            if behavior is None:
                continue
            guarded = _guarded(behavior, handler.request_streaming, method)
            if guarded is None:
                return handler
            return make(
                guarded,
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler


# ----- the server -----


class _Health(health_aio.HealthServicer):
    """The standard grpc.health.v1 servicer, starting SERVING for the given services.

    Its ``set`` is a coroutine (it wakes watchers), and the factory is synchronous; before
    the server starts nobody can watch, so the initial statuses are written directly.
    """

    def __init__(self, services: Iterable[str]) -> None:
        super().__init__()
        for name in services:
            self._server_status[name] = health_pb2.HealthCheckResponse.SERVING


# Methods served by their registered path: the commands. gRPC keeps a call requested for each
# registered method and waits on all of them again for every call: each one costs every call
# time on the event loop. The others (sessions, health, reflection) are found by name.
REGISTERED = (
    "CreateTensor", "ApplyOp", "Backward", "Grad", "Detach", "ZeroGrad", "SetRequiresGrad",
    "RetainGrad", "GetTensor", "Release", "Execute", "ExecuteStream",
)  # fmt: skip


class _ByName:
    """The server as generated ``add_*_to_server`` functions see it: their generic handlers
    are added, their registered ones kept (``handlers``, by service) for a choice of them."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self.server = server
        self.handlers: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.handlers[service] = dict(handlers)


class GrpcServer(NamedTuple):
    """The server and its health servicer (a ``grpc_health.v1.health.aio.HealthServicer``)."""

    server: grpc.aio.Server
    health: health_aio.HealthServicer


def create_grpc_server(
    dataplane: DataPlane,
    settings: Settings,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> GrpcServer:
    """A gRPC server for ``dataplane``, with health and reflection; no ports, not started.

    The caller binds and starts it, and on shutdown marks it NOT_SERVING before stopping::

        server, health = create_grpc_server(dataplane, settings)
        server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
        await server.start()
        ...
        await health.enter_graceful_shutdown()  # every service NOT_SERVING, for good
        await server.stop(grace)

    ``interceptors`` run outside the error interceptor, so they see the final status.
    Messages over ``settings.max_request_bytes`` either way fail with RESOURCE_EXHAUSTED,
    from gRPC itself. Call it with the event loop that will run the server.
    """
    limit = settings.max_request_bytes
    server = grpc.aio.server(
        interceptors=[*interceptors, ErrorInterceptor()],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
    )
    servicer = GradientServicer(dataplane)
    health = _Health([SERVICE_NAME])
    by_name = _ByName(server)
    pb_grpc.add_GradientServicer_to_server(servicer, by_name)
    health_pb2_grpc.add_HealthServicer_to_server(health, by_name)
    names = [SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME]
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(names), by_name
    )
    registered = {name: by_name.handlers[SERVICE_NAME][name] for name in REGISTERED}
    # With deserializers that leave a large tensor's bytes in the request (service.grpc_upload)
    # and that remember commands and results (service.grpc_apply, service.grpc_batch).
    registered["CreateTensor"] = grpc.unary_unary_rpc_method_handler(
        servicer.CreateTensor, deserialize_create_tensor, pb.CommandResult.SerializeToString
    )
    registered["ApplyOp"] = grpc.unary_unary_rpc_method_handler(
        servicer.ApplyOp, deserialize_apply_op, serialize_response
    )
    registered["Execute"] = grpc.unary_unary_rpc_method_handler(
        servicer.Execute, deserialize_execute_request, serialize_response
    )
    registered["ExecuteStream"] = grpc.stream_stream_rpc_method_handler(
        servicer.ExecuteStream, deserialize_execute_request, serialize_response
    )
    server.add_registered_method_handlers(SERVICE_NAME, registered)
    return GrpcServer(server, health)
