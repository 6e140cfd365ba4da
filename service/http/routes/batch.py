"""Batches: a list of commands run atomically (Execute)."""

from __future__ import annotations

from fastapi import Response

from service.http.deps import SessionDep
from service.http.models import ExecuteRequest, ExecuteResponse
from service.http.routing import resource_router

router = resource_router("/sessions/{session_id}", "batch")


@router.post("/batch", response_model=ExecuteResponse, response_model_exclude_unset=True)
async def execute(body: ExecuteRequest, session: SessionDep, binary: bool = False) -> Response:
    """Runs a batch of commands atomically: all take effect, or none does."""
    return await session.execute(body.commands, binary)
