"""The one table from engine errors to HTTP statuses and gRPC codes, used by both frontends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from engine.errors import EngineError


class PermissionDenied(EngineError):
    """The server's API key is missing or wrong."""

    code = "permission_denied"


class RequestTooLarge(EngineError):
    """A body or message exceeds the configured maximum request size."""

    code = "request_too_large"


@dataclass(frozen=True)
class Status:
    http: int
    grpc: grpc.StatusCode
    title: str


TABLE: dict[str, Status] = {
    "invalid_argument": Status(400, grpc.StatusCode.INVALID_ARGUMENT, "Invalid argument"),
    "failed_precondition": Status(409, grpc.StatusCode.FAILED_PRECONDITION, "Failed precondition"),
    "not_found": Status(404, grpc.StatusCode.NOT_FOUND, "Not found"),
    "already_exists": Status(409, grpc.StatusCode.ALREADY_EXISTS, "Already exists"),
    "resource_exhausted": Status(429, grpc.StatusCode.RESOURCE_EXHAUSTED, "Resource exhausted"),
    "request_too_large": Status(413, grpc.StatusCode.RESOURCE_EXHAUSTED, "Request too large"),
    "unauthenticated": Status(401, grpc.StatusCode.UNAUTHENTICATED, "Unauthenticated"),
    "permission_denied": Status(403, grpc.StatusCode.PERMISSION_DENIED, "Permission denied"),
    "unimplemented": Status(501, grpc.StatusCode.UNIMPLEMENTED, "Not implemented"),
    "internal": Status(500, grpc.StatusCode.INTERNAL, "Internal error"),
}
INTERNAL = TABLE["internal"]
GENERIC_DETAIL = "internal error; see the server log"


def status_of(exc: BaseException) -> Status:
    """The status for an exception: its code's row, or 500 / INTERNAL for anything else."""
    if isinstance(exc, EngineError):
        return TABLE.get(exc.code, INTERNAL)
    return INTERNAL


def problem(exc: BaseException) -> dict[str, Any]:
    """An RFC 9457 problem body; unexpected errors get a generic detail (no internals leak)."""
    status = status_of(exc)
    engine_error = isinstance(exc, EngineError)
    code = exc.code if isinstance(exc, EngineError) else "internal"
    body: dict[str, Any] = {
        "type": f"https://gradserve.dev/problems/{code.replace('_', '-')}",
        "title": status.title,
        "status": status.http,
        "detail": str(exc) if engine_error else GENERIC_DETAIL,
        "code": code,
    }
    if isinstance(exc, EngineError):
        body["torch_type"] = exc.torch_type
        if exc.command_index is not None:
            body["command_index"] = exc.command_index
    return body
