"""Fixtures: a session manager that is always shut down, a fresh session, and two engine
threads for the tests of large elementwise work."""

from collections.abc import Iterator

import pytest

from engine import parallel
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


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = parallel.get_num_threads()
    parallel.set_num_threads(2)
    yield
    parallel.set_num_threads(before)
