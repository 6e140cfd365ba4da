"""The autograd routes (``CommandRoute``) answer every request as FastAPI's own route class
does with the same endpoints, and are documented the same: each request of a battery of good
and bad ones goes to the app and to a copy whose command routes are plain ``APIRoute``s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from service.config import Settings
from service.dataplane import DataPlane
from service.http import create_app
from service.http.routing import CommandRoute, operation_id

pytestmark = pytest.mark.anyio

SETUP = [
    {"kind": "create", "name": "x", "data": [1.0, 2.0, 3.0], "requires_grad": True},
    {"kind": "op", "op": "mul", "inputs": ["x", "x"], "name": "y"},
    {"kind": "op", "op": "sum", "inputs": ["y"], "name": "s"},
]
JSON = "application/json"
AUTH = {"Authorization": "Bearer {token}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _plain(app: FastAPI) -> FastAPI:
    """The app with each CommandRoute replaced by an APIRoute of the same endpoint."""
    routes = app.router.routes
    for index, route in enumerate(routes):
        if isinstance(route, CommandRoute):
            routes[index] = APIRoute(
                route.path,
                route.endpoint,
                methods=route.methods,
                response_model=route.response_model,
                response_model_exclude_unset=route.response_model_exclude_unset,
                status_code=route.status_code,
                tags=route.tags,
                generate_unique_id_function=operation_id,
            )
    return app


@pytest.fixture(scope="module")
def apps() -> Iterator[tuple[FastAPI, FastAPI]]:
    settings = Settings(max_request_bytes=4096)
    planes = DataPlane(settings), DataPlane(settings)
    try:
        yield create_app(planes[0], settings), _plain(create_app(planes[1], settings))
    finally:
        for plane in planes:
            plane.shutdown()


def test_the_copy_has_no_command_route_left(apps: tuple[FastAPI, FastAPI]) -> None:
    ours, plain = apps
    command_routes = [r for r in ours.router.routes if isinstance(r, CommandRoute)]
    assert len(command_routes) == 7
    assert not [r for r in plain.router.routes if isinstance(r, CommandRoute)]


def test_the_openapi_documents_are_the_same(apps: tuple[FastAPI, FastAPI]) -> None:
    ours, plain = apps
    assert ours.openapi() == plain.openapi()
    bearer = {"HTTPBearer": []}
    assert ours.openapi()["paths"]["/v1/sessions/{session_id}/ops"]["post"]["security"] == [bearer]


class Session:
    """The same session (same seed, same tensors) on one app."""

    def __init__(self, client: httpx.AsyncClient, id: str, token: str) -> None:
        self.client, self.id, self.token = client, id, token

    @classmethod
    async def open(cls, client: httpx.AsyncClient) -> Session:
        created = (await client.post("/v1/sessions", json={"seed": 5})).json()
        session = cls(client, created["id"], created["token"])
        response = await session.send("/batch", AUTH, json={"commands": SETUP})
        assert response.status_code == 200, response.text
        return session

    async def send(self, path: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
        """POST to one of the session's paths; "{token}" in a header is the session's."""
        headers = {k: v.replace("{token}", self.token) for k, v in headers.items()}
        return await self.client.post(f"/v1/sessions/{self.id}{path}", headers=headers, **kwargs)


def answer(response: httpx.Response) -> tuple[Any, ...]:
    headers = {k: v for k, v in response.headers.items() if k not in ("x-request-id",)}
    return response.status_code, headers, response.content


@pytest.fixture
async def sessions(apps: tuple[FastAPI, FastAPI]) -> AsyncIterator[tuple[Session, Session]]:
    ours, plain = apps
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")
        for app in (ours, plain)
    ]
    async with clients[0], clients[1]:
        yield await Session.open(clients[0]), await Session.open(clients[1])


OP = b'{"op": "mul", "inputs": ["x", 2], "name": "z"}'
# (path, headers, body)
REQUESTS: list[tuple[str, dict[str, str], bytes]] = [
    ("/ops", {**AUTH, "Content-Type": JSON}, OP),
    ("/ops", {**AUTH, "Content-Type": "application/json; charset=utf-8"}, OP),
    ("/ops", {**AUTH, "Content-Type": "application/problem+json"}, OP),
    ("/ops", {**AUTH, "Content-Type": "text/plain"}, OP),
    ("/ops", {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}, OP),
    ("/ops", {**AUTH, "Content-Type": "not a content type"}, OP),
    ("/ops", AUTH, OP),  # no content type at all
    ("/ops", {**AUTH, "Content-Type": JSON}, b""),
    ("/ops", {**AUTH, "Content-Type": JSON}, b'{"op": "mul", '),
    ("/ops", {**AUTH, "Content-Type": JSON}, b"\xff\xfe{}"),
    ("/ops", {**AUTH, "Content-Type": JSON}, b"null"),
    ("/ops", {**AUTH, "Content-Type": JSON}, b"[1, 2]"),
    ("/ops", {**AUTH, "Content-Type": JSON}, b'{"op": "mul", "inputs": ["x", 2], "colour": "red"}'),
    ("/ops", {**AUTH, "Content-Type": JSON}, b'{"op": 3, "inputs": "x"}'),
    ("/ops", {**AUTH, "Content-Type": JSON}, b'{"op": "mul", "inputs": ["x", NaN], "name": "n"}'),
    ("/ops", {**AUTH, "Content-Type": JSON}, b'{"op": "frobnicate", "inputs": ["x"]}'),
    ("/ops", {**AUTH, "Content-Type": JSON}, b'{"op": "mul", "inputs": ["x", "nope"]}'),
    ("/ops", {**AUTH, "Content-Type": JSON}, b'{"op": "mul", "inputs": ["x", 2], "name": "x y"}'),
    (
        "/ops",
        {**AUTH, "Content-Type": JSON},
        b'{"op": "add", "inputs": ["x", 1], "attrs": {"alpha": 2}}',
    ),
    ("/ops", {**AUTH, "Content-Type": JSON}, b"{}" + b" " * 5000),  # over the body limit
    ("/ops", {"Content-Type": JSON}, OP),
    ("/ops", {"Content-Type": JSON, "Authorization": "Basic eDp5"}, OP),
    ("/ops", {"Content-Type": JSON, "Authorization": "Bearer"}, OP),
    ("/ops", {"Content-Type": JSON, "Authorization": "Bearer wrong"}, OP),
    ("/ops", {"Content-Type": JSON, "Authorization": "bearer  wrong "}, OP),
    ("/ops", {"Content-Type": JSON, "Authorization": "Bearer wrong"}, b'{"op": '),
    ("/ops", {"Content-Type": JSON, "Authorization": "Bearer wrong"}, b'{"colour": 1}'),
    ("/ops", {"Content-Type": JSON}, b'{"colour": 1}'),
    ("/backward", {**AUTH, "Content-Type": JSON}, b'{"tensor": "s", "retain_graph": true}'),
    ("/backward", {**AUTH, "Content-Type": JSON}, b'{"tensor": "y"}'),
    ("/backward", {**AUTH, "Content-Type": JSON}, b'{"tensor": ["s"]}'),
    (
        "/grad",
        {**AUTH, "Content-Type": JSON},
        b'{"outputs": ["s"], "inputs": ["x"], "names": ["g"]}',
    ),
    ("/grad", {**AUTH, "Content-Type": JSON}, b'{"outputs": ["s"]}'),
    ("/detach", {**AUTH, "Content-Type": JSON}, b'{"tensor": "y", "name": "d"}'),
    ("/detach", {**AUTH, "Content-Type": JSON}, b'{"tensor": {"grad_of": "x"}}'),
    ("/zero-grad", {**AUTH, "Content-Type": JSON}, b'{"tensors": ["x"], "set_to_none": true}'),
    ("/zero-grad", {**AUTH, "Content-Type": JSON}, b'{"tensors": "x"}'),
    ("/requires-grad", {**AUTH, "Content-Type": JSON}, b'{"tensor": "x", "requires_grad": false}'),
    ("/requires-grad", {**AUTH, "Content-Type": JSON}, b'{"tensor": "y", "requires_grad": "yes"}'),
    ("/retain-grad", {**AUTH, "Content-Type": JSON}, b'{"tensor": "y"}'),
    ("/retain-grad", {**AUTH, "Content-Type": JSON}, b'{"tensor": "x", "extra": 1}'),
]


async def test_every_request_gets_the_same_answer(sessions: tuple[Session, Session]) -> None:
    """The battery in order, each request and then the session's state compared."""
    statuses = set()
    get_x = {"commands": [{"kind": "get", "tensor": "x", "value": True, "grad": True}]}
    for path, headers, body in REQUESTS:
        answers = []
        for session in sessions:
            response = await session.send(path, headers, content=body)
            state = await session.send("/batch", AUTH, json=get_x)
            answers.append((answer(response), answer(state)))
        assert answers[0] == answers[1], (path, headers, body)
        statuses.add(answers[0][0][0])
    assert statuses == {200, 400, 401, 404, 409, 413}  # the battery covers every answer


async def test_a_route_of_another_shape_is_refused_at_once() -> None:
    from fastapi import APIRouter, Response

    from service.http.deps import SessionDep

    router = APIRouter(route_class=CommandRoute)

    async def with_query(session: SessionDep, flag: bool = False) -> Response:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="with_query must take one JSON body model"):
        router.add_api_route("/q", with_query, methods=["POST"])
