"""The batch's fast paths against the general ones: parsing inputs and names, running an
op, counting bytes. Each fast path must give what the general one gives, or hand over."""

from __future__ import annotations

import math
from typing import Any

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import accounting, parsing
from engine import session as session_module
from engine.commands import NO_ATTRS, Op, Ref
from engine.errors import InvalidArgument, ResourceExhausted
from engine.ops.registry import OPS
from engine.parsing import parse, parse_input
from engine.results import info
from engine.session import Limits, Session, SessionManager
from engine.tensor import Tensor
from tests.engine.session_state import (
    backward,
    create,
    fails,
    op,
    open_session,
    reference_bytes,
    run,
    snapshot,
)

# ----- parsing -----

INPUT = st.recursive(
    st.one_of(
        st.sampled_from(["x", "y_1", "%3", "%", "1x", "x.grad", "é", "", "a" * 65, "x\n"]),
        st.builds(lambda n: {"grad_of": n}, st.sampled_from(["x", "%2", "2"])),
        st.sampled_from([{"grad_of": "x", "y": 1}, {"tensor": "x"}, None, (1,)]),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
    ),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)


def _general(inputs: list[Any]) -> list[Any] | type[InvalidArgument]:
    try:
        return [parse_input(v) for v in inputs]
    except InvalidArgument:
        return InvalidArgument


@settings(max_examples=500, deadline=None)
@given(inputs=st.lists(INPUT, max_size=4))
def test_op_inputs_parse_as_parse_input_does(inputs: list[Any]) -> None:
    expected = _general(inputs)
    for _ in range(2):  # the second time, names come from the cache
        try:
            parsed = parse({"kind": "op", "op": "add", "inputs": inputs})
        except InvalidArgument:
            assert expected is InvalidArgument
            continue
        assert isinstance(parsed, Op)
        assert repr(list(parsed.inputs)) == repr(expected)  # repr: nan != nan
        assert all(type(a) is type(b) for a, b in zip(parsed.inputs, expected, strict=True))


@pytest.mark.parametrize(
    "name", ["x", "_", "a" * 64, "%1", "a" * 65, "1x", "é", "x\n", "", 3, None, ["x"]]
)
def test_op_names_check_as_check_name_does(name: Any) -> None:
    def check() -> Any:
        return parse({"kind": "op", "op": "neg", "inputs": ["x"], "name": name}).name

    try:
        expected = None if name is None else parsing.check_name(name)
    except InvalidArgument:
        for _ in range(2):
            with pytest.raises(InvalidArgument):
                check()
        assert name not in parsing._NAMES if isinstance(name, str) else True
        return
    assert check() == check() == expected


def test_name_caches_stay_bounded() -> None:
    for i in range(2 * parsing._CACHE_MAX + 10):
        parse({"kind": "op", "op": "neg", "inputs": [f"in{i}"], "name": f"out{i}"})
    assert len(parsing._NAMES) <= parsing._CACHE_MAX
    assert len(parsing._REFS) <= parsing._CACHE_MAX
    assert parse({"kind": "op", "op": "neg", "inputs": ["in0"]}).inputs == [Ref("in0")]


def test_commands_are_plain_immutable_data() -> None:
    parsed = parse({"kind": "op", "op": "neg", "inputs": ["x"]})
    assert parsed == Op("neg", [Ref("x")]) and parsed.attrs is NO_ATTRS
    assert parsed.kind == "op" and parsed._asdict()["op"] == "neg"
    with pytest.raises(AttributeError):
        parsed.op = "exp"  # type: ignore[misc]
    with pytest.raises(TypeError):
        NO_ATTRS["dim"] = 0  # type: ignore[index]


# ----- running an op -----


def test_fast_and_general_op_paths_report_alike(session: Session) -> None:
    run(session, create("x", [[1.0, -2.0], [3.0, 4.0]], requires_grad=True))
    fast, general = run(
        session,
        op("a", "mul", "x", 2.0),  # refs and a scalar: the fast path
        {**op(None, "mul", "x", 2.0), "names": ["b"]},  # given names: the general one
    )
    assert fast.tensors == (info("a", session.tensors["a"]),)
    assert general.tensors == (info("b", session.tensors["b"]),)
    assert fast.tensors[0]._replace(name="b") == general.tensors[0]
    assert fast.tensors[0].grad_fn == "MulBackward0" and not fast.tensors[0].is_leaf


def test_the_fast_op_path_hands_over_what_it_does_not_handle(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(OPS, "as_uint16", lambda t: Tensor(t.data.astype(numpy.uint16)))
    monkeypatch.setitem(OPS, "as_float", lambda t: 1.5)
    monkeypatch.setitem(OPS, "as_pair", lambda t: (t, t))
    run(session, create("x", [1.0, 2.0]), create("y", [3.0, 4.0]))
    error = fails(session, InvalidArgument, create("z", 1.0), op("u", "as_uint16", "x"))
    assert "uint16" in str(error) and "not a supported tensor" in str(error)
    error = fails(session, InvalidArgument, op("f", "as_float", "x"))
    assert "gives float" in str(error)
    pair = run(session, op(None, "as_pair", "x"))[0]
    assert [t.name for t in pair.tensors if t is not None] == ["%1", "%2"]
    (cat,) = run(session, op("c", "cat", ["x", "y"]))  # a list input
    assert cat.tensors[0] is not None and cat.tensors[0].shape == (4,)
    run(session, op(None, "mul_", "x", 2.0))  # in place: keeps its name
    assert session.tensors["x"].data.tolist() == [2.0, 4.0]
    fails(session, InvalidArgument, op("n", "neg", 1.0))  # no tensor among the inputs


def test_many_rebindings_of_one_name_are_undone(session: Session) -> None:
    run(session, create("x", [1.0]), create("y", [2.0]))
    before = snapshot(session)
    bodies = [
        op("y", "mul", "y", 2.0),
        op(None, "neg", "x"),
        {"kind": "release", "names": ["x"]},
        create("x", [3.0]),
    ]
    fails(session, InvalidArgument, *(bodies * 5), op("z", "neg", 1.0))
    assert snapshot(session) == before


# ----- counting bytes -----


def test_the_process_bound_covers_what_a_session_holds(manager: SessionManager) -> None:
    if accounting.process_bytes_bound() is None:
        pytest.skip("glibc's mallinfo2 is not available here")
    s = open_session(manager)
    run(s, {"kind": "create", "factory": "zeros", "args": [[4096, 4096]], "name": "z"})
    run(s, create("x", [1.0] * 1000, requires_grad=True), op("y", "exp", "x"), op("t", "sum", "y"))
    bound = accounting.process_bytes_bound()
    assert bound is not None and bound >= s.bytes_held() >= 4096 * 4096 * 4


def test_the_walk_runs_only_when_the_bound_does_not_settle_it(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = open_session(manager, limits=Limits(max_bytes_per_session=4096))
    # More tensors than a session counted exactly after each batch keeps (empty: no bytes).
    run(s, *(create(f"e{i}", []) for i in range(session_module._SMALL_WALK)))
    walks: list[int] = []
    walk = Session.bytes_held

    def counted(self: Session) -> int:
        walks.append(1)
        return walk(self)

    monkeypatch.setattr(Session, "bytes_held", counted)
    monkeypatch.setattr(session_module, "process_bytes_bound", lambda: 4096)
    run(s, create("x", [0.0] * 1000))
    assert walks == []  # the whole process holds no more than the limit
    for bound in (4097, None):  # over the limit, or unknown: the exact count decides
        monkeypatch.setattr(session_module, "process_bytes_bound", lambda b=bound: b)
        error = fails(s, ResourceExhausted, create("y", [0.0] * 25))
        assert "4100 bytes" in str(error)
        run(s, create("y", [0.0] * 24))
        assert s.bytes_held() == reference_bytes(s) == 4096
    assert len(walks) == 6


@pytest.mark.parametrize("extra", [0, 1])
def test_a_small_session_is_counted_exactly_without_the_bound(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch, extra: int
) -> None:
    s = open_session(manager, limits=Limits(max_bytes_per_session=4096))
    bounds: list[int] = []

    def bound() -> int:
        bounds.append(1)
        return 1 << 40  # never settles it: the exact count decides

    monkeypatch.setattr(session_module, "process_bytes_bound", bound)
    # x and y: the rest of the walk's allowance (and one more) in empty tensors.
    small = session_module._SMALL_WALK - 2 + extra
    run(s, create("x", [0.0] * 1000), *(create(f"e{i}", []) for i in range(small)))
    error = fails(s, ResourceExhausted, create("y", [0.0] * 25))
    assert "4100 bytes" in str(error)
    run(s, create("y", [0.0] * 24))
    assert s.bytes_held() == reference_bytes(s) == 4096
    assert len(bounds) == 2 * extra  # past the allowance, the bound is read after each batch


@pytest.mark.parametrize(
    "bodies",
    [
        [
            create("x", [[1.0, 2.0], [3.0, 4.0]], requires_grad=True),
            op("v", "reshape", "x", shape=[4]),
        ],
        [
            create("x", [1.0, 2.0], requires_grad=True),
            op("c", "pow", "x", 3),
            op("L", "sum", "c"),
            backward("L", create_graph=True),
            {"kind": "release", "names": ["c", "L", "x"]},
        ],
        [
            create("i", [1, 2, 3]),
            create("w", [0.5, 1.5, 2.5], requires_grad=True),
            op("p", "mul", "i", "w"),  # the int input is cast and saved
            {"kind": "retain_grad", "tensor": "p"},
            op("s", "sum", "p"),
            backward("s", retain_graph=True),
            {"kind": "release", "names": ["w", "i"]},
        ],
        [create("n", math.pi), op("m", "mul", "n", 2.0), {"kind": "detach", "tensor": "m"}],
    ],
)
def test_the_byte_walk_matches_the_reference(session: Session, bodies: list[Any]) -> None:
    for body in bodies:
        run(session, body)
        assert session.bytes_held() == reference_bytes(session)
