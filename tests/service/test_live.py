"""Both frontends against a real server process (``python -m service serve`` on loopback).

The seed notebook over each wire, one scenario suite with identical results on both wires,
bad inputs, health, reflection, metrics and logs, SIGTERM under load, and the curl example.
Servers bind 127.0.0.1 on free ports; every load is bounded in requests and in time.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from service.config import Settings
from service.dataplane import DataPlane
from service.errors import TABLE
from service.gen.gradient.v1 import gradient_pb2 as pb
from service.gen.gradient.v1 import gradient_pb2_grpc as pb_grpc
from tests import seed
from tests.live_server import LiveServer, wait_until
from tests.service import load
from tests.service.remote import (
    GrpcRemote,
    HttpRemote,
    InProcess,
    Remote,
    RemoteError,
    grpc_error,
    http_error,
    to_proto,
)
from tests.service.scenarios import SCENARIOS, SETUP, SNAPSHOT
from tests.service.seed_replay import replay_seed

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "live-test-key"
BATCH_LIMIT = 64
SMALL_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    """The shared server: an API key, and a small batch limit to reach resource_exhausted."""
    env = {"GRADSERVE_API_KEY": API_KEY, "GRADSERVE_MAX_COMMANDS_PER_BATCH": str(BATCH_LIMIT)}
    live = LiveServer.start(env)
    yield live
    assert live.stop() == 0, "\n".join(live.logs[-20:])


@pytest.fixture(scope="module")
def small_server() -> Iterator[LiveServer]:
    """A server whose requests (HTTP bodies, gRPC messages) may hold 64 KiB at most."""
    live = LiveServer.start({"GRADSERVE_MAX_REQUEST_BYTES": str(SMALL_LIMIT)})
    yield live
    assert live.stop() == 0


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def stub(server: LiveServer) -> Iterator[pb_grpc.GradientStub]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield pb_grpc.GradientStub(channel)


def open_remote(
    wire: str, http: httpx.Client, stub: pb_grpc.GradientStub
) -> HttpRemote | GrpcRemote:
    """A new session (seed 0) on ``http``, ``http-b64`` (values as base64) or ``grpc``."""
    if wire == "grpc":
        return GrpcRemote.open(stub, API_KEY)
    remote = HttpRemote.open(http, API_KEY)
    remote.binary = wire == "http-b64"
    return remote


# ----- 1. the seed notebook on each wire -----


@pytest.mark.parametrize("wire", ["http", "grpc"])
def test_seed_notebook(wire: str, http: httpx.Client, stub: pb_grpc.GradientStub) -> None:
    """Every cell, as batches of commands on a live server, shows the notebook's output."""
    remote = open_remote(wire, http, stub)
    shown = replay_seed(remote)
    cells = seed.cells()
    assert sorted(shown) == sorted(cell.label for cell in cells)
    for cell in cells:
        assert shown[cell.label] == cell.output, cell.label
    remote.close()


# ----- 2. one scenario suite, identical on both wires -----


@pytest.fixture(scope="module")
def plane() -> Iterator[DataPlane]:
    plane = DataPlane(Settings(max_commands_per_batch=BATCH_LIMIT))
    yield plane
    plane.shutdown()


def outcome(remote: Remote, commands: list[dict[str, Any]]) -> tuple[Any, ...]:
    """Setup, the scenario's results (or its error), and the setup's tensors before and after."""
    setup = remote.run(SETUP)
    before = remote.run(SNAPSHOT)
    try:
        results: Any = remote.run(commands)
    except RemoteError as exc:
        results = exc
        assert remote.run(SNAPSHOT) == before, "a failed batch changed the session"
    return setup, before, results


@pytest.mark.parametrize("commands", SCENARIOS)
def test_scenario_is_the_same_on_both_wires(
    commands: list[dict[str, Any]],
    http: httpx.Client,
    stub: pb_grpc.GradientStub,
    plane: DataPlane,
) -> None:
    """Both wires (JSON values, base64 values, protobuf) give what the engine gives in process:
    the same results, or the same error (code, command index, detail, torch type; each wire's
    status checked against the one table as it is read), and the same session after."""
    engine_alone = outcome(InProcess(plane), commands)
    for wire in ("http", "http-b64", "grpc"):
        remote = open_remote(wire, http, stub)
        assert outcome(remote, commands) == engine_alone, wire
        remote.close()


def test_session_errors_are_the_same_on_both_wires(
    http: httpx.Client, stub: pb_grpc.GradientStub
) -> None:
    """unauthenticated and permission_denied, which no batch raises."""
    session = open_remote("http", http, stub)
    unknown = "0" * 32
    errors: dict[str, list[RemoteError]] = {"http": [], "grpc": []}
    for session_id, token in ((session.id, "wrong"), (unknown, session.token)):
        for wire, remote in (
            ("http", HttpRemote(http, session_id, token)),
            ("grpc", GrpcRemote(stub, session_id, token)),
        ):
            with pytest.raises(RemoteError) as caught:
                remote.run([{"kind": "get", "tensor": "x"}])
            errors[wire].append(caught.value)
    for key in (None, "wrong-key"):
        headers = {"X-API-Key": key} if key else {}
        errors["http"].append(http_error(http.post("/v1/sessions", json={}, headers=headers)))
        metadata = [("x-api-key", key)] if key else []
        with pytest.raises(grpc.RpcError) as caught_rpc:
            stub.CreateSession(pb.CreateSessionRequest(), metadata=metadata)
        errors["grpc"].append(grpc_error(caught_rpc.value))
    assert errors["http"] == errors["grpc"]
    assert [e.code for e in errors["http"]] == ["unauthenticated"] * 2 + ["permission_denied"] * 2
    # No token at all: the same code (gRPC's detail says which metadata it wanted).
    response = http.post(f"/v1/sessions/{session.id}/batch", json={"commands": []})
    assert http_error(response).code == "unauthenticated"
    with pytest.raises(grpc.RpcError) as caught_rpc:
        stub.Execute(pb.ExecuteRequest(session_id=session.id), timeout=10)
    assert grpc_error(caught_rpc.value).code == "unauthenticated"
    session.close()


def test_whole_float_attributes_are_the_same_on_both_wires(
    http: httpx.Client, stub: pb_grpc.GradientStub
) -> None:
    """clamp(int64, min=1.0) is float32, as in PyTorch, whichever wire carries the 1.0."""
    commands: list[dict[str, Any]] = [
        {"kind": "create", "name": "i", "data": [1, 2, 3]},
        {"kind": "op", "op": "clamp", "inputs": ["i"], "attrs": {"min": 1.0}, "name": "c"},
        {"kind": "get", "tensor": "c", "value": True},
    ]
    http_result = open_remote("http", http, stub).run(commands)
    assert http_result[-1].tensors[0] is not None
    assert http_result[-1].tensors[0].dtype == "float32"
    assert open_remote("grpc", http, stub).run(commands) == http_result


def test_positional_attributes_differentiate(
    http: httpx.Client, stub: pb_grpc.GradientStub
) -> None:
    """Attributes given as inputs (``unsqueeze`` of [x, 0]) take no gradient and need none."""
    commands: list[dict[str, Any]] = [
        {"kind": "create", "name": "x", "data": [[1.0, 2.0]], "requires_grad": True},
        {"kind": "op", "op": "unsqueeze", "inputs": ["x", 0], "name": "u"},
        {"kind": "op", "op": "softmax", "inputs": ["u", -1], "name": "p"},
        {"kind": "op", "op": "mul", "inputs": ["p", "u"], "name": "m"},
        {"kind": "op", "op": "sum", "inputs": ["m"], "name": "s"},
        {"kind": "backward", "tensor": "s"},
        {"kind": "get", "tensor": {"grad_of": "x"}, "repr": True},
    ]
    x = torch.tensor([[1.0, 2.0]], requires_grad=True)
    u = x.unsqueeze(0)
    (torch.softmax(u, -1) * u).sum().backward()
    for wire in ("http", "grpc"):
        result = open_remote(wire, http, stub).run(commands)
        assert result[-1].tensors[0].repr == repr(x.grad)


# ----- 3. bad inputs -----

JSON = {"Content-Type": "application/json"}
NPY = {"Content-Type": "application/x-npy"}


def populated(client: httpx.Client, api_key: str | None = None) -> tuple[HttpRemote, Any]:
    remote = HttpRemote.open(client, api_key)
    remote.run(SETUP)
    return remote, remote.run(SNAPSHOT)


def test_malformed_json_is_400_and_changes_nothing(http: httpx.Client) -> None:
    remote, before = populated(http, API_KEY)
    for body in (b'{"commands": [', b"\xff\xfe", b'{"commands": [{"kind": "op",}]}'):
        response = remote.raw(content=body, headers=JSON)  # content replaces json
        error = http_error(response)
        assert (response.status_code, error.code) == (400, "invalid_argument")
        assert "malformed JSON" in error.detail or "invalid request" in error.detail
    assert remote.run(SNAPSHOT) == before


def test_bodies_over_the_limit_are_413(small_server: LiveServer) -> None:
    with httpx.Client(base_url=small_server.http_url, timeout=30) as client:
        remote, before = populated(client)
        batch = f"/v1/sessions/{remote.id}/batch"
        big = {"kind": "create", "name": "big", "data": [0.5] * (SMALL_LIMIT // 4)}

        def chunks() -> Iterator[bytes]:  # no Content-Length: cut off once past the limit
            yield b'{"commands": ['
            for _ in range(SMALL_LIMIT // 1000 + 1):
                yield b" " * 1000
            yield b"]}"

        responses = [
            client.post(batch, json={"commands": [big]}, headers=remote.headers),
            client.post(batch, content=chunks(), headers={**remote.headers, **JSON}),
            client.put(
                f"/v1/sessions/{remote.id}/tensors/big",
                content=b"\x93NUMPY" + b"\0" * SMALL_LIMIT,
                headers={**remote.headers, **NPY},
            ),
            client.post("/v1/sessions", content=b"{" * (SMALL_LIMIT + 1), headers=JSON),
        ]
        for response in responses:
            error = http_error(response)
            assert (response.status_code, error.code) == (413, "request_too_large")
            assert response.status_code == TABLE["request_too_large"].http
            assert str(SMALL_LIMIT) in error.detail
        assert remote.run(SNAPSHOT) == before


def test_grpc_messages_over_the_limit_are_resource_exhausted(small_server: LiveServer) -> None:
    with grpc.insecure_channel(small_server.grpc_target) as channel:
        stub = pb_grpc.GradientStub(channel)
        remote = GrpcRemote.open(stub)
        remote.run(SETUP)
        before = remote.run(SNAPSHOT)
        big = {"kind": "create", "name": "big", "data": [0.5] * (SMALL_LIMIT // 4 + 1)}
        request = pb.ExecuteRequest(session_id=remote.id, commands=[to_proto(big)])
        calls = [
            lambda: stub.Execute(request, metadata=remote.metadata, timeout=10),
            lambda: list(stub.ExecuteStream(iter([request]), metadata=remote.metadata, timeout=10)),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == TABLE["request_too_large"].grpc  # RESOURCE_EXHAUSTED
        get_session = channel.unary_unary("/gradient.v1.Gradient/Execute")
        with pytest.raises(grpc.RpcError) as caught:
            get_session(b"\xff\xff\xff", metadata=remote.metadata, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert remote.run(SNAPSHOT) == before


NONFINITE = ("float32", (4,), ("nan", math.inf, -math.inf, 0.5))
NONFINITE_REPR = "tensor([   nan,    inf,   -inf, 0.5000])"


def _read(name: str) -> dict[str, Any]:
    return {"kind": "get", "tensor": name, "value": True, "repr": True}


def _bare_json(remote: HttpRemote, commands: str) -> None:
    """A batch whose JSON text has the bare tokens NaN and Infinity (not standard JSON)."""
    body = f'{{"commands": [{commands}]}}'.encode()
    response = remote.raw(content=body, headers=JSON)
    assert response.status_code == 200, response.text


def test_non_finite_values_on_every_encoding(
    http: httpx.Client, stub: pb_grpc.GradientStub
) -> None:
    """NaN and infinities in JSON strings, base64, protobuf bytes and (as Python's json and
    protobuf doubles take them) bare JSON tokens; misspelled ones are refused, changing
    nothing."""
    strings = {"shape": [4], "dtype": "float32", "data": ["NaN", "Infinity", "-Infinity", 0.5]}
    raw = numpy.array([math.nan, math.inf, -math.inf, 0.5], dtype=numpy.float32).tobytes()
    b64 = {"shape": [4], "dtype": "float32", "b64": base64.b64encode(raw).decode()}
    remote, _ = populated(http, API_KEY)
    grpc_remote = GrpcRemote.open(stub, API_KEY)
    created = [
        {"kind": "create", "name": "j", "data": strings},
        {"kind": "create", "name": "k", "data": b64},
    ]
    _bare_json(remote, '{"kind": "create", "name": "t", "data": [NaN, Infinity, -Infinity, 0.5]}')
    reads = remote.run([*created, _read("j"), _read("k"), _read("t")])[2:]
    # Over gRPC the same values travel as the float32 bytes of a TensorData.
    reads += grpc_remote.run([{"kind": "create", "name": "p", "data": strings}, _read("p")])[1:]
    for result in reads:
        (tensor,) = result.tensors
        assert tensor is not None
        assert (tensor.value, tensor.repr) == (NONFINITE, NONFINITE_REPR)

    # clamp(min=-inf): a double attribute over gRPC, a bare token over HTTP.
    clamp = {"kind": "op", "op": "clamp", "inputs": ["p"], "attrs": {"min": -math.inf}}
    grpc_remote.run([{**clamp, "name": "c"}])
    bare_clamp = '"op": "clamp", "inputs": ["t"], "attrs": {"min": -Infinity}, "name": "c"'
    _bare_json(remote, '{"kind": "op", ' + bare_clamp + "}")
    assert remote.run([_read("c")]) == grpc_remote.run([_read("c")])

    before = remote.run(SNAPSHOT)
    for spelled in ("nan", "inf", "-inf", "Infinity ", "NAN"):
        data = {"shape": [1], "dtype": "float32", "data": [spelled]}
        with pytest.raises(RemoteError) as caught:
            remote.run([{"kind": "create", "name": "bad", "data": data}])
        assert (caught.value.code, caught.value.command_index) == ("invalid_argument", 0)
    assert remote.run(SNAPSHOT) == before


# ----- 4. health, reflection, metrics and logs -----


def test_health_and_readiness(http: httpx.Client, server: LiveServer) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}
    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "gradient.v1.Gradient"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_http_is_parsed_by_httptools(server: LiveServer) -> None:
    """The C parser, a runtime dependency: h11's pure Python takes 5x a raw socket's time to
    read a 64 MiB upload (bench/RESULTS.md)."""
    (listening,) = (json.loads(line) for line in server.logs if "gradserve listening" in line)
    assert listening["http_parser"] == "httptools"


def test_reflection_lists_the_services(server: LiveServer) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
        names = {s.name for s in reply.list_services_response.service}
        assert names == {
            "gradient.v1.Gradient",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        file_request = reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="gradient.v1.Gradient"
        )
        (reply,) = list(stub.ServerReflectionInfo(iter([file_request]), timeout=10))
        assert reply.file_descriptor_response.file_descriptor_proto


def _samples(http: httpx.Client, name: str) -> list[Any]:
    text = http.get("/metrics").text
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def _value(samples: list[Any], **labels: str) -> float:
    return sum(s.value for s in samples if labels.items() <= s.labels.items())


def test_metrics_and_request_id_logs(
    http: httpx.Client, stub: pb_grpc.GradientStub, server: LiveServer
) -> None:
    sessions = _value(_samples(http, "gradserve_sessions_active"))
    http_remote, grpc_remote = HttpRemote.open(http, API_KEY), GrpcRemote.open(stub, API_KEY)
    assert _value(_samples(http, "gradserve_sessions_active")) == sessions + 2

    http_id, grpc_id = f"live-{uuid.uuid4().hex}", f"live-{uuid.uuid4().hex}"
    response = http_remote.raw(
        [{"kind": "get", "tensor": "nope"}], headers={"X-Request-ID": http_id}
    )
    assert response.status_code == 404 and response.headers["X-Request-ID"] == http_id
    request = pb.ExecuteRequest(session_id=grpc_remote.id)
    stub.Execute(request, metadata=(*grpc_remote.metadata, ("x-request-id", grpc_id)), timeout=10)

    requests = _samples(http, "gradserve_requests_total")
    batch = "/v1/sessions/{session_id}/batch"
    assert _value(requests, transport="http", route=batch, method="POST", code="404") >= 1
    assert _value(requests, transport="http", route="/v1/sessions", method="POST", code="201") >= 1
    execute = "/gradient.v1.Gradient/Execute"
    assert _value(requests, transport="grpc", route=execute, method="POST", code="OK") >= 1
    buckets = [
        s
        for s in _samples(http, "gradserve_request_duration_seconds_bucket")
        if s.labels["route"] == batch and s.labels["transport"] == "http"
    ]
    bounds = [s.labels["le"] for s in buckets]
    assert "+Inf" in bounds and "0.005" in bounds
    counts = [s.value for s in sorted(buckets, key=lambda s: float(s.labels["le"]))]
    assert counts == sorted(counts) and counts[-1] >= 1  # cumulative

    http_remote.close()
    grpc_remote.close()
    assert _value(_samples(http, "gradserve_sessions_active")) == sessions

    def logged(request_id: str, message: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in list(server.logs) if request_id in line]
        return [entry for entry in lines if entry["message"] == message]

    assert wait_until(lambda: logged(http_id, "http request") and logged(grpc_id, "grpc request"))
    (http_line,) = logged(http_id, "http request")
    assert http_line["request_id"] == http_id
    assert (http_line["route"], http_line["status"], http_line["method"]) == (batch, 404, "POST")
    assert {"time", "level", "logger", "duration_ms"} <= set(http_line)
    (grpc_line,) = logged(grpc_id, "grpc request")
    assert (grpc_line["method"], grpc_line["code"]) == (execute, "OK")


def test_a_scrape_during_a_long_batch_stalls_nothing(
    http: httpx.Client, stub: pb_grpc.GradientStub, server: LiveServer
) -> None:
    """A running batch holds its session's lock; /metrics reads every session's bytes: the
    scrape must neither wait for the batch nor hold up the event loop meanwhile."""
    remote = open_remote("http", http, stub)
    n = 1536
    commands = [{"kind": "create", "name": "m", "factory": "randn", "args": [n, n]}]
    commands += [{"kind": "op", "op": "mm", "inputs": ["m", "m"], "name": "p"}] * 30
    worker = threading.Thread(target=remote.run, args=(commands,), daemon=True)
    worker.start()
    probes: list[tuple[float, bool]] = []
    with httpx.Client(base_url=server.http_url, timeout=30) as probe:
        while worker.is_alive() and len(probes) < 20:
            start = time.monotonic()
            assert probe.get("/metrics").status_code == 200
            assert probe.get("/healthz").status_code == 200
            probes.append((time.monotonic() - start, worker.is_alive()))
            time.sleep(0.05)
    worker.join(60)
    during = [seconds for seconds, running in probes if running]
    assert during, "the batch ended before the first probe: make it longer"
    assert max(during) < 1.0, probes
    remote.close()


# ----- 5. SIGTERM under load -----

HTTP_CLIENTS, GRPC_CLIENTS, STREAM_CLIENTS = 4, 3, 1
REQUESTS_PER_CLIENT = 200
LOAD_SECONDS = 20.0


def test_sigterm_under_load_loses_no_reply() -> None:
    live = LiveServer.start()
    try:
        with httpx.Client(base_url=live.http_url, timeout=30) as client:
            http_sessions = []
            for _ in range(HTTP_CLIENTS):
                remote = HttpRemote.open(client)
                remote.run([{"kind": "create", "name": "x", "data": load.X}])
                http_sessions.append((remote.id, remote.token))
        with grpc.insecure_channel(live.grpc_target) as channel:
            grpc_sessions = []
            for _ in range(GRPC_CLIENTS + STREAM_CLIENTS):
                grpc_remote = GrpcRemote.open(pb_grpc.GradientStub(channel))
                grpc_remote.run([{"kind": "create", "name": "x", "data": load.X}])
                grpc_sessions.append((grpc_remote.id, grpc_remote.token))
        deadline = time.monotonic() + LOAD_SECONDS
        n = REQUESTS_PER_CLIENT
        clients: list[load.Client] = [
            *(load.HttpClient(live.http_port, s, n, deadline) for s in http_sessions),
            *(load.GrpcClient(live.grpc_target, s, n, deadline) for s in grpc_sessions[1:]),
            load.StreamClient(live.grpc_target, grpc_sessions[0], n // 4, deadline),
        ]
        load.run_load(
            clients,
            lambda: live.process.send_signal(signal.SIGTERM),
            after_requests=300,
            after_seconds=5.0,
        )
        assert not [c.name for c in clients if c.thread.is_alive()], "a client hung"
        assert live.process.wait(20) == 0
    finally:
        if live.process.poll() is None:
            live.process.kill()
    tallies = [c.tally for c in clients]
    assert [bad for t in tallies for bad in t.bad] == []
    ok = {request_id for t in tallies for request_id in t.ok}
    assert len(ok) >= 100, "the load ended before SIGTERM"
    assert all(t.refused or t.cancelled for t in tallies), "a client never saw the server stop"
    # Every request the server logged as served came back whole to its client, and none of
    # those gRPC cancelled at shutdown had run.
    assert wait_until(lambda: any("gradserve stopped" in line for line in live.logs))
    served = set()
    for line in list(live.logs):
        entry = json.loads(line)
        if entry["message"] in ("http request", "grpc request"):
            served.add(entry["request_id"])
    load_ids = {i for i in served if i.startswith(("http-", "grpc-", "stream-"))}
    assert load_ids - ok == set(), "the server served these, but their clients got no reply"
    assert ok - load_ids == set(), "the server did not log these requests"
    assert {i for t in tallies for i in t.cancelled} & served == set()


# ----- 6. the curl example -----


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_example_replays_the_notebook(server: LiveServer) -> None:
    script = ROOT / "examples" / "curl_seed.sh"
    done = subprocess.run(
        ["bash", str(script), server.http_url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GRADSERVE_API_KEY": API_KEY},
    )
    assert done.returncode == 0, done.stderr
    expected = "".join(
        f"{cell.label}:\n{cell.code}\n\n" + (f"{cell.output}\n\n" if cell.output else "")
        for cell in seed.cells()
    )
    assert done.stdout == expected
