"""The autograd routes (``CommandRoute``) answer every request as FastAPI's own route class
does with the same endpoints, and are documented the same: each request of a battery of good
and bad ones goes to the app and to a copy whose command routes are plain ``APIRoute``s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI

from service.config import Settings
from service.http.routing import CommandRoute
from tests.service.route_twins import AUTH, Session, answer, twin_apps, twin_sessions

pytestmark = pytest.mark.anyio

SETUP = [
    {"kind": "create", "name": "x", "data": [1.0, 2.0, 3.0], "requires_grad": True},
    {"kind": "op", "op": "mul", "inputs": ["x", "x"], "name": "y"},
    {"kind": "op", "op": "sum", "inputs": ["y"], "name": "s"},
]
JSON = "application/json"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def apps() -> Iterator[tuple[FastAPI, FastAPI]]:
    with twin_apps(Settings(max_request_bytes=4096), CommandRoute) as apps:
        yield apps


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


@pytest.fixture
async def sessions(apps: tuple[FastAPI, FastAPI]) -> AsyncIterator[tuple[Session, Session]]:
    async with twin_sessions(apps, SETUP) as sessions:
        yield sessions


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
