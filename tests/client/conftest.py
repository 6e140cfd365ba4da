"""One live server for the client's tests, and a session on it over each transport."""

from __future__ import annotations

from collections.abc import Iterator

import gradserve
import pytest

from tests.live_server import LiveServer

TRANSPORTS = ["http", "grpc"]


@pytest.fixture(scope="package")
def server() -> Iterator[LiveServer]:
    with LiveServer.start() as live:
        yield live


def url_of(server: LiveServer, transport: str) -> str:
    return server.http_url if transport == "http" else server.grpc_url


@pytest.fixture(params=TRANSPORTS)
def url(request: pytest.FixtureRequest, server: LiveServer) -> str:
    return url_of(server, request.param)


@pytest.fixture
def client(url: str) -> Iterator[gradserve.Client]:
    with gradserve.connect(url) as c:
        yield c


@pytest.fixture
def torch(client: gradserve.Client) -> Iterator[gradserve.Session]:
    with client.session() as session:
        yield session
