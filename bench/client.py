"""The Python client against its alternatives: eager sends, and PyTorch's own RPC.

``python -m bench client --json`` prints one JSON object:

- ``client_lazy_vs_eager``: wall time of a 1000-op chain with backward (mul, add, sin, tanh
  in turn on 8 floats, then ``y.sum().backward()`` and reading ``x.grad``) in a lazy session
  over the same in an eager one (one round trip per command). Far below 1.
- ``client_vs_torch_rpc_chain``: the same chain done remotely with ``torch.distributed.rpc``
  (``rpc_sync`` per op, TensorPipe on 127.0.0.1, a worker process) and distributed autograd
  (``dist_autograd.backward``), gradserve's wall time over torch rpc's. Target <= 0.1.
- ``client_vs_torch_rpc_seed``: the seed notebook's control-flow ``f(a)`` (``while
  b.norm() < 1000``, ``if b.sum() > 0``) with backward and the grad read, every tensor op
  remote in torch rpc. Target <= 0.5. gradserve answers ``f``'s comparisons from values it
  knows exactly (``gradserve.known``); ``raw.seed_no_local_values_ms`` is the same without that
  (one round trip per comparison).

The ratios use the HTTP transport (``http://``, the default); ``raw`` has every time for
both transports (medians, milliseconds), and ``transport_rtt_us``: one small batch's round
trip (median microseconds, and the client's own CPU per call) through each HTTP library
considered (http.client, urllib3, httpx, requests) and gRPC, then through gradserve's two
transports (its encoding and decoding included). A server is started on free loopback ports
unless ``--url`` names one (``http://``; its gRPC port is given by ``--grpc-url``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

TARGETS = {"client_vs_torch_rpc_chain": 0.1, "client_vs_torch_rpc_seed": 0.5}
OPS = ("mul", "add", "sin", "tanh")
RPC_START_TIMEOUT = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions (median)")
    parser.add_argument("--ops", type=int, default=1000, help="length of the op chain")
    parser.add_argument("--url", help="a running server's http:// URL (default: start one)")
    parser.add_argument("--grpc-url", help="the same server's grpc:// URL")
    parser.add_argument("--calls", type=int, default=500, help="round trips per library")
    parser.add_argument(
        "--rpc-timeout", type=float, default=300.0, help="seconds allowed for the torch rpc part"
    )


def _median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


@contextmanager
def _server(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    if args.url:
        yield args.url, args.grpc_url or ""
        return
    from tests.live_server import LiveServer

    with LiveServer.start() as live:
        yield live.http_url, live.grpc_url


# ----- gradserve -----


def _chain(torch: Any, n: int) -> Any:
    x = torch.ones(8, requires_grad=True)
    y = x
    for i in range(n):
        op = OPS[i % len(OPS)]
        y = y * 1.0001 if op == "mul" else y + 1.0001 if op == "add" else getattr(y, op)()
    y.sum().backward()
    return x.grad.numpy()


def f(a: Any) -> Any:
    """The seed notebook's control flow (cell 68), unchanged."""
    b = a * 2
    while b.norm() < 1000:
        b = b * 2
    if b.sum() > 0:  # noqa: SIM108 - the notebook's code as it is
        c = b
    else:
        c = 100 * b
    return c


def _seed(torch: Any) -> float:
    a = torch.tensor(100.0, requires_grad=True)
    d = f(a)
    d.backward()
    return float(a.grad.item())


def _gradserve(url: str, repeats: int, n: int) -> dict[str, float]:
    import gradserve

    out: dict[str, float] = {}
    with gradserve.connect(url) as client:
        lazy, eager = client.session(), client.session(eager=True)
        plain = client.session(local_values=False)
        out["chain_lazy_ms"] = _median_ms(lambda: _chain(lazy, n), repeats)
        out["chain_eager_ms"] = _median_ms(lambda: _chain(eager, n), max(1, repeats // 3))
        out["seed_ms"] = _median_ms(lambda: _seed(lazy), repeats * 5)
        out["seed_no_local_values_ms"] = _median_ms(lambda: _seed(plain), repeats * 5)
        before = lazy.round_trips
        _seed(lazy)
        out["seed_round_trips"] = lazy.round_trips - before
        before = lazy.round_trips
        _chain(lazy, n)
        out["chain_round_trips"] = lazy.round_trips - before
    return out


# ----- torch.distributed.rpc -----


def _rpc_chain(n: int) -> Any:
    import torch
    import torch.distributed.autograd as dist_autograd
    import torch.distributed.rpc as rpc

    fns = {"mul": torch.mul, "add": torch.add, "sin": torch.sin, "tanh": torch.tanh}
    x = torch.ones(8, requires_grad=True)
    with dist_autograd.context() as context:
        y = x
        for i in range(n):
            op = OPS[i % len(OPS)]
            args = (y, 1.0001) if op in ("mul", "add") else (y,)
            y = rpc.rpc_sync("worker", fns[op], args=args)
        loss = rpc.rpc_sync("worker", torch.sum, args=(y,))
        dist_autograd.backward(context, [loss])
        return dist_autograd.get_gradients(context)[x]


def _rpc_seed() -> float:
    import torch
    import torch.distributed.autograd as dist_autograd
    import torch.distributed.rpc as rpc

    def remote(fn: Any, *args: Any) -> Any:
        return rpc.rpc_sync("worker", fn, args=args)

    with dist_autograd.context() as context:
        a = torch.tensor(100.0, requires_grad=True)
        b = remote(torch.mul, a, 2)
        # The conditions send b detached: distributed autograd's backward pass waits for a
        # gradient through every tensor that was sent with requires_grad, and hangs otherwise.
        while remote(torch.lt, remote(torch.norm, b.detach()), 1000):
            b = remote(torch.mul, b, 2)
        c = b if remote(torch.gt, remote(torch.sum, b.detach()), 0) else remote(torch.mul, b, 100)
        dist_autograd.backward(context, [c])
        return float(dist_autograd.get_gradients(context)[a].item())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rpc_init(name: str, rank: int, port: int) -> None:
    import torch.distributed.rpc as rpc

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    # TCP on loopback ("uv"), as gradserve's client talks to its server; TensorPipe would
    # otherwise pick shared memory between two processes of one machine.
    options = rpc.TensorPipeRpcBackendOptions(
        num_worker_threads=4,
        rpc_timeout=RPC_START_TIMEOUT,
        init_method=f"tcp://127.0.0.1:{port}",
        _transports=["uv"],
    )
    rpc.init_rpc(name, rank=rank, world_size=2, rpc_backend_options=options)


def _rpc_worker(port: int) -> None:
    import torch.distributed.rpc as rpc

    _rpc_init("worker", 1, port)
    rpc.shutdown()  # serves the driver's calls until the driver shuts down too


def _rpc_driver(port: int, repeats: int, n: int, results: Any) -> None:
    import torch.distributed.rpc as rpc

    _rpc_init("driver", 0, port)
    try:
        results.put(
            {
                "rpc_chain_ms": _median_ms(lambda: _rpc_chain(n), repeats),
                "rpc_seed_ms": _median_ms(_rpc_seed, repeats * 5),
            }
        )
    finally:
        rpc.shutdown()


def _torch_rpc(repeats: int, n: int, limit: float) -> dict[str, float]:
    """Both RPC processes are children, so that a hang costs ``limit`` seconds, no more."""
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    results = context.Queue()
    processes = [
        context.Process(target=_rpc_worker, args=(port,)),
        context.Process(target=_rpc_driver, args=(port, repeats, n, results)),
    ]
    for p in processes:
        p.start()
    try:
        return dict(results.get(timeout=limit))
    finally:
        deadline = time.monotonic() + 30
        for p in processes:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()


# ----- transports -----


def _transports(http_url: str, grpc_url: str, calls: int) -> dict[str, dict[str, float]]:
    """One small batch's round trip through each library: median us, client CPU us per call."""
    import http.client

    import gradserve
    import grpc
    import httpx
    import requests
    import urllib3

    from service.gen.gradient.v1 import gradient_pb2 as pb
    from service.gen.gradient.v1 import gradient_pb2_grpc as pb_grpc

    client = gradserve.connect(http_url)
    session = client.session()
    kept = session.ones(2)  # something to read, alive while the libraries are measured
    session.flush()
    sid, token = session.id, session._token
    name = kept._name
    host, port = client.address.host, client.address.port
    path = f"/v1/sessions/{sid}/batch"
    body = json.dumps({"commands": [{"kind": "get", "tensor": name}]}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    raw = http.client.HTTPConnection(host, port)
    raw.connect()
    assert raw.sock is not None
    raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def by_http_client() -> None:
        raw.request("POST", path, body=body, headers=headers)
        response = raw.getresponse()
        json.loads(response.read())

    pool = urllib3.HTTPConnectionPool(host, port, maxsize=1)
    hx = httpx.Client(base_url=http_url)
    rq = requests.Session()
    channel = grpc.insecure_channel(grpc_url.removeprefix("grpc://"))
    stub = pb_grpc.GradientStub(channel)
    request = pb.ExecuteRequest(
        session_id=sid, commands=[pb.Command(get=pb.GetTensor(tensor=pb.TensorRef(name=name)))]
    )
    metadata = (("authorization", f"Bearer {token}"),)
    grpc_client = gradserve.connect(grpc_url)
    command = [{"kind": "get", "tensor": name}]
    candidates: dict[str, Callable[[], Any]] = {
        "http.client": by_http_client,
        "urllib3": lambda: json.loads(pool.request("POST", path, body=body, headers=headers).data),
        "httpx": lambda: hx.post(path, content=body, headers=headers).json(),
        "requests": lambda: rq.post(http_url + path, data=body, headers=headers).json(),
        "grpc": lambda: stub.Execute(request, metadata=metadata, timeout=30),
        "gradserve_http": lambda: client.transport.execute(sid, token, command),
        "gradserve_grpc": lambda: grpc_client.transport.execute(sid, token, command),
    }
    samples: dict[str, list[float]] = {k: [] for k in candidates}
    cpu: dict[str, float] = dict.fromkeys(candidates, 0.0)
    for fn in candidates.values():
        for _ in range(20):
            fn()
    block = 50
    for _ in range(max(1, calls // block)):  # interleaved blocks: drift hits every library alike
        for key, fn in candidates.items():
            c0 = time.process_time()
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                samples[key].append(time.perf_counter() - t0)
            cpu[key] += time.process_time() - c0
    out = {
        key: {
            "median_us": round(statistics.median(times) * 1e6, 1),
            "client_cpu_us": round(cpu[key] / len(times) * 1e6, 1),
        }
        for key, times in samples.items()
    }
    for closer in (raw.close, pool.close, hx.close, rq.close, channel.close):
        closer()
    del kept
    session.close()
    client.close()
    grpc_client.close()
    return out


def main(args: argparse.Namespace) -> int:
    raw: dict[str, Any] = {}
    with _server(args) as (http_url, grpc_url):
        raw["transport_rtt_us"] = _transports(http_url, grpc_url, args.calls)
        raw["http"] = _gradserve(http_url, args.repeats, args.ops)
        if grpc_url:
            raw["grpc"] = _gradserve(grpc_url, args.repeats, args.ops)
    raw["torch_rpc"] = _torch_rpc(args.repeats, args.ops, args.rpc_timeout)
    http, rpc = raw["http"], raw["torch_rpc"]
    result = {
        "client_lazy_vs_eager": round(http["chain_lazy_ms"] / http["chain_eager_ms"], 4),
        "client_vs_torch_rpc_chain": round(http["chain_lazy_ms"] / rpc["rpc_chain_ms"], 4),
        "client_vs_torch_rpc_seed": round(http["seed_ms"] / rpc["rpc_seed_ms"], 4),
        "targets": TARGETS,
        "met": {key: None for key in TARGETS},
        "ops": args.ops,
        "repeats": args.repeats,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "raw": raw,
    }
    result["met"] = {key: result[key] <= target for key, target in TARGETS.items()}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key in (
            "client_lazy_vs_eager",
            "client_vs_torch_rpc_chain",
            "client_vs_torch_rpc_seed",
        ):
            target = TARGETS.get(key)
            print(f"{key:28s} {result[key]:8.4f}" + (f"  (target <= {target})" if target else ""))
        for key, figures in raw["transport_rtt_us"].items():
            rtt, cpu = figures["median_us"], figures["client_cpu_us"]
            print(f"  {key:16s} {rtt:8.1f} us  client CPU {cpu:7.1f} us")
    return 0
