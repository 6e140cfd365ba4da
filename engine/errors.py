"""The engine's typed errors. Frontends map each class to one HTTP and one gRPC status.

The message of an error that PyTorch also raises is PyTorch's text, word for word, and
``torch_type`` names the Python exception class PyTorch raises.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""

    code = "internal"
    torch_type = "RuntimeError"
    command_index: int | None = None  # set when the error comes from a command of a batch

    def __init__(self, message: str, *, torch_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if torch_type is not None:
            self.torch_type = torch_type

    def __str__(self) -> str:
        return self.message


class InvalidArgument(EngineError):
    """The request is wrong whatever the state: bad shapes, dtypes, arguments."""

    code = "invalid_argument"


class FailedPrecondition(EngineError):
    """The request is well formed but the state forbids it (freed graph, version mismatch)."""

    code = "failed_precondition"


class NotFound(EngineError):
    """A named tensor or session does not exist."""

    code = "not_found"


class AlreadyExists(EngineError):
    """A name is already taken."""

    code = "already_exists"


class ResourceExhausted(EngineError):
    """A configured limit or the device's memory would be exceeded."""

    code = "resource_exhausted"


class Unauthenticated(EngineError):
    """A session token is missing or wrong."""

    code = "unauthenticated"


class Unimplemented(EngineError):
    """A known operation that the engine does not support in this form."""

    code = "unimplemented"
