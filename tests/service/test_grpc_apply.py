"""ApplyOp read from remembered commands and answered from remembered bytes
(``service.grpc_apply``): the same commands, errors, placement and reply bytes as protobuf's
parse, the general path's dict and protobuf's serialization."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy
import pytest
from google.protobuf.message import DecodeError

from engine.errors import EngineError
from engine.parsing import parse
from service import grpc_apply
from service import grpc_messages as messages
from service.config import Settings
from service.dataplane import DataPlane, Parsed
from service.gen.gradient.v1 import gradient_pb2 as pb
from service.grpc_apply import ApplyOpCall, deserialize_apply_op, encode_result
from service.grpc_batch import MAX_COMMAND_BYTES
from service.wire import attr_value
from tests.service.grpc_support import (
    GrpcHarness,
    create,
    data,
    get,
    op,
    ref,
    val,
    wire_field,
    wire_tag,
)

OPS = [
    op("mul", "x", 1.0001, name="y"),
    op("add", 2, "x", alpha=attr_value(3)),
    op("mul", ref("x", grad=True), "x", name="g2"),
    op("sum", "x", dim=attr_value([0]), keepdim=attr_value(True), name="s"),
    op("clamp", "x", min=attr_value(-0.5), max=attr_value(None)),
    op("stack", ["x", "x"], name="st"),
    op("chunk", "x", 2, names=("a", "b")),
    pb.Command(op=pb.ApplyOp(op="exp", inputs=[val("x")], no_grad=True)),
]
# Each parses; the engine refuses some of them when run.
BAD = [
    op("nope", "x"),
    op("mul", "x", 2, name="9lives"),
    op("chunk", "x", 2, name="a", names=("a", "b")),
    op("add", val(pb.Value(text="t"))),
    op("mul", "x", "nope"),
    op("maximum", "x"),
    op("add", "x", "x", alpha=attr_value("two")),
    pb.Command(op=pb.ApplyOp()),
]


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    grpc_apply.OPS.clear()
    grpc_apply.RESULTS.clear()
    yield
    grpc_apply.OPS.clear()
    grpc_apply.RESULTS.clear()


@pytest.fixture
def plane() -> Iterator[DataPlane]:
    dataplane = DataPlane(Settings(inline_max_elements=64, inline_max_seconds=1.0))
    try:
        yield dataplane
    finally:
        dataplane.shutdown()


def _raw(command: pb.Command, session_id: str = "s") -> bytes:
    return pb.ApplyOpRequest(session_id=session_id, command=command.op).SerializeToString()


def _call(raw: bytes) -> ApplyOpCall:
    call = deserialize_apply_op(raw)
    assert isinstance(call, ApplyOpCall)
    return call


def _general(raw: bytes) -> dict[str, Any]:
    return messages.command("op", pb.ApplyOpRequest.FromString(raw).command)


@pytest.mark.parametrize("command", OPS, ids=lambda c: c.op.op)
def test_ops_parse_as_the_general_path_parses_them(command: pb.Command) -> None:
    raw = _raw(command)
    cold = _call(raw)
    assert cold.session_id == "s" and cold.command is None
    assert cold.commands() == Parsed([parse(_general(raw))])
    warm = _call(raw)
    assert warm.command == parse(_general(raw))
    assert warm.commands() == Parsed([parse(_general(raw))])
    assert len(grpc_apply.OPS) == 1


def test_no_session_id_and_long_ops() -> None:
    assert _call(_raw(OPS[0], session_id="")).session_id == ""
    long = op("stack", ["x"] * MAX_COMMAND_BYTES)
    _call(_raw(long)).commands()
    assert len(grpc_apply.OPS) == 0


def _cases_for_protobuf() -> Iterator[Any]:
    plain = _raw(OPS[0])
    yield pytest.param(wire_field(1, b"a") + plain, id="session-id-twice")  # the last one wins
    yield pytest.param(plain + wire_tag(3, 0) + b"\x01", id="unknown-field")
    yield pytest.param(plain + wire_field(2, pb.ApplyOp(name="z").SerializeToString()), id="merged")
    yield pytest.param(wire_field(1, b"s"), id="no-command")
    yield pytest.param(b"", id="empty")
    yield pytest.param(wire_tag(2, 0) + b"\x01", id="command-as-varint")


@pytest.mark.parametrize("raw", list(_cases_for_protobuf()))
def test_other_requests_are_left_to_protobuf(raw: bytes) -> None:
    parsed = deserialize_apply_op(raw)
    assert isinstance(parsed, pb.ApplyOpRequest)
    assert parsed == pb.ApplyOpRequest.FromString(raw)


@pytest.mark.parametrize(
    "raw",
    [
        _raw(OPS[0])[:-2],  # cut inside the command
        wire_field(2, b"\x12\x05ab"),  # an input cut short
        wire_field(1, b"\xff\xfe") + wire_field(2, b""),  # a session id that is not UTF-8
        wire_field(2, wire_field(1, b"\xff")),  # an op name that is not UTF-8
        b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # an over-long length
        b"\x12",  # a tag and nothing more
    ],
)
def test_malformed_requests_fail_as_protobuf_fails(raw: bytes) -> None:
    with pytest.raises(DecodeError) as theirs:
        pb.ApplyOpRequest.FromString(raw)
    with pytest.raises(DecodeError) as ours:
        deserialize_apply_op(raw)
    assert str(ours.value) == str(theirs.value)


def _session(plane: DataPlane) -> Any:
    info = plane.create_session(seed=0)
    assert info.token is not None
    session = plane.session(info.id, info.token)
    setup = [create("x", data=data([1.0, -2.0, 3.5, 4.0]), requires_grad=True)]
    plane.execute(session, messages.batch(setup))
    return session


def _outcome(plane: DataPlane, commands: Any) -> Any:
    """What a batch gives, decoding included (``commands`` is called, as the servicer does)."""
    session = _session(plane)
    try:
        return [messages.result(r) for r in plane.execute(session, commands())]
    except EngineError as exc:
        return type(exc), str(exc), exc.command_index


@pytest.mark.parametrize("command", OPS + BAD, ids=lambda c: c.op.op or "empty")
def test_ops_run_and_fail_as_on_the_general_path(plane: DataPlane, command: pb.Command) -> None:
    raw = _raw(command)
    general = _outcome(plane, lambda: [_general(raw)])
    assert _outcome(plane, _call(raw).commands) == general
    assert _outcome(plane, _call(raw).commands) == general  # remembered, if it parsed


@pytest.mark.parametrize("command", OPS + BAD, ids=lambda c: c.op.op or "empty")
def test_a_parsed_op_is_placed_as_its_dict(plane: DataPlane, command: pb.Command) -> None:
    session = _session(plane)
    plane.execute(session, messages.batch([create("big", "ones", 65), create("c", "ones", 4, 1)]))
    for swapped in (command, op("mul", "big", 2), op("sub", "x", "c")):
        raw = _raw(swapped)
        try:
            general = [_general(raw)]
        except EngineError:
            continue  # not decoded: refused before it is placed
        commands = _call(raw).commands()
        assert plane._is_small(session, commands) == plane._is_small(session, general)


def test_results_encode_as_protobuf_serializes_them(plane: DataPlane) -> None:
    session = _session(plane)
    batches = [
        [get("x", value=True, grad=True, repr=True)],  # arrays: never remembered
        [op("mul", "x", 2.0, name="y")],
        [op("mul", "x", 2.0, name="y")],
        [create("n", data=data([numpy.nan, numpy.inf]))],
        [op("chunk", "x", 2, names=("a", "b"))],
    ]
    for commands in batches:
        results = plane.execute(session, messages.batch(commands))
        assert encode_result(results) == messages.result(results[0]).SerializeToString()
    assert len(grpc_apply.RESULTS) == 3


def test_remembered_ops_over_the_wire(grpc_env: GrpcHarness) -> None:
    sid, md = grpc_env.session()
    x = pb.CreateTensorRequest(session_id=sid, command=create("x", data=data([1.0, 2.0])).create)
    grpc_env.stub.CreateTensor(x, metadata=md)
    request = pb.ApplyOpRequest(session_id=sid, command=op("mul", "y", 2.0, name="y").op)
    with pytest.raises(grpc.RpcError) as missing:
        grpc_env.stub.ApplyOp(request, metadata=md)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    first = pb.ApplyOpRequest(session_id=sid, command=op("mul", "x", 2.0, name="y").op)
    replies = [grpc_env.stub.ApplyOp(r, metadata=md) for r in (first, request, request)]
    assert [list(r.tensors[0].shape) for r in replies] == [[2]] * 3
    with pytest.raises(grpc.RpcError) as unauthenticated:
        grpc_env.stub.ApplyOp(request, metadata=(("authorization", "Bearer nope"),))
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    values = pb.GetTensorRequest(session_id=sid, command=get("y", value=True).get)
    y = grpc_env.stub.GetTensor(values, metadata=md).tensors[0].value
    assert numpy.frombuffer(y.data, dtype=numpy.float32).tolist() == [8.0, 16.0]
