"""Metrics, structured logs and request ids, for both frontends.

Prometheus metrics live in one registry per process: requests by transport, route, method
and code; latency histograms; and, read at scrape time, active sessions, bytes held by
device and the GPU pool's bytes. Logs are one JSON object a line, carrying the request id
of the request being served (``X-Request-ID`` / ``x-request-id`` metadata, or a new one).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic_core import to_json
from starlette.routing import NoMatchFound
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.backend import pool_bytes
from service.dataplane import DataPlane
from service.errors import status_of
from service.grpc_server import WrappingInterceptor

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
log = logging.getLogger("gradserve")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._time = ""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time_of(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        # pydantic's serializer (Rust) writes a line in a fifth of json.dumps's time (a line a
        # request). It leaves characters past "~" unescaped: such lines are json.dumps's, so
        # that every line is printable ASCII whatever the stream's encoding.
        line = to_json(entry).decode()
        if line.isascii() and line.isprintable():
            return line
        return json.dumps(entry, separators=(",", ":"))

    def _time_of(self, record: logging.LogRecord) -> str:
        # Seconds resolution: formatted once a second, not once a line (an access log line
        # a request).
        second = int(record.created)
        if second != self._second:
            self._second, self._time = second, self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z")
        return self._time


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The JSON lines name no source line, thread or process: spare every record looking them
    # up (the logging HOWTO's "Optimization" settings; an access log line is one a request).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def new_request_id() -> str:
    """A request id for a request that brought none: 128 random bits, in hex (an id, not a
    secret, so not from the OS's entropy: a system call a request)."""
    return random.getrandbits(128).to_bytes(16).hex()


class _StateCollector(Collector):
    """Gauges read from the data plane when Prometheus scrapes.

    A session's bytes are read under its lock, which a running batch holds for as long as it
    runs: a session that stays busy past ``LOCK_WAIT`` reports what it held at the last
    scrape that could read it, so that a long batch never holds up a scrape.
    """

    LOCK_WAIT = 0.05  # seconds

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self._last_bytes: dict[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        sessions = self.dataplane.manager.sessions()
        active = GaugeMetricFamily("gradserve_sessions_active", "Open sessions.")
        active.add_metric([], len(sessions))
        held = GaugeMetricFamily(
            "gradserve_bytes_held", "Bytes of tensors, grads and saved buffers.", labels=["device"]
        )
        by_device: dict[str, int] = {}
        last: dict[str, int] = {}
        for session in sessions:
            if session.lock.acquire(timeout=self.LOCK_WAIT):
                try:
                    last[session.id] = session.bytes_held()
                finally:
                    session.lock.release()
            else:
                last[session.id] = self._last_bytes.get(session.id, 0)
            by_device[session.device] = by_device.get(session.device, 0) + last[session.id]
        self._last_bytes = last  # closed sessions drop out
        for device, total in sorted(by_device.items()):
            held.add_metric([device], total)
        pool = GaugeMetricFamily("gradserve_gpu_pool_bytes", "Bytes in use in CuPy's pool.")
        pool.add_metric([], pool_bytes())
        return [active, held, pool]


class Metrics:
    """The process's metrics registry and its instruments, and the record of requests served.

    A request served is recorded (its metrics and its access log line) in a batch with the
    others served within ``RECORD_DELAY``, on the event loop: a batch of lines costs a
    quarter as much a line as one line a request (~20 against ~75 us of CPU in the loaded
    server), whose caches the rest of a request's work has filled with other code. The
    ``/metrics`` route and the server's shutdown ``flush`` what is pending.
    """

    RECORD_DELAY = 0.01  # seconds
    RECORD_BATCH = 64  # requests: recorded at once when this many are pending

    def __init__(self, dataplane: DataPlane) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gradserve_requests",
            "Requests served, by transport, route, method and status code.",
            ["transport", "route", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gradserve_request_duration_seconds",
            "Request latency, by transport, route and method.",
            ["transport", "route", "method"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.registry.register(_StateCollector(dataplane))
        self._children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
        self._served: list[tuple[str, str, str, str, int | str, float]] = []
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # where a flush is due

    def served(
        self,
        request_id: str,
        transport: str,
        route: str,
        method: str,
        code: int | str,
        seconds: float,
    ) -> None:
        """Record a request served (an HTTP status, or a gRPC status code's name), on the
        event loop: within ``RECORD_DELAY``."""
        served = self._served
        served.append((request_id, transport, route, method, code, seconds))
        loop = asyncio.get_running_loop()
        if len(served) == self.RECORD_BATCH:
            # Soon, not now: a gRPC reply is sent after this call returns.
            loop.call_soon(self.flush)
        elif self._flush_loop is not loop:  # none due, or due on a loop that has gone
            self._flush_loop = loop
            loop.call_later(self.RECORD_DELAY, self.flush)

    def flush(self) -> None:
        """Record every request served so far: metrics, then one access log line each."""
        self._flush_loop = None
        served, self._served = self._served, []
        for request_id, transport, route, method, code, seconds in served:
            self.observe(transport, route, method, str(code), seconds)
            fields: dict[str, Any]
            if transport == "http":
                fields = {"method": method, "route": route, "status": code}
            else:
                fields = {"method": route, "code": code}
            fields["duration_ms"] = round(seconds * 1e3, 3)
            extra = {"fields": fields, "request_id": request_id}
            log.info(f"{transport} request", extra=extra)

    def observe(self, transport: str, route: str, method: str, code: str, seconds: float) -> None:
        key = (transport, route, method, code)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and validates: once per label set
            children = (self.requests.labels(*key), self.latency.labels(*key[:3]))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def request_header(scope: Scope, name: bytes) -> str | None:
    """The value of a request header (``name`` in lower case; the first, as Starlette's
    ``Headers`` gives it), read without a ``Headers`` object: a request reads a few."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class HttpObservability:
    """ASGI middleware: request id, access log line and request metrics for every request.

    Plain ASGI rather than ``app.middleware("http")``: Starlette's BaseHTTPMiddleware runs
    each request in a task group with a streamed response of its own, which cost more than
    the rest of a small request's handling. Routes are labelled by their full path template
    (``/v1/sessions/{session_id}/batch``), which FastAPI's included routers do not keep on
    the route itself; each is looked up once with ``url_path_for``.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: dict[int, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_header(scope, b"x-request-id") or new_request_id()
        token = REQUEST_ID.set(request_id)
        start = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped the app

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", ())
                message["headers"] = [*headers, (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = self._template(scope)
            self.metrics.served(request_id, "http", route, scope["method"], status, elapsed)
            REQUEST_ID.reset(token)

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return "unmatched"
        template = self._templates.get(id(route))
        if template is None:
            params = {name: f"{{{name}}}" for name in getattr(route, "param_convertors", {})}
            try:
                template = str(scope["app"].url_path_for(route.name, **params))
            except (KeyError, NoMatchFound):
                template = str(getattr(route, "path", "unmatched"))
            self._templates[id(route)] = template
        return template


class GrpcObservability(WrappingInterceptor):
    """gRPC interceptor: request id, access log line and metrics for every RPC."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        observe = functools.partial(_Observation, self.metrics, method)
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                with observe(context):
                    return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream is not None:
            inner_ss = handler.stream_stream

            async def stream_stream(
                requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                with observe(context):
                    async for response in inner_ss(requests, context):
                        yield response

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


class _Observation:
    """One RPC: its request id set while it runs; recorded (``Metrics.served``) when it ends."""

    def __init__(self, metrics: Metrics, method: str, context: grpc.aio.ServicerContext) -> None:
        self.metrics = metrics
        self.method = method
        self.context = context

    def __enter__(self) -> None:
        request_id = None
        for key, value in self.context.invocation_metadata() or ():
            if key == "x-request-id":
                request_id = str(value)
        self.request_id = request_id or new_request_id()
        self.token = REQUEST_ID.set(self.request_id)
        self.start = time.perf_counter()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        elapsed = time.perf_counter() - self.start
        code = self.context.code()
        if code is None:
            code = grpc.StatusCode.OK if exc is None else _code_of(exc)
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        REQUEST_ID.reset(self.token)
        self.metrics.served(self.request_id, "grpc", self.method, "POST", name, elapsed)


def _code_of(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN
    return status_of(exc).grpc
