"""Sessions: the manager, tokens, expiry, limits, isolation, the command vocabulary, and the
seed notebook as commands. Batches as transactions: test_session_batches.py; threads and
memory: test_session_load.py."""

from __future__ import annotations

import base64
import math
import threading
import time
from typing import Any

import numpy
import pytest
import torch

from engine import creation
from engine.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
)
from engine.session import Limits, Session, SessionManager
from tests import seed
from tests.engine.session_state import (
    backward,
    create,
    fails,
    get,
    grad,
    op,
    open_session,
    run,
    snapshot,
    value,
)

# ----- the manager: ids, tokens, closing -----


def test_create_returns_an_opaque_id_and_a_long_random_token(manager: SessionManager) -> None:
    pairs = [manager.create() for _ in range(200)]
    ids = {i for i, _ in pairs}
    tokens = {t for _, t in pairs}
    assert len(ids) == len(tokens) == 200
    for session_id, token in pairs:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert len(raw) * 8 >= 128
        assert len(session_id) * 4 >= 128  # hex
        assert token not in session_id and session_id not in token
    assert manager.count() == 200


def test_wrong_tokens_and_unknown_ids_are_unauthenticated_alike(manager: SessionManager) -> None:
    session_id, token = manager.create()
    other_id, other_token = manager.create()
    bad = [
        (session_id, other_token),
        (session_id, token[:-1]),
        (session_id, token + "x"),
        (session_id, ""),
        (session_id, None),
        (session_id, b"bytes"),
        (session_id, "\udc80"),  # a lone surrogate, as JSON can carry
        ("0" * 32, token),
        (None, token),
        (["list"], token),
    ]
    messages = set()
    for sid, tok in bad:
        with pytest.raises(Unauthenticated) as info:
            manager.get(sid, tok)
        messages.add(str(info.value))
        with pytest.raises(Unauthenticated):
            manager.execute(sid, tok, [])
        with pytest.raises(Unauthenticated):
            manager.close(sid, tok)
    assert len(messages) == 1
    assert manager.count() == 2
    assert manager.get(other_id, other_token).id == other_id


def test_tokens_are_compared_in_constant_time(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    import engine.session

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(engine.session.hmac, "compare_digest", spy)
    session_id, token = manager.create()
    manager.get(session_id, token)
    with pytest.raises(Unauthenticated):
        manager.get(session_id, "wrong")
    with pytest.raises(Unauthenticated):
        manager.get("unknown", token)  # an unknown id costs a comparison too
    assert len(calls) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"device": "tpu"},
        {"device": "cuda:x"},
        {"device": 0},
        {"seed": -1},
        {"seed": 1.5},
        {"seed": True},
        {"seed": "1"},
        {"ttl": 0},
        {"ttl": -5},
        {"ttl": math.nan},
        {"ttl": math.inf},
        {"ttl": "60"},
        {"ttl": True},
        {"limits": Limits(max_bytes_per_session=0)},
        {"limits": Limits(max_commands_per_batch=1.5)},
    ],
)
def test_bad_session_parameters(manager: SessionManager, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        manager.create(**kwargs)
    assert manager.count() == 0


def test_session_parameters(manager: SessionManager) -> None:
    session = open_session(manager, seed=7, ttl=12.5, limits=Limits(max_tensors_per_session=2))
    assert (session.device, session.seed, session.ttl) == ("cpu", 7, 12.5)
    assert session.limits.max_tensors_per_session == 2
    assert session.limits.max_bytes_per_session == manager.limits.max_bytes_per_session
    looser = open_session(manager, limits=Limits(max_elements_per_tensor=1 << 40))
    assert looser.limits == manager.limits  # a session may tighten limits, never loosen them
    default = open_session(manager, device=None)
    assert default.ttl == 1800.0 and default.device == "cpu"  # 30 minutes idle by default


def test_close_frees_the_session_and_its_token(manager: SessionManager) -> None:
    session_id, token = manager.create()
    session = manager.get(session_id, token)
    run(session, create("x", [1.0, 2.0]))
    manager.close(session_id, token)
    assert manager.count() == 0
    assert session.closed and session.tensors == {}
    with pytest.raises(Unauthenticated):
        manager.get(session_id, token)
    with pytest.raises(Unauthenticated):
        manager.close(session_id, token)
    with pytest.raises(NotFound):  # a stale handle cannot run anything
        run(session, get("x"))


def test_close_waits_for_the_batch_in_flight(manager: SessionManager) -> None:
    session_id, token = manager.create()
    session = manager.get(session_id, token)
    session.lock.acquire()  # a batch is running
    closer = threading.Thread(target=manager.close, args=(session_id, token))
    closer.start()
    time.sleep(0.05)
    assert closer.is_alive() and not session.closed
    session.lock.release()
    closer.join(5)
    assert not closer.is_alive() and session.closed


# ----- expiry -----


def test_idle_sessions_expire_and_use_resets_the_clock(manager: SessionManager) -> None:
    idle = open_session(manager, ttl=10)
    used = open_session(manager, ttl=10)
    start = idle.last_used
    run(used, create("x", 1.0))
    assert manager.expire(now=start + 5) == 0
    used.last_used = start + 8  # used again at +8
    assert manager.expire(now=start + 10.5) == 1
    assert idle.closed and not used.closed
    assert manager.expire(now=start + 18) == 0
    assert manager.expire(now=start + 18.5) == 1
    assert used.closed and used.tensors == {} and manager.count() == 0


def test_a_session_running_a_batch_does_not_expire(manager: SessionManager) -> None:
    session = open_session(manager, ttl=1)
    with session.lock:
        assert manager.expire(now=time.monotonic() + 100) == 0
    assert manager.expire(now=time.monotonic() + 100) == 1


def test_expiry_runs_in_the_background(manager: SessionManager) -> None:
    session_id, token = manager.create(ttl=0.6)
    session = manager.get(session_id, token)
    keep_id, keep_token = manager.create()
    run(session, create("x", [1.0] * 100))
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # every use resets the TTL
        run(session, get("x"))
        time.sleep(0.05)
    assert not session.closed
    deadline = time.monotonic() + 10
    while manager.count() > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert session.closed and session.tensors == {}
    with pytest.raises(Unauthenticated):
        manager.get(session_id, token)
    assert manager.get(keep_id, keep_token).tensors == {}


# ----- limits -----


def test_session_count_limit(manager: SessionManager) -> None:
    small = SessionManager(Limits(max_sessions=3), sweep_interval=60)
    try:
        ids = [small.create() for _ in range(3)]
        with pytest.raises(ResourceExhausted) as info:
            small.create()
        assert "3 sessions" in str(info.value)
        small.close(*ids[0])
        small.create()
        assert small.count() == 3
    finally:
        small.shutdown()


def test_bytes_limit_counts_values(manager: SessionManager) -> None:
    s = open_session(manager, limits=Limits(max_bytes_per_session=4096))
    run(s, create("x", [0.0] * 1000))  # 4000 bytes of float32
    assert s.bytes_held() == 4000
    error = fails(s, ResourceExhausted, create("y", [0.0] * 25))
    assert "4100 bytes" in str(error) and "4096" in str(error) and "per session" in str(error)
    run(s, create("x", [0.0] * 1024))  # rebinding frees the old value: exactly at the limit
    assert s.bytes_held() == 4096


def test_bytes_limit_counts_grads(manager: SessionManager) -> None:
    s = open_session(manager, limits=Limits(max_bytes_per_session=4096))
    run(s, create("x", [1.0] * 600, requires_grad=True), op("s", "sum", "x"))
    error = fails(s, ResourceExhausted, backward("s"))  # the grad would double 2400 bytes
    assert "4804 bytes" in str(error)
    assert grad(s, "x") is None


def test_bytes_limit_counts_saved_buffers(manager: SessionManager) -> None:
    s = open_session(manager, limits=Limits(max_bytes_per_session=8192))
    run(s, create("x", [1.0] * 500, requires_grad=True), op("y", "exp", "x"), op("t", "sum", "y"))
    assert s.bytes_held() == 4004
    run(s, {"kind": "release", "names": ["y", "x"]})  # t's graph keeps exp's output and x
    assert sorted(s.tensors) == ["t"] and s.bytes_held() == 4004
    error = fails(s, ResourceExhausted, create("z", [0.0] * 1100))
    assert "8404 bytes" in str(error)
    run(s, {"kind": "release", "names": ["t"]})
    assert s.bytes_held() == 0
    run(s, create("z", [0.0] * 1100))


def test_bytes_counts_a_view_once_and_a_grad_graph(manager: SessionManager) -> None:
    s = open_session(manager)
    run(s, create("x", [[1.0, 2.0], [3.0, 4.0]], requires_grad=True))
    run(s, op("v", "reshape", "x", shape=[4]), op("t", "transpose", "x", dim0=0, dim1=1))
    assert s.bytes_held() == 16
    run(s, op("c", "pow", "x", 3), op("L", "sum", "c"), backward("L", create_graph=True))
    held = s.bytes_held()
    run(s, {"kind": "release", "names": ["c", "L"]})  # x.grad's graph still saves x and 3x^2
    assert s.bytes_held() >= 16 * 3
    assert s.bytes_held() <= held


def test_tensor_count_limit(manager: SessionManager) -> None:
    s = open_session(manager, limits=Limits(max_tensors_per_session=3))
    run(s, create("a", 1.0), create("b", 2.0), create("c", [1.0, 2.0]))
    error = fails(s, ResourceExhausted, create("d", 3.0))
    assert "4 tensors" in str(error) and "3" in str(error)
    fails(s, ResourceExhausted, op(None, "neg", "a"))  # auto-named results count too
    split = {**op(None, "split", "c", 1), "names": ["p", "q"]}
    fails(s, ResourceExhausted, split, create("e", 0), index=0)
    run(s, create("a", 5.0))  # rebinding a name is no new tensor
    run(s, {"kind": "release", "names": ["a"]}, create("d", 3.0))
    assert sorted(s.tensors) == ["b", "c", "d"]


def test_elements_per_tensor_limit(manager: SessionManager) -> None:
    s = open_session(manager, limits=Limits(max_elements_per_tensor=100))
    run(s, create("v", list(range(11)), dtype="float32"))
    too_big = [
        create("x", [0.0] * 101),
        {"kind": "create", "factory": "zeros", "args": [[11, 10]]},
        {"kind": "create", "factory": "ones", "args": [101]},
        {"kind": "create", "factory": "full", "args": [[5, 5, 5], 1.0]},
        {"kind": "create", "factory": "randn", "args": [[10**12]]},  # checked before allocating
        {"kind": "create", "factory": "eye", "args": [11]},  # 121 elements
        {"kind": "create", "factory": "eye", "args": [2, 51]},
        {"kind": "create", "factory": "arange", "args": [0, 1010, 10]},
        {"kind": "create", "factory": "linspace", "args": [0, 1, 101]},
        op(None, "outer", "v", "v"),
        op(None, "expand", "v", shape=[10**6, 11]),
    ]
    for body in too_big:
        error = fails(s, ResourceExhausted, body)
        assert "per tensor" in str(error) and "100" in str(error), body
    run(s, {"kind": "create", "factory": "eye", "args": [10]})


def test_commands_per_batch_limit(manager: SessionManager) -> None:
    s = open_session(manager, limits=Limits(max_commands_per_batch=5))
    before = snapshot(s)
    with pytest.raises(ResourceExhausted) as info:
        run(s, *[create(f"t{i}", 1.0) for i in range(6)])
    assert "6 commands" in str(info.value) and "5" in str(info.value)
    assert info.value.command_index is None
    assert snapshot(s) == before
    run(s, *[create(f"t{i}", 1.0) for i in range(5)])


def test_out_of_memory_is_resource_exhausted(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory(*args: Any, **kwargs: Any) -> None:
        raise MemoryError("Unable to allocate 4.00 TiB")

    run(session, create("x", 1.0))
    monkeypatch.setattr(creation, "zeros", no_memory)
    fails(session, ResourceExhausted, create("y", 2.0), {"kind": "create", "factory": "zeros"})


def test_one_sessions_failures_never_touch_another(manager: SessionManager) -> None:
    small = open_session(manager, limits=Limits(max_bytes_per_session=64))
    other = open_session(manager)
    run(other, create("x", [1.0, 2.0], requires_grad=True), op("y", "sum", "x"), backward("y"))
    before = snapshot(other)
    fails(small, ResourceExhausted, create("x", [0.0] * 100))
    fails(small, NotFound, get("y"))
    assert snapshot(other) == before
    run(other, op("z", "mul", "x", 2.0))


# ----- isolation -----


def test_sessions_cannot_reach_each_others_tensors(manager: SessionManager) -> None:
    a_id, a_token = manager.create()
    b_id, b_token = manager.create()
    a, b = manager.get(a_id, a_token), manager.get(b_id, b_token)
    run(a, create("secret", [1.0, 2.0, 3.0], requires_grad=True), op(None, "sum", "secret"))
    run(a, backward("%1"))
    run(b, create("mine", [5.0, 5.0, 5.0]))
    a_before, b_before = snapshot(a), snapshot(b)
    guesses = [
        get("secret", value=True),
        get("%1", value=True),
        get({"grad_of": "secret"}, grad=True),
        op(None, "add", "secret", 1.0),
        op(None, "index", "mine", key=[{"tensor": "secret"}]),
        {"kind": "create", "factory": "zeros_like", "args": ["secret"]},
        {"kind": "release", "names": ["secret"]},
        {"kind": "zero_grad", "tensors": ["secret"]},
        backward("%1"),
        {"kind": "detach", "tensor": "secret", "name": "stolen"},
    ]
    for body in guesses:
        fails(b, NotFound, body)
    with pytest.raises(Unauthenticated):
        manager.get(a_id, b_token)
    assert snapshot(a) == a_before and snapshot(b) == b_before
    # The same name in two sessions is two tensors.
    run(b, create("secret", [9.0]))
    assert value(a, "secret").tolist() == [1.0, 2.0, 3.0]
    assert value(b, "secret").tolist() == [9.0]


def test_results_are_copies(session: Session) -> None:
    run(session, create("x", [1.0, 2.0]))
    got = value(session, "x")
    got[0] = 100.0
    assert value(session, "x").tolist() == [1.0, 2.0]


# ----- the command vocabulary -----


def test_factories_match_torch(session: Session) -> None:
    cases: list[tuple[dict[str, Any], torch.Tensor]] = [
        ({"factory": "arange", "args": [4.0]}, torch.arange(4.0)),
        ({"factory": "arange", "args": [1, 7, 2]}, torch.arange(1, 7, 2)),
        ({"factory": "zeros", "args": [2, 3]}, torch.zeros(2, 3)),
        ({"factory": "ones", "args": [[3]], "dtype": "int64"}, torch.ones(3, dtype=torch.int64)),
        ({"factory": "full", "args": [[2], 7]}, torch.full((2,), 7)),
        ({"factory": "empty", "args": [[0]]}, torch.empty(0)),
        ({"factory": "eye", "args": [2, 3]}, torch.eye(2, 3)),
        ({"factory": "linspace", "args": [0, 1, 5]}, torch.linspace(0, 1, 5)),
        ({"factory": "zeros_like", "args": ["m"]}, torch.zeros(2, 2, dtype=torch.float64)),
        ({"factory": "ones_like", "args": ["m"], "dtype": "float32"}, torch.ones(2, 2)),
        (
            {"factory": "full_like", "args": ["m", 2.5]},
            torch.full((2, 2), 2.5, dtype=torch.float64),
        ),
        ({"data": [[True, False]]}, torch.tensor([[True, False]])),
        ({"data": 3}, torch.tensor(3)),
    ]
    run(session, create("m", [[1.0, 2.0], [3.0, 4.0]], dtype="float64"))
    for body, expected in cases:
        info = run(session, {"kind": "create", **body})[0].tensors[0]
        assert info is not None
        got = value(session, info.name)
        assert info.dtype == str(expected.dtype).removeprefix("torch."), body
        numpy.testing.assert_array_equal(got, expected.numpy())


def test_random_factories_use_the_sessions_generator(manager: SessionManager) -> None:
    one, two, other = (open_session(manager, seed=s) for s in (42, 42, 7))
    body = {"kind": "create", "factory": "randn", "args": [[3]], "requires_grad": True}
    draws = [[value(s, run(s, body)[0].tensors[0].name) for _ in range(2)] for s in (one, two)]
    numpy.testing.assert_array_equal(draws[0][0], draws[1][0])  # same seed, same values
    numpy.testing.assert_array_equal(draws[0][1], draws[1][1])
    assert not numpy.array_equal(draws[0][0], draws[0][1])  # the state advances
    reference = creation.Generator(42)
    numpy.testing.assert_array_equal(draws[0][0], reference.normal((3,), numpy.dtype("float32")))
    other_draw = value(other, run(other, body)[0].tensors[0].name)
    assert not numpy.array_equal(other_draw, draws[0][0])
    u = value(
        one, run(one, {"kind": "create", "factory": "rand", "args": [100]})[0].tensors[0].name
    )
    assert ((u >= 0) & (u < 1)).all()


def test_a_small_model_matches_torch(session: Session) -> None:
    x0 = [[1.0, -2.0, 0.5], [0.3, 0.1, -1.0]]
    w0 = [[0.5, -1.0], [2.0, 0.25], [-0.5, 1.5]]
    run(
        session,
        create("x", x0, requires_grad=True),
        create("w", w0, requires_grad=True),
        op("h", "matmul", "x", "w"),
        op("a", "tanh", "h"),
        op("p", "softmax", "a", dim=1),
        op("L", "mean", "p"),
        op("L", "mul", "L", "L"),
        backward("L"),
    )
    x, w = torch.tensor(x0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    loss = (x @ w).tanh().softmax(dim=1).mean()
    (loss * loss).backward()
    numpy.testing.assert_allclose(grad(session, "x"), x.grad.numpy(), rtol=1e-5, atol=1e-7)
    numpy.testing.assert_allclose(grad(session, "w"), w.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_op_inputs_names_scalars_grads_and_lists(session: Session) -> None:
    run(session, create("x", [1.0, 2.0, 3.0], requires_grad=True))
    run(session, op("y", "mul", "x", "x"), op("s", "sum", "y"), backward("s"))
    results = run(
        session,
        op("g2", "mul", {"grad_of": "x"}, 0.5),  # a grad as an op input
        op("both", "cat", ["x", {"grad_of": "x"}]),
        op("st", "stack", ["x", "x"], dim=1),
        {"kind": "create", "factory": "zeros_like", "args": [{"grad_of": "x"}], "name": "z"},
        {"kind": "detach", "tensor": {"grad_of": "x"}, "name": "gd"},
        {**op(None, "split", "x", 2), "names": ["head", "tail"]},
        {**op("k", "add", "x", 1.0), "no_grad": True},
        op("sel", "index", "x", key=[{"slice": [0, 2]}]),
        op(None, "max", "x", 0),  # values and indices: two auto-named results
    )
    assert value(session, "g2").tolist() == [1.0, 2.0, 3.0]
    assert value(session, "both").tolist() == [1.0, 2.0, 3.0, 2.0, 4.0, 6.0]
    assert value(session, "st").shape == (3, 2)
    assert value(session, "z").tolist() == [0.0, 0.0, 0.0]
    assert value(session, "head").tolist() == [1.0, 2.0] and value(session, "tail").tolist() == [
        3.0
    ]
    assert results[6].tensors[0].requires_grad is False
    assert results[7].tensors[0].grad_fn == "SliceBackward0"
    assert [t.name for t in results[8].tensors] == ["%1", "%2"]
    fails(session, InvalidArgument, op("mx", "max", "x", 0))  # two results, one name


def test_a_grad_can_stand_wherever_a_tensor_can(session: Session) -> None:
    run(session, create("x", [1.0, 2.0], requires_grad=True), op("c", "pow", "x", 3))
    run(session, op("L", "sum", "c"), backward("L", create_graph=True))  # x.grad = 3x^2
    assert value(session, {"grad_of": "x"}).tolist() == [3.0, 12.0]
    run(session, create("x2", [1.0, 2.0], requires_grad=True), op("q", "mul", "x2", "x2"))
    run(session, create("seedg", [1.0, 1.0]))
    # backward through a grad, seeded by another tensor's grad
    run(
        session,
        op("gs", "sum", {"grad_of": "x"}),
        {"kind": "grad", "outputs": ["gs"], "inputs": ["x"], "names": ["gg"]},
    )
    assert value(session, "gg").tolist() == [6.0, 12.0]  # d/dx sum(3x^2) = 6x
    run(session, backward("q", gradient={"grad_of": "x"}))  # dq/dx2 . grad = 2x2 * 3x^2
    assert grad(session, "x2").tolist() == [6.0, 48.0]


def test_in_place_ops_keep_names_and_can_alias(session: Session) -> None:
    run(session, create("v", [1.0, 2.0]))
    results = run(session, op(None, "add_", "v", 1.0), op("alias", "mul_", "v", 2.0))
    assert [r.tensors[0].name for r in results] == ["v", "alias"]
    assert session.tensors["alias"] is session.tensors["v"]
    assert value(session, "v").tolist() == [4.0, 6.0]
    assert sorted(session.tensors) == ["alias", "v"]


def test_backward_grad_and_their_options(session: Session) -> None:
    run(
        session,
        create("x", [1.0, 2.0], requires_grad=True),
        create("w", [3.0, 4.0], requires_grad=True),
        op("y", "mul", "x", "w"),
        op("s", "sum", "y"),
    )
    run(session, backward("s", retain_graph=True, inputs=["x"]))
    assert grad(session, "x").tolist() == [3.0, 4.0] and grad(session, "w") is None
    run(session, backward("s"))
    assert grad(session, "x").tolist() == [6.0, 8.0] and grad(session, "w").tolist() == [1.0, 2.0]
    error = fails(session, FailedPrecondition, backward("s"))
    assert str(error).startswith("Trying to backward through the graph a second time")
    run(
        session,
        op("y2", "mul", "x", "w"),
        op("s2", "sum", "y2"),
        create("u", 0.0, requires_grad=True),
    )
    results = run(
        session,
        {
            "kind": "grad",
            "outputs": ["s2"],
            "inputs": ["w", "u"],
            "allow_unused": True,
            "names": ["gw", "gu"],
        },
    )
    assert results[0].tensors[1] is None and value(session, "gw").tolist() == [1.0, 2.0]
    assert "gu" not in session.tensors


def test_detach_zero_grad_requires_grad_retain_grad(session: Session) -> None:
    run(session, create("x", [1.0, 2.0], requires_grad=True), op("y", "mul", "x", 2.0))
    run(session, {"kind": "retain_grad", "tensor": "y"}, op("s", "sum", "y"))
    run(session, {"kind": "detach", "tensor": "y", "name": "d"}, backward("s"))
    assert grad(session, "y").tolist() == [1.0, 1.0]
    d = run(session, get("d"))[0].tensors[0]
    assert d is not None and (d.requires_grad, d.is_leaf, d.grad_fn) == (False, True, None)
    run(session, op(None, "add_", "d", 1.0))  # a detached tensor shares memory and version
    assert value(session, "y").tolist() == [3.0, 5.0]
    run(session, {"kind": "zero_grad", "tensors": ["x"]})
    assert grad(session, "x").tolist() == [0.0, 0.0]
    run(session, {"kind": "zero_grad", "tensors": ["x", "y"], "set_to_none": True})
    assert grad(session, "x") is None and grad(session, "y") is None
    info = run(session, {"kind": "requires_grad", "tensor": "x", "requires_grad": False})
    assert info[0].tensors[0].requires_grad is False
    fails(
        session,
        FailedPrecondition,
        {"kind": "requires_grad", "tensor": "y", "requires_grad": False},
    )
    run(session, create("i", [1, 2]))
    fails(session, InvalidArgument, {"kind": "requires_grad", "tensor": "i"})
    fails(session, FailedPrecondition, {"kind": "retain_grad", "tensor": "i"})


def test_get_reports_metadata_and_what_was_asked(session: Session) -> None:
    run(session, create("x", [1.0, 2.0], requires_grad=True), op("y", "mul", "x", 3.0))
    run(session, op("s", "sum", "y"), backward("s"))
    plain, full = (
        r.tensors[0] for r in run(session, get("x"), get("x", value=True, grad=True, repr=True))
    )
    assert plain is not None and full is not None
    assert (plain.value, plain.grad, plain.repr) == (None, None, None)
    assert (plain.shape, plain.dtype, plain.requires_grad, plain.is_leaf, plain.has_grad) == (
        (2,),
        "float32",
        True,
        True,
        True,
    )
    assert full.value.tolist() == [1.0, 2.0] and full.grad.tolist() == [3.0, 3.0]
    assert full.repr == "tensor([1., 2.], requires_grad=True)"
    y = run(session, get("y", repr=True))[0].tensors[0]
    assert y is not None and y.grad_fn == "MulBackward0" and not y.is_leaf
    assert y.repr == "tensor([3., 6.], grad_fn=<MulBackward0>)"
    assert run(session, get({"grad_of": "x"}))[0].tensors[0].name == "x.grad"


def test_release(session: Session) -> None:
    run(session, create("a", 1.0), create("b", 2.0), op(None, "neg", "a"))
    results = run(session, {"kind": "release", "names": ["a", "%1"]})
    assert results[0].kind == "release" and results[0].tensors == ()
    assert sorted(session.tensors) == ["b"]
    fails(session, NotFound, {"kind": "release", "names": ["b", "a"]})
    assert sorted(session.tensors) == ["b"]


# ----- the seed notebook, as commands -----


class Shown(str):
    """A repr string that displays as itself (for ``seed.display``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def test_seed_notebook_as_commands(session: Session) -> None:
    shown: dict[str, str] = {}

    def cell(label: str, *bodies: dict[str, Any], show: tuple[Any, ...] = ()) -> None:
        results = run(session, *bodies, *(get(ref, repr=True) for ref in show))
        reprs = [Shown(r.tensors[0].repr) for r in results[len(bodies) :]]
        shown[label] = (
            "" if not reprs else seed.display(reprs[0] if len(reprs) == 1 else tuple(reprs))
        )

    gx = {"grad_of": "x"}
    zero_gx = op(None, "zero_", gx)
    cell("In [1]")
    cell("In [2]", {"kind": "create", "factory": "arange", "args": [4.0], "name": "x"}, show=("x",))
    cell("In [3]", {"kind": "requires_grad", "tensor": "x"})
    assert run(session, get("x"))[0].tensors[0].has_grad is False
    cell("In [5]", op("t5", "dot", "x", "x"), show=("t5",))
    cell("In [4]", op("t4", "dot", "x", "x"), op("y", "mul", 2, "t4"), show=("y",))
    cell("In [6]", backward("y"), show=(gx,))
    cell("In [8]", op("t8", "mul", 4, "x"), show=(gx, "t8"))
    cell("In [9]", op("t9", "mul", 4, "x"), op("t9", "eq", gx, "t9"), show=("t9",))
    cell("In [10]", op("t10", "sum", "x"), show=("t10",))
    cell("In [11]", zero_gx, op("y", "sum", "x"), backward("y"), show=(gx,))
    cell("In [18]", op("t18", "mul", "x", "x"), show=("x", "t18"))
    cell(
        "In [20]",
        zero_gx,
        op("y", "mul", "x", "x"),
        {"kind": "create", "factory": "ones", "args": [4], "name": "ones"},
        backward("y", gradient="ones"),
        show=(gx,),
    )
    cell(
        "In [22]",
        op("t22", "sum", "y"),
        {"kind": "create", "factory": "ones", "args": [4], "name": "ones"},
        show=("t22", "ones"),
    )
    cell(
        "In [64]",
        zero_gx,
        op("y", "mul", "x", "x"),
        {"kind": "detach", "tensor": "y", "name": "u"},
        op("z", "mul", "u", "x"),
        op("zs", "sum", "z"),
        backward("zs"),
        op("t64", "eq", gx, "u"),
        show=("t64",),
    )
    cell("In [66]", show=("y", "z", "u", gx))
    cell(
        "In [67]",
        zero_gx,
        op("ys", "sum", "y"),
        backward("ys"),
        op("t67", "mul", 2, "x"),
        op("t67", "eq", gx, "t67"),
        show=("t67",),
    )
    cell("In [68]")  # def f(a): the loop runs on the client, one batch per test of b.norm()
    run(
        session,
        {"kind": "create", "factory": "randn", "args": [[]], "requires_grad": True, "name": "a"},
        create("a", 100.0, requires_grad=True),
        op("b", "mul", "a", 2),
    )
    while value(session, run(session, op("n", "norm", "b"))[0].tensors[0].name) < 1000:
        run(session, op("b", "mul", "b", 2))
    d = "b"  # c = b: the same tensor
    if value(session, run(session, op("bs", "sum", "b"))[0].tensors[0].name) <= 0:
        d = "c"
        run(session, op(d, "mul", 100, "b"))
    cell("In [79]", backward(d), show=("a", d))
    cell(
        "In [80]",
        op("q", "div", d, "a"),
        op("q", "eq", {"grad_of": "a"}, "q"),
        show=("q", {"grad_of": "a"}),
    )
    expected = {c.label: c.output for c in seed.cells()}
    assert shown == expected


@pytest.mark.parametrize(
    "internal", ["index_backward", "matmul_batched", "pow_scalar", "rpow", "rsub", "getitem"]
)
def test_internal_primitives_are_not_in_the_command_vocabulary(
    session: Session, internal: str
) -> None:
    """Commands reach the public ops (``sub``, ``pow``, ``matmul``, ``index``), not their parts."""
    run(session, {"kind": "create", "data": [1.0, 2.0], "name": "x"})
    with pytest.raises(InvalidArgument, match=f"unknown op '{internal}'"):
        run(session, {"kind": "op", "op": internal, "inputs": ["x", 2]})


def test_closing_and_expiring_give_host_memory_back(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.session as session_module

    calls: list[int] = []
    monkeypatch.setattr(session_module, "release_host_memory", lambda: calls.append(1))
    closed = manager.create()
    manager.close(*closed)
    assert calls == [1]
    expiring = manager.get(*manager.create(ttl=0.01))
    time.sleep(0.05)
    manager.expire()  # the background sweeper may have been first
    assert expiring.closed
    assert calls == [1, 1]
