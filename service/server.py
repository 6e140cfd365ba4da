"""One process, two servers, one event loop: HTTP (uvicorn) and gRPC over one data plane.

SIGTERM or SIGINT stops accepting new work, lets in-flight requests and RPCs finish, then
returns (exit status 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from service.config import Settings
from service.dataplane import DataPlane
from service.grpc_server import create_grpc_server
from service.http.app import create_app
from service.observability import GrpcObservability, Metrics

log = logging.getLogger("gradserve")
GRACE_SECONDS = 10


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process runner owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_protocol() -> str:
    """uvicorn's HTTP/1.1 parser: httptools (C, a dependency), else h11 (pure Python).

    Named rather than left to uvicorn's "auto", which falls back to h11 silently: h11 alone
    takes ~5x the time of a raw socket to read a 64 MiB body (bench/RESULTS.md, service).
    """
    try:
        import httptools  # noqa: F401
    except ImportError:  # a platform without a httptools wheel: slower, still correct
        return "h11"
    return "httptools"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it a response written in two parts waits out the peer's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(settings: Settings) -> None:
    """Run both servers until SIGTERM or SIGINT."""
    dataplane = DataPlane(settings)
    metrics = Metrics(dataplane)
    app = create_app(dataplane, settings, metrics)
    grpc_server, health = create_grpc_server(
        dataplane, settings, interceptors=[GrpcObservability(metrics)]
    )
    grpc_port = grpc_server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
    sock = _bind(settings.host, settings.http_port)
    http_port = sock.getsockname()[1]
    parser = http_protocol()
    http = _HttpServer(
        uvicorn.Config(
            app,
            http=parser,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=GRACE_SECONDS,
            lifespan="off",
        )
    )
    await grpc_server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    http_task = asyncio.create_task(http.serve(sockets=[sock]))
    while not http.started and not http_task.done():
        await asyncio.sleep(0.01)
    log.info(
        "gradserve listening",
        extra={
            "fields": {
                "http": f"{settings.host}:{http_port}",
                "grpc": f"{settings.host}:{grpc_port}",
                "http_parser": parser,
            }
        },
    )
    # What the process holds once started (modules, both apps: some 80k objects) is moved out
    # of the collector's reach: each full collection walked all of it again, ~20 ms a few
    # times a second under a stream of batches, which allocate many short-lived objects.
    gc.collect()  # start-up's garbage is not kept for good
    gc.freeze()
    app.state.ready = True
    await asyncio.wait(
        [http_task, asyncio.create_task(stopping.wait())], return_when="FIRST_COMPLETED"
    )
    log.info("gradserve stopping: finishing in-flight requests")
    app.state.ready = False
    await health.enter_graceful_shutdown()
    http.should_exit = True
    try:
        await asyncio.gather(grpc_server.stop(GRACE_SECONDS), http_task)
        await loop.run_in_executor(None, dataplane.shutdown)
    finally:
        metrics.flush()  # the last requests' access log lines come before the last line
    log.info("gradserve stopped")
