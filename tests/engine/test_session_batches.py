"""Batches are transactions: a failed batch leaves the session exactly as it was before."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import creation
from engine.commands import FACTORIES, KINDS
from engine.errors import (
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from engine.ops.registry import OPS
from engine.parsing import parse_batch
from engine.session import Limits, Session, SessionManager
from tests.engine.session_state import (
    backward,
    create,
    fails,
    get,
    grad,
    op,
    open_session,
    reference_bytes,
    run,
    snapshot,
    value,
)


@pytest.fixture(scope="module")
def small() -> Iterator[SessionManager]:
    """Module-scoped (hypothesis cannot take function-scoped fixtures), with small limits."""
    m = SessionManager(
        Limits(max_elements_per_tensor=10_000, max_bytes_per_session=4 << 20), sweep_interval=60
    )
    yield m
    m.shutdown()


SETUP = [
    {"kind": "create", "factory": "randn", "args": [[3]], "requires_grad": True, "name": "x"},
    create("w", [0.5, -1.0, 2.0], requires_grad=True),
    op("y", "mul", "x", "w"),
    op("h", "tanh", "y"),
    {"kind": "retain_grad", "tensor": "h"},
    op("loss", "sum", "h"),
    backward("loss", retain_graph=True),
    create("keep", [1.0, 2.0, 3.0]),
    op("view", "reshape", "keep", shape=[3, 1]),
    create("keepg", [1.0, 1.0, 1.0], requires_grad=True),
    op("kl", "sum", "keepg"),
    backward("kl"),
]


def rich_session(manager: SessionManager) -> Session:
    """A session with leaves, grads, a retained graph, a retained non-leaf grad and a view."""
    session = open_session(manager, seed=3)
    run(session, *SETUP)
    return session


# ----- every kind of mutation is undone -----


def test_names_auto_names_and_rebinding_are_undone(small: SessionManager) -> None:
    s = rich_session(small)
    fails(
        s,
        NotFound,
        create("new", 1.0),
        create("x", [9.0, 9.0, 9.0]),  # rebinding
        op(None, "neg", "w"),  # an auto name
        {"kind": "release", "names": ["loss"]},
        get("missing"),
    )
    assert run(s, op(None, "neg", "w"))[0].tensors[0].name == "%1"  # the counter was restored


def test_rng_state_is_undone(small: SessionManager) -> None:
    s = rich_session(small)
    expected = creation.Generator(3)
    expected.normal((3,), numpy.dtype("float32"))  # x's draw
    randn = {"kind": "create", "factory": "randn", "args": [[4]], "name": "r"}
    fails(s, NotFound, randn, randn, get("missing"))
    numpy.testing.assert_array_equal(
        value(s, run(s, randn)[0].tensors[0].name), expected.normal((4,), numpy.dtype("float32"))
    )


def test_a_failed_batch_keeps_the_draws_of_the_batches_before_it(small: SessionManager) -> None:
    # The state is saved by a batch's first draw: a batch that draws nothing and fails must
    # not go back to what an earlier batch saved, and a draw after it continues the sequence.
    s = rich_session(small)
    expected = creation.Generator(3)
    expected.normal((3,), numpy.dtype("float32"))  # x's draw
    randn = {"kind": "create", "factory": "randn", "args": [[4]], "name": "r"}
    draws = []
    for _ in range(2):
        draws.append(value(s, run(s, randn)[0].tensors[0].name))
        fails(s, NotFound, op(None, "neg", "x"), get("missing"))
    fails(s, NotFound, randn, get("missing"))
    draws.append(value(s, run(s, randn)[0].tensors[0].name))
    for draw in draws:
        numpy.testing.assert_array_equal(draw, expected.normal((4,), numpy.dtype("float32")))


def test_in_place_writes_through_views_and_grads_are_undone(small: SessionManager) -> None:
    s = rich_session(small)
    fails(
        s,
        NotFound,
        op(None, "add_", "keep", 1.0),
        op(None, "mul_", "view", 10.0),  # writes keep's memory too, bumps the shared version
        op(None, "zero_", {"grad_of": "keepg"}),
        op(None, "copy_", "keep", "w"),
        get("missing"),
    )
    assert value(s, "keep").tolist() == [1.0, 2.0, 3.0]
    assert s.tensors["keep"].version == s.tensors["view"].version == 0


def test_backward_grads_and_freed_buffers_are_undone(small: SessionManager) -> None:
    s = rich_session(small)
    grads = grad(s, "x"), grad(s, "w"), grad(s, "h")
    fails(
        s,
        NotFound,
        {"kind": "grad", "outputs": ["loss"], "inputs": ["x"], "create_graph": True},
        backward("loss"),  # accumulates into x, w and h, and frees the graph's buffers
        get("missing"),
    )
    run(s, backward("loss"))  # the buffers are back: the graph runs again
    for name, before in zip(("x", "w", "h"), grads, strict=True):
        numpy.testing.assert_allclose(grad(s, name), 2 * before)


def test_flags_and_grads_set_to_none_are_undone(small: SessionManager) -> None:
    s = rich_session(small)
    fails(
        s,
        NotFound,
        {"kind": "requires_grad", "tensor": "keep"},
        {"kind": "requires_grad", "tensor": "keepg", "requires_grad": False},
        {"kind": "retain_grad", "tensor": "y"},
        {"kind": "zero_grad", "tensors": ["x", "h"], "set_to_none": True},
        {"kind": "detach", "tensor": "y", "name": "d"},
        get("missing"),
    )


def test_a_command_that_fails_half_way_is_undone(small: SessionManager) -> None:
    s = rich_session(small)
    fails(s, NotFound, {"kind": "release", "names": ["keep", "missing"]})
    fails(s, NotFound, {"kind": "zero_grad", "tensors": ["keepg", "missing"]})
    fails(s, InvalidArgument, {**op(None, "add_", "keep", 1.0), "names": ["p", "q"]})
    fails(s, InvalidArgument, op(None, "add_", "view", 1.0, alpha="x"))


def test_the_bytes_check_undoes_the_batch(small: SessionManager) -> None:
    s = open_session(small, limits=Limits(max_bytes_per_session=1000))
    run(s, create("x", [0.0] * 200))
    fails(s, ResourceExhausted, create("y", [0.0] * 200), op(None, "add_", "x", 1.0), index=0)


def test_a_batch_stops_soon_after_it_crosses_the_bytes_limit(small: SessionManager) -> None:
    """Bytes are checked again every eighth of the limit a batch binds, not only at its end:
    a batch of 400 kB of tensors under a 40 kB limit fails at its fifth 10 kB tensor."""
    s = open_session(small, limits=Limits(max_bytes_per_session=40_000))
    zeros = {"kind": "create", "factory": "zeros", "args": [[50, 50]]}  # 10 kB of float32
    error = fails(s, ResourceExhausted, *[{**zeros, "name": f"z{i}"} for i in range(40)], index=4)
    assert "50000 bytes" in str(error)


def test_an_unexpected_error_is_undone_too(
    small: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(t: Any) -> Any:
        t.write_(t.data * 0)
        raise KeyError("a bug")

    monkeypatch.setitem(OPS, "broken", broken)
    s = rich_session(small)
    before = snapshot(s)
    with pytest.raises(KeyError):
        run(s, create("n", 1.0), op(None, "broken", "keep"))
    assert snapshot(s) == before


# ----- the property: any batch, failing anywhere, changes nothing -----

POOL = ["x", "w", "y", "h", "loss", "a", "b"]  # the first five exist after SETUP
name = st.sampled_from(POOL)
ref = name | st.sampled_from([{"grad_of": "x"}, {"grad_of": "w"}, {"grad_of": "h"}])
scalar = st.sampled_from([0.5, 2.0, -1.0, 3])
flag = st.booleans()


def _random(factory: str, requires_grad: bool, target: str) -> dict[str, Any]:
    return {
        "kind": "create",
        "factory": factory,
        "args": [[3]],
        "requires_grad": requires_grad,
        "name": target,
    }


def _grad(of: str) -> dict[str, Any]:
    return {
        "kind": "grad",
        "outputs": ["loss"],
        "inputs": [of],
        "retain_graph": True,
        "allow_unused": True,
        "names": ["a"],
    }


UNARY = st.sampled_from(["exp", "tanh", "neg", "abs"])
BINARY = st.sampled_from(["add", "mul", "sub"])
DATA = st.lists(st.integers(-3, 3).map(float), min_size=3, max_size=3)
COMMANDS = st.one_of(
    st.builds(_random, st.sampled_from(["rand", "randn"]), flag, name),
    st.builds(lambda d, rg, n: create(n, d, requires_grad=rg), DATA, flag, name),
    st.builds(lambda o, r, n: op(n, o, r), UNARY, ref, name),
    st.builds(lambda o, a, b, n: op(n, o, a, b), BINARY, ref, ref | scalar, name),
    st.builds(lambda o, r: op("loss", o, r), st.sampled_from(["sum", "mean"]), ref),
    st.builds(lambda o, n, v: op(None, o, n, v), st.sampled_from(["add_", "mul_"]), name, scalar),
    st.builds(lambda r: backward("loss", retain_graph=r), flag),
    st.builds(_grad, st.sampled_from(["x", "w"])),
    st.builds(lambda r, n: {"kind": "detach", "tensor": r, "name": n}, ref, name),
    st.builds(lambda n, f: {"kind": "zero_grad", "tensors": [n], "set_to_none": f}, name, flag),
    st.builds(lambda n, f: {"kind": "requires_grad", "tensor": n, "requires_grad": f}, name, flag),
    st.builds(lambda n: {"kind": "retain_grad", "tensor": n}, name),
    st.builds(lambda r: get(r, value=True, grad=True, repr=True), ref),
    st.builds(lambda n: {"kind": "release", "names": [n]}, name),
)

# Each fails wherever it stands, whatever ran before it (nothing random touches "keep").
FAILURES = [
    get("missing"),
    op(None, "no_such_op", "keep"),
    op(None, "reshape", "keep", shape=[7]),
    backward("keep"),
    {"kind": "create", "factory": "zeros", "args": [[100_000]]},
    {"kind": "release", "names": ["keep", "missing"]},
    {"kind": "zero_grad", "tensors": ["keepg", "missing"]},
    {**op(None, "add_", "keep", 1.0), "names": ["p", "q"]},
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(COMMANDS, max_size=8),
    position=st.integers(0, 8),
    failure=st.sampled_from(FAILURES),
)
def test_a_failed_batch_leaves_the_session_as_it_was(
    small: SessionManager, batch: list[dict[str, Any]], position: int, failure: dict[str, Any]
) -> None:
    s = rich_session(small)
    try:
        position = min(position, len(batch))
        bodies = [*batch[:position], failure, *batch[position:]]
        before = snapshot(s)
        with pytest.raises(EngineError) as info:
            run(s, *bodies)
        assert snapshot(s) == before
        index = info.value.command_index
        assert index is not None and index <= position
        # The index names the failing command: what precedes it runs, and it fails alone.
        run(s, *bodies[:index])
        with pytest.raises(type(info.value)) as again:
            run(s, bodies[index])
        assert again.value.command_index == 0
    finally:
        small.close(s.id, s._token)


# ----- fuzz: random JSON never escapes as anything but an EngineError -----

NAMES = ["x", "w", "y", "h", "loss", "keep", "keepg", "view", "%1", "missing", "", "x\n", "1x"]
TEXT = st.sampled_from(
    [*NAMES, *sorted(OPS), *FACTORIES, *KINDS, "float32", "int64", "bool", "...", "cuda"]
)
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 5),
    st.sampled_from([0.5, -1.5, 2.0, 1e300, -0.0, math.nan, math.inf]),
    TEXT,
)
KEYS = st.sampled_from(
    [
        "grad_of",
        "slice",
        "tensor",
        "dim",
        "shape",
        "key",
        "keepdim",
        "p",
        "dim0",
        "dim1",
        "min",
        "max",
        "alpha",
        "dims",
        "split_size_or_sections",
        "chunks",
        "dtype",
        "index",
        "node_name",
    ]
)
JSON = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=2),
    max_leaves=8,
)
SMALL = st.integers(-2, 4)
SIZES = st.lists(SMALL, max_size=3)
TENSOR = st.sampled_from(NAMES[:9]) | st.builds(lambda n: {"grad_of": n}, st.sampled_from(NAMES))
ATTR = st.one_of(
    st.none(),
    st.booleans(),
    SMALL,
    SIZES,
    TEXT,
    st.builds(lambda k: {"slice": k}, st.lists(SMALL | st.none(), max_size=3)),
)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid-looking values, and now and then any JSON at all."""
    return st.integers(0, 19).flatmap(lambda n: valid if n else JSON)


VALID = {
    "tensor": TENSOR,
    "gradient": TENSOR,
    "inputs": st.lists(
        TENSOR | SMALL | st.sampled_from([0.5, -1.0]) | st.lists(TENSOR, max_size=2), max_size=3
    ),
    "outputs": st.lists(TENSOR, min_size=1, max_size=2),
    "grad_outputs": st.lists(TENSOR, max_size=2),
    "tensors": st.lists(TENSOR, max_size=2),
    "names": st.lists(st.sampled_from(POOL), max_size=2, unique=True),
    "name": st.sampled_from(POOL),
    "op": st.sampled_from(sorted(OPS)),
    "attrs": st.dictionaries(KEYS, ATTR, max_size=3),
    "factory": st.sampled_from(FACTORIES),
    "args": st.lists(SMALL | SIZES | st.sampled_from([0.5, 2.5]) | TENSOR, max_size=3),
    "data": st.recursive(
        SMALL | st.sampled_from([0.5, True]), lambda c: st.lists(c, max_size=3), max_leaves=6
    ),
    "dtype": st.sampled_from(["float32", "float64", "int64", "bool", "torch.float16"]),
}
REQUIRED = {
    "create": ["factory"],
    "op": ["op", "inputs"],
    "backward": ["tensor"],
    "grad": ["outputs", "inputs"],
    "detach": ["tensor"],
    "zero_grad": ["tensors"],
    "requires_grad": ["tensor"],
    "retain_grad": ["tensor"],
    "get": ["tensor"],
    "release": ["names"],
}


def _body(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = list(KINDS[kind]._fields)
    strategy = {f: mostly(VALID.get(f, st.booleans())) for f in fields}
    if kind == "grad":
        strategy["inputs"] = mostly(st.lists(st.sampled_from(["x", "w", "keepg"]), min_size=1))
    if kind == "create":
        strategy["factory"] = st.sampled_from(FACTORIES[1:])  # "tensor" comes with "data"
    required = {f: strategy.pop(f) for f in REQUIRED[kind]}
    return st.fixed_dictionaries({"kind": st.just(kind), **required}, optional=strategy)


BODY = st.sampled_from(sorted(KINDS)).flatmap(_body) | st.builds(
    lambda d, n: create(n, d), VALID["data"], st.sampled_from(POOL)
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(BODY, min_size=1, max_size=3))
def test_random_commands_fail_typed_and_change_nothing(
    small: SessionManager, bodies: list[Any]
) -> None:
    s = rich_session(small)
    try:
        try:
            commands = parse_batch(bodies)
        except EngineError as exc:
            assert exc.command_index is not None
            return
        before = snapshot(s)
        try:
            s.execute(commands)
        except EngineError as exc:
            assert exc.command_index is not None and 0 <= exc.command_index < len(bodies)
            assert snapshot(s) == before
        assert s.bytes_held() == reference_bytes(s)
    finally:
        small.close(s.id, s._token)


def test_failed_and_precondition_errors_are_typed(small: SessionManager) -> None:
    s = rich_session(small)
    fails(s, FailedPrecondition, get({"grad_of": "keep"}))
    fails(s, FailedPrecondition, op(None, "add_", "x", 1.0))  # a leaf that requires grad
