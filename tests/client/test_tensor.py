"""The client against PyTorch itself: the same programs, the same shown values and metadata.

Each program takes a ``torch`` namespace and returns what it shows; it runs once on real
PyTorch and once on a remote session (over both transports), lazily and eagerly, and the
reprs, Python values, shapes, dtypes and flags must be identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradserve
import numpy
import pytest

from tests.seed import display

real = pytest.importorskip("torch")

Program = Callable[[Any], list[Any]]


def show(value: Any) -> Any:
    """A comparable form of what a program returns."""
    if isinstance(value, list):
        return [show(v) for v in value]
    if isinstance(value, tuple) and not repr(value).startswith("torch.return_types."):
        return display(value)
    if hasattr(value, "name") and callable(value.name) and "Backward" in value.name():
        return value.name()  # a grad_fn: its address differs
    if isinstance(value, numpy.ndarray):
        return (value.dtype.name, value.shape, value.tolist())
    return repr(value)


def arithmetic(torch: Any) -> list[Any]:
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    i = torch.arange(4)
    return [
        x + 1, 1 + x, x - 2, 2 - x, x * x, x / 2, 2 / x, x**2, 2**x, -x, abs(-x), x @ x,
        x == 2, x != 2, x < 2, x <= 2, x > 2, x >= 2, i * 2, i / 2, i + 0.5, i // 3,
        (x > 1) & (x < 3), (x > 1) | (x < 2), ~(x > 1), torch.mul(x, 3), torch.add(x, x),
        torch.maximum(x, 2 * x.detach()), torch.where(x > 1, x, 0.0),
    ]  # fmt: skip


def reductions(torch: Any) -> list[Any]:
    m = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.5, 4.0]], requires_grad=True)
    return [
        m.sum(), m.sum(0), m.sum(dim=1, keepdim=True), m.mean(), m.mean(1), m.norm(),
        m.prod(), m.max(), m.min(), m.argmax(), m.argmax(1), m.max(dim=1), m.min(0),
        m.logsumexp(1), m.softmax(1), m.log_softmax(0), m.exp(), m.log(), m.sqrt(), m.sin(),
        m.cos(), m.tanh(), m.sigmoid(), (m - 2).relu(), m.clamp(1, 3), torch.sum(m, 1),
        torch.norm(m, dim=0),
    ]  # fmt: skip


def shapes(torch: Any) -> list[Any]:
    x = torch.arange(12.0).reshape(3, 4)
    return [
        x, x.shape, x.view(4, 3), x.t(), x.T, x.transpose(0, 1), x.permute(1, 0),
        x.unsqueeze(0).shape, x.unsqueeze(0).squeeze(), x.flatten(), x[0], x[:, 1], x[1:, ::2],
        x[..., None].shape, x[-1, -1], x.split(2, dim=1), x.chunk(3), torch.cat([x, x]),
        torch.stack([x, x], dim=1).shape, x.reshape(-1, 6), x[0].expand(2, 4), x.size(1),
        x.dim(), x.numel(), len(x), x.ndim, torch.ones(2, 3).dtype,
        torch.zeros(2, dtype=torch.int64), torch.full((2,), 7), torch.eye(2),
        torch.linspace(0, 1, 5), torch.ones_like(x[0]),
    ]  # fmt: skip


def autograd(torch: Any) -> list[Any]:
    # Shown as it goes: a .grad proxy refers to the tensor's current grad (see README), so
    # after x.grad = None an old one is not PyTorch's old tensor.
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = torch.tensor([[0.5, -1.0, 2.0]], requires_grad=True)
    before = x.grad
    y = (w @ x).sum() * 2
    z = x * 3
    z.retain_grad()
    (y + z.sum()).backward()
    shown = show([before, x.grad, w.grad, z.grad, y.grad_fn, y.is_leaf, x.is_leaf])
    g = x.grad
    g.zero_()
    with torch.no_grad():
        frozen = x * 2
    shown += show([g, x.grad, frozen, frozen.requires_grad, frozen.grad_fn])
    (gx,) = torch.autograd.grad((x**3).sum(), x)
    u = x.detach()
    shown += show([gx, u, u.requires_grad, x.grad is not None])
    x.grad = None
    shown += show([x.grad, x.requires_grad_(False), x.detach().requires_grad_()])
    q = torch.tensor(2.0, requires_grad=True)
    (dq,) = torch.autograd.grad(q**3, q, create_graph=True)
    dq.backward()
    return shown + show([dq, q.grad])


def conversions(torch: Any) -> list[Any]:
    x = torch.tensor([[1.5, -2.0], [0.25, 4.0]])
    s = x.sum()
    return [
        x.tolist(), s.item(), float(s), int(s), bool(s > 0), bool(torch.tensor([0.0])),
        x.numpy(), x[0].numpy(), torch.arange(3).tolist(), x.dtype, x.shape, x.is_floating_point(),
        torch.tensor(True), torch.tensor([1, 2]).dtype, torch.tensor(3).item(),
        f"{s:.3f}", x.double().dtype, x.long(), x.float() is x, x.device,
    ]  # fmt: skip


def inplace(torch: Any) -> list[Any]:
    x = torch.zeros(3)
    x.add_(2)
    x.mul_(torch.tensor([1.0, 2.0, 3.0]))
    x += 1
    x -= torch.ones(3)
    y = x.clone()
    x.zero_()
    w = torch.ones(2, requires_grad=True)
    with torch.no_grad():
        w.sub_(0.5)
    return [x, y, w, w.is_leaf, w.grad_fn]


PROGRAMS: list[Program] = [arithmetic, reductions, shapes, autograd, conversions, inplace]


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("eager", [False, True], ids=["lazy", "eager"])
def test_program_shows_what_torch_shows(
    client: gradserve.Client, program: Program, eager: bool
) -> None:
    expected = show(program(real))
    with client.session(eager=eager) as torch:
        assert show(program(torch)) == expected


def test_grad_of_tensor_without_grad_is_none_without_asking(torch: gradserve.Session) -> None:
    x = torch.arange(4.0)
    x.requires_grad_(True)
    torch.flush()
    before = torch.round_trips
    assert x.grad is None
    assert torch.ones(2).grad is None
    assert torch.round_trips == before


def test_grad_zero_is_in_place_on_the_server(torch: gradserve.Session) -> None:
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    g = x.grad
    assert g.tolist() == [2.0, 4.0]
    assert g.zero_() is g
    assert x.grad.tolist() == [0.0, 0.0]
    (x * x).sum().backward()
    assert g.tolist() == [2.0, 4.0]  # the same server grad, accumulated into


def test_inferred_metadata_is_the_servers(torch: gradserve.Session) -> None:
    """What the client says before a batch runs equals what the server reports after."""
    x = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    i = torch.arange(3)
    made = [
        x + 1, 2 * x, x / i, i / 2, i * 2, i + True, x.sum(), i.sum(), x.mean(1), x.norm(dim=1),
        x.t(), x.T, x.reshape(3, 1), x.unsqueeze(-1), x.squeeze(0), x.flatten(), x.expand(2, 3),
        x @ x.t(), x.t() @ x, x[0], x[:, 1:], x[..., None], x.max(), x.argmax(1), x.exp(),
        i.exp(), x > 1, torch.cat([x, x]), torch.stack([x, x], 2), x.softmax(1), x.detach(),
        torch.zeros(2, 3), torch.full((2,), True), i.float(), x.permute(1, 0), x.transpose(0, 1),
        x.clamp(0, 1), torch.where(x > 1, x, 0.0), torch.ones_like(i), x.prod(), i.prod(),
    ]  # fmt: skip
    guessed = [(t._m.shape, t._m.dtype, t._m.requires_grad) for t in made]
    assert all(g[0] is not None and g[1] is not None for g in guessed), guessed
    torch.flush()
    actual = [(tuple(t.shape), t.dtype.name, t.requires_grad) for t in made]
    for g, a in zip(guessed, actual, strict=True):
        assert g[0] == a[0] and g[1] == a[1] and g[2] in (None, a[2]), (g, a)


def test_no_grad_is_a_decorator_and_set_grad_enabled_switches_now(torch: gradserve.Session) -> None:
    x = torch.ones(2, requires_grad=True)

    @torch.no_grad()
    def double(t: Any) -> Any:
        return t * 2

    assert double(x).requires_grad is False
    assert torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    assert (x * 2).requires_grad is False
    torch.set_grad_enabled(True)
    with torch.set_grad_enabled(False):
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()


def test_allow_unused_grads_are_none(torch: gradserve.Session) -> None:
    x = torch.tensor(2.0, requires_grad=True)
    w = torch.tensor(3.0, requires_grad=True)
    gx, gw = torch.autograd.grad(x * x, [x, w], allow_unused=True)
    assert gw is None
    assert gx.item() == 4.0
