"""Batches read a command at a time and written a result at a time (``service.grpc_batch``):
the same commands, errors and response bytes as protobuf's parse and serialization."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy
import pytest
from google.protobuf.message import DecodeError

from engine.errors import EngineError
from engine.parsing import parse_batch
from service import grpc_batch
from service import grpc_messages as messages
from service.config import Settings
from service.dataplane import DataPlane, Lane, Parsed
from service.gen.gradient.v1 import gradient_pb2 as pb
from service.grpc_batch import ExecuteBatch, deserialize_execute_request, encode_results
from service.memo import Memo
from service.wire import attr_value, tensor_array
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

COMMANDS = [
    create("x", data=data([[1.0, -2.0], [3.5, 4.0]]), requires_grad=True),
    create("r", "randn", 2, 3, dtype=pb.DTYPE_FLOAT64),
    op("mul", "x", 2.0, name="y"),
    op("mul", "x", 2.0, name="y"),  # the same bytes twice in one batch
    op("sum", "y", dim=attr_value([0]), keepdim=attr_value(True), name="s"),
    op("pow", "y", 2, name="p"),
    op("sum", "p", name="t"),
    pb.Command(backward=pb.Backward(tensor=ref("t"), retain_graph=True)),
    pb.Command(grad=pb.Grad(outputs=[ref("t")], inputs=[ref("x")], names=["g"])),
    pb.Command(detach=pb.Detach(tensor=ref("y"), name="d")),
    pb.Command(retain_grad=pb.RetainGrad(tensor=ref("y"))),
    get("x", value=True, grad=True, repr=True),
    get(ref("x", grad=True)),
    pb.Command(zero_grad=pb.ZeroGrad(tensors=[ref("x")], set_to_none=True)),
    pb.Command(release=pb.Release(names=["d"])),
]


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    grpc_batch.COMMANDS.clear()
    grpc_batch.RESULTS.clear()
    yield
    grpc_batch.COMMANDS.clear()
    grpc_batch.RESULTS.clear()


@pytest.fixture
def plane() -> Iterator[DataPlane]:
    dataplane = DataPlane(Settings(max_commands_per_batch=64))
    try:
        yield dataplane
    finally:
        dataplane.shutdown()


def _raw(commands: list[pb.Command], session_id: str = "s") -> bytes:
    return pb.ExecuteRequest(session_id=session_id, commands=commands).SerializeToString()


def _general(raw: bytes) -> list[Any]:
    return parse_batch(messages.batch(pb.ExecuteRequest.FromString(raw).commands))


def _same(ours: list[Any], theirs: list[Any]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert type(a) is type(b)
        for x, y in zip(a, b, strict=True):
            if isinstance(x, numpy.ndarray):
                assert x.dtype == y.dtype and numpy.array_equal(x, y)
            else:
                assert x == y


def _batch(raw: bytes) -> ExecuteBatch:
    batch = deserialize_execute_request(raw)
    assert isinstance(batch, ExecuteBatch)
    return batch


def test_commands_parse_as_the_general_path_parses_them() -> None:
    raw = _raw(COMMANDS)
    first = _batch(raw)
    assert first.session_id == "s" and len(first) == len(COMMANDS)
    cold = first.commands()
    assert type(cold) is Parsed
    _same(cold, _general(raw))
    # Remembered: every command but the two creates, once each.
    assert len(grpc_batch.COMMANDS) == len({c.SerializeToString() for c in COMMANDS}) - 2
    warm = _batch(raw)
    assert sum(type(item) is grpc_batch._Unseen for item in warm.items) == 2
    _same(warm.commands(), _general(raw))


def test_an_empty_request_and_no_session_id() -> None:
    batch = _batch(b"")
    assert batch.session_id == "" and batch.commands() == []
    assert _batch(_raw([op("neg", "x")], session_id="")).session_id == ""


def test_a_long_command_makes_protobuf_parse_the_request_once() -> None:
    """A command past MAX_COMMAND_BYTES (a create with its data, say) is not copied out of
    the request to be parsed alone, nor remembered: protobuf parses the whole request."""
    long = op("stack", ["x"] * grpc_batch.MAX_COMMAND_BYTES)
    assert len(long.SerializeToString()) > grpc_batch.MAX_COMMAND_BYTES
    raw = _raw([op("neg", "x"), long])
    assert deserialize_execute_request(raw) == pb.ExecuteRequest.FromString(raw)
    assert len(grpc_batch.COMMANDS) == 0


def _cases_for_protobuf() -> Iterator[Any]:
    plain = _raw([op("neg", "x")])
    yield pytest.param(wire_field(1, b"a") + plain, id="session-id-twice")  # the last one wins
    yield pytest.param(plain + wire_tag(3, 0) + b"\x01", id="unknown-field")
    yield pytest.param(wire_tag(2, 0) + b"\x01", id="commands-as-varint")
    yield pytest.param(b"\xa2\x01\x00" + plain, id="two-byte-tag")  # field 20, empty


@pytest.mark.parametrize("raw", list(_cases_for_protobuf()))
def test_other_requests_are_left_to_protobuf(raw: bytes) -> None:
    parsed = deserialize_execute_request(raw)
    assert isinstance(parsed, pb.ExecuteRequest)
    assert parsed == pb.ExecuteRequest.FromString(raw)


@pytest.mark.parametrize(
    "raw",
    [
        _raw([op("neg", "x")])[:-2],  # cut inside a command
        wire_field(2, b"\x12\x05ab"),  # a command's field cut short
        wire_field(1, b"\xff\xfe"),  # a session id that is not UTF-8
        wire_field(2, wire_field(2, wire_field(1, b"\xff"))),  # an op name that is not UTF-8
        b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # an over-long length
        b"\x12",  # a tag and nothing more
    ],
)
def test_malformed_requests_fail_as_protobuf_fails(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.ExecuteRequest.FromString(raw)
    with pytest.raises(DecodeError):
        deserialize_execute_request(raw)


UNKNOWN_DTYPE = pb.TensorData.FromString(pb.TensorData(shape=[2]).SerializeToString() + b"\x10\x63")


def _error(plane: DataPlane, commands: Any) -> tuple[type, str, int | None]:
    info = plane.create_session(seed=0)
    assert info.token is not None
    session = plane.session(info.id, info.token)
    with pytest.raises(EngineError) as caught:
        plane.execute(session, commands() if callable(commands) else commands)
    return type(caught.value), str(caught.value), caught.value.command_index


@pytest.mark.parametrize(
    "bad",
    [
        [op("neg", "x"), pb.Command(), op("nope", "x")],  # no kind, then an unknown op
        [op("neg", "x"), op("nope", "x"), pb.Command()],  # the other way round
        [op("neg", "x"), op("add", val(pb.Value(text="t")))],  # an attribute-only Value
        [create("x", data=UNKNOWN_DTYPE), op("nope", "x")],
        [op("neg", "x")] * 65,  # over the batch size, with every command fine
        [op("neg", "x")] * 64 + [op("nope", "x")],  # over it, and a command that fails
    ],
)
def test_failing_batches_fail_as_the_general_path_fails(plane: DataPlane, bad: Any) -> None:
    raw = _raw(bad)
    general = _error(plane, lambda: messages.batch(pb.ExecuteRequest.FromString(raw).commands))
    assert _error(plane, _batch(raw).commands) == general
    # And again, with what the first pass remembered.
    assert _error(plane, _batch(raw).commands) == general


def _results(plane: DataPlane) -> list[Any]:
    info = plane.create_session(seed=0)
    assert info.token is not None
    session = plane.session(info.id, info.token)
    extra = [
        create("n", data=data([numpy.nan, numpy.inf, -numpy.inf]), requires_grad=True),
        op("sum", "n", name="u"),
        pb.Command(
            grad=pb.Grad(outputs=[ref("u")], inputs=[ref("x"), ref("n")], allow_unused=True)
        ),
        get("n", value=True, repr=True),
    ]
    return plane.execute(session, Parsed(_general(_raw(COMMANDS + extra))))


def test_results_encode_as_protobuf_serializes_them(plane: DataPlane) -> None:
    results = _results(plane)
    expected = pb.ExecuteResponse(results=[messages.result(r) for r in results]).SerializeToString()
    assert encode_results(results) == expected
    assert 0 < len(grpc_batch.RESULTS) < len(results)  # those without arrays, once each
    assert encode_results(results) == expected
    assert grpc_batch.serialize_response(expected) is expected
    error = pb.ExecuteResponse(error=pb.Error(code="x"))
    assert grpc_batch.serialize_response(error) == error.SerializeToString()


def test_memo_is_bounded_and_forgets_the_oldest() -> None:
    memo: Memo[int, int] = Memo(3)
    for key in range(5):
        memo.put(key, key * 10)
    assert len(memo) == 3 and memo.get(0) is None and memo.get(4) == 40
    memo.put(4, 41)  # replacing evicts nothing
    assert len(memo) == 3 and memo.get(2) == 20 and memo.get(4) == 41


def test_memo_recalls_what_it_made_and_keeps_nothing_for_an_unhashable_key() -> None:
    memo: Memo[Any, str] = Memo(3)
    made: list[Any] = []

    def make(key: Any) -> str:
        made.append(key)
        return repr(key)

    assert [memo.recall(k, make) for k in ((1,), (1,), (2,))] == ["(1,)", "(1,)", "(2,)"]
    assert made == [(1,), (2,)] and len(memo) == 2
    assert memo.recall(([1],), make) == "([1],)" and memo.recall(([1],), make) == "([1],)"
    assert len(made) == 4 and len(memo) == 2


def test_memo_recall_all_makes_each_value_once_and_looks_each_object_up_once() -> None:
    memo: Memo[Any, str] = Memo(3)
    made: list[Any] = []

    def make(key: Any) -> str:
        made.append(key)
        return repr(key)

    shared, unhashable = (1,), ([1],)
    keys = [shared, shared, (2,), (1,), unhashable, shared, unhashable]
    assert memo.recall_all(keys, make) == [repr(k) for k in keys]
    # One lookup an object; an unhashable key is made once a call, and not kept.
    assert made == [shared, (2,), unhashable] and len(memo) == 2
    assert memo.recall_all([unhashable], make) == [repr(unhashable)] and len(made) == 4
    assert memo.recall_all([], make) == []


def test_memo_stays_bounded_under_threads() -> None:
    memo: Memo[tuple[int, int], int] = Memo(50)
    start = threading.Barrier(4)

    def fill(worker: int) -> None:
        start.wait()
        for i in range(2000):
            memo.put((worker, i), i)
            assert len(memo) <= 50
            value = memo.get((worker, i - 1))
            assert value is None or value == i - 1

    threads = [threading.Thread(target=fill, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(memo) == 50


# ----- ExecuteStream, read ahead -----


def test_a_long_pipelined_stream_runs_its_batches_in_order(grpc_env: GrpcHarness) -> None:
    session_id, metadata = grpc_env.session()
    step = [op("add", "c", 1.0, name="c"), op("mul", "c", 1.0, name="d"), get("c", value=True)]

    def requests() -> Iterator[pb.ExecuteRequest]:
        zeros = create("c", "zeros", 1, dtype=pb.DTYPE_FLOAT64)
        yield pb.ExecuteRequest(session_id=session_id, commands=[zeros])
        for index in range(40):
            if index == 20:  # a failed batch in the middle changes nothing
                yield pb.ExecuteRequest(commands=[op("add", "c", 1.0, name="c"), get("nope")])
            yield pb.ExecuteRequest(commands=step)
            # A single small op, which may run on the event loop when nothing else is queued.
            yield pb.ExecuteRequest(commands=[op("mul", "c", 2.0, name="c")])

    responses = list(grpc_env.stub.ExecuteStream(requests(), metadata=metadata))
    assert len(responses) == 82
    errors = [index for index, r in enumerate(responses) if r.HasField("error")]
    assert errors == [41]
    values = [
        tensor_array(r.results[2].tensors[0].value)[0] for r in responses if len(r.results) == 3
    ]
    expected, c = [], 0.0
    for _ in range(40):
        c += 1
        expected.append(c)
        c *= 2
    assert values == expected


def test_a_stream_cancelled_with_batches_in_flight_leaves_the_session_usable(
    grpc_env: GrpcHarness,
) -> None:
    session_id, metadata = grpc_env.session()
    setup = [create("m", "ones", 64, 64)]
    heavy = [op("matmul", "m", "m", name="n") for _ in range(20)]
    requests = [pb.ExecuteRequest(session_id=session_id, commands=setup)]
    requests += [pb.ExecuteRequest(commands=heavy)] * 50
    call = grpc_env.stub.ExecuteStream(iter(requests), metadata=metadata)
    assert not next(call).HasField("error")
    call.cancel()
    with pytest.raises(grpc.RpcError):
        list(call)
    # The batches that had started end; nothing holds the session after.
    again = list(
        grpc_env.stub.ExecuteStream(
            iter([pb.ExecuteRequest(session_id=session_id, commands=[get("m")])] * 2),
            metadata=metadata,
        )
    )
    assert [r.results[0].tensors[0].name for r in again] == ["m", "m"]


# ----- the data plane's lane -----


def test_a_lane_runs_its_calls_in_order_one_at_a_time() -> None:
    pool = ThreadPoolExecutor(4)
    try:
        lane = Lane(pool)
        ran: list[int] = []
        running = threading.Semaphore(1)

        def call(n: int) -> int:
            assert running.acquire(blocking=False), "two calls of one lane at once"
            try:
                time.sleep(0.0005 if n % 7 == 0 else 0)
                ran.append(n)
                return n
            finally:
                running.release()

        futures = [lane.submit(functools.partial(call, n)) for n in range(200)]
        assert [f.result(timeout=10) for f in futures] == list(range(200))
        assert ran == list(range(200))
        # Idle again, it starts a new pool job for the next call.
        assert lane.submit(lambda: 7).result(timeout=10) == 7
    finally:
        pool.shutdown()


def test_a_lane_skips_cancelled_calls_and_passes_errors_on() -> None:
    pool = ThreadPoolExecutor(2)
    try:
        lane = Lane(pool)
        gate = threading.Event()
        first = lane.submit(gate.wait)
        cancelled = lane.submit(lambda: pytest.fail("a cancelled call ran"))
        failing = lane.submit(lambda: 1 / 0)
        last = lane.submit(lambda: "last")
        assert cancelled.cancel()
        gate.set()
        assert first.result(timeout=10) is True
        with pytest.raises(ZeroDivisionError):
            failing.result(timeout=10)
        assert last.result(timeout=10) == "last"
    finally:
        pool.shutdown()


def test_a_busy_lane_lets_other_work_of_the_pool_through() -> None:
    pool = ThreadPoolExecutor(1)
    try:
        lane = Lane(pool)
        ran: list[str] = []
        started, submitted = threading.Event(), threading.Event()

        def call(n: int) -> None:
            if n == 0:  # the other work is queued while the lane's job runs
                started.set()
                assert submitted.wait(10)
            ran.append(f"lane {n}")

        futures = [lane.submit(functools.partial(call, n)) for n in range(20)]
        assert started.wait(10)
        other = pool.submit(ran.append, "other")
        submitted.set()
        other.result(timeout=10)
        for future in futures:
            future.result(timeout=10)
        assert ran.index("other") == Lane.BURST
        assert [r for r in ran if r != "other"] == [f"lane {n}" for n in range(20)]
    finally:
        pool.shutdown()
