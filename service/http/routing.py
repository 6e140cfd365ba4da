"""How the routes are built: resource routers whose routes the app takes one by one, and the
route class of the autograd commands, which FastAPI documents as usual but serves without
its dependency solver.

Both for the cost of a request. An ``app.include_router`` keeps the router whole, and FastAPI
matches an included router's routes twice per request (to choose it, then to handle it).
Solving the commands' dependencies (the body, the session, its token, the bearer scheme)
cost FastAPI ~100 us a request on this VM, more than running the command.
"""

from __future__ import annotations

import email.message
import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.dependencies.utils import request_body_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic_core import PydanticUndefined
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from service.http.deps import bearer, get_token, session_handle

API_PREFIX = "/v1"


def operation_id(route: APIRoute) -> str:
    """OpenAPI operation ids are the route functions' names (create_session, apply_op, ...)."""
    return route.name


def resource_router(
    prefix: str, tag: str, route_class: type[APIRoute] = APIRoute, api: bool = True
) -> APIRouter:
    """The router of one resource; ``create_app`` adds its routes to the app itself."""
    return APIRouter(
        prefix=(API_PREFIX if api else "") + prefix,
        tags=[tag],
        route_class=route_class,
        generate_unique_id_function=operation_id,
    )


class CommandRoute(APIRoute):
    """A route whose endpoint takes one JSON body model and the ``SessionDep`` (nothing else).

    FastAPI builds, checks and documents it from the endpoint like any route. A request
    calls the endpoint with what FastAPI would have passed, got by the same functions in the
    same order (body parsing and its JSON errors; the bearer scheme and ``get_token``, whose
    401 comes before any validation error; ``session_handle``; the body model's validation
    by FastAPI's own ``request_body_to_args``), but without FastAPI's generic solver.
    ``tests/service/test_http_routing.py`` holds both route classes to the same answers.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        # Served as a plain ASGI app: FastAPI's wrapper around a route handler opens two exit
        # stacks and a second layer of exception handlers per request; an exception raised
        # here meets the same handlers one layer up, in Starlette's ExceptionMiddleware.
        handle = self._handle

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await handle(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant, body_field = self.dependant, self.body_field
        sessions = [d for d in dependant.dependencies if d.call is session_handle]
        if (
            len(sessions) != 1
            or len(dependant.dependencies) != 1
            or body_field is None
            or len(dependant.body_params) != 1
            or dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or self.max_body_size is not None
        ):
            raise TypeError(f"{self.name} must take one JSON body model and the SessionDep")
        session_param = str(sessions[0].name)
        embed = self._embed_body_fields
        endpoint = dependant.call
        assert endpoint is not None

        async def handle(request: Request) -> Response:
            body = await _json_body(request)
            token = await get_token(await bearer(request))
            session = await session_handle(request, request.path_params["session_id"], token)
            values, errors = await request_body_to_args([body_field], body, embed)
            if errors:
                raise RequestValidationError(errors, body=body)
            response: Response = await endpoint(**values, **{session_param: session})
            return response

        self._handle = handle
        return handle


async def _json_body(request: Request) -> Any:
    """The body as FastAPI's request handler reads it: JSON when the content type says so
    (else the bytes, which then fail validation), nothing when empty."""
    try:
        raw = await request.body()
        if not raw:
            return PydanticUndefined  # FastAPI's mark of a missing body
        content_type = request.headers.get("content-type")
        if content_type and is_json(content_type):
            return json.loads(raw)
        return raw
    except json.JSONDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error], body=exc.doc) from exc
    except HTTPException:
        raise  # the body limit's 413
    except Exception as exc:
        raise HTTPException(400, "There was an error parsing the body") from exc


@functools.lru_cache(maxsize=64)
def is_json(content_type: str) -> bool:
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")
