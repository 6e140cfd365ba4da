"""The transport interface, its options, and retries where a retry is safe.

A transport moves sessions and batches of commands (the engine's JSON vocabulary, with
``numpy`` arrays for tensor data) and returns ``results`` types; every failure is an
``Error``. Two implementations: HTTP/JSON on one keep-alive connection, gRPC on a channel.
"""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .errors import Error
from .results import CommandResult, SessionInfo

log = logging.getLogger("gradserve")
T = TypeVar("T")

DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 50051, "grpcs": 443}


@dataclass(frozen=True)
class Options:
    """How a client talks to the server.

    ``timeout`` bounds each request once connected; ``connect_timeout`` bounds opening a
    connection. ``retries`` retries with exponential backoff starting at ``backoff`` seconds,
    only where the request cannot have run: the connection could not be opened, or the call
    only reads. ``ca_file`` names the certificates to trust for ``https``/``grpcs`` (the
    system's when unset).
    """

    api_key: str | None = None
    timeout: float = 60.0
    connect_timeout: float = 5.0
    retries: int = 3
    backoff: float = 0.05
    ca_file: str | None = None
    max_message_bytes: int = 256 << 20


@dataclass(frozen=True)
class Address:
    scheme: str
    host: str
    port: int
    path: str

    @property
    def secure(self) -> bool:
        return self.scheme in ("https", "grpcs")

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.target}{self.path}"


def parse_url(url: str) -> Address:
    """``http(s)://host[:port][/prefix]`` or ``grpc(s)://host[:port]``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise Error(
            "invalid_argument",
            f"unsupported URL {url!r}: use http://, https://, grpc:// or grpcs://",
            torch_type="ValueError",
        )
    if not parts.hostname:
        raise Error("invalid_argument", f"no host in URL {url!r}", torch_type="ValueError")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise Error(
            "invalid_argument", f"bad port in URL {url!r}", torch_type="ValueError"
        ) from exc
    path = parts.path.rstrip("/")
    if path and scheme.startswith("grpc"):
        raise Error("invalid_argument", f"a gRPC URL has no path: {url!r}", torch_type="ValueError")
    return Address(scheme, parts.hostname, port, path)


class Transport(ABC):
    """Sessions and batches over one wire. ``round_trips`` counts requests sent."""

    def __init__(self, address: Address, options: Options) -> None:
        self.address = address
        self.options = options
        self.round_trips = 0

    @abstractmethod
    def create_session(self, device: str | None, seed: int, ttl: float | None) -> SessionInfo:
        """A new session, with its token."""

    @abstractmethod
    def session_info(self, session_id: str, token: str) -> SessionInfo:
        """The server's view of a session (tensor count, bytes held)."""

    @abstractmethod
    def close_session(self, session_id: str, token: str) -> None:
        """Close a session; its tensors are freed."""

    @abstractmethod
    def execute(
        self, session_id: str, token: str, commands: list[dict[str, Any]]
    ) -> list[CommandResult]:
        """Run a batch atomically; one result per command."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection or channel."""

    def retrying(self, call: Callable[[], T], safe: Callable[[Error], bool]) -> T:
        """``call()``, again after a backoff while it fails with an error ``safe`` accepts."""
        attempt = 0
        while True:
            try:
                return call()
            except Error as exc:
                if attempt >= self.options.retries or not safe(exc):
                    raise
                delay = self.options.backoff * (2**attempt) * (0.5 + random.random())
                attempt += 1
                log.info("gradserve: %s; retry %d in %.3f s", exc.detail, attempt, delay)
                time.sleep(delay)
