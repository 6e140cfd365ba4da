"""A batch's JSON body read a command at a time, each command's text remembered with what it
parses to (``service.memo``), as ``service.grpc_batch`` does with a command's wire bytes.

Parsing a command costs ~1.4 us, about a quarter of running an elementwise op, and a training
loop sends the same commands every step. ``split`` reads the plain body, ``{"commands":
[...]}``, with the scanner ``json.loads`` uses, element by element, so that each command's text
is at hand; anything else (another field, a key twice, not JSON, not UTF-8) is ``None``, for
FastAPI's general path to read and report as before. ``Commands.parsed`` then gives the
engine's commands, or, when one of them does not parse, the command dicts themselves, which
the data plane parses and reports as it always has.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from engine.commands import Command, parse
from engine.errors import EngineError
from service.dataplane import Parsed, decode_payload
from service.memo import Memo

MAX_ENTRIES = 4096
MAX_COMMAND_CHARS = 1024  # a command longer than this is not remembered

COMMANDS: Memo[str, Command] = Memo(MAX_ENTRIES)

_HEAD = re.compile(r'[ \t\n\r]*\{[ \t\n\r]*"commands"[ \t\n\r]*:[ \t\n\r]*\[[ \t\n\r]*')
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# What json.loads reads each value with (typeshed leaves the attribute out).
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Commands:
    """A plain batch body's commands: each one's JSON text and value."""

    texts: list[str]
    values: list[Any]

    def __len__(self) -> int:
        return len(self.values)

    def parsed(self) -> Parsed | list[Any]:
        """The engine's commands, or the command dicts when one of them does not parse."""
        out = Parsed()
        append = out.append
        get = COMMANDS.get
        try:
            for text, value in zip(self.texts, self.values, strict=True):
                command = get(text)
                if command is None:
                    command = parse(decode_payload(value))
                    if value.get("kind") != "create" and len(text) <= MAX_COMMAND_CHARS:
                        COMMANDS.put(text, command)
                append(command)
        except EngineError:
            return self.values
        return out


def split(raw: bytes) -> Commands | None:
    """The commands of a ``{"commands": [...]}`` body (JSON whitespace anywhere), else None."""
    try:
        # What json.loads does with bytes that start as JSON text in UTF-8 does.
        text = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    head = _HEAD.match(text)
    if head is None:
        return None
    texts: list[str] = []
    values: list[Any] = []
    pos = head.end()
    try:
        if text.startswith("]", pos):
            pos += 1
        else:
            while True:
                value, end = _scan(text, pos)
                texts.append(text[pos:end])
                values.append(value)
                if text.startswith(", ", end):  # json.dumps' separator, then the compact one
                    pos = end + 2
                elif text.startswith(",", end):
                    pos = end + 1
                else:
                    pos = _skip(text, end)
                    if text.startswith("]", pos):
                        pos += 1
                        break
                    if not text.startswith(",", pos):
                        return None
                    pos += 1
                pos = _skip(text, pos)
    except (ValueError, StopIteration):  # not JSON there: FastAPI says where
        return None
    pos = _skip(text, pos)
    if not text.startswith("}", pos) or _skip(text, pos + 1) != len(text):
        return None
    return Commands(texts, values)


def _skip(text: str, pos: int) -> int:
    """Where the JSON whitespace from ``pos`` ends."""
    match = _WHITESPACE.match(text, pos)
    return pos if match is None else match.end()
