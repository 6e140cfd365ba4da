"""Operations endpoints outside ``/v1``: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.http.routing import resource_router

router = resource_router("", "operations", api=False)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, response: Response) -> dict[str, str]:
    """Readiness: both servers are up and not shutting down."""
    if not getattr(request.app.state, "ready", False):
        response.status_code = 503
        return {"status": "not ready"}
    return {"status": "ready"}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    metrics = request.app.state.metrics
    metrics.flush()  # the requests served before this one, recorded in batches
    registry = metrics.registry
    # Collecting reads every session under its lock: never on the event loop.
    text = await asyncio.to_thread(generate_latest, registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
