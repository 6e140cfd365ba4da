"""The JSON log lines (what each holds, in the text json.dumps would give), and the requests
served: their request ids, and their metrics and lines, recorded in batches."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.config import Settings
from service.dataplane import DataPlane
from service.http import create_app
from service.observability import REQUEST_ID, JsonFormatter, Metrics


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


# ----- requests served: the request id, metrics and access log lines -----


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app() -> Iterator[FastAPI]:
    settings = Settings()
    plane = DataPlane(settings)
    try:
        yield create_app(plane, settings)
    finally:
        plane.shutdown()


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[list[dict[str, Any]]]:
    handler = _Lines()
    logger = logging.getLogger("gradserve")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.anyio
async def test_each_request_is_answered_with_its_id_and_recorded_within_the_delay(
    app: FastAPI, lines: list[dict[str, Any]]
) -> None:
    metrics = app.state.metrics
    metrics.RECORD_DELAY = 0.3  # seconds: ample for three requests in process, even on slow CI
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        given = await client.get("/healthz", headers={"X-Request-ID": "given-1"})
        made = await client.get("/healthz")
        missing = await client.get("/nowhere")
        assert given.headers["x-request-id"] == "given-1"
        assert re.fullmatch("[0-9a-f]{32}", made.headers["x-request-id"])
        assert given.headers["content-type"] == "application/json"  # the app's headers kept
        assert lines == []  # recorded in a batch, RECORD_DELAY later
        await asyncio.sleep(metrics.RECORD_DELAY * 3)
        ids = [given.headers["x-request-id"], made.headers["x-request-id"]]
        ids.append(missing.headers["x-request-id"])
        assert [line["request_id"] for line in lines] == ids
        assert [(line["route"], line["status"]) for line in lines] == [
            ("/healthz", 200),
            ("/healthz", 200),
            ("unmatched", 404),
        ]
        await client.get("/healthz")
        scraped = (await client.get("/metrics")).text  # what is pending is recorded first
    ok = 'gradserve_requests_total{code="200",method="GET",route="/healthz",transport="http"} 3.0'
    assert ok in scraped
    assert 'code="404",method="GET",route="unmatched",transport="http"} 1.0' in scraped


@pytest.mark.anyio
async def test_a_full_batch_is_recorded_at_once(lines: list[dict[str, Any]]) -> None:
    settings = Settings()
    plane = DataPlane(settings)
    try:
        metrics = Metrics(plane)
        for i in range(metrics.RECORD_BATCH - 1):
            metrics.served(f"id{i}", "grpc", "/gradient.v1.Gradient/ApplyOp", "POST", "OK", 0.001)
        assert lines == []
        metrics.served("last", "grpc", "/gradient.v1.Gradient/ApplyOp", "POST", "OK", 0.001)
        assert lines == []  # once the caller has returned (a gRPC reply is sent after it)
        await asyncio.sleep(0)
        assert len(lines) == metrics.RECORD_BATCH and lines[-1]["request_id"] == "last"
        assert {line["code"] for line in lines} == {"OK"}
        metrics.flush()  # nothing pending: nothing again
        assert len(lines) == metrics.RECORD_BATCH
    finally:
        plane.shutdown()
