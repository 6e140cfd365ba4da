"""The few pieces of protobuf's wire format that the frontends read and write by hand.

The gRPC deserializers of the hot and the large requests (``grpc_apply``, ``grpc_batch``,
``grpc_upload``) look at a request's bytes before protobuf does; anything they do not
recognize as the plain case raises ``Unusual``, and protobuf parses the request as usual.
"""

from __future__ import annotations

from typing import Any


class Unusual(Exception):
    """The request is not the plain case: protobuf parses it."""


def read_varint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``buf[pos:end]`` (bytes or a memoryview) and the position after it."""
    value = shift = 0
    while pos < end and shift < 64:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise Unusual


def varint(value: int) -> bytes:
    """``value`` (not negative) as a varint: a length prefix, say."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def split(raw: bytes, single_tag: int, repeated_tag: int) -> tuple[bytes, list[bytes]]:
    """The bytes of a request's one optional field of ``single_tag`` (a session id) and of
    each of its fields of ``repeated_tag`` (its commands); ``Unusual`` for anything else.
    Both tags are of wire type 2 and under 16 (one byte)."""
    pieces = []
    session_id = None
    pos, end = 0, len(raw)
    while pos < end:
        tag = raw[pos]
        length = raw[pos + 1] if pos + 1 < end else 0x80
        if length & 0x80:  # a length of 128 or more: several bytes
            length, start = read_varint(raw, pos + 1, end)
        else:
            start = pos + 2
        stop = start + length
        if stop > end:
            raise Unusual
        if tag == repeated_tag:
            pieces.append(raw[start:stop])
        elif tag == single_tag and session_id is None:
            session_id = raw[start:stop]
        else:
            raise Unusual  # another field, or the session id twice (the last one wins)
        pos = stop
    return session_id or b"", pieces
