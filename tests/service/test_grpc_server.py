"""The gRPC frontend through its generated stubs: the seed notebook, every rpc, streams,
health and reflection."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import grpc
import numpy
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.config import Settings
from service.gen.gradient.v1 import gradient_pb2 as pb
from service.grpc_server import HEALTH_SERVICE_NAME, REGISTERED, SERVICE_NAME
from service.wire import tensor_array
from tests.seed import cells, display
from tests.service.grpc_support import (
    API_KEY,
    GrpcHarness,
    bearer,
    create,
    data,
    get,
    op,
    ref,
    val,
)


class Client:
    """A session of the harness, with short forms of the calls the tests make."""

    def __init__(self, env: GrpcHarness) -> None:
        self.stub = env.stub
        self.id, self.metadata = env.session()

    def run(self, *commands: pb.Command) -> list[pb.CommandResult]:
        request = pb.ExecuteRequest(session_id=self.id, commands=commands)
        return list(self.stub.Execute(request, metadata=self.metadata).results)

    def show(self, *refs: str | pb.TensorRef) -> str:
        """What the notebook displays for these tensors (one, or a tuple of them)."""
        gets = [get(r, repr=True) for r in refs]
        reprs = [_Shown(result.tensors[0].repr) for result in self.run(*gets)]
        return display(reprs[0] if len(reprs) == 1 else tuple(reprs))

    def value(self, name: str | pb.TensorRef) -> numpy.ndarray:
        result = self.run(get(name, value=True))
        return tensor_array(result[0].tensors[0].value)


class _Shown(str):
    """A repr already computed by the server, displayed as it is."""

    def __repr__(self) -> str:
        return str(self)


def backward(name: str, **fields: Any) -> pb.Command:
    return pb.Command(backward=pb.Backward(tensor=ref(name), **fields))


def zero_grad_of(name: str) -> pb.Command:
    return op("zero_", ref(name, grad=True))


@pytest.fixture
def client(grpc_env: GrpcHarness) -> Client:
    return Client(grpc_env)


# ----- the seed notebook -----


def test_seed_notebook_over_grpc(client: Client) -> None:
    shown = {cell.label: cell.output for cell in cells()}
    c = client
    x_grad = ref("x", grad=True)

    c.run(create("x", "arange", 4.0))
    assert c.show("x") == shown["In [2]"] == "tensor([0., 1., 2., 3.])"

    (result,) = c.run(
        pb.Command(requires_grad=pb.RequiresGrad(tensor=ref("x"), requires_grad=True))
    )
    assert result.tensors[0].requires_grad
    assert not c.run(get("x"))[0].tensors[0].has_grad  # x.grad is None: nothing shown
    assert shown["In [3]"] == ""

    c.run(op("dot", "x", "x", name="dot"))
    assert c.show("dot") == shown["In [5]"]

    c.run(op("dot", "x", "x", name="d"), op("mul", 2, "d", name="y"))
    assert c.show("y") == shown["In [4]"] == "tensor(28., grad_fn=<MulBackward0>)"

    c.run(backward("y"))
    assert c.show(x_grad) == shown["In [6]"] == "tensor([ 0.,  4.,  8., 12.])"

    c.run(op("mul", 4, "x", name="four_x"))
    assert c.show(x_grad, "four_x") == shown["In [8]"]

    c.run(op("eq", x_grad, "four_x", name="same"))
    assert c.show("same") == shown["In [9]"]

    c.run(op("sum", "x", name="s"))
    assert c.show("s") == shown["In [10]"]

    c.run(zero_grad_of("x"), op("sum", "x", name="y"), backward("y"))
    assert c.show(x_grad) == shown["In [11]"]

    c.run(op("mul", "x", "x", name="xx"))
    assert c.show("x", "xx") == shown["In [18]"]

    c.run(
        zero_grad_of("x"),
        op("mul", "x", "x", name="y"),
        create("ones", "ones", 4),
        backward("y", gradient=ref("ones")),
    )
    assert c.show(x_grad) == shown["In [20]"]

    c.run(op("sum", "y", name="y_sum"))
    assert c.show("y_sum", "ones") == shown["In [22]"]

    c.run(
        zero_grad_of("x"),
        op("mul", "x", "x", name="y"),
        pb.Command(detach=pb.Detach(tensor=ref("y"), name="u")),
        op("mul", "u", "x", name="z"),
        op("sum", "z", name="z_sum"),
        backward("z_sum"),
        op("eq", x_grad, "u", name="same"),
    )
    assert c.show("same") == shown["In [64]"]
    assert c.show("y", "z", "u", x_grad) == shown["In [66]"]

    c.run(
        zero_grad_of("x"),
        op("sum", "y", name="y_sum"),
        backward("y_sum"),
        op("mul", 2, "x", name="two_x"),
        op("eq", x_grad, "two_x", name="same"),
    )
    assert c.show("same") == shown["In [67]"]

    # In [68] and [79]: Python control flow on the client, driven by values it reads back.
    c.run(create("a", data=data(100.0), requires_grad=True))
    c.run(op("mul", "a", 2, name="b"))
    while c.run(op("norm", "b", name="n")) and c.value("n") < 1000:
        c.run(op("mul", "b", 2, name="b"))
    c.run(op("sum", "b", name="b_sum"))
    d = "b" if c.value("b_sum") > 0 else c.run(op("mul", 100, "b"))[0].tensors[0].name
    c.run(backward(d))
    assert c.show("a", d) == shown["In [79]"]

    c.run(op("div", d, "a", name="ratio"), op("eq", ref("a", grad=True), "ratio", name="same"))
    assert c.show("same", ref("a", grad=True)) == shown["In [80]"]


# ----- every rpc -----


def test_sessions(grpc_env: GrpcHarness) -> None:
    stub = grpc_env.stub
    created = stub.CreateSession(
        pb.CreateSessionRequest(device="cpu", seed=7, ttl_seconds=60.0),
        metadata=[("x-api-key", API_KEY)],
    )
    assert created.id and created.token
    assert (created.device, created.seed, created.ttl_seconds) == ("cpu", 7, 60.0)
    metadata = bearer(created.token)

    request = pb.CreateTensorRequest(
        session_id=created.id, command=pb.CreateTensor(name="w", factory="zeros", args=[val(256)])
    )
    stub.CreateTensor(request, metadata=metadata)
    info = stub.GetSession(pb.GetSessionRequest(session_id=created.id), metadata=metadata)
    assert (info.id, info.token, info.tensors, info.bytes_held) == (created.id, "", 1, 1024)
    assert info.ttl_seconds == 60.0

    default = stub.CreateSession(pb.CreateSessionRequest(), metadata=[("x-api-key", API_KEY)])
    assert default.ttl_seconds == grpc_env.settings.session_ttl
    assert default.device == grpc_env.settings.device

    stub.CloseSession(pb.CloseSessionRequest(session_id=created.id), metadata=metadata)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetSession(pb.GetSessionRequest(session_id=created.id), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_every_command_rpc(client: Client) -> None:
    stub, sid, md = client.stub, client.id, client.metadata

    created = stub.CreateTensor(
        pb.CreateTensorRequest(
            session_id=sid,
            command=pb.CreateTensor(
                name="x", data=data([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True
            ),
        ),
        metadata=md,
    )
    assert created.kind == "create"
    (x,) = created.tensors
    assert (x.name, list(x.shape), x.dtype) == ("x", [2, 2], pb.DTYPE_FLOAT32)
    assert x.requires_grad and x.is_leaf and not x.has_grad and x.grad_fn == ""

    applied = stub.ApplyOp(
        pb.ApplyOpRequest(session_id=sid, command=pb.ApplyOp(op="mul", inputs=[val("x"), val(3)])),
        metadata=md,
    )
    (y,) = applied.tensors
    assert applied.kind == "op" and y.name == "%1" and y.grad_fn == "MulBackward0"

    softmax = pb.ApplyOp(op="softmax", inputs=[val("x")], name="p")
    softmax.attrs["dim"].integer = 1
    stub.ApplyOp(pb.ApplyOpRequest(session_id=sid, command=softmax), metadata=md)
    numpy.testing.assert_allclose(client.value("p").sum(axis=1), [1.0, 1.0], rtol=1e-6)

    stub.RetainGrad(
        pb.RetainGradRequest(session_id=sid, command=pb.RetainGrad(tensor=ref("%1"))), metadata=md
    )
    client.run(op("sum", "%1", name="total"))
    result = stub.Backward(
        pb.BackwardRequest(
            session_id=sid, command=pb.Backward(tensor=ref("total"), retain_graph=True)
        ),
        metadata=md,
    )
    assert result.kind == "backward" and not result.tensors
    numpy.testing.assert_array_equal(client.value(ref("x", grad=True)), numpy.full((2, 2), 3.0))
    numpy.testing.assert_array_equal(client.value(ref("%1", grad=True)), numpy.ones((2, 2)))

    client.run(create("unused", "zeros", 2, requires_grad=True))
    grads = stub.Grad(
        pb.GradRequest(
            session_id=sid,
            command=pb.Grad(
                outputs=[ref("total")],
                inputs=[ref("x"), ref("unused")],
                allow_unused=True,
                names=["gx", "gu"],
            ),
        ),
        metadata=md,
    )
    assert [(t.name, t.absent) for t in grads.tensors] == [("gx", False), ("", True)]

    detached = stub.Detach(
        pb.DetachRequest(session_id=sid, command=pb.Detach(tensor=ref("%1"), name="frozen")),
        metadata=md,
    )
    assert not detached.tensors[0].requires_grad and detached.tensors[0].is_leaf

    stub.ZeroGrad(
        pb.ZeroGradRequest(session_id=sid, command=pb.ZeroGrad(tensors=[ref("x")])), metadata=md
    )
    numpy.testing.assert_array_equal(client.value(ref("x", grad=True)), numpy.zeros((2, 2)))
    stub.ZeroGrad(
        pb.ZeroGradRequest(
            session_id=sid, command=pb.ZeroGrad(tensors=[ref("x")], set_to_none=True)
        ),
        metadata=md,
    )
    assert not client.run(get("x"))[0].tensors[0].has_grad

    flag = stub.SetRequiresGrad(
        pb.SetRequiresGradRequest(
            session_id=sid, command=pb.RequiresGrad(tensor=ref("frozen"), requires_grad=True)
        ),
        metadata=md,
    )
    assert flag.kind == "requires_grad" and flag.tensors[0].requires_grad

    got = stub.GetTensor(
        pb.GetTensorRequest(
            session_id=sid, command=pb.GetTensor(tensor=ref("x"), value=True, repr=True)
        ),
        metadata=md,
    )
    (info,) = got.tensors
    numpy.testing.assert_array_equal(tensor_array(info.value), [[1.0, 2.0], [3.0, 4.0]])
    assert info.repr == "tensor([[1., 2.],\n        [3., 4.]], requires_grad=True)"
    assert not info.HasField("grad")

    released = stub.Release(
        pb.ReleaseRequest(session_id=sid, command=pb.Release(names=["frozen", "%1"])), metadata=md
    )
    assert released.kind == "release"
    with pytest.raises(grpc.RpcError) as caught:
        client.run(get("frozen"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_execute_returns_one_result_per_command(client: Client) -> None:
    results = client.run(
        create("a", "full", [2, 3], 1.5, dtype=pb.DTYPE_FLOAT64),
        create("b", "eye", 3, dtype=pb.DTYPE_FLOAT64),
        create("c", "linspace", 0.0, 1.0, 5),
        op("cat", ["a", "a"], name="aa", dim=0),
        op("matmul", "aa", "b", name="m"),
        op("split", "c", 2, names=("c0", "c1", "c2")),
        get("m", value=True),
    )
    assert [r.kind for r in results] == ["create"] * 3 + ["op"] * 3 + ["get"]
    assert results[1].tensors[0].dtype == pb.DTYPE_FLOAT64
    assert list(results[3].tensors[0].shape) == [4, 3]
    assert [t.name for t in results[5].tensors] == ["c0", "c1", "c2"]
    m = results[6].tensors[0]
    assert m.dtype == pb.DTYPE_FLOAT64
    numpy.testing.assert_array_equal(tensor_array(m.value), numpy.full((4, 3), 1.5))


def test_attrs_reach_the_op_as_python_values(client: Client) -> None:
    client.run(create("t", "arange", 24.0), op("reshape", "t", [2, 3, 4], name="t3"))
    results = client.run(
        op("sum", "t3", name="s", dim=[0, 2], keepdim=True),
        op("index", "t3", name="i", key=[{"slice": [None, None, -1]}, "...", 1]),
        op("norm", "t3", name="n", p=1),
        get("i", value=True),
        op("clamp", "t3", name="c", min=-math.inf, max=5.5),
    )
    assert list(results[0].tensors[0].shape) == [1, 3, 1]
    expected = numpy.arange(24.0, dtype="float32").reshape(2, 3, 4)[::-1, ..., 1]
    numpy.testing.assert_array_equal(tensor_array(results[3].tensors[0].value), expected)
    assert client.value("n") == sum(range(24))
    assert client.value("c").max() == 5.5


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_nonfinite_values_round_trip(client: Client, dtype: str) -> None:
    values = numpy.array([math.nan, math.inf, -math.inf, -0.0, 1.5], dtype=dtype)
    client.run(create("v", data=data(values, dtype)), op("mul", "v", 2, name="w"))
    got = client.value("v")
    assert got.dtype == numpy.dtype(dtype)
    assert got.tobytes() == values.astype(numpy.dtype(dtype).newbyteorder("<")).tobytes()
    numpy.testing.assert_array_equal(client.value("w"), values * 2)
    assert client.show("w") == repr(torch.from_numpy(values) * 2)


@pytest.mark.parametrize(
    "values, dtype",
    [
        ([[1, -2], [3, 2**40]], "int64"),
        ([1, -2, 3], "int32"),
        ([1, -2, 3], "int16"),
        ([1, -2, 3], "int8"),
        ([0, 255], "uint8"),
        ([True, False], "bool"),
        (7.25, "float64"),
        (numpy.zeros((0, 3)), "float32"),
    ],
)
def test_dtypes_and_shapes_round_trip(client: Client, values: object, dtype: str) -> None:
    sent = numpy.asarray(values, dtype=dtype)
    (result,) = client.run(create("t", data=data(sent, dtype)))
    assert list(result.tensors[0].shape) == list(sent.shape)
    got = client.value("t")
    assert got.dtype == sent.dtype and got.shape == sent.shape
    numpy.testing.assert_array_equal(got, sent)


def test_unspecified_tensor_dtype_is_float32(client: Client) -> None:
    raw = numpy.array([1.0, 2.0], dtype="<f4").tobytes()
    client.run(
        pb.Command(create=pb.CreateTensor(name="t", data=pb.TensorData(shape=[2], data=raw)))
    )
    assert client.value("t").dtype == numpy.float32


def test_seeded_sessions_draw_the_same_numbers(grpc_env: GrpcHarness) -> None:
    first, second = Client(grpc_env), Client(grpc_env)
    for c in (first, second):
        c.run(create("r", "randn", 3, 2))
    numpy.testing.assert_array_equal(first.value("r"), second.value("r"))


# ----- streams -----


def test_stream_pipelines_batches_and_reports_a_failed_one_in_band(client: Client) -> None:
    def batches() -> Iterator[pb.ExecuteRequest]:
        yield pb.ExecuteRequest(session_id=client.id, commands=[create("x", "arange", 3.0)])
        yield pb.ExecuteRequest(commands=[op("mul", "x", 2, name="y")])
        yield pb.ExecuteRequest(
            session_id=client.id,
            commands=[op("add", "y", 1, name="z"), op("add", "y", "nope"), get("z")],
        )
        yield pb.ExecuteRequest(commands=[op("add", "y", 1, name="w"), get("y", value=True)])
        yield pb.ExecuteRequest(commands=[get("z")])

    responses = list(client.stub.ExecuteStream(batches(), metadata=client.metadata))

    assert len(responses) == 5
    assert [r.HasField("error") for r in responses] == [False, False, True, False, True]
    assert [r.results[0].tensors[0].name for r in responses[:2]] == ["x", "y"]
    failed = responses[2].error
    assert (failed.code, failed.status, failed.command_index) == (
        "not_found",
        grpc.StatusCode.NOT_FOUND.value[0],
        1,
    )
    assert failed.detail == "no tensor named 'nope' in this session"
    assert failed.torch_type == "RuntimeError"
    assert not responses[2].results
    numpy.testing.assert_array_equal(
        tensor_array(responses[3].results[1].tensors[0].value), [0, 2, 4]
    )
    # The failed batch bound nothing: its first command's "z" was rolled back.
    assert responses[4].error.code == "not_found" and responses[4].error.command_index == 0


def test_stream_stays_on_its_session(grpc_env: GrpcHarness) -> None:
    mine, other = Client(grpc_env), Client(grpc_env)
    requests = [
        pb.ExecuteRequest(session_id=mine.id, commands=[create("x", "zeros", 1)]),
        pb.ExecuteRequest(session_id=other.id, commands=[create("x", "zeros", 1)]),
        pb.ExecuteRequest(session_id=mine.id, commands=[get("x")]),
    ]
    responses = list(mine.stub.ExecuteStream(iter(requests), metadata=mine.metadata))
    assert [r.error.code for r in responses] == ["", "invalid_argument", ""]
    assert "this stream runs on session" in responses[1].error.detail


def test_stream_with_a_wrong_token_fails_each_batch(client: Client) -> None:
    requests = [pb.ExecuteRequest(session_id=client.id, commands=[get("x")])] * 2
    responses = list(client.stub.ExecuteStream(iter(requests), metadata=bearer("wrong")))
    assert [r.error.status for r in responses] == [grpc.StatusCode.UNAUTHENTICATED.value[0]] * 2
    assert {r.error.detail for r in responses} == {"invalid session id or token"}


def test_stream_without_a_token_fails_the_call(client: Client) -> None:
    requests = iter([pb.ExecuteRequest(session_id=client.id, commands=[get("x")])])
    with pytest.raises(grpc.RpcError) as caught:
        list(client.stub.ExecuteStream(requests))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_empty_stream(client: Client) -> None:
    assert list(client.stub.ExecuteStream(iter([]), metadata=client.metadata)) == []


# ----- health and reflection -----


def test_health_reports_serving(grpc_env: GrpcHarness) -> None:
    health = health_pb2_grpc.HealthStub(grpc_env.channel)
    for service in ("", SERVICE_NAME):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # the servicer's own abort


def test_health_goes_not_serving_on_shutdown() -> None:
    env = GrpcHarness(Settings())
    try:
        env._call(env.health.enter_graceful_shutdown())
        health = health_pb2_grpc.HealthStub(env.channel)
        for service in ("", SERVICE_NAME):
            response = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        env.close()


def test_reflection_lists_and_describes_the_services(grpc_env: GrpcHarness) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc_env.channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME),
    ]
    listed, described = list(stub.ServerReflectionInfo(iter(requests)))
    names = {s.name for s in listed.list_services_response.service}
    assert names == {SERVICE_NAME, HEALTH_SERVICE_NAME, "grpc.reflection.v1alpha.ServerReflection"}
    files = described.file_descriptor_response.file_descriptor_proto
    assert any(b"gradient/v1/gradient.proto" in f for f in files)


def test_every_method_is_served_registered_or_by_name(grpc_env: GrpcHarness) -> None:
    """Commands are registered by path (``REGISTERED``), the rest found by name: all answer."""
    methods = pb.DESCRIPTOR.services_by_name["Gradient"].methods
    assert set(REGISTERED) < {method.name for method in methods}
    for method in methods:
        path = f"/{SERVICE_NAME}/{method.name}"
        try:
            if method.client_streaming:
                list(grpc_env.channel.stream_stream(path)(iter([b""])))
            else:
                grpc_env.channel.unary_unary(path)(b"")
        except grpc.RpcError as exc:
            assert exc.code() != grpc.StatusCode.UNIMPLEMENTED, method.name
