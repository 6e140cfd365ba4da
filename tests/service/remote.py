"""Clients of a live server that speak the engine's command vocabulary on either wire.

A scenario or a notebook cell is written once, as command dicts (the HTTP batch's JSON); the
``HttpRemote`` sends them to ``POST /v1/sessions/{id}/batch``, the ``GrpcRemote`` converts
them to ``gradient.v1.Command`` messages for ``Execute``. Both return the same normalized
results (``Tensor``, ``Result``) and raise the same ``RemoteError``, so that a test can
compare the two wires with ``==``.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import httpx
import numpy

from engine.errors import EngineError
from service.dataplane import DataPlane, render
from service.errors import TABLE
from service.gen.gradient.v1 import gradient_pb2 as pb
from service.gen.gradient.v1 import gradient_pb2_grpc as pb_grpc
from service.wire import DTYPE_NAMES, bearer, command_message, tensor_array

# ----- normalized results -----

ArrayKey = tuple[str, tuple[int, ...], tuple[Any, ...]]


def array_key(array: numpy.ndarray) -> ArrayKey:
    """dtype, shape and elements, comparable with ``==`` (NaN as the string "nan")."""
    items = tuple(
        "nan" if isinstance(v, float) and math.isnan(v) else v for v in array.reshape(-1).tolist()
    )
    return array.dtype.name, tuple(array.shape), items


@dataclass(frozen=True)
class Tensor:
    """What a command reported about one tensor, whichever wire carried it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    is_leaf: bool
    grad_fn: str | None
    has_grad: bool
    value: ArrayKey | None
    grad: ArrayKey | None
    repr: str | None

    def item(self) -> Any:
        assert self.value is not None, f"{self.name} was read without its value"
        (only,) = self.value[2]
        return only


@dataclass(frozen=True)
class Result:
    kind: str
    tensors: tuple[Tensor | None, ...]


@dataclass(frozen=True)
class RemoteError(Exception):
    """A failed batch: the engine code, the failing command's index, the detail, and the
    exception class PyTorch raises (None where the failure is the service's own)."""

    code: str
    command_index: int | None
    detail: str
    torch_type: str | None

    def __str__(self) -> str:
        return f"{self.code} at {self.command_index}: {self.detail}"


class Remote(Protocol):
    """A session on a live server, on one wire."""

    def run(self, commands: Sequence[dict[str, Any]]) -> list[Result]: ...


# ----- HTTP -----

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def json_array(obj: dict[str, Any]) -> numpy.ndarray:
    """The array of the HTTP API's tensor form (flat data with "NaN" strings, or b64)."""
    dtype = numpy.dtype(obj["dtype"])
    if "b64" in obj:
        raw = base64.b64decode(obj["b64"])
        return numpy.frombuffer(raw, dtype.newbyteorder("<")).astype(dtype).reshape(obj["shape"])
    data = [_NONFINITE.get(v, v) if isinstance(v, str) else v for v in obj["data"]]
    return numpy.array(data, dtype=dtype).reshape(obj["shape"])


def http_tensor(body: dict[str, Any] | None) -> Tensor | None:
    if body is None:
        return None
    return Tensor(
        name=body["name"],
        shape=tuple(body["shape"]),
        dtype=body["dtype"],
        requires_grad=body["requires_grad"],
        is_leaf=body["is_leaf"],
        grad_fn=body["grad_fn"],
        has_grad=body["has_grad"],
        value=array_key(json_array(body["value"])) if "value" in body else None,
        grad=array_key(json_array(body["grad"])) if "grad" in body else None,
        repr=body.get("repr"),
    )


def http_error(response: httpx.Response) -> RemoteError:
    """The RemoteError of a problem response, whose status must be its code's in the table."""
    assert response.headers["content-type"] == "application/problem+json", response.text
    body = response.json()
    assert body["status"] == response.status_code
    if body["code"] in TABLE:  # else a routing error, which keeps the framework's status
        assert response.status_code == TABLE[body["code"]].http, body
    return RemoteError(
        body["code"], body.get("command_index"), body["detail"], body.get("torch_type")
    )


class HttpRemote:
    """A session over HTTP/JSON; ``binary`` asks for values as base64."""

    def __init__(
        self, client: httpx.Client, session_id: str, token: str, binary: bool = False
    ) -> None:
        self.client = client
        self.id = session_id
        self.token = token
        self.binary = binary

    @classmethod
    def open(cls, client: httpx.Client, api_key: str | None = None, seed: int = 0) -> HttpRemote:
        headers = {"X-API-Key": api_key} if api_key else {}
        response = client.post("/v1/sessions", json={"seed": seed}, headers=headers)
        assert response.status_code == 201, response.text
        return cls(client, response.json()["id"], response.json()["token"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def raw(self, commands: Any = None, **kwargs: Any) -> httpx.Response:
        """POST a batch of ``commands``, or the body given as ``content``."""
        if "content" not in kwargs:
            kwargs["json"] = {"commands": commands}
        return self.client.post(
            f"/v1/sessions/{self.id}/batch",
            params={"binary": "true"} if self.binary else {},
            headers={**self.headers, **kwargs.pop("headers", {})},
            **kwargs,
        )

    def run(self, commands: Sequence[dict[str, Any]]) -> list[Result]:
        response = self.raw(list(commands))
        if response.status_code != 200:
            raise http_error(response)
        return [
            Result(r["kind"], tuple(http_tensor(t) for t in r["tensors"]))
            for r in response.json()["results"]
        ]

    def close(self) -> None:
        self.client.delete(f"/v1/sessions/{self.id}", headers=self.headers)


# ----- gRPC -----


def _inferred(data: Any) -> numpy.ndarray:
    """Nested lists or a number, typed as torch.tensor types them (float32, int64, bool)."""
    array = numpy.array(data)
    if array.dtype.kind == "f":
        return array.astype(numpy.float32)
    if array.dtype.kind in "iu":
        return array.astype(numpy.int64)
    return array


def to_proto(command: dict[str, Any]) -> pb.Command:
    """The gradient.v1 message of a command dict, whose data may be JSON (nested lists, or
    the HTTP API's tensor form) where the client's is an array."""
    if command["kind"] == "create" and "data" in command:
        data = command["data"]
        array = json_array(data) if isinstance(data, dict) else _inferred(data)
        command = {**command, "data": array}
    return command_message(command)


def grpc_tensor(message: pb.TensorInfo) -> Tensor | None:
    if message.absent:
        return None
    return Tensor(
        name=message.name,
        shape=tuple(message.shape),
        dtype=DTYPE_NAMES[message.dtype],
        requires_grad=message.requires_grad,
        is_leaf=message.is_leaf,
        grad_fn=message.grad_fn or None,
        has_grad=message.has_grad,
        value=array_key(tensor_array(message.value)) if message.HasField("value") else None,
        grad=array_key(tensor_array(message.grad)) if message.HasField("grad") else None,
        repr=message.repr or None,
    )


def grpc_result(message: pb.CommandResult) -> Result:
    return Result(message.kind, tuple(grpc_tensor(t) for t in message.tensors))


def grpc_error(error: grpc.RpcError) -> RemoteError:
    """The RemoteError of a failed call: its engine code from the trailing metadata (else
    the status's name, for what gRPC itself refuses), the status its code's in the table."""
    assert isinstance(error, grpc.Call)
    trailers = dict(error.trailing_metadata() or ())
    index = trailers.get("command_index")
    code = str(trailers.get("code", error.code().name.lower()))
    assert error.code() == TABLE[code].grpc, (code, error.code())
    return RemoteError(
        code,
        None if index is None else int(index),
        error.details() or "",
        trailers.get("torch_type"),
    )


class GrpcRemote:
    """A session over gRPC: batches through Execute."""

    def __init__(self, stub: pb_grpc.GradientStub, session_id: str, token: str) -> None:
        self.stub = stub
        self.id = session_id
        self.token = token
        self.metadata = bearer(token)

    @classmethod
    def open(
        cls, stub: pb_grpc.GradientStub, api_key: str | None = None, seed: int = 0
    ) -> GrpcRemote:
        metadata = [("x-api-key", api_key)] if api_key else []
        created = stub.CreateSession(pb.CreateSessionRequest(seed=seed), metadata=metadata)
        return cls(stub, created.id, created.token)

    def run(self, commands: Sequence[dict[str, Any]]) -> list[Result]:
        request = pb.ExecuteRequest(session_id=self.id, commands=[to_proto(c) for c in commands])
        try:
            response = self.stub.Execute(request, metadata=self.metadata, timeout=30)
        except grpc.RpcError as exc:
            raise grpc_error(exc) from None
        return [grpc_result(r) for r in response.results]

    def close(self) -> None:
        request = pb.CloseSessionRequest(session_id=self.id)
        self.stub.CloseSession(request, metadata=self.metadata, timeout=10)


# ----- in process -----


class InProcess:
    """A session on a data plane in this process: the engine's own answers, as the wires'."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        info = plane.create_session(seed=0)
        self.id, self.token = info.id, str(info.token)

    def run(self, commands: Sequence[dict[str, Any]]) -> list[Result]:
        try:
            session = self.plane.session(self.id, self.token)
            results = self.plane.execute(session, list(commands))
        except EngineError as exc:
            raise RemoteError(exc.code, exc.command_index, str(exc), exc.torch_type) from None
        rendered = [render(r) for r in results]
        return [Result(r["kind"], tuple(http_tensor(t) for t in r["tensors"])) for r in rendered]
