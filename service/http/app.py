"""The FastAPI application: routers, the body-size guard and the error handlers."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI

from service.config import Settings
from service.dataplane import DataPlane
from service.http.limits import BodyLimit, BodyTooLarge, body_too_large
from service.http.problems import HANDLERS
from service.http.routes import ROUTERS
from service.http.routing import operation_id
from service.observability import HttpObservability, Metrics


def _version() -> str:
    try:
        return version("gradserve")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def create_app(dataplane: DataPlane, settings: Settings, metrics: Metrics | None = None) -> FastAPI:
    """The HTTP/JSON API over ``dataplane``; the caller owns (and shuts down) the data plane.

    ``metrics`` (shared with the gRPC server) adds request metrics, request ids and access
    logs to every route; ``/metrics`` serves them. ``app.state.ready`` drives ``/readyz``.
    """
    app = FastAPI(
        title="gradserve",
        summary="Automatic differentiation as a service: PyTorch's autograd over HTTP/JSON.",
        version=_version(),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        exception_handlers={**HANDLERS, BodyTooLarge: body_too_large},
        generate_unique_id_function=operation_id,
    )
    app.state.dataplane = dataplane
    app.state.settings = settings
    app.state.metrics = metrics or Metrics(dataplane)
    app.state.ready = False
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(HttpObservability, metrics=app.state.metrics)
    # Route by route, not include_router (see service.http.routing), and ahead of FastAPI's
    # own /openapi.json and /docs routes: a request is matched in this order.
    app.router.routes[:0] = [route for router in ROUTERS for route in router.routes]
    return app
