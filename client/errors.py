"""One exception type for every failure: the server's, the network's and the client's own.

``Error`` carries the server's ``code`` and ``detail`` exactly as both transports report them,
the exception class PyTorch raises for the same mistake (``torch_type``), the index of the
failing command in its batch, and the HTTP status of the code. An instance is also an
instance of its ``torch_type`` (``RuntimeError``, ``IndexError``, ...), so code written
against PyTorch catches it where it caught PyTorch's exception.
"""

from __future__ import annotations

import builtins
from typing import Any

# The service's table (service/errors.py), by code, plus what only a client can see.
STATUS: dict[str, int] = {
    "invalid_argument": 400,
    "failed_precondition": 409,
    "not_found": 404,
    "already_exists": 409,
    "resource_exhausted": 429,
    "request_too_large": 413,
    "unauthenticated": 401,
    "permission_denied": 403,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "deadline_exceeded": 504,
}
# What a client-side failure is an instance of, besides Error.
_BUILTINS = (
    "RuntimeError", "IndexError", "TypeError", "ValueError", "NotImplementedError",
    "ConnectionError", "TimeoutError",
)  # fmt: skip


class Error(Exception):
    """A failed request or command. ``where`` is the user's line that queued the command."""

    code: str
    detail: str
    torch_type: str
    command_index: int | None
    status: int
    where: str | None
    not_sent = False  # set by a transport: the request cannot have reached the server

    def __new__(cls, code: str, detail: str, **kwargs: Any) -> Error:
        if cls is Error:
            cls = _typed(kwargs.get("torch_type") or "RuntimeError")
        return super().__new__(cls, code, detail)

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        torch_type: str | None = None,
        command_index: int | None = None,
        status: int | None = None,
        where: str | None = None,
    ) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail
        self.torch_type = torch_type or "RuntimeError"
        self.command_index = command_index
        self.status = status if status is not None else STATUS.get(code, 500)
        self.where = where

    def __str__(self) -> str:
        text = f"{self.detail} [{self.code}]"
        if self.where:
            text += f"\n  from the command queued at {self.where}"
        return text

    def __reduce__(self) -> Any:
        kwargs = {
            "torch_type": self.torch_type,
            "command_index": self.command_index,
            "status": self.status,
            "where": self.where,
        }
        return (_rebuild, (self.code, self.detail, kwargs))

    def at(self, where: str | None) -> Error:
        """A copy that names the user's line; the original's other fields unchanged."""
        return Error(
            self.code,
            self.detail,
            torch_type=self.torch_type,
            command_index=self.command_index,
            status=self.status,
            where=where,
        )


def _rebuild(code: str, detail: str, kwargs: dict[str, Any]) -> Error:
    return Error(code, detail, **kwargs)


_TYPED: dict[str, type[Error]] = {}


def _typed(torch_type: str) -> type[Error]:
    """Error, also a subclass of the builtin exception named ``torch_type`` when there is one."""
    if torch_type not in _BUILTINS:
        return Error
    cls = _TYPED.get(torch_type)
    if cls is None:
        base = getattr(builtins, torch_type)
        cls = type("Error", (Error, base), {"__module__": Error.__module__, "__slots__": ()})
        cls.__qualname__ = "Error"
        _TYPED[torch_type] = cls
    return cls


def invalid(detail: str, torch_type: str = "RuntimeError") -> Error:
    """A mistake the client sees before sending anything, as the server would report it."""
    return Error("invalid_argument", detail, torch_type=torch_type)


def unavailable(detail: str) -> Error:
    return Error("unavailable", detail, torch_type="ConnectionError")


def deadline(detail: str) -> Error:
    return Error("deadline_exceeded", detail, torch_type="TimeoutError")
