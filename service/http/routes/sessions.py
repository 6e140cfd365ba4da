"""Sessions: create, describe, close (CreateSession, GetSession, CloseSession)."""

from __future__ import annotations

from fastapi import Response

from service.http.deps import ApiKeyDep, PlaneDep, TokenDep
from service.http.models import CreateSessionRequest, Session
from service.http.routing import resource_router

router = resource_router("/sessions", "sessions")


@router.post("", status_code=201, response_model_exclude_none=True)
async def create_session(
    plane: PlaneDep, api_key: ApiKeyDep, body: CreateSessionRequest | None = None
) -> Session:
    """Creates a session and returns its id and secret token."""
    body = body or CreateSessionRequest()
    info = await plane.run(plane.create_session, body.device, body.seed, body.ttl_seconds, api_key)
    return Session.of(info)


@router.get("/{session_id}", response_model_exclude_none=True)
async def get_session(session_id: str, plane: PlaneDep, token: TokenDep) -> Session:
    """Describes a session: device, seed, TTL, tensor count and bytes held."""
    return Session.of(await plane.session_info(session_id, token))


@router.delete("/{session_id}", status_code=204)
async def close_session(session_id: str, plane: PlaneDep, token: TokenDep) -> Response:
    """Closes a session and frees everything it held."""
    await plane.close_session(session_id, token)
    return Response(status_code=204)
