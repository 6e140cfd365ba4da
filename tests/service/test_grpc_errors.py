"""Every error class over gRPC: its code from the one table, its detail, its trailing
metadata, and a session left as it was."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from engine.errors import EngineError
from service.errors import GENERIC_DETAIL, TABLE
from service.gen.gradient.v1 import gradient_pb2 as pb
from tests.service.grpc_support import (
    API_KEY,
    MAX_REQUEST_BYTES,
    GrpcHarness,
    bearer,
    create,
    data,
    get,
    op,
    ref,
)


class Session:
    """x = arange(4.) with a grad, y = x * x, i = arange(3) (int64), t = arange(3.)."""

    def __init__(self, env: GrpcHarness) -> None:
        self.stub = env.stub
        self.target = f"127.0.0.1:{env.port}"
        self.id, self.metadata = env.session()
        self.execute(
            create("x", "arange", 4.0, requires_grad=True),
            op("mul", "x", "x", name="y"),
            op("sum", "y", name="s"),
            pb.Command(backward=pb.Backward(tensor=ref("s"), retain_graph=True)),
            create("i", "arange", 3),
            create("t", "arange", 3.0),
        )

    def execute(self, *commands: pb.Command, metadata: Any = None) -> pb.ExecuteResponse:
        request = pb.ExecuteRequest(session_id=self.id, commands=commands)
        return self.stub.Execute(request, metadata=self.metadata if metadata is None else metadata)

    def state(self) -> tuple[Any, ...]:
        """Everything a failed call must leave as it was."""
        info = self.stub.GetSession(
            pb.GetSessionRequest(session_id=self.id), metadata=self.metadata
        )
        reads = self.execute(
            *(get(name, value=True, grad=True, repr=True) for name in ("x", "y", "s", "i", "t"))
        )
        return info.tensors, info.bytes_held, [r.SerializeToString() for r in reads.results]


def failure(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def trailers(error: grpc.RpcError) -> dict[str, str]:
    return dict(error.trailing_metadata() or ())


@pytest.fixture
def session(grpc_env: GrpcHarness) -> Session:
    return Session(grpc_env)


# (id, failing command, engine code, detail or its start, torch_type)
COMMAND_ERRORS = [
    (
        "value-unset",
        op("add", "x", pb.Value()),
        "invalid_argument",
        "a Value must set one of",
        None,
    ),
    (
        "value-text-input",
        op("add", "x", pb.Value(text="x")),
        "invalid_argument",
        "a Value's text is for attributes only",
        None,
    ),
    (
        "attr-unset",
        op("sum", "x", dim=pb.Value()),
        "invalid_argument",
        "an attribute's Value must set one of",
        None,
    ),
    ("command-unset", pb.Command(), "invalid_argument", "a Command must set one of", None),
    (
        "data-bytes",
        create("n", data=pb.TensorData(shape=[1], data=b"abc")),
        "invalid_argument",
        "tensor data has 3 bytes but shape [1] of float32 needs 4",
        None,
    ),
    (
        "data-negative-shape",
        create("n", data=pb.TensorData(shape=[-1], data=b"")),
        "invalid_argument",
        "shape must be a list of non-negative integers, got [-1]",
        None,
    ),
    (
        "data-impossible-shape",
        create("n", data=pb.TensorData(shape=[0, 2**62], data=b"")),
        "invalid_argument",
        "invalid tensor shape [0, 4611686018427387904]",
        None,
    ),
    (
        "data-unknown-dtype",
        create("n", data=pb.TensorData(shape=[1], dtype=42, data=b"\0" * 4)),  # type: ignore[arg-type]
        "invalid_argument",
        "unknown dtype enum value 42",
        None,
    ),
    ("data-missing", create("n"), "invalid_argument", "'data' is required", None),
    (
        "data-for-a-factory",
        create("n", "zeros", 2, data=data([1.0, 2.0])),
        "invalid_argument",
        "'data' is only for the 'tensor' factory, not 'zeros'",
        None,
    ),
    (
        "bad-name",
        create("9bad", "zeros", 1),
        "invalid_argument",
        "invalid tensor name '9bad'",
        None,
    ),
    ("unknown-factory", create("n", "nope"), "invalid_argument", "unknown factory 'nope'", None),
    ("unknown-op", op("nope", "x"), "invalid_argument", "unknown op 'nope'", None),
    ("arity", op("dot", "x"), "invalid_argument", "bad arguments for op 'dot'", None),
    (
        "shape",
        op("add", "x", "t"),
        "invalid_argument",
        "The size of tensor a (4) must match the size of tensor b (3) at non-singleton dimension 0",
        "RuntimeError",
    ),
    (
        "dtype",
        op("dot", "t", "i"),
        "invalid_argument",
        "dot : expected both vectors to have same dtype, but found Float and Long",
        "RuntimeError",
    ),
    (
        "dim",
        op("sum", "x", dim=3),
        "invalid_argument",
        "Dimension out of range (expected to be in range of [-1, 0], but got 3)",
        "IndexError",
    ),
    ("unknown-attr", op("sum", "x", bogus=1), "invalid_argument", "bad arguments for op", None),
    ("unknown-tensor", op("neg", "nope"), "not_found", "no tensor named 'nope'", None),
    (
        "absent-grad",
        pb.Command(get=pb.GetTensor(tensor=ref("y", grad=True))),
        "failed_precondition",
        "'y.grad' is None: no backward pass has reached it",
        None,
    ),
    (
        "backward-non-scalar",
        pb.Command(backward=pb.Backward(tensor=ref("y"))),
        "failed_precondition",
        "grad can be implicitly created only for scalar outputs",
        "RuntimeError",
    ),
    (
        "in-place-on-leaf",
        op("add_", "x", 1),
        "failed_precondition",
        "a leaf Variable that requires grad is being used in an in-place operation.",
        "RuntimeError",
    ),
    ("too-many-elements", create("n", "zeros", 2**28), "resource_exhausted", "tensor of", None),
]


@pytest.mark.parametrize(
    "command, code, detail, torch_type",
    [case[1:] for case in COMMAND_ERRORS],
    ids=[case[0] for case in COMMAND_ERRORS],
)
def test_a_failing_command_fails_its_batch_with_its_index(
    session: Session, command: pb.Command, code: str, detail: str, torch_type: str | None
) -> None:
    before = session.state()
    error = failure(lambda: session.execute(create("fresh", "zeros", 1), op("neg", "x"), command))
    assert error.code() == TABLE[code].grpc
    assert error.details().startswith(detail)
    meta = trailers(error)
    assert meta["code"] == code and meta["command_index"] == "2"
    if torch_type is not None:
        assert meta["torch_type"] == torch_type
    assert session.state() == before
    assert failure(lambda: session.execute(get("fresh"))).code() == grpc.StatusCode.NOT_FOUND
    assert session.execute(op("neg", "x")).results[0].tensors[0].name == "%1"  # not "%2"


def test_a_unary_command_error_has_index_zero(session: Session) -> None:
    before = session.state()
    request = pb.ApplyOpRequest(session_id=session.id, command=pb.ApplyOp(op="dot", inputs=[]))
    error = failure(lambda: session.stub.ApplyOp(request, metadata=session.metadata))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailers(error)["command_index"] == "0"
    assert session.state() == before


# ----- sessions, tokens and keys -----


def test_unknown_session_and_wrong_token_look_the_same(session: Session) -> None:
    request = pb.GetSessionRequest(session_id=session.id)
    unknown = pb.GetSessionRequest(session_id="0" * 32)
    errors = [
        failure(lambda: session.stub.GetSession(request, metadata=bearer("wrong"))),
        failure(lambda: session.stub.GetSession(unknown, metadata=session.metadata)),
        failure(lambda: session.execute(get("x"), metadata=bearer("wrong"))),
    ]
    assert {(e.code(), e.details()) for e in errors} == {
        (grpc.StatusCode.UNAUTHENTICATED, "invalid session id or token")
    }


@pytest.mark.parametrize(
    "metadata", [(), (("authorization", "Basic abc"),), (("authorization", "Bearer "),)]
)
def test_a_missing_token_is_unauthenticated(session: Session, metadata: Any) -> None:
    before = session.state()
    calls = [
        lambda: session.stub.GetSession(
            pb.GetSessionRequest(session_id=session.id), metadata=metadata
        ),
        lambda: session.stub.CloseSession(
            pb.CloseSessionRequest(session_id=session.id), metadata=metadata
        ),
        lambda: session.execute(get("x"), metadata=metadata),
    ]
    for call in calls:
        error = failure(call)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error.details().startswith("missing session token")
    assert session.state() == before


@pytest.mark.parametrize("metadata", [(), (("x-api-key", "wrong"),)])
def test_creating_a_session_needs_the_api_key(grpc_env: GrpcHarness, metadata: Any) -> None:
    before = grpc_env.dataplane.manager.count()
    error = failure(
        lambda: grpc_env.stub.CreateSession(pb.CreateSessionRequest(), metadata=metadata)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED == TABLE["permission_denied"].grpc
    assert trailers(error)["code"] == "permission_denied"
    assert grpc_env.dataplane.manager.count() == before


@pytest.mark.parametrize(
    "request_, detail",
    [
        (pb.CreateSessionRequest(device="tpu"), "device"),
        (pb.CreateSessionRequest(ttl_seconds=-1.0), "ttl must be a positive number"),
    ],
)
def test_invalid_session_arguments(grpc_env: GrpcHarness, request_: Any, detail: str) -> None:
    metadata = [("x-api-key", API_KEY)]
    error = failure(lambda: grpc_env.stub.CreateSession(request_, metadata=metadata))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in error.details()


# ----- limits -----


def test_a_message_over_the_limit_is_resource_exhausted(session: Session) -> None:
    before = session.state()
    big = data([0.0] * (MAX_REQUEST_BYTES // 4 + 1))
    error = failure(lambda: session.execute(create("big", data=big)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert session.state() == before


def test_a_response_over_the_limit_is_resource_exhausted(session: Session) -> None:
    session.execute(create("big", "zeros", MAX_REQUEST_BYTES // 4 + 1))
    error = failure(lambda: session.execute(get("big", value=True)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_batch_over_the_command_limit_is_resource_exhausted(
    session: Session, grpc_env: GrpcHarness
) -> None:
    before = session.state()
    limit = grpc_env.settings.max_commands_per_batch
    error = failure(lambda: session.execute(*[get("x")] * (limit + 1)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"exceeds the limit of {limit} commands per batch" in error.details()
    assert session.state() == before


# ----- the table, row by row, and what is not in it -----


@pytest.mark.parametrize("code", sorted(TABLE))
def test_every_row_of_the_table_applies(
    session: Session, grpc_env: GrpcHarness, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    error_class = type("Raised", (EngineError,), {"code": code, "torch_type": "ValueError"})

    def execute(*args: Any) -> Any:
        exc = error_class(f"a {code} error")
        exc.command_index = 3
        raise exc

    monkeypatch.setattr(grpc_env.dataplane, "execute", execute)
    error = failure(lambda: session.execute(get("x")))
    assert error.code() == TABLE[code].grpc
    assert error.details() == f"a {code} error"
    assert trailers(error) == {"code": code, "torch_type": "ValueError", "command_index": "3"}


def test_an_unexpected_error_is_internal_and_logged(
    session: Session,
    grpc_env: GrpcHarness,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def execute(*args: Any) -> Any:
        raise KeyError("secret internals")

    monkeypatch.setattr(grpc_env.dataplane, "execute", execute)
    with caplog.at_level(logging.ERROR, logger="service.grpc_server"):
        error = failure(lambda: session.execute(get("x")))
        responses = list(
            session.stub.ExecuteStream(
                iter([pb.ExecuteRequest(session_id=session.id, commands=[get("x")])]),
                metadata=session.metadata,
            )
        )
    assert error.code() == grpc.StatusCode.INTERNAL == TABLE["internal"].grpc
    assert error.details() == GENERIC_DETAIL
    assert "secret" not in str(trailers(error))
    (response,) = responses
    assert (response.error.code, response.error.detail) == ("internal", GENERIC_DETAIL)
    assert response.error.status == grpc.StatusCode.INTERNAL.value[0]
    logged = [r for r in caplog.records if r.exc_info and "secret internals" in str(r.exc_info[1])]
    assert len(logged) == 2


def test_bytes_that_are_not_the_message_are_invalid_argument(session: Session) -> None:
    channel = grpc.insecure_channel(session.target)
    try:
        get_session = channel.unary_unary("/gradient.v1.Gradient/GetSession")
        error = failure(lambda: get_session(b"\xff\xff\xff", metadata=session.metadata))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("malformed request message: Error parsing message")

        stream = channel.stream_stream("/gradient.v1.Gradient/ExecuteStream")
        good = pb.ExecuteRequest(session_id=session.id, commands=[get("x")]).SerializeToString()
        responses = stream(iter([good, b"\xff\xff\xff", good]), metadata=session.metadata)
        assert pb.ExecuteResponse.FromString(next(responses)).results[0].kind == "get"
        error = failure(lambda: next(responses))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        channel.close()
