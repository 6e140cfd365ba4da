"""``connect(url)``: a client for one server, over HTTP or gRPC as the URL's scheme says."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any

from .errors import Error
from .results import SessionInfo
from .session import Session
from .transport import Options, Transport, parse_url

log = logging.getLogger("gradserve")


class Client:
    """A connection to a gradserve server; ``session()`` opens remote ``torch`` namespaces.

    ``with`` closes the client: its open sessions, then its connection or channel.
    """

    def __init__(self, url: str, options: Options | None = None) -> None:
        self.url = url
        self.address = parse_url(url)
        self.options = options or Options()
        self.transport = _transport(self.address, self.options)
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<gradserve.Client {self.address}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        try:
            self.close()
        except Error:
            if kind is None:
                raise
            log.warning("gradserve: could not close %s", self, exc_info=True)

    def session(
        self,
        device: str | None = None,
        seed: int = 0,
        *,
        ttl: float | None = None,
        eager: bool = False,
        max_batch: int = 4096,
        local_values: bool = True,
        id: str | None = None,
        token: str | None = None,
    ) -> Session:
        """A new session (or, given ``id`` and ``token``, an existing one), usable as ``torch``.

        ``eager`` sends each command at once instead of batching; ``max_batch`` caps a batch;
        ``local_values`` lets the client compute exactly-known small results itself.
        """
        if id is not None or token is not None:
            if not (id and token):
                raise Error("invalid_argument", "attach to a session with both id and token")
            info = self.transport.session_info(id, token)
            info = SessionInfo(
                info.id,
                info.device,
                info.seed,
                info.ttl_seconds,
                info.tensors,
                info.bytes_held,
                token,
            )
        else:
            info = self.transport.create_session(device, seed, ttl)
        session = Session(
            self.transport,
            info,
            eager=eager,
            max_batch=max_batch,
            local_values=local_values,
            owner=self,
        )
        with self._lock:
            self._sessions.add(session)
        return session

    def close(self) -> None:
        """Close this client's open sessions, then its connection."""
        with self._lock:
            sessions = list(self._sessions)
        try:
            for session in sessions:
                session.close()
        finally:
            self.transport.close()


def _transport(address: Any, options: Options) -> Transport:
    if address.scheme.startswith("grpc"):
        from .grpc_transport import GrpcTransport

        return GrpcTransport(address, options)
    from .http_transport import HttpTransport

    return HttpTransport(address, options)


def connect(
    url: str,
    *,
    api_key: str | None = None,
    timeout: float = 60.0,
    connect_timeout: float = 5.0,
    retries: int = 3,
    backoff: float = 0.05,
    ca_file: str | None = None,
) -> Client:
    """A client for the server at ``url``: ``http(s)://host:port`` or ``grpc(s)://host:port``.

    ``api_key`` (default: ``$GRADSERVE_API_KEY``) is sent when creating sessions. ``timeout``
    bounds each request, ``connect_timeout`` opening a connection; ``retries`` and ``backoff``
    apply only where a request cannot have run. ``ca_file`` names the certificates trusted for
    ``https``/``grpcs`` (the system's by default).
    """
    options = Options(
        api_key=api_key if api_key is not None else os.environ.get("GRADSERVE_API_KEY"),
        timeout=timeout,
        connect_timeout=connect_timeout,
        retries=retries,
        backoff=backoff,
        ca_file=ca_file,
    )
    return Client(url, options)
