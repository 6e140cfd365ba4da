"""The FastAPI application: routers, the body-size guard and the error handlers."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi.routing import APIRoute

from service.config import Settings
from service.dataplane import DataPlane
from service.http.limits import BodyLimit, BodyTooLarge, body_too_large
from service.http.problems import HANDLERS
from service.http.routes import ROUTERS, health
from service.observability import HttpObservability, Metrics


def _version() -> str:
    try:
        return version("gradserve")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def _operation_id(route: APIRoute) -> str:
    """OpenAPI operation ids are the route functions' names (create_session, apply_op, ...)."""
    return route.name


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
        generate_unique_id_function=_operation_id,
    )
    app.state.dataplane = dataplane
    app.state.settings = settings
    app.state.metrics = metrics or Metrics(dataplane)
    app.state.ready = False
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(HttpObservability, metrics=app.state.metrics)
    for router in ROUTERS:
        app.include_router(router, prefix="/v1")
    app.include_router(health.router)
    return app
