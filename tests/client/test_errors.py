"""Failures: one Error type, the same over both transports, raised where the value is used."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import gradserve
import pytest

from tests.client.conftest import TRANSPORTS, url_of
from tests.live_server import LiveServer

real = pytest.importorskip("torch")


def shape_mismatch(torch: Any) -> Any:
    return torch.ones(3) + torch.ones(4)


def index_out_of_range(torch: Any) -> Any:
    return torch.arange(3.0)[5]


def backward_twice(torch: Any) -> Any:
    x = torch.ones(2, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    y.backward()
    return x.grad


def int_requires_grad(torch: Any) -> Any:
    return torch.tensor([1, 2], requires_grad=True) * 2


FAILURES = [shape_mismatch, index_out_of_range, backward_twice, int_requires_grad]


def fields(error: gradserve.Error) -> tuple[Any, ...]:
    return (error.code, error.detail, error.torch_type, error.command_index, error.status)


@pytest.mark.parametrize("program", FAILURES, ids=lambda p: p.__name__)
def test_server_error_is_the_same_over_both_transports(
    server: LiveServer, program: Callable[[Any], Any]
) -> None:
    seen = []
    for transport in TRANSPORTS:
        with gradserve.connect(url_of(server, transport)) as client, client.session() as torch:
            with pytest.raises(gradserve.Error) as caught:
                repr(program(torch))
            seen.append(caught.value)
    http, grpc = seen
    assert fields(http) == fields(grpc)
    assert type(http) is type(grpc)
    # PyTorch raises the same class with the same words.
    with pytest.raises(Exception) as torch_caught:
        repr(program(real))
    assert isinstance(http, type(torch_caught.value))
    assert http.detail == str(torch_caught.value).splitlines()[0]


def test_error_names_the_user_line_that_queued_the_command(torch: gradserve.Session) -> None:
    a = torch.ones(3)
    b = a * 2
    bad = a @ torch.ones(4)  # the failing line
    with pytest.raises(gradserve.Error) as caught:
        print(b)
    error = caught.value
    assert error.code == "invalid_argument" and error.status == 400
    assert "test_errors.py" in str(error) and "bad = a @ torch.ones(4)" in str(error)
    assert error.where is not None and error.detail in str(error)
    with pytest.raises(gradserve.Error) as again:  # its result was never made
        bad.sum()
    assert again.value.detail == error.detail


def test_lines_before_the_failing_one_took_effect(torch: gradserve.Session) -> None:
    a = torch.tensor([1.0, 2.0])
    before = a * 10
    bad = a + torch.ones(3)
    after = a * 3  # queued after the failing line: PyTorch would never have run it
    with pytest.raises(gradserve.Error):
        torch.flush()
    assert before.tolist() == [10.0, 20.0]
    for lost in (bad, after):
        with pytest.raises(gradserve.Error):
            lost.tolist()
    assert (a * 4).tolist() == [4.0, 8.0]  # the session goes on


def test_client_side_errors_are_torchs(torch: gradserve.Session) -> None:
    cases: list[Callable[[Any], Any]] = [
        lambda t: bool(t.ones(2)),
        lambda t: bool(t.ones(0)),
        lambda t: t.ones(2, requires_grad=True).numpy(),
        lambda t: len(t.tensor(1.0)),
        lambda t: t.ones(2).item(),
        lambda t: float(t.ones(2)),
    ]
    for case in cases:
        with pytest.raises(Exception) as expected:
            case(real)
        with pytest.raises(gradserve.Error) as caught:
            case(torch)
        assert isinstance(caught.value, type(expected.value)), (caught.value, expected.value)
        assert caught.value.detail == str(expected.value)


def test_a_guessed_grad_that_does_not_exist_is_none(torch: gradserve.Session) -> None:
    x = torch.ones(2, requires_grad=True)
    unused = torch.ones(2, requires_grad=True)
    (x * 2).sum().backward()
    assert unused.grad is None  # guessed present, asked again without the guess
    assert x.grad.tolist() == [2.0, 2.0]


def test_unknown_session_is_unauthenticated_on_both(server: LiveServer) -> None:
    seen = []
    for transport in TRANSPORTS:
        with gradserve.connect(url_of(server, transport)) as client:
            with pytest.raises(gradserve.Error) as caught:
                client.session(id="0" * 32, token="wrong")
            seen.append(fields(caught.value))
    assert seen[0] == seen[1]
    assert seen[0][0] == "unauthenticated" and seen[0][4] == 401


def test_api_key_is_sent_when_the_server_wants_one() -> None:
    with LiveServer.start({"GRADSERVE_API_KEY": "k3y"}) as server:
        for transport in TRANSPORTS:
            url = url_of(server, transport)
            with gradserve.connect(url, api_key="nope") as client:
                with pytest.raises(gradserve.Error) as caught:
                    client.session()
                assert (caught.value.code, caught.value.status) == ("permission_denied", 403)
            with gradserve.connect(url, api_key="k3y") as client, client.session() as torch:
                assert torch.ones(1).item() == 1.0


def test_a_server_that_stops_or_goes_away_gives_a_clear_error_quickly() -> None:
    server = LiveServer.start()
    try:
        sessions = {
            t: gradserve.connect(url_of(server, t), timeout=1.0, retries=2).session()
            for t in TRANSPORTS
        }
        for torch in sessions.values():
            assert len(torch.randn(3).tolist()) == 3  # randn: a value only the server knows
        server.process.send_signal(signal.SIGSTOP)  # hangs: requests time out
        try:
            for transport, torch in sessions.items():
                start = time.monotonic()
                with pytest.raises(gradserve.Error) as caught:
                    torch.randn(2).tolist()
                assert caught.value.code == "deadline_exceeded", transport
                assert isinstance(caught.value, TimeoutError)
                assert time.monotonic() - start < 5
        finally:
            server.process.send_signal(signal.SIGCONT)
        server.process.kill()
        server.process.wait(10)
        for transport, torch in sessions.items():
            start = time.monotonic()
            with pytest.raises(gradserve.Error) as caught:
                torch.randn(2).tolist()
            assert caught.value.code == "unavailable", transport
            assert isinstance(caught.value, ConnectionError)
            assert "gradserve at" in caught.value.detail
            assert time.monotonic() - start < 5
    finally:
        server.stop()
