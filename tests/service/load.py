"""Bounded client load on a live server, for the shutdown test: what each request got.

Every request sends its own request id and asks for ``y = x * k`` and y's value, so that a
reply can be checked whole (the value is right) and matched against the server's log (the
server logs the id of every request it served). A request ends in one of three ways:

- ``ok``: a complete, valid reply;
- ``refused``: a connection error before any reply (the server had stopped taking work);
- ``cancelled``: gRPC's CANCELLED before any reply. gRPC core cancels the calls that have
  arrived but that the application has not yet picked up when the server stops; the test
  checks in the server's log that it never ran them;
- ``bad``: anything else (a truncated or garbled reply, a wrong value, another error, a
  request that hung past its timeout). The shutdown test wants none.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from service.gen.gradient.v1 import gradient_pb2 as pb
from service.gen.gradient.v1 import gradient_pb2_grpc as pb_grpc
from tests.service.remote import bearer, grpc_result, to_proto

X = [1.0, 2.0, 3.0, 4.0]
TIMEOUT = 10.0  # per request: a request that takes longer has hung
AFTER_REFUSAL = 3  # requests a client still tries once refused: they must be refused too
STREAM_BATCHES = 4  # requests per ExecuteStream call


def commands(k: int) -> list[dict[str, Any]]:
    return [
        {"kind": "op", "op": "mul", "inputs": ["x", k], "name": "y"},
        {"kind": "get", "tensor": "y", "value": True},
    ]


def expected(k: int) -> list[float]:
    return [v * k for v in X]


@dataclass
class Tally:
    """What the requests of one client got, by request id."""

    ok: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)

    def total(self) -> int:
        return len(self.ok) + len(self.refused) + len(self.cancelled) + len(self.bad)


class Client:
    """One load thread: up to ``count`` requests, until refused or past ``deadline``."""

    def __init__(self, name: str, count: int, deadline: float) -> None:
        self.name = name
        self.count = count
        self.deadline = deadline
        self.tally = Tally()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        refusals = 0
        try:
            for k in range(self.count):
                if time.monotonic() > self.deadline or refusals > AFTER_REFUSAL:
                    break
                for request_id, outcome in self.send(k):
                    if outcome == "ok":
                        self.tally.ok.append(request_id)
                    elif outcome in ("refused", "cancelled"):
                        getattr(self.tally, outcome).append(request_id)
                        refusals += 1
                    else:
                        self.tally.bad.append((request_id, outcome))
        finally:
            self.close()

    def send(self, k: int) -> Iterator[tuple[str, str]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class HttpClient(Client):
    """Batches over one keep-alive HTTP/1.1 connection (``http.client``: it tells a
    connection closed before any reply from a reply cut short)."""

    def __init__(self, port: int, session: tuple[str, str], count: int, deadline: float) -> None:
        super().__init__("http", count, deadline)
        self.port = port
        self.path = f"/v1/sessions/{session[0]}/batch"
        self.auth = f"Bearer {session[1]}"
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)

    def send(self, k: int) -> Iterator[tuple[str, str]]:
        request_id = new_id("http")
        body = json.dumps({"commands": commands(k)})
        headers = {
            "Content-Type": "application/json",
            "Authorization": self.auth,
            "X-Request-ID": request_id,
        }
        try:
            self.conn.request("POST", self.path, body, headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
            # RemoteDisconnected is a ConnectionResetError: closed before any reply byte.
            self.conn.close()
            yield request_id, "refused"
            return
        except Exception as exc:  # IncompleteRead, BadStatusLine, a timeout: never allowed
            self.conn.close()
            yield request_id, f"{type(exc).__name__}: {exc}"
            return
        if response.status != 200:
            yield request_id, f"HTTP {response.status}: {raw[:200]!r}"
            return
        try:
            value = json.loads(raw)["results"][1]["tensors"][0]["value"]["data"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            yield request_id, f"garbled reply ({exc}): {raw[:200]!r}"
            return
        yield request_id, "ok" if value == expected(k) else f"wrong value {value}"

    def close(self) -> None:
        self.conn.close()


def _grpc_outcome(error: grpc.RpcError) -> str:
    assert isinstance(error, grpc.Call)
    if error.code() == grpc.StatusCode.UNAVAILABLE:
        return "refused"
    if error.code() == grpc.StatusCode.CANCELLED:
        return "cancelled"
    return f"{error.code().name}: {error.details()}"


def _check(response: pb.ExecuteResponse, k: int) -> str:
    if response.HasField("error"):
        return f"in-band error {response.error.code}: {response.error.detail}"
    read = grpc_result(response.results[1]).tensors[0]
    value = None if read is None or read.value is None else list(read.value[2])
    return "ok" if value == expected(k) else f"wrong value {value}"


class GrpcClient(Client):
    """Unary Execute calls on one channel."""

    def __init__(self, target: str, session: tuple[str, str], count: int, deadline: float) -> None:
        super().__init__("grpc", count, deadline)
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.GradientStub(self.channel)
        self.session_id = session[0]
        self.metadata = bearer(session[1])

    def request(self, k: int) -> pb.ExecuteRequest:
        return pb.ExecuteRequest(
            session_id=self.session_id, commands=[to_proto(c) for c in commands(k)]
        )

    def send(self, k: int) -> Iterator[tuple[str, str]]:
        request_id = new_id("grpc")
        metadata = (*self.metadata, ("x-request-id", request_id))
        try:
            response = self.stub.Execute(self.request(k), metadata=metadata, timeout=TIMEOUT)
        except grpc.RpcError as exc:
            yield request_id, _grpc_outcome(exc)
            return
        yield request_id, _check(response, k)

    def close(self) -> None:
        self.channel.close()


class StreamClient(GrpcClient):
    """ExecuteStream calls of a few pipelined batches each; the call's id is every batch's."""

    def send(self, k: int) -> Iterator[tuple[str, str]]:
        request_id = new_id("stream")
        metadata = (*self.metadata, ("x-request-id", request_id))
        ks = [k * STREAM_BATCHES + j for j in range(STREAM_BATCHES)]
        outcomes: list[str] = []
        try:
            responses = self.stub.ExecuteStream(
                iter([self.request(j) for j in ks]), metadata=metadata, timeout=TIMEOUT
            )
            for response, j in zip(responses, ks, strict=False):
                outcomes.append(_check(response, j))
        except grpc.RpcError as exc:
            answered = len(outcomes)
            outcome = _grpc_outcome(exc)
            # Refused means refused at the start: a stream cut after some answers lost replies.
            yield request_id, outcome if answered == 0 else f"stream cut: {outcome}"
            return
        if len(outcomes) != len(ks):
            yield request_id, f"stream ended after {len(outcomes)} of {len(ks)} replies"
            return
        bad = [o for o in outcomes if o != "ok"]
        yield request_id, bad[0] if bad else "ok"


def run_load(
    clients: list[Client], trigger: Callable[[], None], after_requests: int, after_seconds: float
) -> None:
    """Start the clients; call ``trigger`` once they have made ``after_requests`` requests (or
    after ``after_seconds``); wait for all of them, each bounded by its deadline."""
    for client in clients:
        client.thread.start()
    start = time.monotonic()
    while time.monotonic() - start < after_seconds:
        if sum(c.tally.total() for c in clients) >= after_requests:
            break
        time.sleep(0.01)
    trigger()
    for client in clients:
        client.thread.join(max(0.0, client.deadline - time.monotonic()) + TIMEOUT + 1)
