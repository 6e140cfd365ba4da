"""Fixtures for session tests: a manager that is always shut down, and a fresh session."""

from collections.abc import Iterator

import pytest

from engine.session import Session, SessionManager
from tests.engine.session_state import open_session


@pytest.fixture
def manager() -> Iterator[SessionManager]:
    m = SessionManager(sweep_interval=0.02)
    yield m
    m.shutdown()


@pytest.fixture
def session(manager: SessionManager) -> Session:
    return open_session(manager)
