"""Small ops on the event loop, against real server processes: a long batch in one session
stalls no small op of another session, and a server that runs small ops on its loop answers
as one that runs every command on its engine threads (``GRADSERVE_INLINE_MAX_ELEMENTS=0``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from service.gen.gradient.v1 import gradient_pb2 as pb
from service.gen.gradient.v1 import gradient_pb2_grpc as pb_grpc
from tests.live_server import LiveServer
from tests.service.remote import GrpcRemote, HttpRemote, Remote, RemoteError, to_proto

X = {"kind": "create", "name": "x", "data": [0.5, -1.0, 2.0, 3.0], "requires_grad": True}


def small(op: str, *inputs: Any, name: str = "y", **attrs: Any) -> dict[str, Any]:
    return {"kind": "op", "op": op, "inputs": list(inputs), "attrs": attrs, "name": name}


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[LiveServer, LiveServer]]:
    inline = LiveServer.start()
    pooled = LiveServer.start({"GRADSERVE_INLINE_MAX_ELEMENTS": "0"})
    yield inline, pooled
    assert inline.stop() == 0 and pooled.stop() == 0


def test_a_long_batch_stalls_no_small_op_of_another_session(
    servers: tuple[LiveServer, LiveServer],
) -> None:
    live = servers[0]
    with (
        httpx.Client(base_url=live.http_url, timeout=60) as http,
        grpc.insecure_channel(live.grpc_target) as channel,
    ):
        busy, quick = HttpRemote.open(http), HttpRemote.open(http)
        quick_grpc = GrpcRemote.open(pb_grpc.GradientStub(channel))
        for remote in (busy, quick, quick_grpc):
            remote.run([X])
            remote.run([small("mul", "x", 2)])  # measured on the pool: the next may run inline
        n = 1536
        commands = [{"kind": "create", "name": "m", "factory": "randn", "args": [n, n]}]
        commands += [{"kind": "op", "op": "mm", "inputs": ["m", "m"], "name": "p"}] * 30
        batch = threading.Thread(target=busy.run, args=(commands,), daemon=True)
        batch.start()
        time.sleep(0.2)
        # A small op of the busy session waits for the batch, on an engine thread.
        waited: list[float] = []
        behind = threading.Thread(
            target=lambda: (busy.run([small("mul", "x", 3)]), waited.append(time.monotonic())),
            daemon=True,
        )
        behind.start()
        probes: list[tuple[float, bool]] = []
        while batch.is_alive() and len(probes) < 200:
            for remote in (quick, quick_grpc):
                start = time.monotonic()
                (result,) = remote.run([small("mul", "x", 1.5)])
                probes.append((time.monotonic() - start, batch.is_alive()))
                assert result.tensors[0] is not None and result.tensors[0].shape == (4,)
        batch.join(120)
        ended = time.monotonic()
        behind.join(60)
        during = [seconds for seconds, running in probes if running]
        assert len(during) >= 3, "the batch ended too soon: make it longer"
        assert max(during) < 1.0, probes  # the batch takes seconds
        assert waited and waited[0] >= ended - 0.5, "the busy session's op ran during its batch"
        for remote in (busy, quick, quick_grpc):
            remote.close()


OPS = [
    small("mul", "x", 2),
    small("mul", "x", 1.5, name="z"),
    small("add", 2, "z", alpha=3),
    small("sub", "z", {"grad_of": "x"}),
    small("clamp", "y", min=-0.5, max=2.5, name="c"),
    small("where", "c", "x", 0.0),
    small("sin", "z", name="z"),
    {**small("exp", "z", name="e"), "no_grad": True},
    small("mul", "x", "nope"),
    small("add", "x", "x", alpha="two"),
    small("maximum", "x"),
]
READ = [
    {"kind": "get", "tensor": name, "value": True, "grad": True, "repr": True}
    for name in ("x", "y", "z", "c", "e")
]


def _outcomes(remote: Remote) -> list[Any]:
    remote.run([X, small("sum", "x", name="s"), {"kind": "backward", "tensor": "s"}])
    outcomes: list[Any] = []
    for command in OPS:
        try:
            outcomes.append(remote.run([command]))
        except RemoteError as exc:
            outcomes.append(exc)
    return [*outcomes, remote.run(READ)]


def test_small_ops_answer_the_same_on_the_loop_and_on_the_pool(
    servers: tuple[LiveServer, LiveServer],
) -> None:
    answers = []
    for live in servers:
        with (
            httpx.Client(base_url=live.http_url, timeout=30) as http,
            grpc.insecure_channel(live.grpc_target) as channel,
        ):
            stub = pb_grpc.GradientStub(channel)
            remotes: list[Remote] = [HttpRemote.open(http), GrpcRemote.open(stub)]
            answers.append([_outcomes(remote) for remote in remotes])
            answers[-1].append(_apply_op_rpcs(stub))
    assert answers[0] == answers[1]


def _apply_op_rpcs(stub: pb_grpc.GradientStub) -> list[Any]:
    """The same ops by the ApplyOp RPC (the single-command route of gRPC)."""
    remote = GrpcRemote.open(stub)
    remote.run([X])
    replies: list[Any] = []
    for command in OPS:
        request = pb.ApplyOpRequest(session_id=remote.id, command=to_proto(command).op)
        try:
            replies.append(stub.ApplyOp(request, metadata=remote.metadata, timeout=10))
        except grpc.RpcError as exc:
            replies.append((exc.code(), exc.details()))
    return replies
