"""Metrics, structured logs and request ids, for both frontends.

Prometheus metrics live in one registry per process: requests by transport, route, method
and code; latency histograms; and, read at scrape time, active sessions, bytes held by
device and the GPU pool's bytes. Logs are one JSON object a line, carrying the request id
of the request being served (``X-Request-ID`` / ``x-request-id`` metadata, or a new one).
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from engine.backend import pool_bytes
from service.dataplane import DataPlane
from service.errors import status_of

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
log = logging.getLogger("gradserve")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class _StateCollector(Collector):
    """Gauges read from the data plane when Prometheus scrapes."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    def collect(self) -> Iterable[Metric]:
        sessions = self.dataplane.manager.sessions()
        active = GaugeMetricFamily("gradserve_sessions_active", "Open sessions.")
        active.add_metric([], len(sessions))
        held = GaugeMetricFamily(
            "gradserve_bytes_held", "Bytes of tensors, grads and saved buffers.", labels=["device"]
        )
        by_device: dict[str, int] = {}
        for session in sessions:
            with session.lock:
                by_device[session.device] = by_device.get(session.device, 0) + session.bytes_held()
        for device, total in sorted(by_device.items()):
            held.add_metric([device], total)
        pool = GaugeMetricFamily("gradserve_gpu_pool_bytes", "Bytes in use in CuPy's pool.")
        pool.add_metric([], pool_bytes())
        return [active, held, pool]


class Metrics:
    """The process's metrics registry and its instruments."""

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

    def observe(self, transport: str, route: str, method: str, code: str, seconds: float) -> None:
        self.requests.labels(transport, route, method, code).inc()
        self.latency.labels(transport, route, method).observe(seconds)


def http_middleware(
    metrics: Metrics,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """Starlette middleware: request id, access log line, request metrics."""

    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            elapsed = time.perf_counter() - start
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics.observe("http", path, request.method, str(status), elapsed)
            log.info(
                "http request",
                extra={
                    "fields": {
                        "method": request.method,
                        "route": path,
                        "status": status,
                        "duration_ms": round(elapsed * 1e3, 3),
                    }
                },
            )
            REQUEST_ID.reset(token)

    return middleware


class GrpcObservability(grpc.aio.ServerInterceptor):
    """gRPC interceptor: request id, access log line and metrics for every RPC."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method: str = details.method
        metadata = dict(details.invocation_metadata or ())
        request_id = str(metadata.get("x-request-id") or uuid.uuid4().hex)
        observe = self._observer(method, request_id)
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

    def _observer(self, method: str, request_id: str) -> Callable[[Any], Any]:
        metrics = self.metrics

        class _Observe:
            def __init__(self, context: grpc.aio.ServicerContext) -> None:
                self.context = context

            def __enter__(self) -> None:
                self.token = REQUEST_ID.set(request_id)
                self.start = time.perf_counter()

            def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
                elapsed = time.perf_counter() - self.start
                code = self.context.code()
                if code is None:
                    code = grpc.StatusCode.OK if exc is None else _code_of(exc)
                name = code.name if isinstance(code, grpc.StatusCode) else str(code)
                metrics.observe("grpc", method, "POST", name, elapsed)
                log.info(
                    "grpc request",
                    extra={
                        "fields": {
                            "method": method,
                            "code": name,
                            "duration_ms": round(elapsed * 1e3, 3),
                        }
                    },
                )
                REQUEST_ID.reset(self.token)

        return _Observe


def _code_of(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN
    return status_of(exc).grpc
