"""Every failure as an RFC 9457 ``application/problem+json`` body, through one set of handlers.

Engine errors take their status from the one table in ``service.errors``; malformed or
ill-typed requests are 400 invalid_argument; routing errors keep the framework's status;
anything else is 500 with a generic detail, and its traceback goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from engine.errors import EngineError, InvalidArgument
from service.errors import problem

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
MAX_LISTED = 5  # validation errors named in a problem's detail


def problem_response(exc: BaseException) -> JSONResponse:
    """The problem response for an exception, by the one table."""
    body = problem(exc)
    headers = {"WWW-Authenticate": "Bearer"} if body["status"] == 401 else None
    return JSONResponse(body, body["status"], headers=headers, media_type=PROBLEM_JSON)


async def engine_error(request: Request, exc: Exception) -> JSONResponse:
    """An engine (or service) error: its row of the table."""
    return problem_response(exc)


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """Malformed JSON or a body, path or query that does not fit the models: 400."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return problem_response(InvalidArgument(_describe(errors)))


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """The framework's own errors (no such route, method not allowed, media type)."""
    status = HTTPStatus(getattr(exc, "status_code", 500))
    code = status.phrase.lower().replace(" ", "_")
    body = {
        "type": "about:blank",
        "title": status.phrase,
        "status": status.value,
        "detail": str(getattr(exc, "detail", status.description)),
        "code": code,
    }
    headers = getattr(exc, "headers", None)
    return JSONResponse(body, status.value, headers=headers, media_type=PROBLEM_JSON)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A bug: 500 with a generic detail; the traceback goes to the log, never to the client."""
    logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(exc)


def _describe(errors: Sequence[Any]) -> str:
    """A short detail from pydantic's errors: where, and what was wrong (never the input)."""
    parts = []
    for error in errors[:MAX_LISTED]:
        loc = error.get("loc", ())
        where = ".".join(str(part) for part in loc)
        if error.get("type") == "json_invalid":
            reason = error.get("ctx", {}).get("error", "")
            parts.append(f"malformed JSON at position {loc[-1]}: {reason}")
        else:
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = len(errors) - MAX_LISTED
    if more > 0:
        parts.append(f"and {more} more")
    return ("invalid request: " + "; ".join(parts)) if parts else "invalid request"


HANDLERS: dict[Any, Any] = {
    EngineError: engine_error,
    RequestValidationError: invalid_request,
    HTTPException: http_error,
    Exception: unexpected,
}
