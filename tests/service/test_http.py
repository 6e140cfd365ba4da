"""The HTTP/JSON frontend, in process: every route, every error class, and the seed notebook.

Each error test snapshots the session before and after the failing request: a request that
fails changes nothing.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy
import pytest
from fastapi import FastAPI

from service import codec
from service.config import Settings
from service.dataplane import DataPlane
from service.errors import GENERIC_DETAIL
from service.http import create_app
from tests import seed

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
NPY = "application/x-npy"
API_KEY = "s3cret-key"
SMALL_LIMIT = 4096


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _app(settings: Settings) -> Iterator[FastAPI]:
    plane = DataPlane(settings)
    try:
        yield create_app(plane, settings)
    finally:
        plane.shutdown()


@pytest.fixture(scope="module")
def app() -> Iterator[FastAPI]:
    yield from _app(Settings(max_request_bytes=64 << 20))


@pytest.fixture(scope="module")
def strict_app() -> Iterator[FastAPI]:
    """A server with an API key and a small request limit."""
    yield from _app(Settings(max_request_bytes=SMALL_LIMIT, api_key=API_KEY))


def _client(app: FastAPI, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://test/v1")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app) as c:
        yield c


@dataclass
class Api:
    """A session over HTTP, with the few calls the tests repeat."""

    client: httpx.AsyncClient
    id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def url(self, path: str) -> str:
        return f"/sessions/{self.id}{path}"

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return await self.client.request(method, self.url(path), headers=headers, **kwargs)

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        assert response.is_success, response.text
        return response.json() if response.content else None

    async def post(self, path: str, body: Any) -> Any:
        return await self.ok("POST", path, json=body)

    async def create(self, name: str, **fields: Any) -> dict[str, Any]:
        result = await self.post("/tensors", {"name": name, **fields})
        return result["tensors"][0]

    async def op(self, name: str, op: str, *inputs: Any, **attrs: Any) -> dict[str, Any]:
        result = await self.post("/ops", {"op": op, "inputs": list(inputs), "name": name, **attrs})
        return result["tensors"][0]

    async def get(self, name: str, **flags: Any) -> dict[str, Any]:
        params = {k: str(v).lower() for k, v in flags.items()}
        result = await self.ok("GET", f"/tensors/{name}", params=params)
        return result["tensors"][0]

    async def repr(self, name: str) -> Shown:
        return Shown((await self.get(name, repr=True))["repr"])

    async def grad_repr(self, name: str) -> Shown:
        result = await self.ok("GET", f"/tensors/{name}/grad", params={"repr": "true"})
        return Shown(result["tensors"][0]["repr"])

    async def value(self, name: str) -> Any:
        return (await self.get(name, value=True))["value"]["data"]

    async def snapshot(self, names: list[str]) -> Any:
        """Everything observable about the session and the named tensors."""
        info = await self.ok("GET", "")
        gets = [
            {"kind": "get", "tensor": n, "value": True, "grad": True, "repr": True} for n in names
        ]
        batch = await self.ok("POST", "/batch", json={"commands": gets}, params={"binary": "true"})
        return info, batch


class Shown:
    """A repr the server sent, displayed by the notebook's rules (tuples on one line or many)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


async def new_session(client: httpx.AsyncClient, **headers: str) -> Api:
    response = await client.post("/sessions", json={"seed": 7}, headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    return Api(client, body["id"], body["token"])


@pytest.fixture
async def api(client: httpx.AsyncClient) -> AsyncIterator[Api]:
    session = await new_session(client)
    yield session
    await session.request("DELETE", "")


NAMES = ["x", "v3", "i", "y", "s"]


@pytest.fixture
async def populated(api: Api) -> Api:
    """x (requires grad, with x.grad = 2x), v3, an int64 i, y = x * x, s = y.sum()."""
    await api.create("x", data=[1.0, 2.0, 3.0, 4.0], requires_grad=True)
    await api.create("v3", data={"shape": [3], "dtype": "float32", "data": [1, 2, 3]})
    await api.create("i", data={"shape": [4], "dtype": "int64", "data": [1, 2, 3, 4]})
    await api.op("y", "mul", "x", "x")
    await api.op("s", "sum", "y")
    await api.post("/backward", {"tensor": "s", "retain_graph": True})
    return api


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= set(body)
    return body


# ----- the seed notebook -----


async def test_seed_notebook_over_http(api: Api) -> None:
    """Every cell of the notebook, as a client would run it, shows the notebook's output."""
    display = seed.display
    shown: dict[str, str] = {"In [1]": "", "In [68]": ""}  # import torch; def f(a): ...
    await api.create("x", factory="arange", args=[4.0])
    shown["In [2]"] = display(await api.repr("x"))
    await api.post("/requires-grad", {"tensor": "x", "requires_grad": True})
    assert (await api.get("x"))["has_grad"] is False  # x.grad is None: nothing shown
    shown["In [3]"] = ""
    await api.op("t", "dot", "x", "x")
    shown["In [5]"] = display(await api.repr("t"))
    await api.op("xx", "dot", "x", "x")
    await api.op("y", "mul", 2, "xx")
    shown["In [4]"] = display(await api.repr("y"))
    await api.post("/backward", {"tensor": "y"})
    shown["In [6]"] = display(await api.grad_repr("x"))
    await api.op("x4", "mul", 4, "x")
    shown["In [8]"] = display((await api.grad_repr("x"), await api.repr("x4")))
    await api.op("x4", "mul", 4, "x")
    await api.op("e", "eq", {"grad_of": "x"}, "x4")
    shown["In [9]"] = display(await api.repr("e"))
    await api.op("t", "sum", "x")
    shown["In [10]"] = display(await api.repr("t"))
    await api.post("/ops", {"op": "zero_", "inputs": [{"grad_of": "x"}]})
    await api.op("y", "sum", "x")
    await api.post("/backward", {"tensor": "y"})
    shown["In [11]"] = display(await api.grad_repr("x"))
    await api.op("t", "mul", "x", "x")
    shown["In [18]"] = display((await api.repr("x"), await api.repr("t")))
    await api.post("/zero-grad", {"tensors": ["x"]})
    y = await api.op("y", "mul", "x", "x")
    await api.create("g", factory="ones", args=[y["shape"][0]])
    await api.post("/backward", {"tensor": "y", "gradient": "g"})
    shown["In [20]"] = display(await api.grad_repr("x"))
    await api.op("t", "sum", "y")
    await api.create("o", factory="ones", args=[y["shape"][0]])
    shown["In [22]"] = display((await api.repr("t"), await api.repr("o")))
    await api.post("/ops", {"op": "zero_", "inputs": [{"grad_of": "x"}]})
    await api.op("y", "mul", "x", "x")
    await api.post("/detach", {"tensor": "y", "name": "u"})
    await api.op("z", "mul", "u", "x")
    await api.op("t", "sum", "z")
    await api.post("/backward", {"tensor": "t"})
    await api.op("e", "eq", {"grad_of": "x"}, "u")
    shown["In [64]"] = display(await api.repr("e"))
    reprs = [await api.repr(n) for n in ("y", "z", "u")]
    shown["In [66]"] = display((*reprs, await api.grad_repr("x")))
    await api.post("/ops", {"op": "zero_", "inputs": [{"grad_of": "x"}]})
    await api.op("t", "sum", "y")
    await api.post("/backward", {"tensor": "t"})
    await api.op("x2", "mul", 2, "x")
    await api.op("e", "eq", {"grad_of": "x"}, "x2")
    shown["In [67]"] = display(await api.repr("e"))
    await api.create("a", factory="randn", args=[[]], requires_grad=True)
    await api.create("a", data=100.0, requires_grad=True)
    d = await f_over_http(api, "a")
    await api.post("/backward", {"tensor": d})
    shown["In [79]"] = display((await api.repr("a"), await api.repr(d)))
    await api.op("q", "div", d, "a")
    await api.op("e", "eq", {"grad_of": "a"}, "q")
    shown["In [80]"] = display((await api.repr("e"), await api.grad_repr("a")))

    cells = seed.cells()
    assert len(cells) == len(shown)
    for cell in cells:
        assert shown[cell.label] == cell.output, cell.label


async def f_over_http(api: Api, a: str) -> str:
    """The notebook's f(a): Python control flow on the client, tensors on the server."""
    await api.op("b", "mul", a, 2)
    while True:
        await api.op("nb", "norm", "b")
        await api.op("cond", "lt", "nb", 1000)
        if not (await api.value("cond"))[0]:
            break
        await api.op("b", "mul", "b", 2)
    await api.op("bs", "sum", "b")
    await api.op("cond", "gt", "bs", 0)
    if (await api.value("cond"))[0]:
        return "b"  # c = b: the client's name for the same tensor
    await api.op("c", "mul", 100, "b")
    return "c"


# ----- sessions -----


async def test_create_get_and_close_session(client: httpx.AsyncClient) -> None:
    response = await client.post("/sessions")  # no body: every default
    assert response.status_code == 201
    created = response.json()
    assert created["device"] == "cpu" and created["seed"] == 0 and created["tensors"] == 0
    assert created["token"] and created["ttl_seconds"] == Settings().session_ttl
    api = Api(client, created["id"], created["token"])
    info = await api.ok("GET", "")
    assert "token" not in info
    assert info["id"] == created["id"] and info["bytes_held"] == 0
    response = await api.request("DELETE", "")
    assert response.status_code == 204 and not response.content
    assert_problem(await api.request("GET", ""), 401, "unauthenticated")

    response = await client.post("/sessions", json={"seed": 3, "ttl_seconds": 60.5})
    assert response.status_code == 201
    assert response.json()["seed"] == 3 and response.json()["ttl_seconds"] == 60.5


@pytest.mark.parametrize(
    "body",
    [
        {"seed": -1},
        {"seed": "1"},
        {"seed": 1.5},
        {"ttl_seconds": 0},
        {"ttl_seconds": "60"},
        {"device": "tpu"},
        {"bogus": 1},
        [1],
    ],
)
async def test_create_session_rejects_bad_bodies(client: httpx.AsyncClient, body: Any) -> None:
    assert_problem(await client.post("/sessions", json=body), 400, "invalid_argument")


async def test_api_key_guards_session_creation(strict_app: FastAPI) -> None:
    async with _client(strict_app) as client:
        for headers in ({}, {"X-API-Key": "wrong"}):
            response = await client.post("/sessions", headers=headers)
            body = assert_problem(response, 403, "permission_denied")
            assert "API key" in body["detail"]
        response = await client.post("/sessions", headers={"X-API-Key": API_KEY})
        assert response.status_code == 201


async def test_session_info_counts_tensors_and_bytes(populated: Api) -> None:
    info = await populated.ok("GET", "")
    assert info["tensors"] == len(NAMES)
    assert info["bytes_held"] > 0


# ----- authentication -----


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}, {"Authorization": ""}],
    ids=["missing", "wrong", "not-bearer", "empty"],
)
async def test_bad_token_is_401_and_changes_nothing(
    populated: Api, headers: dict[str, str]
) -> None:
    before = await populated.snapshot(NAMES)
    url = populated.url
    client = populated.client
    calls = [
        client.get(url(""), headers=headers),
        client.delete(url(""), headers=headers),
        client.get(url("/tensors/x"), headers=headers),
        client.delete(url("/tensors/x"), headers=headers),
        client.post(url("/ops"), json={"op": "neg", "inputs": ["x"]}, headers=headers),
        client.post(url("/batch"), json={"commands": []}, headers=headers),
        client.put(url("/tensors/n"), content=_npy(numpy.ones(2)), headers=headers | _NPY),
    ]
    for call in calls:
        response = await call
        body = assert_problem(response, 401, "unauthenticated")
        assert body["detail"] == "invalid session id or token"
        assert response.headers["www-authenticate"] == "Bearer"
    assert await populated.snapshot(NAMES) == before


async def test_unknown_session_looks_like_a_wrong_token(populated: Api) -> None:
    """A 401 says nothing of whether a session exists."""
    unknown = Api(populated.client, "0" * 32, populated.token)
    wrong = Api(populated.client, populated.id, "x" * 43)
    for api in (unknown, wrong):
        for method, path in (("GET", ""), ("GET", "/tensors/x"), ("POST", "/backward")):
            response = await api.request(method, path, json={"tensor": "s"})
            assert_problem(response, 401, "unauthenticated")
    a = (await unknown.request("GET", "")).json()
    b = (await wrong.request("GET", "")).json()
    assert a == b


# ----- tensors -----


async def test_create_tensor_forms(api: Api) -> None:
    created = await api.post("/tensors", {"factory": "zeros", "args": [2, 3]})
    assert created["kind"] == "create"
    (info,) = created["tensors"]
    assert info["name"].startswith("%") and info["shape"] == [2, 3]
    assert info["grad_fn"] is None and "value" not in info and "repr" not in info
    nested = await api.create("n", data=[[1, 2], [3, 4]], dtype="float64")
    assert nested["shape"] == [2, 2] and nested["dtype"] == "float64"
    flat = await api.create("f", data={"shape": [2, 2], "dtype": "int64", "data": [1, 2, 3, 4]})
    assert flat["dtype"] == "int64"
    raw = numpy.array([1.5, -2.0], dtype=numpy.float32).tobytes()
    b64 = {"shape": [2], "dtype": "float32", "b64": base64.b64encode(raw).decode()}
    assert (await api.create("b", data=b64))["shape"] == [2]
    assert await api.value("b") == [1.5, -2.0]
    assert await api.value("f") == [1, 2, 3, 4]
    like = await api.create("l", factory="full_like", args=["n", 7], requires_grad=True)
    assert like["requires_grad"] is True and like["dtype"] == "float64"
    response = await api.request("POST", "/tensors", json={"data": 1.0})
    assert response.status_code == 201


async def test_get_tensor_flags(populated: Api) -> None:
    bare = await populated.get("x")
    assert bare == {
        "name": "x",
        "shape": [4],
        "dtype": "float32",
        "requires_grad": True,
        "is_leaf": True,
        "grad_fn": None,
        "has_grad": True,
    }
    full = await populated.get("x", value=True, grad=True, repr=True)
    assert full["value"] == {"shape": [4], "dtype": "float32", "data": [1.0, 2.0, 3.0, 4.0]}
    assert full["grad"]["data"] == [2.0, 4.0, 6.0, 8.0]
    assert full["repr"] == "tensor([1., 2., 3., 4.], requires_grad=True)"
    binary = await populated.get("x", value=True, grad=True, binary=True)
    decoded = numpy.frombuffer(base64.b64decode(binary["grad"]["b64"]), "<f4")
    assert decoded.tolist() == [2.0, 4.0, 6.0, 8.0] and "data" not in binary["grad"]
    y = await populated.get("y", repr=True)
    assert y["grad_fn"] == "MulBackward0" and y["is_leaf"] is False
    grad = await populated.ok("GET", "/tensors/x/grad", params={"value": "true", "repr": "1"})
    (info,) = grad["tensors"]
    assert info["name"] == "x.grad" and info["repr"] == "tensor([2., 4., 6., 8.])"


async def test_release(populated: Api) -> None:
    response = await populated.request("DELETE", "/tensors/v3")
    assert response.status_code == 204 and not response.content
    assert_problem(await populated.request("GET", "/tensors/v3"), 404, "not_found")
    assert (await populated.ok("GET", ""))["tensors"] == len(NAMES) - 1


async def test_non_finite_values_round_trip(api: Api) -> None:
    data = ["NaN", "Infinity", "-Infinity", 1.5]
    await api.create("j", data={"shape": [4], "dtype": "float64", "data": data})
    assert await api.value("j") == data
    raw = numpy.array([math.nan, math.inf, -math.inf, 0.25], dtype=numpy.float32).tobytes()
    await api.create("k", data={"shape": [4], "b64": base64.b64encode(raw).decode()})
    assert await api.value("k") == ["NaN", "Infinity", "-Infinity", 0.25]
    binary = await api.get("j", value=True, binary=True)
    values = numpy.frombuffer(base64.b64decode(binary["value"]["b64"]), "<f8")
    assert numpy.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf
    assert (await api.get("k", repr=True))["repr"] == "tensor([   nan,    inf,   -inf, 0.2500])"
    await api.op("kk", "mul", "k", 2)
    assert await api.value("kk") == ["NaN", "Infinity", "-Infinity", 0.5]


# ----- .npy -----

_NPY = {"Content-Type": NPY}


def _npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    numpy.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _from_npy(raw: bytes) -> Any:
    return numpy.load(io.BytesIO(raw), allow_pickle=False)


async def test_npy_round_trip_of_a_multi_megabyte_tensor(
    app: FastAPI, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[Any] = []
    reader_array = codec.NpyReader.array

    def spy(reader: codec.NpyReader) -> Any:
        read.append(reader_array(reader))
        return read[-1]

    monkeypatch.setattr(codec.NpyReader, "array", spy)
    array = numpy.random.default_rng(0).standard_normal((1000, 1000))  # 8 MB of float64
    response = await api.request("PUT", "/tensors/big", content=_npy(array), headers=_NPY)
    assert response.status_code == 200, response.text
    # The tensor holds the array the body was read into (engine.creation.Adopted), no copy.
    session = app.state.dataplane.manager.get(api.id, api.token)
    assert session.tensors["big"].data is read[0]
    (info,) = response.json()["tensors"]
    assert info == {
        "name": "big",
        "shape": [1000, 1000],
        "dtype": "float64",
        "requires_grad": False,
        "is_leaf": True,
        "grad_fn": None,
        "has_grad": False,
    }
    response = await api.request("GET", "/tensors/big/npy")
    assert response.status_code == 200 and response.headers["content-type"] == NPY
    back = _from_npy(response.content)
    assert back.dtype == array.dtype and numpy.array_equal(back, array)


async def test_npy_upload_with_requires_grad_and_grad_download(api: Api) -> None:
    array = numpy.arange(6, dtype=numpy.float32).reshape(2, 3)
    params = {"requires_grad": "true"}
    await api.ok("PUT", "/tensors/w", content=_npy(array), headers=_NPY, params=params)
    assert (await api.get("w"))["requires_grad"] is True
    await api.op("ws", "sum", "w")
    await api.post("/backward", {"tensor": "ws"})
    response = await api.request("GET", "/tensors/w/npy", params={"grad": "true"})
    assert numpy.array_equal(_from_npy(response.content), numpy.ones((2, 3), numpy.float32))
    # Big-endian, Fortran-ordered and integer inputs keep their values and dtype.
    for sent in (array.astype(">f8"), numpy.asfortranarray(array), numpy.arange(5)):
        await api.ok("PUT", "/tensors/w", content=_npy(sent), headers=_NPY)
        back = _from_npy((await api.request("GET", "/tensors/w/npy")).content)
        assert numpy.array_equal(back, sent) and back.dtype == sent.dtype.newbyteorder("=")


async def test_npy_upload_accepts_a_chunked_body(api: Api) -> None:
    raw = _npy(numpy.arange(100_000, dtype=numpy.int64))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 65536):
            yield raw[start : start + 65536]

    response = await api.request("PUT", "/tensors/c", content=chunks(), headers=_NPY)
    assert response.status_code == 200, response.text
    assert (await api.get("c"))["shape"] == [100_000]


# ----- ops and autograd commands -----


async def test_apply_op_attrs_names_and_no_grad(populated: Api) -> None:
    api = populated
    await api.create("m", data=[[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    info = await api.op("r", "sum", "m", attrs={"dim": 1, "keepdim": True})
    assert info["shape"] == [2, 1] and info["grad_fn"] == "SumBackward1"
    result = await api.post("/ops", {"op": "chunk", "inputs": ["m", 2], "names": ["c0", "c1"]})
    assert [t["name"] for t in result["tensors"]] == ["c0", "c1"]
    info = await api.op("nm", "mul", "m", 2, no_grad=True)
    assert info["requires_grad"] is False and info["grad_fn"] is None
    result = await api.post("/ops", {"op": "cat", "inputs": [["x", "x"]]})
    assert result["tensors"][0]["shape"] == [8] and result["tensors"][0]["name"].startswith("%")
    result = await api.post("/ops", {"op": "index", "inputs": ["m"], "attrs": {"key": [0]}})
    assert result["tensors"][0]["shape"] == [2]


async def test_backward_grad_detach_and_grad_flags(api: Api) -> None:
    await api.create("x", data=[1.0, 2.0, 3.0], requires_grad=True)
    await api.create("w", data=[0.5, 0.5, 0.5], requires_grad=True)
    await api.op("h", "mul", "x", "x")
    assert (await api.post("/retain-grad", {"tensor": "h"}))["tensors"][0]["name"] == "h"
    await api.op("l", "sum", "h")
    result = await api.post("/backward", {"tensor": "l", "retain_graph": True})
    assert result == {"kind": "backward", "tensors": []}
    assert (await api.get("h", grad=True))["grad"]["data"] == [1.0, 1.0, 1.0]
    assert (await api.get("x", grad=True))["grad"]["data"] == [2.0, 4.0, 6.0]
    result = await api.post(
        "/grad",
        {"outputs": ["l"], "inputs": ["x", "w"], "allow_unused": True, "names": ["gx", "gw"]},
    )
    assert result["kind"] == "grad" and result["tensors"][1] is None
    assert result["tensors"][0]["name"] == "gx"
    assert await api.value("gx") == [2.0, 4.0, 6.0]
    result = await api.post("/detach", {"tensor": "h", "name": "hd"})
    assert (
        result["tensors"][0]["grad_fn"] is None and result["tensors"][0]["requires_grad"] is False
    )
    await api.post("/zero-grad", {"tensors": ["x"]})
    assert (await api.get("x", grad=True))["grad"]["data"] == [0.0, 0.0, 0.0]
    await api.post("/zero-grad", {"tensors": ["x", "h"], "set_to_none": True})
    assert (await api.get("x"))["has_grad"] is False
    result = await api.post("/requires-grad", {"tensor": "hd", "requires_grad": True})
    assert result["kind"] == "requires_grad" and result["tensors"][0]["requires_grad"] is True


async def test_batch_runs_commands_in_order(populated: Api) -> None:
    commands = [
        {"kind": "create", "name": "b", "data": {"shape": [2], "data": [1, "NaN"]}},
        {"kind": "op", "op": "mul", "inputs": ["b", 3], "name": "b3"},
        {"kind": "get", "tensor": "b3", "value": True, "repr": True},
        {"kind": "get", "tensor": {"grad_of": "x"}, "value": True},
        {"kind": "release", "names": ["b"]},
    ]
    body = await populated.ok("POST", "/batch", json={"commands": commands})
    kinds = [r["kind"] for r in body["results"]]
    assert kinds == ["create", "op", "get", "get", "release"]
    assert body["results"][2]["tensors"][0]["value"]["data"] == [3.0, "NaN"]
    assert body["results"][2]["tensors"][0]["repr"] == "tensor([3., nan])"
    assert body["results"][3]["tensors"][0]["name"] == "x.grad"
    binary = await populated.ok(
        "POST", "/batch", json={"commands": commands[2:3]}, params={"binary": "true"}
    )
    raw = base64.b64decode(binary["results"][0]["tensors"][0]["value"]["b64"])
    assert numpy.isnan(numpy.frombuffer(raw, "<f4")[1])
    assert (await populated.ok("POST", "/batch", json={"commands": []})) == {"results": []}


# ----- errors: status, problem body, and nothing changed -----

JSON = {"Content-Type": "application/json"}
NOT_FOUND = ("not_found", 404)
PRECONDITION = ("failed_precondition", 409)
B64_SHORT = {"shape": [4], "dtype": "float32", "b64": base64.b64encode(b"\0" * 12).decode()}

BAD = ("invalid_argument", 400)


def case(
    id: str, method: str, path: str, error: tuple[str, int], detail: str = "", **kw: Any
) -> Any:
    """A bad request: its method, path and httpx arguments, the code and status it must get, and
    a part of the problem's detail."""
    return pytest.param(method, path, kw, *error, detail, id=id)


BAD_REQUESTS = [
    case("malformed-json", "POST", "/ops", BAD, "malformed JSON", content=b'{"op": ', headers=JSON),
    case("json-not-object", "POST", "/ops", BAD, json=["neg", "x"]),
    case("op-not-string", "POST", "/ops", BAD, "body.op", json={"op": 3, "inputs": ["x"]}),
    case("flag-not-bool", "POST", "/requires-grad", BAD, json={"tensor": "x", "requires_grad": 1}),
    case("unknown-field", "POST", "/backward", BAD, "bogus", json={"tensor": "s", "bogus": 1}),
    case("missing-field", "POST", "/backward", BAD, "body.tensor: Field required", json={}),
    case("ref-not-name", "POST", "/detach", BAD, "expected a tensor name", json={"tensor": [1]}),
    case(
        "bad-name", "POST", "/tensors", BAD, "invalid tensor name", json={"name": "1x", "data": 1}
    ),
    case("unknown-op", "POST", "/ops", BAD, "unknown op", json={"op": "frob", "inputs": ["x"]}),
    case("unknown-factory", "POST", "/tensors", BAD, "unknown factory", json={"factory": "magic"}),
    case("wrong-arity", "POST", "/ops", BAD, "argument", json={"op": "dot", "inputs": ["x"]}),
    case("bad-attr", "POST", "/ops", BAD, json={"op": "sum", "inputs": ["x"], "attrs": {"dim": 5}}),
    case(
        "shape-mismatch",
        "POST",
        "/ops",
        BAD,
        "The size of tensor a (4) must match the size of tensor b (3) at non-singleton dimension 0",
        json={"op": "add", "inputs": ["x", "v3"]},
    ),
    case(
        "dtype-mismatch",
        "POST",
        "/ops",
        BAD,
        "result type Float can't be cast to the desired output type Long",
        json={"op": "add_", "inputs": ["i", "x"]},
    ),
    case(
        "unknown-dtype",
        "POST",
        "/tensors",
        BAD,
        "complex64",
        json={"data": [1], "dtype": "complex64"},
    ),
    case("data-shape", "POST", "/tensors", BAD, json={"data": {"shape": [3], "data": [1, 2]}}),
    case("b64-bytes", "POST", "/tensors", BAD, "bytes", json={"data": B64_SHORT}),
    case("b64-garbage", "POST", "/tensors", BAD, json={"data": {"shape": [1], "b64": "!!"}}),
    case("bad-nonfinite", "POST", "/tensors", BAD, '"NaN"', json={"data": {"data": ["nan"]}}),
    case("unknown-tensor", "GET", "/tensors/nope", NOT_FOUND, "no tensor named 'nope'"),
    case("unknown-input", "POST", "/ops", NOT_FOUND, json={"op": "neg", "inputs": ["nope"]}),
    case("release-unknown", "DELETE", "/tensors/nope", NOT_FOUND),
    case("npy-unknown", "GET", "/tensors/nope/npy", NOT_FOUND),
    case("grad-is-none", "GET", "/tensors/v3/grad", PRECONDITION, "'v3.grad' is None"),
    case("npy-grad-none", "GET", "/tensors/v3/npy", PRECONDITION, params={"grad": "true"}),
    case("no-grad-fn", "POST", "/backward", PRECONDITION, "require grad", json={"tensor": "v3"}),
    case("query-not-bool", "GET", "/tensors/x", BAD, "query.value", params={"value": "maybe"}),
    case(
        "npy-media-type",
        "PUT",
        "/tensors/n",
        ("unsupported_media_type", 415),
        content=b"\x93NUMPY",
        headers=JSON,
    ),
    case("npy-garbage", "PUT", "/tensors/n", BAD, ".npy", content=b"not npy", headers=_NPY),
    case(
        "npy-header",
        "PUT",
        "/tensors/n",
        BAD,
        "invalid .npy body",
        content=b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',}" + b" " * 64,
        headers=_NPY,
    ),
    case(
        "npy-cut-short",
        "PUT",
        "/tensors/n",
        BAD,
        "invalid .npy body: EOF",
        content=_npy(numpy.arange(1000.0))[:-8],
        headers=_NPY,
    ),
    case(
        "npy-object",
        "PUT",
        "/tensors/n",
        BAD,
        "unsupported dtype",
        content=_npy(numpy.array(["a"])),
        headers=_NPY,
    ),
    case("no-route", "GET", "/nowhere", NOT_FOUND),
    case("wrong-method", "PATCH", "/ops", ("method_not_allowed", 405), json={}),
    case("batch-not-list", "POST", "/batch", BAD, json={"commands": {"kind": "get"}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "code", "status", "detail"), BAD_REQUESTS)
async def test_bad_request_is_a_problem_and_changes_nothing(
    populated: Api,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    code: str,
    status: int,
    detail: str,
) -> None:
    before = await populated.snapshot(NAMES)
    body = assert_problem(await populated.request(method, path, **kwargs), status, code)
    assert detail in body["detail"]
    assert await populated.snapshot(NAMES) == before


async def test_engine_errors_carry_torch_type(populated: Api) -> None:
    response = await populated.request("POST", "/ops", json={"op": "add", "inputs": ["x", "v3"]})
    body = assert_problem(response, 400, "invalid_argument")
    assert body["torch_type"] == "RuntimeError"
    assert body["type"] == "https://gradserve.dev/problems/invalid-argument"


async def test_failing_batch_names_its_command_and_changes_nothing(populated: Api) -> None:
    before = await populated.snapshot(NAMES)
    commands = [
        {"kind": "create", "name": "fresh", "data": [1.0, 2.0]},
        {"kind": "op", "op": "mul_", "inputs": ["x", 0.0], "no_grad": True},
        {"kind": "zero_grad", "tensors": ["x"]},
        {"kind": "release", "names": ["y"]},
        {"kind": "op", "op": "matmul", "inputs": ["x", "v3"]},
        {"kind": "get", "tensor": "x"},
    ]
    response = await populated.request("POST", "/batch", json={"commands": commands})
    body = assert_problem(response, 400, "invalid_argument")
    assert body["command_index"] == 4
    assert await populated.snapshot(NAMES) == before
    assert_problem(await populated.request("GET", "/tensors/fresh"), 404, "not_found")

    unknown_kind = [commands[0], {"kind": "frobnicate"}]
    response = await populated.request("POST", "/batch", json={"commands": unknown_kind})
    assert assert_problem(response, 400, "invalid_argument")["command_index"] == 1
    bad_data = [commands[0], {"kind": "create", "data": {"data": ["inf"]}}]
    response = await populated.request("POST", "/batch", json={"commands": bad_data})
    assert assert_problem(response, 400, "invalid_argument")["command_index"] == 1
    assert await populated.snapshot(NAMES) == before


async def test_bodies_over_the_limit_are_413(strict_app: FastAPI) -> None:
    async with _client(strict_app) as client:
        api = await new_session(client, **{"X-API-Key": API_KEY})
        await api.create("x", data=[1.0, 2.0])
        before = await api.snapshot(["x"])
        big = {"op": "neg", "inputs": ["x"], "name": "n", "attrs": {"pad": "p" * SMALL_LIMIT}}
        responses = [
            await api.request("POST", "/ops", json=big),  # by its Content-Length
            await api.request("PUT", "/tensors/x", content=_npy(numpy.zeros(1024)), headers=_NPY),
            await api.request("DELETE", "/tensors/x", content=b"0" * (SMALL_LIMIT + 1)),
            await client.post("/sessions", content=b"{" * (SMALL_LIMIT + 1), headers=JSON),
        ]

        async def chunks(count: int) -> AsyncIterator[bytes]:
            for _ in range(count):
                yield b" " * 1000

        # Chunked: no Content-Length, stopped once what arrived passes the limit.
        for path, headers in (("/ops", JSON), ("/tensors/x", _NPY), ("/batch", JSON)):
            method = "PUT" if path == "/tensors/x" else "POST"
            responses.append(await api.request(method, path, content=chunks(10), headers=headers))
        for response in responses:
            body = assert_problem(response, 413, "request_too_large")
            assert str(SMALL_LIMIT) in body["detail"]
        assert await api.snapshot(["x"]) == before
        response = await api.request("POST", "/ops", content=chunks(3), headers=JSON)
        assert_problem(response, 400, "invalid_argument")  # under the limit: parsed, and bad


async def test_unexpected_errors_are_500_without_internals(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plane: DataPlane = app.state.dataplane

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    async with _client(app, raise_app_exceptions=False) as client:
        api = await new_session(client)
        monkeypatch.setattr(plane, "execute", broken)
        with caplog.at_level(logging.ERROR, logger="service.http"):
            response = await api.request("POST", "/ops", json={"op": "neg", "inputs": ["x"]})
        body = assert_problem(response, 500, "internal")
        assert body["detail"] == GENERIC_DETAIL
        assert "secret" not in response.text
        (record,) = [r for r in caplog.records if r.name.startswith("service.http")]
        assert record.exc_info is not None and "secret internals" in str(record.exc_info[1])


# ----- the OpenAPI document -----


async def test_openapi_document_and_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("http://test/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["info"]["title"] == "gradserve"
    operations = {
        op["operationId"]: (method.upper(), path)
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }
    s, t = "/v1/sessions", "/v1/sessions/{session_id}"
    assert operations == {
        "create_session": ("POST", s),
        "get_session": ("GET", t),
        "close_session": ("DELETE", t),
        "create_tensor": ("POST", f"{t}/tensors"),
        "get_tensor": ("GET", f"{t}/tensors/{{name}}"),
        "get_grad": ("GET", f"{t}/tensors/{{name}}/grad"),
        "release": ("DELETE", f"{t}/tensors/{{name}}"),
        "upload_npy": ("PUT", f"{t}/tensors/{{name}}"),
        "download_npy": ("GET", f"{t}/tensors/{{name}}/npy"),
        "apply_op": ("POST", f"{t}/ops"),
        "backward": ("POST", f"{t}/backward"),
        "grad": ("POST", f"{t}/grad"),
        "detach": ("POST", f"{t}/detach"),
        "zero_grad": ("POST", f"{t}/zero-grad"),
        "set_requires_grad": ("POST", f"{t}/requires-grad"),
        "retain_grad": ("POST", f"{t}/retain-grad"),
        "execute": ("POST", f"{t}/batch"),
        "healthz": ("GET", "/healthz"),
        "readyz": ("GET", "/readyz"),
        "metrics": ("GET", "/metrics"),
    }
    upload = doc["paths"][f"{t}/tensors/{{name}}"]["put"]
    assert NPY in upload["requestBody"]["content"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(doc["components"]["securitySchemes"])
    for name in ("CreateTensor", "ApplyOp", "Backward", "Grad", "CommandResult", "Session"):
        assert name in doc["components"]["schemas"]
    docs = await client.get("http://test/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
