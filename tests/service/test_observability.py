"""The JSON log lines: what each one holds, in the text json.dumps would give."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest

from service.observability import REQUEST_ID, JsonFormatter


def _line(fields: dict[str, Any], exc_info: Any = None) -> str:
    record = logging.LogRecord("gradserve", logging.INFO, "", 0, "http request", (), exc_info)
    record.fields = fields
    token = REQUEST_ID.set("abc123")
    try:
        return JsonFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)


@pytest.mark.parametrize(
    "fields",
    [
        {"method": "POST", "route": "/v1/sessions/{session_id}/ops", "status": 200},
        {"duration_ms": 0.107, "big": 1e16, "tiny": 5e-324, "neg": -0.0, "i": 2**70},
        {"nan": math.nan, "inf": math.inf, "ninf": -math.inf},
        {"flag": True, "none": None, "list": [1, "a", 2.5], "nested": {"k": "v"}},
        {"text": 'quote " backslash \\ tab \t newline \n nul \x00 del \x7f'},
        {"text": "é, \u2028 and an emoji \U0001f600"},  # not ASCII: json.dumps's escapes
    ],
)
def test_a_line_is_the_entry_in_compact_ascii_json(fields: dict[str, Any]) -> None:
    line = _line(fields)
    assert line.isascii() and "\n" not in line
    entry = json.loads(line)
    assert json.dumps(entry, separators=(",", ":")) == line
    assert entry.pop("time") and entry.pop("level") == "info" and entry.pop("logger") == "gradserve"
    expected = {"message": "http request", "request_id": "abc123", **fields}
    assert json.dumps(entry, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_a_line_carries_the_traceback() -> None:
    try:
        raise ValueError("bad é")
    except ValueError as exc:
        line = _line({}, (type(exc), exc, exc.__traceback__))
    assert line.isascii()
    assert "ValueError: bad é" in json.loads(line)["traceback"]
