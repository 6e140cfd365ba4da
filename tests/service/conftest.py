"""The in-process gRPC server of the frontend's test modules, one per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.service.grpc_support import GrpcHarness, serve


@pytest.fixture(scope="module")
def grpc_env() -> Iterator[GrpcHarness]:
    yield from serve()
