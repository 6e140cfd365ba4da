"""A real gradserve process for tests: ``python -m service serve`` on free loopback ports.

The server logs one JSON line ``"gradserve listening"`` with the ports it bound (port 0 picks
free ones); ``LiveServer.start`` waits for it, bounded in time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

START_TIMEOUT = 30.0


@dataclass
class LiveServer:
    process: subprocess.Popen[str]
    http_port: int
    grpc_port: int
    logs: list[str] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @classmethod
    def start(
        cls,
        env: dict[str, str] | None = None,
        *args: str,
        command: list[str] | None = None,
        timeout: float = START_TIMEOUT,
    ) -> LiveServer:
        """Start a server and wait until it listens on both ports.

        ``command`` replaces ``python -m service serve`` (README's run command, say); the
        loopback host and free ports are appended to it either way.
        """
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        argv = command or [sys.executable, "-m", "service", "serve"]
        process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        assert process.stderr is not None
        logs: list[str] = []
        ports: dict[str, int] = {}
        found = threading.Event()
        reader = threading.Thread(
            target=_read_logs, args=(process.stderr, logs, ports, found), daemon=True
        )
        reader.start()
        if not found.wait(timeout):
            process.kill()
            raise RuntimeError("gradserve did not start:\n" + "\n".join(logs))
        return cls(process, ports["http"], ports["grpc"], logs)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait; returns the exit status (killing it if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _read_logs(
    stream: IO[str], logs: list[str], ports: dict[str, int], found: threading.Event
) -> None:
    for line in stream:
        logs.append(line.rstrip("\n"))
        if found.is_set() or "gradserve listening" not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        ports["http"] = int(entry["http"].rsplit(":", 1)[1])
        ports["grpc"] = int(entry["grpc"].rsplit(":", 1)[1])
        found.set()


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
