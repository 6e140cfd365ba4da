"""The request-size guard: bodies over ``max_request_bytes`` get 413 before any work is done."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import RequestTooLarge
from service.http.problems import problem_response
from service.observability import request_header


class BodyTooLarge(HTTPException):
    """Raised while a body streams in; an HTTPException so that FastAPI's body parsing lets it
    through (it turns other exceptions into 400). Its handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _message(limit))


async def body_too_large(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler for BodyTooLarge: the table's request_too_large problem."""
    return problem_response(RequestTooLarge(str(getattr(exc, "detail", exc))))


def _message(limit: int) -> str:
    return f"the request body exceeds the limit of {limit} bytes"


class BodyLimit:
    """Refuses a declared Content-Length over the limit up front, without calling the app, and
    stops a chunked body as soon as what has arrived passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = request_header(scope, b"content-length") or ""
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = problem_response(RequestTooLarge(_message(self.max_bytes)))
            await response(scope, receive, send)
            return
        received = 0

        async def guarded_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, guarded_receive, send)
