"""ApplyOp over gRPC read from remembered commands and answered from remembered bytes.

One small op's RPC spends as much in the frontend as in the engine: protobuf's accessors and
the command dict (~15 us of CPU in a loaded server), ``parse`` (~8 us), encoding the
CommandResult (~10 us). A client repeats its ops (a training step, a polling loop), so, as
for batches (``service.grpc_batch``), an ApplyOp's wire bytes are remembered with the
command they parse to, and a result's record with the CommandResult bytes it encodes to:

- ``deserialize_apply_op`` splits the request into its session id and its command's bytes,
  and looks the command up. An unseen one is parsed by protobuf (so that a malformed message
  fails here, as protobuf's own parse fails); a request of another shape (an unknown field,
  a field given twice, no command) is protobuf's whole.
- ``ApplyOpCall.commands`` gives the batch to run: the remembered command, else the command
  parsed now and remembered, else (it does not parse) the general path's dict, which the
  data plane parses and reports exactly as before.
- ``encode_result`` writes the CommandResult's bytes, sent as they are by ``serialize_response``.
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
from service.grpc_batch import MAX_COMMAND_BYTES, MAX_ENTRIES
from service.memo import Memo
from service.protowire import Unusual, split

_FIELDS = pb.ApplyOpRequest.DESCRIPTOR.fields_by_name
_SESSION_ID_TAG = _FIELDS["session_id"].number << 3 | 2
_COMMAND_TAG = _FIELDS["command"].number << 3 | 2

OPS: Memo[bytes, Command] = Memo(MAX_ENTRIES)
RESULTS: Memo[Result, bytes] = Memo(MAX_ENTRIES)


@dataclass(frozen=True, slots=True)
class ApplyOpCall:
    """An ApplyOpRequest as its session id and its command: remembered, or protobuf's parse
    of its bytes (``raw``) when unseen."""

    session_id: str
    command: Command | None
    raw: bytes
    message: pb.ApplyOp | None

    def commands(self) -> Parsed | list[dict[str, Any]]:
        """The batch of this one command: parsed, or the general path's dict if it fails."""
        if self.command is not None:
            return Parsed((self.command,))
        assert self.message is not None
        body = messages.command("op", self.message)
        try:
            command = parse(body)
        except EngineError:
            return [body]
        if len(self.raw) <= MAX_COMMAND_BYTES:
            OPS.put(self.raw, command)
        return Parsed((command,))


def deserialize_apply_op(raw: bytes) -> pb.ApplyOpRequest | ApplyOpCall:
    """An ApplyOpRequest's bytes as its session id and command, or as the message when unusual."""
    try:
        session_id, pieces = split(raw, _SESSION_ID_TAG, _COMMAND_TAG)
        if len(pieces) != 1:  # none, or two that protobuf would merge
            raise Unusual
        (piece,) = pieces
        command = OPS.get(piece)
        if command is not None:
            return ApplyOpCall(session_id.decode(), command, piece, None)
        return ApplyOpCall(session_id.decode(), None, piece, pb.ApplyOp.FromString(piece))
    except (Unusual, DecodeError, UnicodeDecodeError):
        return pb.ApplyOpRequest.FromString(raw)


def encode_result(results: list[Result]) -> bytes:
    """The CommandResult of a one-command batch, serialized as protobuf would serialize it."""
    (result,) = results
    return RESULTS.recall(result, _serialized)


def _serialized(result: Result) -> bytes:
    return messages.result(result).SerializeToString()
