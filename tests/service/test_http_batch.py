"""The batch route's plain requests, read a command at a time (``service.http.batch_body``),
answer as FastAPI's own route does: each request of a battery goes, twice (commands parsed,
then remembered), to the app and to a copy whose batch route is a plain ``APIRoute``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from engine.errors import EngineError
from engine.parsing import parse_batch
from service.config import Settings
from service.dataplane import Parsed, decode_payload
from service.http import batch_body
from service.http.routes.batch import BatchRoute
from tests.service.route_twins import Session, answer, twin_apps, twin_sessions

pytestmark = pytest.mark.anyio

JSON = "application/json"
AUTH = {"Authorization": "Bearer {token}", "Content-Type": JSON}
SETUP = [
    {"kind": "create", "name": "x", "data": [1.0, 2.0, 3.0], "requires_grad": True},
    {"kind": "op", "op": "mul", "inputs": ["x", "x"], "name": "y"},
]
OPS = [
    {"kind": "op", "op": "mul", "inputs": ["x", 1.5], "name": "y"},
    {"kind": "op", "op": "sin", "inputs": ["y"], "name": "y"},
    {"kind": "op", "op": "sum", "inputs": ["y"], "name": "s"},
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def apps() -> Iterator[tuple[FastAPI, FastAPI]]:
    with twin_apps(Settings(max_request_bytes=4096, max_commands_per_batch=8), BatchRoute) as apps:
        yield apps


def test_the_copy_has_no_batch_route_left_and_the_same_documents(
    apps: tuple[FastAPI, FastAPI],
) -> None:
    ours, plain = apps
    assert len([r for r in ours.router.routes if isinstance(r, BatchRoute)]) == 1
    assert not [r for r in plain.router.routes if isinstance(r, BatchRoute)]
    assert ours.openapi() == plain.openapi()


@pytest.fixture
async def sessions(apps: tuple[FastAPI, FastAPI]) -> AsyncIterator[tuple[Session, Session]]:
    async with twin_sessions(apps, SETUP) as sessions:
        yield sessions


def _body(commands: Any, **dumps: Any) -> bytes:
    return json.dumps({"commands": commands}, **dumps).encode()


GET_X = {"kind": "get", "tensor": "x", "value": True, "grad": True, "repr": True}
# (query, headers, body)
# Two commands, the first with inputs nested 1500 deep (under the 4096-byte body limit).
_DEEP = (
    b'{"commands": [{"kind": "op", "op": "neg", "inputs": '
    + b"[" * 1500
    + b"]" * 1500
    + b'}, {"kind": "op", "op": "neg", "inputs": ["x"]}]}'
)
REQUESTS: list[tuple[str, dict[str, str], bytes]] = [
    ("", AUTH, _body(OPS)),
    ("", AUTH, _body(OPS, separators=(",", ":"))),
    ("", AUTH, _body(OPS, indent=2)),
    ("", AUTH, b' \n{ "commands" :\t[ ' + json.dumps(OPS)[1:-1].encode() + b" ] } \r\n"),
    ("?binary=true", AUTH, _body([*OPS, GET_X])),
    ("?binary=false", AUTH, _body([*OPS, GET_X])),
    ("?binary=1", AUTH, _body([*OPS, GET_X])),
    ("?binary=maybe", AUTH, _body(OPS)),
    ("?colour=red", AUTH, _body(OPS)),
    ("", AUTH, _body([OPS[0]])),  # one command: FastAPI's, and it may run on the loop
    ("", AUTH, _body([])),
    ("", AUTH, _body([{"kind": "create", "name": "z", "data": {"shape": [2], "dtype": "float64",
                                                         "data": ["NaN", 1.0]}}, GET_X])),
    ("", AUTH, _body([{"kind": "create", "name": "w", "data": [[1, 2], [3, 4]]}, OPS[0]])),
    ("", AUTH, _body([OPS[0], {"kind": "op", "op": "nope", "inputs": ["x"]}, OPS[1]])),
    ("", AUTH, _body([OPS[0], {"kind": "op", "op": "mul", "inputs": ["x", "nope"]}])),
    ("", AUTH, _body([OPS[0], "not a command"])),
    ("", AUTH, _body([OPS[0], {"kind": "op", "op": "mul", "inputs": ["x", 2], "colour": 1}])),
    ("", AUTH, _body([OPS[0], {"kind": "teleport"}])),
    ("", AUTH, _body([OPS[0], {"kind": "op", "op": "mul", "inputs": ["x", 2], "name": "x y"}])),
    ("", AUTH, _body(OPS * 3)),  # over the batch size
    ("", AUTH, _body([*OPS, {"kind": "op", "op": "nope", "inputs": ["x"]}] * 3)),
    ("", AUTH, b'{"commands": [' + json.dumps(OPS[0]).encode() + b", NaN]}"),
    ("", AUTH, _body([OPS[0], {"kind": "op", "op": "mul", "inputs": ["x", float("inf")]}])),
    ("", AUTH, _body(OPS)[:-1]),  # cut short
    ("", AUTH, _DEEP),  # nested past the JSON scanner's recursion limit
    ("", AUTH, _body(OPS) + b"x"),  # extra data
    ("", AUTH, _body(OPS)[:-2] + b",]}"),  # a trailing comma
    ("", AUTH, b'{"commands": ' + json.dumps(OPS).encode() + b', "colour": 1}'),
    ("", AUTH, b'{"commands": [], "commands": ' + json.dumps(OPS).encode() + b"}"),
    ("", AUTH, b'{"colour": 1, "commands": ' + json.dumps(OPS).encode() + b"}"),
    ("", AUTH, b"\xef\xbb\xbf" + _body(OPS)),  # a UTF-8 byte order mark
    ("", AUTH, _body(OPS).decode().encode("utf-16")),
    ("", AUTH, _body(OPS)[:-4] + b'\xff"}]}'),  # not UTF-8
    ("", AUTH, _body(OPS, ensure_ascii=False).replace(b'"y"', '"\u00fd"'.encode())),
    ("", AUTH, b'{"commands": {"kind": "op"}}'),
    ("", AUTH, b""),
    ("", AUTH, _body(OPS) + b" " * 5000),  # over the body limit
    ("", {**AUTH, "Content-Type": "text/plain"}, _body(OPS)),
    ("", {**AUTH, "Content-Type": "application/problem+json"}, _body(OPS)),
    ("", {"Authorization": "Bearer {token}"}, _body(OPS)),  # no content type
    ("", {"Content-Type": JSON}, _body(OPS)),
    ("", {"Content-Type": JSON, "Authorization": "Bearer wrong"}, _body(OPS)),
    ("", {"Content-Type": JSON, "Authorization": "Basic eDp5"}, _body(OPS)),
    ("", {"Content-Type": JSON, "Authorization": "Bearer wrong"}, _body(OPS)[:-1]),
    ("", {"Content-Type": JSON, "Authorization": "Bearer wrong"}, b'{"colour": 1}'),
]  # fmt: skip


async def test_every_request_gets_the_same_answer(sessions: tuple[Session, Session]) -> None:
    """The battery twice in order, each request and then the session's state compared."""
    batch_body.COMMANDS.clear()
    statuses = set()
    state = _body([GET_X, {**GET_X, "tensor": "y"}])
    for _ in range(2):
        for query, headers, body in REQUESTS:
            answers = []
            for session in sessions:
                response = await session.send(f"/batch{query}", headers, content=body)
                after = await session.send("/batch", AUTH, content=state)
                answers.append((answer(response), answer(after)))
            assert answers[0] == answers[1], (query, headers, body)
            statuses.add(answers[0][0][0])
    assert statuses == {200, 400, 401, 404, 413, 429}  # the battery covers every answer
    assert 0 < len(batch_body.COMMANDS) < 20  # creates never


def _joined(commands: list[Any], separators: list[str]) -> bytes:
    texts = [json.dumps(c) for c in commands]
    items = [a + b for a, b in zip(texts, [*separators, ""], strict=True)]
    return ('{"commands": [' + "".join(items) + "]}").encode()


ATTRS = {"kind": "op", "op": "sum", "inputs": ["y"], "attrs": {"dim": 0, "keepdim": True}}
BRACES = {"kind": "op", "op": "add", "inputs": ["y", 1], "attrs": {"alpha": 2, "s": "}{"}}
DEEP = {"kind": "op", "op": "mul", "inputs": [{"grad_of": "x"}, {"grad_of": "y"}], "attrs": {}}
SEPARATED = {"kind": "op", "op": "add", "inputs": ["y", 1], "attrs": {"s": "}, {", "t": "},{"}}
# A remembered command's object inside another, where cutting at "}, {" finds it.
NESTED = {"kind": "op", "op": "mul", "inputs": [{"grad_of": "x"}, OPS[0], {"grad_of": "y"}]}
CREATE = {"kind": "create", "name": "z", "data": [1.0, 2.0]}


@pytest.mark.parametrize(
    "body",
    [
        _body(OPS),
        _body(OPS, separators=(",", ":")),
        _body(OPS, indent=4),
        _body([OPS[0], [1, {"a": [2, "]"]}], "\u00e9", 1e300, None, True]),
        _body([ATTRS, BRACES, DEEP, ATTRS, BRACES, DEEP]),
        _body([{**OPS[0], "name": "y}"}, OPS[0]]),  # a name that does not parse
        _body([CREATE, *OPS, CREATE, *OPS, OPS[0]]),
        _body([CREATE, *OPS, CREATE, *OPS], separators=(",", ":")),
        _body([*OPS, SEPARATED, *OPS, SEPARATED, OPS[1]]),
        _body([*OPS, NESTED, *OPS, NESTED, *OPS]),
        _body([OPS[0], NESTED, OPS[0]]),
        _joined([*OPS, OPS[0], OPS[1]], [", ", ", ", ",", ", "]),  # separators mixed
        _joined([*OPS, OPS[0]], [" , ", ",\n", ", "]),
        b'{"commands":[]}',
        b'\t{"commands" : [ ] }\n',
    ],
)
def test_plain_bodies_split_into_what_json_loads_reads(body: bytes) -> None:
    batch_body.COMMANDS.clear()
    values = json.loads(body)["commands"]
    for _ in range(3):  # nothing remembered yet, then what parsed
        commands = batch_body.split(body)
        assert commands is not None and len(commands) == len(values)
        try:
            expected: Any = Parsed(parse_batch(values, prepare=decode_payload))
        except EngineError:
            expected = values  # for the data plane to parse, and report
        parsed = commands.parsed()
        assert type(parsed) is type(expected) and parsed == expected
        for item, value in zip(commands.items, values, strict=True):
            if type(item) is tuple:
                assert json.loads(item[0]) == item[1] == value
        assert commands.unseen == [i for i, x in enumerate(commands.items) if type(x) is tuple]


def test_what_is_remembered_is_found_by_its_text() -> None:
    batch_body.COMMANDS.clear()
    body = _body([ATTRS, BRACES, DEEP, OPS[0]])
    first = batch_body.split(body)
    assert first is not None and all(type(item) is tuple for item in first.items)
    first.parsed()
    assert len(batch_body.COMMANDS) == 3  # DEEP has four closing braces
    again = batch_body.split(body)
    assert again is not None
    assert [type(item) is tuple for item in again.items] == [False, False, True, False]
    assert again.parsed() == parse_batch([ATTRS, BRACES, DEEP, OPS[0]])


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"commands": []',
        b'{"commands": [1,]}',
        b'{"commands": [1 2]}',
        b'{"commands": [1], "commands": [2]}',
        b'{"Commands": []}',
        b'{"commands": []} []',
        b"\xef\xbb\xbf" + b'{"commands": []}',
    ],
)
def test_other_bodies_are_left_to_fastapi(body: bytes) -> None:
    assert batch_body.split(body) is None


def test_commands_are_remembered_but_creates_and_long_ones() -> None:
    batch_body.COMMANDS.clear()
    create = {"kind": "create", "name": "w", "data": [1.0]}
    long = {"kind": "op", "op": "stack", "inputs": [["x"] * batch_body.MAX_COMMAND_CHARS]}
    commands = batch_body.split(_body([create, OPS[0], long, OPS[0]]))
    assert commands is not None
    first = commands.parsed()
    assert type(first) is Parsed and len(first) == 4
    assert len(batch_body.COMMANDS) == 1
    again = batch_body.split(_body([create, OPS[0], long, OPS[0]]))
    assert again is not None
    assert again.items[1] is again.items[3] is first[3]  # the last one parsed
    bad_commands = [OPS[0], {"kind": "op", "op": 3}]
    bad = batch_body.split(_body(bad_commands))
    assert bad is not None and bad.parsed() == bad_commands  # the data plane reports it
