"""CreateTensor requests read without copying their tensor bytes out of the request.

Parsing a CreateTensorRequest with protobuf copies ``TensorData.data`` into the message, and
reading the field copies it again, each time: for a 64 MiB tensor that is ~60 ms, on the
event loop (gRPC deserializes there), before the engine makes its own copy. Instead, this
module's deserializer finds that one field by walking the wire format down
``command.data.data``, lets protobuf parse everything else (a few bytes), and hands the
tensor's bytes on as a view into the request. Any request it does not recognize as the plain
case (a small one, a field given twice, anything malformed) is parsed by protobuf as usual,
so that answers and errors stay the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service import grpc_messages as messages
from service.gen.gradient.v1 import gradient_pb2 as pb
from service.protowire import Unusual, read_varint, varint

MIN_BYTES = 1 << 20  # below this, protobuf's own parse costs next to nothing
# CreateTensorRequest.command, CreateTensor.data, TensorData.data.
_PAYLOAD_PATH = (
    pb.CreateTensorRequest.DESCRIPTOR.fields_by_name["command"].number,
    pb.CreateTensor.DESCRIPTOR.fields_by_name["data"].number,
    pb.TensorData.DESCRIPTOR.fields_by_name["data"].number,
)
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


@dataclass(frozen=True, slots=True)
class CreateTensorUpload:
    """A CreateTensorRequest whose ``command.data.data`` is ``payload``, a view into the
    request's bytes; ``request`` holds every other field."""

    request: pb.CreateTensorRequest
    payload: memoryview

    @property
    def session_id(self) -> str:
        return self.request.session_id

    def command(self) -> dict[str, Any]:
        """The create command's dict (its array a read-only view of the request's bytes)."""
        return messages.create_command(self.request.command, self.payload)


def deserialize_create_tensor(
    raw: bytes, min_bytes: int = MIN_BYTES
) -> pb.CreateTensorRequest | CreateTensorUpload:
    """A CreateTensorRequest's bytes as an upload, or as the message where that does not pay."""
    if len(raw) >= min_bytes:
        view = memoryview(raw)
        try:
            pieces, (start, end) = _without(view, 0, len(view), _PAYLOAD_PATH)
        except Unusual:
            pass
        else:
            request = pb.CreateTensorRequest.FromString(b"".join(pieces))
            return CreateTensorUpload(request, view[start:end])
    return pb.CreateTensorRequest.FromString(raw)


def _without(
    buf: memoryview, start: int, end: int, path: tuple[int, ...]
) -> tuple[list[memoryview | bytes], tuple[int, int]]:
    """The message in ``buf[start:end]`` as pieces that leave out the field at ``path`` (each
    enclosing length rewritten), and where that field's bytes are in ``buf``."""
    found = [f for f in _fields(buf, start, end) if f[0] == path[0]]
    if len(found) != 1 or found[0][1] != _LEN:
        raise Unusual  # absent, or repeated (protobuf merges or keeps the last)
    _, _, field_start, tag_end, value_start, value_end = found[0]
    before, after = buf[start:field_start], buf[value_end:end]
    if len(path) == 1:
        return [before, after], (value_start, value_end)
    inner, payload = _without(buf, value_start, value_end, path[1:])
    size = sum(len(piece) for piece in inner)
    return [before, buf[field_start:tag_end], varint(size), *inner, after], payload


def _fields(buf: memoryview, start: int, end: int) -> list[tuple[int, int, int, int, int, int]]:
    """(number, wire type, start, end of tag, start and end of value) of each field."""
    out = []
    pos = start
    while pos < end:
        tag, tag_end = read_varint(buf, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == _VARINT:
            value_start, (_, value_end) = tag_end, read_varint(buf, tag_end, end)
        elif wire_type == _LEN:
            length, value_start = read_varint(buf, tag_end, end)
            value_end = value_start + length
        elif wire_type in (_I64, _I32):
            value_start, value_end = tag_end, tag_end + (8 if wire_type == _I64 else 4)
        else:
            raise Unusual  # groups, or not protobuf
        if number == 0 or value_end > end:
            raise Unusual
        out.append((number, wire_type, pos, tag_end, value_start, value_end))
        pos = value_end
    return out
