"""Transports against misbehaving peers: retries only where safe, TLS where the URL says so."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import gradserve
import pytest

from tests.live_server import LiveServer


class Hangup:
    """A TCP server that reads each request, then closes the connection without answering."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if conn.recv(65536):
                    self.requests += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def hangup() -> Iterator[Hangup]:
    peer = Hangup()
    yield peer
    peer.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_refused_connections_are_retried_with_backoff_then_reported(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    client = gradserve.connect(url, retries=3, backoff=0.05)
    with client, pytest.raises(gradserve.Error) as caught:
        client.session()
    elapsed = time.monotonic() - start
    assert caught.value.code == "unavailable" and isinstance(caught.value, ConnectionError)
    assert str(client.address) in caught.value.detail
    assert 0.05 * (1 + 2 + 4) * 0.5 <= elapsed < 5  # three backoffs, then the error


def test_a_batch_is_not_sent_twice_but_a_read_is_retried(hangup: Hangup) -> None:
    with gradserve.connect(f"http://127.0.0.1:{hangup.port}", retries=2, backoff=0.01) as client:
        with pytest.raises(gradserve.Error) as batch:
            client.transport.execute("s", "t", [{"kind": "get", "tensor": "x"}])
        assert batch.value.code == "unavailable" and "may or may not have run" in batch.value.detail
        assert hangup.requests == 1  # it may have run: never sent again
        with pytest.raises(gradserve.Error):
            client.transport.session_info("s", "t")
        time.sleep(0.1)
        assert hangup.requests == 1 + 3  # a read changes nothing: retried


@pytest.mark.parametrize("scheme", ["https", "grpcs"])
def test_tls_urls_speak_tls(server: LiveServer, scheme: str) -> None:
    port = server.http_port if scheme == "https" else server.grpc_port
    client = gradserve.connect(f"{scheme}://127.0.0.1:{port}", retries=0, timeout=5)
    with client, pytest.raises(gradserve.Error) as caught:  # a plain-text server cannot answer
        client.session()
    assert caught.value.code in ("unavailable", "deadline_exceeded")
