"""The service's cost over its transports: gradserve against bare peers, measured in one run.

``python -m bench service --json`` prints one JSON object. Each ratio is gradserve's p50 over
its peer's p50, the peer measured in the same run, interleaved with it in blocks:

- ``http_op_ratio``: one ApplyOp (``POST /v1/sessions/{id}/ops``) round trip over a bare
  FastAPI app that parses the same JSON body and echoes it, both served by uvicorn from a
  subprocess on a socket bound alike; both driven by the same raw-socket HTTP/1.1
  keep-alive client, so that no client library dominates. Target <= 1.3.
- ``grpc_op_ratio``: one ApplyOp RPC over a bare ``grpc.aio`` server echoing the same
  request bytes; both called through one sync channel with the request serialized ahead
  and the reply left as bytes, so the client does the same work. Target <= 1.3.
- ``batch_per_op_ratio``: the per-op time of a 1000-command batch over HTTP (JSON in and
  out) over the per-op time of the same batch in the engine alone (``SessionManager``:
  parse and execute, in this process). Target <= 1.5.
- ``stream_per_op_ratio``: the same 1000 commands as 10 batches of 100 pipelined through
  one ExecuteStream call (all sent before the first answer is read), over the engine alone
  running the same 10 batches. Target <= 1.3.
- ``upload_ratio_http``: a 64 MiB float32 tensor uploaded as ``.npy``
  (``PUT /v1/sessions/{id}/tensors/{name}``) over the same bytes sent to a bare loopback
  socket server that answers once it has them all. Target <= 2.0. For where the time goes,
  ``raw`` also has the bare FastAPI app reading the same body (``fastapi_body_only``) and a
  plain ASGI app under the same uvicorn dropping each chunk as it comes
  (``asgi_receive_only``: what uvicorn's hand-over of the body costs by itself).
- ``upload_ratio_grpc``: the same tensor by CreateTensor over the same bytes sent to a bare
  ``grpc.aio`` method that answers with their length. Target <= 1.2.

gradserve runs as deployed (``python -m service serve``: 8 engine threads, info logs, one
JSON line a request, to a file). The p50 and p99 behind every ratio are under ``raw`` (in
microseconds, milliseconds for uploads), with the number of samples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

TARGETS = {
    "http_op_ratio": 1.3,
    "grpc_op_ratio": 1.3,
    "batch_per_op_ratio": 1.5,
    "stream_per_op_ratio": 1.3,
    "upload_ratio_http": 2.0,
    "upload_ratio_grpc": 1.2,
}
N_OPS = 1000
STREAM_BATCHES = 10
UPLOAD_BYTES = 64 << 20
MAX_MESSAGE = 256 << 20  # gradserve's default max_request_bytes; the peers get the same
START_TIMEOUT = 30.0
ROOT = Path(__file__).resolve().parent.parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--requests", type=int, default=2000, help="round trips per op side")
    parser.add_argument("--batches", type=int, default=15, help="1000-op batches per side")
    parser.add_argument("--uploads", type=int, default=9, help="64 MiB uploads per side")


# ----- processes -----


def _bind(port: int = 0) -> socket.socket:
    """A listening socket as gradserve binds it (TCP_NODELAY comes with IPPROTO_TCP)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _announce(**ports: int) -> None:
    print(json.dumps(ports), flush=True)


def _http_peer() -> None:
    """A bare FastAPI app: parse the JSON body, echo it; uvicorn as gradserve runs it."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from service.server import http_protocol

    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    async def upload(request: Any) -> Any:  # a plain Starlette endpoint: the body, read
        return JSONResponse({"bytes": len(await request.body())})

    app.router.add_route("/upload", upload, methods=["PUT"])

    async def receive_only(scope: Any, receive: Any, send: Any) -> None:
        """Plain ASGI: each chunk uvicorn hands over is counted and dropped."""
        received, more = 0, True
        while more:
            message = await receive()
            received += len(message.get("body", b""))
            more = message.get("more_body", False)
        await JSONResponse({"bytes": received})(scope, receive, send)

    app.mount("/receive", receive_only)

    sock = _bind()
    config = uvicorn.Config(
        app, http=http_protocol(), log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    _announce(http=sock.getsockname()[1])
    asyncio.run(server.serve(sockets=[sock]))


def _grpc_peer() -> None:
    """A bare grpc.aio server on bytes: Echo returns the request, Sink its length."""
    import grpc

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    async def sink(request: bytes, context: Any) -> bytes:
        return len(request).to_bytes(8, "little")

    async def main() -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
            ]
        )
        handlers = {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Sink": grpc.unary_unary_rpc_method_handler(sink),
        }
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench", handlers)])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        _announce(grpc=port)
        await server.wait_for_termination()

    asyncio.run(main())


def _socket_peer() -> None:
    """A bare loopback socket server: read an 8-byte length and that many bytes, answer 1."""
    sock = _bind()
    sock.setblocking(True)
    _announce(socket=sock.getsockname()[1])
    conn, _ = sock.accept()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    while True:
        header = _recv_exactly(conn, 8)
        if not header:
            return
        left = int.from_bytes(header, "little")
        while left:
            got = conn.recv_into(view[: min(left, len(buffer))])
            if not got:
                return
            left -= got
        conn.sendall(b"\1")


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


PEERS: dict[str, Callable[[], None]] = {
    "http": _http_peer,
    "grpc": _grpc_peer,
    "socket": _socket_peer,
}


@contextmanager
def _process(args: list[str], ready: Callable[[IO[str]], dict[str, Any]]) -> Iterator[Any]:
    """A subprocess whose ``ready`` reads what it announces; killed on exit."""
    with tempfile.TemporaryFile("w+") as log:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                log.seek(0)
                try:
                    announced = ready(log)
                    break
                except LookupError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"{args} did not start:\n{log.read()}") from None
                    time.sleep(0.05)
            yield announced
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _first_json(log: IO[str], key: str) -> dict[str, Any]:
    for line in log:
        if key in line:
            try:
                found: dict[str, Any] = json.loads(line)
                return found
            except ValueError:
                continue
    raise LookupError(key)


def gradserve() -> Any:
    """gradserve as deployed, on free loopback ports."""
    args = [sys.executable, "-m", "service", "serve", "--http-port", "0", "--grpc-port", "0"]

    def ready(log: IO[str]) -> dict[str, Any]:
        entry = _first_json(log, "gradserve listening")
        return {
            "http": int(entry["http"].rsplit(":", 1)[1]),
            "grpc": int(entry["grpc"].rsplit(":", 1)[1]),
        }

    return _process(args, ready)


def peer(kind: str) -> Any:
    return _process(
        [sys.executable, "-m", "bench.service", kind], lambda log: _first_json(log, f'"{kind}"')
    )


# ----- clients -----


class RawHttp:
    """HTTP/1.1 keep-alive over one socket: a request is prepared bytes, a reply is read by
    its Content-Length. Little Python runs per request, so the server's time shows."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    @staticmethod
    def head(method: str, path: str, length: int, content_type: str, token: str = "") -> bytes:
        lines = [
            f"{method} {path} HTTP/1.1",
            "Host: 127.0.0.1",
            f"Content-Type: {content_type}",
            f"Content-Length: {length}",
        ]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        if len(body) > 1 << 16:
            self.sock.sendall(head)
            self.sock.sendall(body)
        else:
            self.sock.sendall(head + body)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        status, *fields = bytes(self.buffer[:end]).split(b"\r\n")
        del self.buffer[: end + 4]
        length = 0
        for field in fields:
            name, _, value = field.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            self._fill()
        reply = bytes(self.buffer[:length])
        del self.buffer[:length]
        return int(status[9:12]), reply

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def _timed(call: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def _interleaved(
    ours: Callable[[], Any], theirs: Callable[[], Any], n: int, block: int
) -> tuple[list[float], list[float]]:
    """``n`` timings of each, in alternating blocks (after a warm-up block of each)."""
    _timed(ours, block)
    _timed(theirs, block)
    a: list[float] = []
    b: list[float] = []
    while len(a) < n:
        k = min(block, n - len(a))
        a += _timed(ours, k)
        b += _timed(theirs, k)
    return a, b


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _figures(samples: list[float], scale: float) -> dict[str, Any]:
    return {
        "p50": round(statistics.median(samples) * scale, 1),
        "p99": round(_p(samples, 0.99) * scale, 1),
        "n": len(samples),
    }


def _ratio(ours: list[float], theirs: list[float]) -> float:
    return round(statistics.median(ours) / statistics.median(theirs), 3)


def _check(status: int, body: bytes, wanted: int = 200) -> bytes:
    if status != wanted:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
    return body


# ----- the batch -----


def batch_commands() -> list[dict[str, Any]]:
    """bench.sessions' 1000-command batch: create x, then a chain of mul/add/sin/tanh, sum."""
    from bench.sessions import _commands

    return _commands()


def engine_alone(commands: list[dict[str, Any]], chunk: int, repeats: int) -> list[float]:
    """The commands in the engine, in this process, as batches of ``chunk``: parse and
    execute, per op. Each batch ends with the session's byte count, whose cost grows with
    the graph it walks, so the stream's 10 batches are compared with the same 10 here."""
    from engine.parsing import parse
    from engine.session import SessionManager

    manager = SessionManager()
    session_id, token = manager.create()
    parts = [commands[i : i + chunk] for i in range(0, len(commands), chunk)]

    def run() -> None:
        for part in parts:
            manager.execute(session_id, token, [parse(c) for c in part])

    try:
        run()
        return [t / len(commands) for t in _timed(run, repeats)]
    finally:
        manager.shutdown()


# ----- the measurements -----

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]


class Bench:
    """gradserve and its peers running, one session with ``x``, and the clients to them.
    Each method measures one ratio and records the figures behind it in ``raw``."""

    def __init__(self, stack: ExitStack, args: argparse.Namespace) -> None:
        import grpc

        self.args = args
        ports = stack.enter_context(gradserve())
        self.http_port = ports["http"]
        self.http_peer = stack.enter_context(peer("http"))["http"]
        self.socket_peer = stack.enter_context(peer("socket"))["socket"]
        grpc_peer = stack.enter_context(peer("grpc"))["grpc"]
        self.stack = stack
        self._connect()
        self.channel = stack.enter_context(
            grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}", GRPC_OPTIONS)
        )
        self.peer_channel = stack.enter_context(
            grpc.insecure_channel(f"127.0.0.1:{grpc_peer}", GRPC_OPTIONS)
        )
        created = json.loads(self._post("/v1/sessions", {}, wanted=201))
        self.sid, self.token = created["id"], created["token"]
        self.metadata = (("authorization", f"Bearer {self.token}"),)
        x = {"name": "x", "data": [0.1, 0.2, 0.3, 0.4], "requires_grad": True}
        self._post(f"/v1/sessions/{self.sid}/tensors", x, wanted=201)
        self.raw: dict[str, Any] = {}
        self.ratios: dict[str, float] = {}

    def _connect(self) -> None:
        """New connections to gradserve and the FastAPI peer: each phase starts with its own,
        as uvicorn closes a keep-alive connection left idle for 5 s."""
        self.client = RawHttp(self.http_port)
        self.stack.callback(self.client.close)
        self.echo = RawHttp(self.http_peer)
        self.stack.callback(self.echo.close)

    def _head(self, method: str, path: str, length: int, media: str = "application/json") -> bytes:
        return RawHttp.head(method, path, length, media, self.token)

    def _post(self, path: str, body: Any, wanted: int = 200) -> bytes:
        raw = json.dumps(body).encode()
        token = getattr(self, "token", "")
        head = RawHttp.head("POST", path, len(raw), "application/json", token)
        return _check(*self.client.request(head, raw), wanted=wanted)

    def _record(self, name: str, key: str, figures: dict[str, Any], ratio: float) -> None:
        self.raw[key] = figures
        self.ratios[name] = ratio

    def http_op(self) -> None:
        """One ApplyOp over HTTP, against the bare FastAPI echo of the same body."""
        op = json.dumps({"op": "mul", "inputs": ["x", 1.0001], "name": "y"}).encode()
        op_head = self._head("POST", f"/v1/sessions/{self.sid}/ops", len(op))
        echo_head = RawHttp.head("POST", "/echo", len(op), "application/json")
        assert json.loads(_check(*self.echo.request(echo_head, op))) == json.loads(op)
        ours, theirs = _interleaved(
            lambda: _check(*self.client.request(op_head, op)),
            lambda: _check(*self.echo.request(echo_head, op)),
            self.args.requests,
            100,
        )
        figures = {"gradserve": _figures(ours, 1e6), "fastapi_echo": _figures(theirs, 1e6)}
        self._record("http_op_ratio", "http_op_us", figures, _ratio(ours, theirs))

    def grpc_op(self) -> None:
        """One ApplyOp RPC, against the bare grpc.aio echo of the same request bytes."""
        from service.gen.gradient.v1 import gradient_pb2 as pb

        apply_op = self.channel.unary_unary("/gradient.v1.Gradient/ApplyOp")
        peer_echo = self.peer_channel.unary_unary("/bench/Echo")
        inputs = [pb.Value(tensor=pb.TensorRef(name="x")), pb.Value(number=1.0001)]
        command = pb.ApplyOp(op="mul", inputs=inputs, name="y")
        request = pb.ApplyOpRequest(session_id=self.sid, command=command).SerializeToString()
        reply = apply_op(request, metadata=self.metadata)
        assert pb.CommandResult.FromString(reply).kind == "op"
        ours, theirs = _interleaved(
            lambda: apply_op(request, metadata=self.metadata),
            lambda: peer_echo(request, metadata=self.metadata),
            self.args.requests,
            100,
        )
        figures = {"gradserve": _figures(ours, 1e6), "grpcio_echo": _figures(theirs, 1e6)}
        self._record("grpc_op_ratio", "grpc_op_us", figures, _ratio(ours, theirs))

    def batches(self) -> None:
        """1000 commands: one HTTP batch, and 10 batches pipelined through ExecuteStream,
        each against the engine alone running the same batches."""
        from service.gen.gradient.v1 import gradient_pb2 as pb

        self._connect()
        commands = batch_commands()
        body = json.dumps({"commands": commands}).encode()
        head = self._head("POST", f"/v1/sessions/{self.sid}/batch", len(body))
        stream = self.channel.stream_stream("/gradient.v1.Gradient/ExecuteStream")
        chunk = N_OPS // STREAM_BATCHES
        requests = [
            pb.ExecuteRequest(
                session_id=self.sid, commands=[_to_proto(c) for c in commands[i : i + chunk]]
            ).SerializeToString()
            for i in range(0, N_OPS, chunk)
        ]

        def http_batch() -> None:
            _check(*self.client.request(head, body))

        def pipelined() -> None:
            replies = list(stream(iter(requests), metadata=self.metadata))
            assert len(replies) == STREAM_BATCHES
            assert not any(pb.ExecuteResponse.FromString(r).HasField("error") for r in replies)

        http_batch()
        pipelined()
        samples: dict[str, list[float]] = {k: [] for k in ("http", "alone", "stream", "alone10")}
        for _ in range(self.args.batches):  # interleaved, one of each a round
            samples["http"] += [t / N_OPS for t in _timed(http_batch, 1)]
            samples["alone"] += engine_alone(commands, N_OPS, 1)
            samples["stream"] += [t / N_OPS for t in _timed(pipelined, 1)]
            samples["alone10"] += engine_alone(commands, chunk, 1)
        self.raw["batch_us_per_op"] = {
            "http": _figures(samples["http"], 1e6),
            "engine_alone": _figures(samples["alone"], 1e6),
            "stream": _figures(samples["stream"], 1e6),
            "engine_alone_10_batches": _figures(samples["alone10"], 1e6),
        }
        self.ratios["batch_per_op_ratio"] = _ratio(samples["http"], samples["alone"])
        self.ratios["stream_per_op_ratio"] = _ratio(samples["stream"], samples["alone10"])

    def uploads(self) -> None:
        """A 64 MiB tensor: as .npy over HTTP against a bare socket, and by CreateTensor
        against a bare grpcio method taking the same request bytes."""
        import numpy

        from service.gen.gradient.v1 import gradient_pb2 as pb

        self._connect()
        rng = numpy.random.default_rng(0)
        array = rng.standard_normal(UPLOAD_BYTES // 4, dtype=numpy.float32)
        npy = _npy(array)
        put = self._head("PUT", f"/v1/sessions/{self.sid}/tensors/big", len(npy), NPY)
        bare = socket.create_connection(("127.0.0.1", self.socket_peer))
        self.stack.callback(bare.close)

        def send_bare() -> None:
            bare.sendall(len(npy).to_bytes(8, "little"))
            bare.sendall(npy)
            if bare.recv(1) != b"\1":
                raise ConnectionError("the socket peer did not answer")

        n = self.args.uploads
        ours, theirs = _interleaved(lambda: _check(*self.client.request(put, npy)), send_bare, n, 1)
        # Where the time goes, not a target: the bare FastAPI app reading the same body, and
        # uvicorn alone handing it over (a plain ASGI app dropping each chunk).
        self._connect()
        upload = RawHttp.head("PUT", "/upload", len(npy), NPY)
        receive = RawHttp.head("PUT", "/receive/", len(npy), NPY)  # under the mount
        framework, server = _interleaved(
            lambda: _check(*self.echo.request(upload, npy)),
            lambda: _check(*self.echo.request(receive, npy)),
            n,
            1,
        )
        figures = {
            "gradserve": _figures(ours, 1e3),
            "socket": _figures(theirs, 1e3),
            "fastapi_body_only": _figures(framework, 1e3),
            "asgi_receive_only": _figures(server, 1e3),
        }
        self._record("upload_ratio_http", "upload_http_ms", figures, _ratio(ours, theirs))

        data = pb.TensorData(shape=array.shape, dtype=pb.DTYPE_FLOAT32, data=array.tobytes())
        command = pb.CreateTensor(name="big", data=data)
        create = pb.CreateTensorRequest(session_id=self.sid, command=command).SerializeToString()
        create_tensor = self.channel.unary_unary("/gradient.v1.Gradient/CreateTensor")
        sink = self.peer_channel.unary_unary("/bench/Sink")
        ours, theirs = _interleaved(
            lambda: create_tensor(create, metadata=self.metadata),
            lambda: sink(create, metadata=self.metadata),
            n,
            1,
        )
        figures = {"gradserve": _figures(ours, 1e3), "grpcio_sink": _figures(theirs, 1e3)}
        self._record("upload_ratio_grpc", "upload_grpc_ms", figures, _ratio(ours, theirs))


NPY = "application/x-npy"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with ExitStack() as stack:
        bench = Bench(stack, args)
        bench.http_op()
        bench.grpc_op()
        bench.batches()
        bench.uploads()
    return {
        **bench.ratios,
        "targets": TARGETS,
        "met": {name: bench.ratios[name] <= target for name, target in TARGETS.items()},
        "raw": bench.raw,
        "machine": _machine(),
    }


def _to_proto(command: dict[str, Any]) -> Any:
    """The gradient.v1 Command of one of the batch's commands (create, op)."""
    from service.gen.gradient.v1 import gradient_pb2 as pb

    def value(item: Any) -> Any:
        if isinstance(item, str):
            return pb.Value(tensor=pb.TensorRef(name=item))
        return pb.Value(number=float(item))

    if command["kind"] == "create":
        import numpy

        array = numpy.asarray(command["data"], dtype=numpy.float32)
        data = pb.TensorData(shape=array.shape, dtype=pb.DTYPE_FLOAT32, data=array.tobytes())
        return pb.Command(
            create=pb.CreateTensor(
                name=command["name"], data=data, requires_grad=command["requires_grad"]
            )
        )
    return pb.Command(
        op=pb.ApplyOp(
            op=command["op"], inputs=[value(v) for v in command["inputs"]], name=command["name"]
        )
    )


def _npy(array: Any) -> bytes:
    import io

    import numpy

    buffer = io.BytesIO()
    numpy.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def main(args: argparse.Namespace) -> int:
    result = measure(args)
    if args.json:
        print(json.dumps(result))
    else:
        for name, target in TARGETS.items():
            mark = "ok" if result["met"][name] else "MISSED"
            print(f"{name}: {result[name]} (target <= {target}: {mark})")
        for name, figures in result["raw"].items():
            print(f"{name}: {json.dumps(figures)}")
    return 0


if __name__ == "__main__":  # python -m bench.service {http,grpc,socket}: a bare peer
    PEERS[sys.argv[1]]()
