"""Lifetimes: garbage-collected proxies free their server tensors; ``with`` closes sessions."""

from __future__ import annotations

import gc
import time

import gradserve
import pytest


def test_a_collected_proxy_is_released_in_the_next_batch(torch: gradserve.Session) -> None:
    kept = [torch.randn(3) for _ in range(5)]
    dropped = [torch.randn(3) for _ in range(7)]
    assert torch.info().tensors == 12
    del dropped
    assert torch.info().tensors == 5
    kept.pop()
    trips = torch.round_trips
    (kept[0] * 2).tolist()  # the release rides in this batch
    assert torch.round_trips == trips + 1
    assert torch.info().tensors == 4


def test_temporaries_of_a_batch_are_released_with_it(torch: gradserve.Session) -> None:
    x = torch.ones(4, requires_grad=True)
    y = x
    for _ in range(50):
        y = (y * 1.5).sin()
    y.sum().backward()
    assert x.grad is not None
    gc.collect()
    assert torch.info().tensors == 2  # x and the last y; the graph lives on in y


def test_ten_thousand_create_release_cycles_do_not_grow_the_server(
    torch: gradserve.Session,
) -> None:
    start = time.monotonic()
    first = torch.info()
    trips = torch.round_trips
    for i in range(10_000):
        t = torch.full((4,), float(i))
        u = t * 2
    assert u.tolist() == [2.0 * 9_999] * 4  # computed locally: all four values are exact
    last = torch.info()
    assert last.tensors <= first.tensors + 2
    assert last.bytes_held <= first.bytes_held + 2 * 4 * 4
    assert torch.round_trips - trips <= 10  # batched: full batches, then the info calls
    assert time.monotonic() - start < 20


def test_with_closes_the_session(client: gradserve.Client) -> None:
    with client.session() as torch:
        x = torch.randn(2)
        session_id, token = torch.id, torch._token
        assert len(x.tolist()) == 2
    assert torch.closed
    with pytest.raises(gradserve.Error) as caught:
        client.transport.session_info(session_id, token)
    assert caught.value.code == "unauthenticated"
    with pytest.raises(gradserve.Error) as used:
        (x * 2).tolist()
    assert used.value.code == "failed_precondition" and "closed" in used.value.detail
    torch.close()  # idempotent


def test_closing_the_client_closes_its_sessions(url: str) -> None:
    with gradserve.connect(url) as client:
        torch = client.session()
        session_id, token = torch.id, torch._token
    assert torch.closed
    with gradserve.connect(url) as other, pytest.raises(gradserve.Error) as caught:
        other.transport.session_info(session_id, token)
    assert caught.value.code == "unauthenticated"


def test_attach_to_a_session_by_id_and_token(client: gradserve.Client) -> None:
    with client.session(seed=7) as torch:
        x = torch.arange(3.0)
        torch.flush()
        again = client.session(id=torch.id, token=torch._token)
        assert again.seed == 7
        assert again.info().tensors == 1
        assert x.tolist() == [0.0, 1.0, 2.0]
