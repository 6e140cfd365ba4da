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

from engine.commands import Command
from engine.errors import EngineError
from engine.parsing import parse
from service.dataplane import Parsed, decode_payload
from service.memo import Memo

MAX_ENTRIES = 4096
MAX_COMMAND_CHARS = 1024  # a command longer than this is not remembered
MAX_BRACES = 3  # nor one with more closing braces (each is a place its text may end)

COMMANDS: Memo[str, Command] = Memo(MAX_ENTRIES)
_braces = 0  # the most closing braces of a text remembered: where split looks them up

_HEAD = re.compile(r'[ \t\n\r]*\{[ \t\n\r]*"commands"[ \t\n\r]*:[ \t\n\r]*\[[ \t\n\r]*')
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_WHITESPACE_CHARS = " \t\n\r"
# What json.loads reads each value with (typeshed leaves the attribute out).
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Commands:
    """A plain batch body's commands, each remembered or unseen; ``text`` is the body's."""

    items: list[Any]  # commands (named tuples), and unseen ones as plain (text, value) tuples
    unseen: list[int]  # where the unseen ones are in ``items``, in order
    text: str

    def __len__(self) -> int:
        return len(self.items)

    def parsed(self) -> Parsed | list[Any]:
        """The engine's commands, or the command dicts when one of them does not parse."""
        # The remembered ones as they are, in one copy: a step's batch is mostly those.
        out = Parsed(self.items)
        try:
            for i in self.unseen:
                text, value = self.items[i]
                command = parse(decode_payload(value))
                if value.get("kind") != "create" and len(text) <= MAX_COMMAND_CHARS:
                    _remember(text, command)
                out[i] = command
        except EngineError:
            return list(json.loads(self.text)["commands"])
        return out


def _remember(text: str, command: Command) -> None:
    global _braces
    braces = text.count("}")
    if braces <= MAX_BRACES:
        _braces = max(_braces, braces)
        COMMANDS.put(text[1:-1], command)  # a whole object's text, by what is inside its braces


def split(raw: bytes) -> Commands | None:
    """The commands of a ``{"commands": [...]}`` body (JSON whitespace anywhere), else None.

    A command remembered is found by its text without being decoded: the text from where
    the command starts to one of the next few ``}`` is looked up. Only the text of a whole
    JSON object is ever remembered, and an object's text ends where the object does, so a
    text found there is the command, whatever ``}`` the lookup stopped at.
    """
    try:
        # What json.loads does with bytes that start as JSON text in UTF-8 does.
        text = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    head = _HEAD.match(text)
    if head is None:
        return None
    get = COMMANDS.get
    find = text.find
    startswith = text.startswith
    items, unseen, pos = _remembered(text, head.end())
    append = items.append
    try:
        if startswith("]", pos):
            pos += 1
        else:
            while True:
                end = pos
                for _ in range(_braces if startswith("{", pos) else 0):
                    end = find("}", end) + 1
                    command = get(text[pos + 1 : end - 1]) if end else None
                    if command is not None:
                        append(command)
                        break
                else:
                    value, end = _scan(text, pos)
                    unseen.append(len(items))
                    append((text[pos:end], value))
                if startswith(", ", end):  # json.dumps' separator, then the compact one
                    pos = end + 2
                elif startswith(",", end):
                    pos = end + 1
                else:
                    pos = _skip(text, end)
                    if startswith("]", pos):
                        pos += 1
                        break
                    if not startswith(",", pos):
                        return None
                    pos += 1
                if text[pos] in _WHITESPACE_CHARS:
                    pos = _skip(text, pos)
    except (ValueError, StopIteration, IndexError, RecursionError):  # FastAPI says what is wrong
        return None
    pos = _skip(text, pos)
    if not startswith("}", pos) or _skip(text, pos + 1) != len(text):
        return None
    return Commands(items, unseen, text)


def _remembered(text: str, pos: int) -> tuple[list[Any], list[int], int]:
    """The commands from ``pos`` on, read in runs of remembered ones, where the unseen ones
    are among them, and where the first command left to ``split`` starts (the last one, or
    one that holds a separator).

    Cut at each ``}, {`` (``},{`` in compact JSON), the text gives each command's inside
    while no command holds that separator. A piece found among the remembered insides is a
    whole object's, and the command starting at ``pos`` with ``{`` is that object, so the
    next one starts after the separator; a piece not found is read by the scanner, and
    taken when the object it reads ends where the piece does. By induction, every command
    taken is the one at its place. The last piece, which holds the end of the array, and
    anything after an object that did not end with its piece, are left to ``split``.
    """
    items: list[Any] = []
    unseen: list[int] = []
    if not text.startswith("{", pos):
        return items, unseen, pos
    separator = "}, {"
    pieces = text[pos + 1 :].split(separator)
    if len(pieces) == 1:
        separator = "},{"
        pieces = text[pos + 1 :].split(separator)
    del pieces[-1]
    found = list(map(COMMANDS.get, pieces))
    if found.count(None) * 2 > len(found):  # mostly unseen: split's loop reads them faster
        return items, unseen, pos
    step = len(separator)
    i, n = 0, len(found)
    while i < n:
        try:
            j = found.index(None, i)
        except ValueError:
            j = n
        items += found[i:j]
        pos += sum(map(len, pieces[i:j])) + step * (j - i)
        if j == n:
            break
        try:
            value, end = _scan(text, pos)
        except (ValueError, StopIteration, RecursionError):
            break  # split says where it is not JSON
        if end != pos + len(pieces[j]) + 2:
            break
        unseen.append(len(items))
        items.append((text[pos:end], value))
        pos += len(pieces[j]) + step
        i = j + 1
    return items, unseen, pos


def _skip(text: str, pos: int) -> int:
    """Where the JSON whitespace from ``pos`` ends."""
    match = _WHITESPACE.match(text, pos)
    return pos if match is None else match.end()
