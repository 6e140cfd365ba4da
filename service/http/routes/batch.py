"""Batches: a list of commands run atomically (Execute)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from service.http import batch_body
from service.http.deps import SessionDep, bearer, get_token, session_handle
from service.http.models import ExecuteRequest, ExecuteResponse
from service.http.routing import is_json, resource_router

# The query strings of the plain request, and what ``binary`` is then.
_PLAIN_QUERIES = {"": False, "binary=false": False, "binary=true": True}


class BatchRoute(APIRoute):
    """The batch route, built, documented and served by FastAPI, but for the plain request: a
    JSON body ``{"commands": [...]}`` of more than one command (a single op may run on the
    event loop: see ``service.dataplane``), no query string but ``binary=true|false``, and
    a bearer token. That one is read by ``service.http.batch_body``, which remembers what
    each command parses to, and answered as FastAPI would answer it: the token checked
    (its 401 before anything else, the body being valid JSON), the session, the batch run.
    Anything else is FastAPI's, which reads the same body again (Starlette keeps it)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        general = super().get_route_handler()

        async def handle(request: Request) -> Response:
            binary = _PLAIN_QUERIES.get(request.scope["query_string"].decode("latin-1"))
            content_type = request.headers.get("content-type")
            if binary is None or not content_type or not is_json(content_type):
                return await general(request)
            try:
                raw = await request.body()
            except HTTPException:
                raise  # the body limit's 413
            except Exception:
                return await general(request)  # which says what it says of a broken body
            commands = batch_body.split(raw)
            if commands is None or len(commands) < 2:
                return await general(request)
            token = await get_token(await bearer(request))
            session = await session_handle(request, request.path_params["session_id"], token)
            return await session.execute(commands.parsed, binary)

        return handle


router = resource_router("/sessions/{session_id}", "batch", route_class=BatchRoute)


@router.post("/batch", response_model=ExecuteResponse, response_model_exclude_unset=True)
async def execute(body: ExecuteRequest, session: SessionDep, binary: bool = False) -> Response:
    """Runs a batch of commands atomically: all take effect, or none does."""
    return await session.execute(body.commands, binary)
