"""CreateTensor requests deserialized without copying the tensor's bytes out
(``service.grpc_upload``): the same commands as protobuf's parse, or protobuf's parse itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dtypes import DTYPES
from service import grpc_messages as messages
from service.config import Settings
from service.gen.gradient.v1 import gradient_pb2 as pb
from service.grpc_upload import CreateTensorUpload, deserialize_create_tensor
from service.wire import DTYPE_ENUMS, tensor_array, tensor_message
from tests.service.grpc_support import API_KEY, GrpcHarness, val, wire_field, wire_tag


def _request(array: Any, **fields: Any) -> pb.CreateTensorRequest:
    command = pb.CreateTensor(data=tensor_message(numpy.asarray(array)), **fields)
    return pb.CreateTensorRequest(session_id="s", command=command)


def _same_command(raw: bytes) -> CreateTensorUpload:
    """The upload for ``raw``, checked to decode to protobuf's command for it."""
    upload = deserialize_create_tensor(raw, min_bytes=0)
    assert isinstance(upload, CreateTensorUpload)
    parsed = pb.CreateTensorRequest.FromString(raw)
    assert upload.session_id == parsed.session_id
    ours, theirs = upload.command(), messages.command("create", parsed.command)
    assert numpy.array_equal(ours.pop("data"), theirs.pop("data"))
    assert ours == theirs
    return upload


@settings(max_examples=100, deadline=None)
@given(
    dtype=st.sampled_from(sorted(DTYPES)),
    shape=st.lists(st.integers(0, 20), max_size=3),
    name=st.text(max_size=5),
    requires_grad=st.booleans(),
    cast=st.sampled_from([None, "float64", "int32"]),
)
def test_uploads_decode_to_what_protobuf_parses(
    dtype: str, shape: list[int], name: str, requires_grad: bool, cast: str | None
) -> None:
    array = (numpy.arange(int(numpy.prod(shape))) % 7).astype(DTYPES[dtype]).reshape(shape)
    fields = {"name": name, "requires_grad": requires_grad}
    if cast:
        fields["dtype"] = DTYPE_ENUMS[cast]
    raw = _request(array, **fields).SerializeToString()
    if array.nbytes == 0:  # proto3 leaves empty bytes out: nothing to take from the request
        assert deserialize_create_tensor(raw, min_bytes=0) == pb.CreateTensorRequest.FromString(raw)
    else:
        assert len(_same_command(raw).payload) == array.nbytes


def test_the_payload_is_a_view_of_the_request() -> None:
    raw = _request(numpy.arange(1000, dtype=numpy.float32)).SerializeToString()
    upload = _same_command(raw)
    assert upload.payload.obj is raw
    assert numpy.array_equal(numpy.frombuffer(upload.payload, "<f4"), numpy.arange(1000))


def test_fields_in_any_order_and_unknown_fields_are_kept() -> None:
    array = numpy.arange(6.0).reshape(2, 3)
    data = tensor_message(array)
    # TensorData fields written data first, then dtype and shape; an unknown field 9 (a
    # varint) at each level; the request's session after its command.
    tensor = (
        wire_field(3, data.data)
        + wire_tag(9, 0)
        + b"\x05"
        + pb.TensorData(dtype=data.dtype).SerializeToString()
    ) + pb.TensorData(shape=data.shape).SerializeToString()
    command = (
        wire_field(4, tensor)
        + wire_tag(9, 5)
        + b"\0\0\0\0"
        + pb.CreateTensor(name="n").SerializeToString()
    )
    raw = (
        wire_field(2, command)
        + wire_tag(9, 1)
        + b"\0" * 8
        + pb.CreateTensorRequest(session_id="s").SerializeToString()
    )
    upload = _same_command(raw)
    assert upload.command()["name"] == "n" and upload.command()["data"].shape == (2, 3)


def _cases_for_protobuf() -> Iterator[Any]:
    """Requests outside the plain case: protobuf parses them (merging, last value wins)."""
    one = _request(numpy.arange(4.0)).SerializeToString()
    other = _request(numpy.arange(3.0), name="b").SerializeToString()
    yield pytest.param(one + other, id="command-twice")  # merged, the last data wins
    data_twice = wire_field(2, wire_field(4, wire_field(3, b"\0" * 8) + wire_field(3, b"\1" * 8)))
    yield pytest.param(data_twice, id="data-twice")
    factory = pb.CreateTensor(factory="zeros", args=[val([2, 3])])
    yield pytest.param(pb.CreateTensorRequest(command=factory).SerializeToString(), id="factory")
    yield pytest.param(_request(numpy.zeros(0)).SerializeToString(), id="empty-data")
    yield pytest.param(wire_field(2, wire_tag(4, 3) + wire_tag(4, 4)), id="group")


@pytest.mark.parametrize("raw", list(_cases_for_protobuf()))
def test_other_requests_are_left_to_protobuf(raw: bytes) -> None:
    parsed = deserialize_create_tensor(raw, min_bytes=0)
    assert isinstance(parsed, pb.CreateTensorRequest)
    assert parsed == pb.CreateTensorRequest.FromString(raw)


@pytest.mark.parametrize(
    "raw",
    [
        _request(numpy.arange(4.0)).SerializeToString()[:-3],  # cut inside the data
        wire_field(2, wire_field(4, wire_tag(3, 2) + b"\x64" + b"\0" * 8)),  # a length past the end
        b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # an over-long varint
        wire_field(
            2, wire_field(4, wire_field(3, b"\0" * 8)) + b"\x0a\x05ab"
        ),  # a field cut short after
    ],
)
def test_malformed_requests_fail_as_protobuf_fails(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.CreateTensorRequest.FromString(raw)
    with pytest.raises(DecodeError):
        deserialize_create_tensor(raw, min_bytes=0)


def test_small_requests_are_parsed_by_protobuf() -> None:
    raw = _request(numpy.arange(4.0)).SerializeToString()
    assert isinstance(deserialize_create_tensor(raw), pb.CreateTensorRequest)


# ----- through the server -----


@pytest.fixture(scope="module")
def large_env() -> Iterator[GrpcHarness]:
    harness = GrpcHarness(Settings(api_key=API_KEY, max_request_bytes=16 << 20))
    try:
        yield harness
    finally:
        harness.close()


def test_a_large_tensor_is_uploaded_without_protobuf_copying_it(
    large_env: GrpcHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[CreateTensorUpload] = []
    command = CreateTensorUpload.command

    def spy(self: CreateTensorUpload) -> dict[str, Any]:
        decoded.append(self)
        return command(self)

    monkeypatch.setattr(CreateTensorUpload, "command", spy)
    session_id, metadata = large_env.session()
    array = numpy.random.default_rng(0).standard_normal((512, 1024)).astype(">f4")
    channel = grpc.insecure_channel(
        f"127.0.0.1:{large_env.port}", [("grpc.max_send_message_length", 32 << 20)]
    )
    create = channel.unary_unary(
        "/gradient.v1.Gradient/CreateTensor",
        request_serializer=pb.CreateTensorRequest.SerializeToString,
        response_deserializer=pb.CommandResult.FromString,
    )
    with channel:
        request = _request(array.astype("<f4"), name="w", requires_grad=True)
        request.session_id = session_id
        result = create(request, metadata=metadata)
        assert len(decoded) == 1 and result.tensors[0].requires_grad
        get = pb.GetTensorRequest(
            session_id=session_id,
            command=pb.GetTensor(tensor=pb.TensorRef(name="w"), value=True),
        )
        value = large_env.stub.GetTensor(get, metadata=metadata).tensors[0].value
        assert numpy.array_equal(tensor_array(value), array)

        # A malformed large request is the client's error, and changes nothing.
        raw = request.SerializeToString()[:-5]
        broken = channel.unary_unary("/gradient.v1.Gradient/CreateTensor")
        with pytest.raises(grpc.RpcError) as error:
            broken(raw, metadata=metadata)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        value = large_env.stub.GetTensor(get, metadata=metadata).tensors[0].value
        assert numpy.array_equal(tensor_array(value), array)
