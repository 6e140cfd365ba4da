"""HTTP/JSON transport on one keep-alive connection (``http.client``).

``http.client`` is the fastest of the libraries measured for one small batch per round trip
(``python -m bench client`` records the figures against httpx, urllib3 and requests): it adds
the least on top of the socket, and a client that sends one request at a time needs no pool.
"""

from __future__ import annotations

import base64
import http.client
import json
import select
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import quote

import numpy

from .errors import STATUS, Error, deadline, unavailable
from .results import CommandResult, SessionInfo, TensorInfo
from .transport import Address, Options, Transport

# Servers close idle keep-alive connections (uvicorn after 5 s); reconnect before they do, so a
# batch is never written into a connection the server is closing.
IDLE_RECONNECT = 4.0
_CODES = {status: code for code, status in reversed(list(STATUS.items()))}


class HttpTransport(Transport):
    def __init__(self, address: Address, options: Options) -> None:
        super().__init__(address, options)
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0
        self._lock = threading.Lock()
        self._ssl = ssl.create_default_context(cafile=options.ca_file) if address.secure else None

    # ----- the API -----

    def create_session(self, device: str | None, seed: int, ttl: float | None) -> SessionInfo:
        body: dict[str, Any] = {"seed": seed}
        if device is not None:
            body["device"] = device
        if ttl is not None:
            body["ttl_seconds"] = ttl
        headers = {"X-API-Key": self.options.api_key} if self.options.api_key else {}
        return _session(self._call("POST", "/v1/sessions", body, headers, idempotent=False))

    def session_info(self, session_id: str, token: str) -> SessionInfo:
        path = f"/v1/sessions/{quote(session_id, safe='')}"
        return _session(self._call("GET", path, None, _bearer(token), idempotent=True))

    def close_session(self, session_id: str, token: str) -> None:
        path = f"/v1/sessions/{quote(session_id, safe='')}"
        self._call("DELETE", path, None, _bearer(token), idempotent=True)

    def execute(
        self, session_id: str, token: str, commands: list[dict[str, Any]]
    ) -> list[CommandResult]:
        path = f"/v1/sessions/{quote(session_id, safe='')}/batch?binary=true"
        out = self._call("POST", path, {"commands": commands}, _bearer(token), idempotent=False)
        return [_result(r) for r in out["results"]]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ----- requests -----

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
        idempotent: bool,
    ) -> Any:
        raw = None if body is None else json.dumps(body, default=_jsonable).encode()
        headers = {"Accept": "application/json", **headers}
        if raw is not None:
            headers["Content-Type"] = "application/json"
        full = self.address.path + path

        def safe(exc: Error) -> bool:
            return exc.not_sent or (idempotent and exc.code == "unavailable")

        with self._lock:
            status, data = self.retrying(lambda: self._send(method, full, raw, headers), safe)
        if 200 <= status < 300:
            return json.loads(data) if data else None
        raise _problem(status, data)

    def _send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        conn = self._connection()
        self.round_trips += 1
        try:
            conn.request(method, path, body=body, headers=headers)
        except OSError as exc:  # the server cannot hold a whole request: safe to send again
            self._drop()
            raise _not_sent(
                unavailable(f"lost the connection to gradserve at {self.address}: {exc}")
            ) from exc
        try:
            response = conn.getresponse()
            data = response.read()
        except TimeoutError as exc:
            self._drop()
            raise deadline(
                f"no response from gradserve at {self.address} within {self.options.timeout:g} s"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise unavailable(
                f"gradserve at {self.address} closed the connection before answering "
                f"({type(exc).__name__}); the request may or may not have run"
            ) from exc
        self._last_used = time.monotonic()
        if response.will_close:
            self._drop()
        return response.status, data

    def _connection(self) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is not None and conn.sock is not None:
            idle = time.monotonic() - self._last_used
            if idle < IDLE_RECONNECT and not _dropped(conn.sock):
                return conn
        self._drop()
        if self._ssl is not None:
            conn = http.client.HTTPSConnection(
                self.address.host,
                self.address.port,
                timeout=self.options.connect_timeout,
                context=self._ssl,
            )
        else:
            conn = http.client.HTTPConnection(
                self.address.host, self.address.port, timeout=self.options.connect_timeout
            )
        try:
            conn.connect()
        except OSError as exc:  # refused, unreachable, name unknown, TLS handshake, timeout
            conn.close()
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise _not_sent(
                unavailable(f"cannot connect to gradserve at {self.address}: {reason}")
            ) from exc
        assert conn.sock is not None
        conn.sock.settimeout(self.options.timeout)
        # http.client writes a large body apart from its headers: without TCP_NODELAY the body
        # would wait for the server's delayed ACK of the headers.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn
        self._last_used = time.monotonic()
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle connection was closed by the server (it is readable: EOF or junk)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _not_sent(exc: Error) -> Error:
    exc.not_sent = True
    return exc


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, numpy.ndarray):
        little = numpy.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        return {
            "shape": list(value.shape),
            "dtype": value.dtype.name,
            "b64": base64.b64encode(little.tobytes()).decode("ascii"),
        }
    if isinstance(value, numpy.generic):
        return value.item()
    raise TypeError(f"cannot send {type(value).__name__} to gradserve")


def _problem(status: int, data: bytes) -> Error:
    """An RFC 9457 problem body (or a proxy's page) as an Error."""
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = data.decode("utf-8", "replace").strip()[:200]
        code = _CODES.get(status, "unavailable" if status in (502, 503) else "internal")
        return Error(code, f"HTTP {status}: {text or http.client.responses.get(status, '')}")
    index = body.get("command_index")
    return Error(
        str(body.get("code") or _CODES.get(status, "internal")),
        str(body.get("detail") or body.get("title") or f"HTTP {status}"),
        torch_type=body.get("torch_type"),
        command_index=index if isinstance(index, int) else None,
        status=status,
    )


def _session(body: dict[str, Any]) -> SessionInfo:
    return SessionInfo(
        id=body["id"],
        device=body["device"],
        seed=body["seed"],
        ttl_seconds=body["ttl_seconds"],
        tensors=body["tensors"],
        bytes_held=body["bytes_held"],
        token=body.get("token"),
    )


def _array(obj: dict[str, Any] | None) -> numpy.ndarray | None:
    if obj is None:
        return None
    dtype = numpy.dtype(obj["dtype"])
    shape = tuple(obj["shape"])
    if "b64" in obj:
        raw = base64.b64decode(obj["b64"])
        return numpy.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    values = [_number(v) for v in obj["data"]]
    return numpy.array(values, dtype=dtype).reshape(shape)


def _number(value: Any) -> Any:
    if isinstance(value, str):  # the JSON codec's names for non-finite floats
        return {"NaN": numpy.nan, "Infinity": numpy.inf, "-Infinity": -numpy.inf}[value]
    return value


def _info(obj: dict[str, Any] | None) -> TensorInfo | None:
    if obj is None:
        return None
    return TensorInfo(
        name=obj["name"],
        shape=tuple(obj["shape"]),
        dtype=obj["dtype"],
        requires_grad=obj["requires_grad"],
        is_leaf=obj["is_leaf"],
        grad_fn=obj.get("grad_fn"),
        has_grad=obj["has_grad"],
        value=_array(obj.get("value")),
        grad=_array(obj.get("grad")),
        repr=obj.get("repr"),
    )


def _result(obj: dict[str, Any]) -> CommandResult:
    return CommandResult(obj["kind"], tuple(_info(t) for t in obj["tensors"]))
