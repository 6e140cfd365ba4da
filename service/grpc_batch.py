"""Batches over gRPC (Execute, ExecuteStream) read and written a command and a result at a time.

Decoding a Command message into the engine's command costs ~5 us (protobuf's accessors, the
command dict, ``parse``), encoding a result ~2 us: as much as the engine takes to run an
elementwise op. A training loop sends the same commands every step and a batch's results
repeat a few distinct records, so both are remembered (``service.memo``):

- ``deserialize_execute_request`` splits an ExecuteRequest into each command's wire bytes,
  looks each up among commands seen before, and has protobuf parse the others (so that a
  malformed message fails here, as protobuf's own parse fails). A request not of the plain
  shape (a field other than ``session_id`` and ``commands``, either given oddly) is parsed
  by protobuf whole, as before.
- ``ExecuteBatch.commands`` gives the engine's commands. A command that does not decode or
  parse sends the whole batch down the general path (``service.grpc_messages``), which
  reports the error exactly as before (the first command that does not decode, else the
  batch's size, else the first that does not parse).
- ``encode_results`` writes an ExecuteResponse's bytes from each result's remembered
  ``results`` field; ``serialize_response`` sends those bytes as they are.

Only commands without a tensor payload are remembered (a ``create`` carries data), and only
results without values or grads (arrays are neither hashable nor small).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from engine.commands import Command
from engine.errors import EngineError
from engine.parsing import parse
from engine.session import Result
from service import grpc_messages as messages
from service.dataplane import Parsed
from service.gen.gradient.v1 import gradient_pb2 as pb
from service.memo import Memo
from service.protowire import Unusual, split, varint

MAX_ENTRIES = 4096
MAX_COMMAND_BYTES = 1024  # a command longer than this is not remembered
# ExecuteRequest.session_id and .commands, ExecuteResponse.results: tags of wire type 2.
_SESSION_ID_TAG = pb.ExecuteRequest.DESCRIPTOR.fields_by_name["session_id"].number << 3 | 2
_COMMANDS_TAG = pb.ExecuteRequest.DESCRIPTOR.fields_by_name["commands"].number << 3 | 2
_RESULTS_TAG = bytes([pb.ExecuteResponse.DESCRIPTOR.fields_by_name["results"].number << 3 | 2])

COMMANDS: Memo[bytes, Command] = Memo(MAX_ENTRIES)
RESULTS: Memo[Result, bytes] = Memo(MAX_ENTRIES)


@dataclass(frozen=True, slots=True)
class _Unseen:
    """A command not remembered: its bytes, and protobuf's parse of them."""

    raw: bytes
    message: pb.Command


@dataclass(frozen=True, slots=True)
class ExecuteBatch:
    """An ExecuteRequest as its session id and its commands, each remembered or unseen."""

    session_id: str
    items: list[Command | _Unseen]
    raw: bytes

    def __len__(self) -> int:
        return len(self.items)

    def message(self) -> pb.ExecuteRequest:
        return pb.ExecuteRequest.FromString(self.raw)

    def commands(self) -> Parsed | list[dict[str, Any]]:
        """The engine's commands, or, when one of them fails, the general path's dicts."""
        out = Parsed()
        append = out.append
        try:
            for item in self.items:
                if not isinstance(item, _Unseen):
                    append(item)
                    continue
                message = item.message
                kind = message.WhichOneof("kind")
                if kind is None:
                    raise Unusual
                command = parse(messages.command(kind, getattr(message, kind)))
                if kind != "create" and len(item.raw) <= MAX_COMMAND_BYTES:
                    COMMANDS.put(item.raw, command)
                append(command)
        except (EngineError, Unusual):
            return messages.batch(self.message().commands)
        return out


def deserialize_execute_request(raw: bytes) -> pb.ExecuteRequest | ExecuteBatch:
    """An ExecuteRequest's bytes as a batch of commands, or as the message when unusual."""
    try:
        session_id, pieces = split(raw, _SESSION_ID_TAG, _COMMANDS_TAG)
        get = COMMANDS.get
        items: list[Command | _Unseen] = []
        for piece in pieces:
            command = get(piece)
            if command is not None:
                items.append(command)
            elif len(piece) > MAX_COMMAND_BYTES:
                raise Unusual  # a tensor's data: protobuf parses it once, in the request
            else:
                items.append(_Unseen(piece, pb.Command.FromString(piece)))
        return ExecuteBatch(session_id.decode(), items, raw)
    except (Unusual, DecodeError, UnicodeDecodeError):
        return pb.ExecuteRequest.FromString(raw)


def encode_results(results: list[Result]) -> bytes:
    """An ExecuteResponse with these results, serialized, as protobuf would serialize it."""
    return b"".join(RESULTS.recall_all(results, _results_field))


def _results_field(result: Result) -> bytes:
    body = messages.result(result).SerializeToString()
    return _RESULTS_TAG + varint(len(body)) + body


def serialize_response(response: pb.ExecuteResponse | bytes) -> bytes:
    """What Execute and ExecuteStream send: ``encode_results``' bytes, or a message."""
    return response if isinstance(response, bytes) else response.SerializeToString()
