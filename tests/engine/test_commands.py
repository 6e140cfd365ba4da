"""The command vocabulary: ``parse`` accepts exactly the documented shapes, and every bad
input, at parse time or when it runs, is a typed EngineError that changes nothing."""

from __future__ import annotations

import math
from typing import Any

import pytest

from engine.commands import (
    Backward,
    Create,
    Detach,
    Get,
    Grad,
    Op,
    Ref,
    Release,
    RequiresGrad,
    RetainGrad,
    ZeroGrad,
)
from engine.errors import (
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from engine.parsing import check_name, parse, parse_batch, parse_ref
from engine.session import Limits, Session, SessionManager
from tests.engine.session_state import backward, create, fails, op, open_session, run, snapshot

# ----- what parses, and into what -----

VALID: list[tuple[dict[str, Any], Any]] = [
    ({"kind": "create", "data": [1.0, 2.0]}, Create(data=[1.0, 2.0])),
    (
        {
            "kind": "create",
            "factory": "randn",
            "args": [[2, 3]],
            "dtype": "float64",
            "requires_grad": True,
            "name": "w",
        },
        Create("randn", [[2, 3]], None, "float64", True, "w"),
    ),
    ({"kind": "create", "factory": "zeros", "args": [2, 3]}, Create("zeros", [2, 3])),
    ({"kind": "create", "factory": "zeros", "args": []}, Create("zeros", [])),
    ({"kind": "create", "factory": "full", "args": [[2], True]}, Create("full", [[2], True])),
    ({"kind": "create", "factory": "full", "args": [3, math.nan]}, Create("full", [3, math.nan])),
    (
        {"kind": "create", "factory": "arange", "args": [1, 2.5, 0.5]},
        Create("arange", [1, 2.5, 0.5]),
    ),
    ({"kind": "create", "factory": "linspace", "args": [0, 1, 5]}, Create("linspace", [0, 1, 5])),
    ({"kind": "create", "factory": "eye", "args": [2, 3]}, Create("eye", [2, 3])),
    ({"kind": "create", "factory": "ones_like", "args": ["x"]}, Create("ones_like", [Ref("x")])),
    (
        {"kind": "create", "factory": "full_like", "args": [{"grad_of": "x"}, 2]},
        Create("full_like", [Ref("x", grad=True), 2]),
    ),
    (
        {"kind": "op", "op": "add", "inputs": ["a", {"grad_of": "b"}, 2, 0.5, True]},
        Op("add", [Ref("a"), Ref("b", True), 2, 0.5, True]),
    ),
    (
        {"kind": "op", "op": "cat", "inputs": [["a", "%3"]], "attrs": {"dim": 0}, "name": "c"},
        Op("cat", [[Ref("a"), Ref("%3")]], {"dim": 0}, "c"),
    ),
    (
        {"kind": "op", "op": "split", "inputs": ["a", 1], "names": ["p", "q"], "no_grad": True},
        Op("split", [Ref("a"), 1], names=["p", "q"], no_grad=True),
    ),
    ({"kind": "op", "op": "neg", "inputs": ["a"], "name": None}, Op("neg", [Ref("a")])),
    (
        {
            "kind": "backward",
            "tensor": "L",
            "gradient": {"grad_of": "g"},
            "retain_graph": False,
            "create_graph": True,
            "inputs": "x",
        },
        Backward(Ref("L"), Ref("g", True), False, True, [Ref("x")]),
    ),
    ({"kind": "backward", "tensor": "%12"}, Backward(Ref("%12"))),
    (
        {
            "kind": "grad",
            "outputs": "L",
            "inputs": ["x", "w"],
            "grad_outputs": ["g"],
            "allow_unused": True,
            "names": ["gx", "gw"],
        },
        Grad([Ref("L")], [Ref("x"), Ref("w")], [Ref("g")], allow_unused=True, names=["gx", "gw"]),
    ),
    ({"kind": "detach", "tensor": "x", "name": "d"}, Detach(Ref("x"), "d")),
    (
        {"kind": "zero_grad", "tensors": ["x", "w"], "set_to_none": True},
        ZeroGrad([Ref("x"), Ref("w")], True),
    ),
    ({"kind": "requires_grad", "tensor": "x"}, RequiresGrad(Ref("x"), True)),
    ({"kind": "retain_grad", "tensor": "y"}, RetainGrad(Ref("y"))),
    ({"kind": "get", "tensor": "x", "value": True, "repr": True}, Get(Ref("x"), True, False, True)),
    ({"kind": "release", "names": ["x", "%1"]}, Release(["x", "%1"])),
    ({"kind": "release", "names": []}, Release([])),
]


@pytest.mark.parametrize(("body", "expected"), VALID)
def test_parse(body: dict[str, Any], expected: Any) -> None:
    parsed = parse(body)
    assert type(parsed) is type(expected)
    assert repr(parsed) == repr(expected)  # repr: nan != nan, but prints the same
    assert parsed.kind == body["kind"]


def test_names() -> None:
    for good in ["x", "_", "X_1", "a" * 64, "loss", "grad_of"]:
        assert check_name(good) == good
    for bad in [
        "",
        "1x",
        "a" * 65,
        "x\n",
        "\nx",
        "x y",
        "x.grad",
        "%1",
        "é",
        "x-y",
        None,
        1,
        ["x"],
    ]:
        with pytest.raises(InvalidArgument):
            check_name(bad)
    assert parse_ref("%7") == Ref("%7")  # server-chosen names can be referred to
    assert str(Ref("x", grad=True)) == "x.grad"
    for bad_ref in [
        "%",
        "%x",
        "%1\n",
        "%" + "1" * 19,
        {"grad_of": "x", "y": 1},
        {"grad_of": 3},
        {"grad_of": {"grad_of": "x"}},
        {},
        {"name": "x"},
        3,
        None,
        ["x"],
    ]:
        with pytest.raises(InvalidArgument):
            parse_ref(bad_ref)


# ----- what does not parse -----

BAD: list[Any] = [
    None,
    [],
    "create",
    {"data": 1},
    {"kind": None},
    {"kind": "Create"},
    {"kind": ["op"]},
    {"kind": {"op": 1}},
    {"kind": "frobnicate"},
    {"kind": "get", "tensor": "x", "extra": 1},
    {"kind": "get", "tensor": "x", 1: 2},
    {"kind": "get"},
    {"kind": "get", "tensor": None},
    {"kind": "get", "tensor": "x", "value": 1},
    {"kind": "get", "tensor": "x", "repr": "yes"},
    {"kind": "get", "tensor": "x\n"},
    {"kind": "get", "tensor": {"grad_of": "x", "extra": 1}},
    # create
    {"kind": "create"},
    {"kind": "create", "factory": "tensor"},
    {"kind": "create", "factory": "randint", "args": [3]},
    {"kind": "create", "factory": ["zeros"], "args": [3]},
    {"kind": "create", "factory": "zeros", "args": 3},
    {"kind": "create", "factory": "zeros", "args": [3], "data": [1]},
    {"kind": "create", "data": [1], "args": [3]},
    {"kind": "create", "data": [1], "dtype": 5},
    {"kind": "create", "data": [1], "dtype": "complex64"},
    {"kind": "create", "data": [1], "dtype": "float31"},
    {"kind": "create", "data": [1], "requires_grad": 1},
    {"kind": "create", "data": [1], "name": "1x"},
    {"kind": "create", "data": [1], "name": "%1"},  # server-chosen names are not the client's
    {"kind": "create", "data": [1], "names": ["a"]},
    {"kind": "create", "factory": "zeros", "args": [2.5]},
    {"kind": "create", "factory": "zeros", "args": [[2, "3"]]},
    {"kind": "create", "factory": "zeros", "args": [True]},
    {"kind": "create", "factory": "zeros", "args": [[2], [3]]},
    {"kind": "create", "factory": "randn", "args": ["x"]},
    {"kind": "create", "factory": "full", "args": [[2]]},
    {"kind": "create", "factory": "full", "args": [[2], "1"]},
    {"kind": "create", "factory": "full", "args": [[2], None]},
    {"kind": "create", "factory": "full", "args": [[2], {"grad_of": "x"}]},
    {"kind": "create", "factory": "full", "args": [[2], 1, 2]},
    {"kind": "create", "factory": "arange", "args": []},
    {"kind": "create", "factory": "arange", "args": [0, 5, 1, 2]},
    {"kind": "create", "factory": "arange", "args": ["5"]},
    {"kind": "create", "factory": "arange", "args": [True]},
    {"kind": "create", "factory": "arange", "args": [math.nan]},
    {"kind": "create", "factory": "arange", "args": [0, math.inf]},
    {"kind": "create", "factory": "linspace", "args": [0, 1]},
    {"kind": "create", "factory": "linspace", "args": [0, 1, 2.0]},
    {"kind": "create", "factory": "linspace", "args": [0, -math.inf, 2]},
    {"kind": "create", "factory": "eye", "args": []},
    {"kind": "create", "factory": "eye", "args": [2, 2, 2]},
    {"kind": "create", "factory": "eye", "args": [2.0]},
    {"kind": "create", "factory": "zeros_like", "args": []},
    {"kind": "create", "factory": "zeros_like", "args": ["x", 1]},
    {"kind": "create", "factory": "zeros_like", "args": [1]},
    {"kind": "create", "factory": "zeros_like", "args": [{"tensor": "x"}]},
    {"kind": "create", "factory": "full_like", "args": ["x"]},
    {"kind": "create", "factory": "full_like", "args": ["x", "2"]},
    # op
    {"kind": "op"},
    {"kind": "op", "op": 5},
    {"kind": "op", "op": None, "inputs": ["x"]},
    {"kind": "op", "op": "neg", "inputs": "x"},
    {"kind": "op", "op": "neg", "inputs": {"x": 1}},
    {"kind": "op", "op": "neg", "inputs": [None]},
    {"kind": "op", "op": "neg", "inputs": ["1x"]},
    {"kind": "op", "op": "neg", "inputs": [{"grad_of": None}]},
    {"kind": "op", "op": "neg", "inputs": [{"tensor": "x"}]},
    {"kind": "op", "op": "cat", "inputs": [["x", ["y"]]]},
    {"kind": "op", "op": "neg", "inputs": ["x"], "attrs": [1]},
    {"kind": "op", "op": "neg", "inputs": ["x"], "attrs": {1: 2}},
    {"kind": "op", "op": "neg", "inputs": ["x"], "name": "a", "names": ["b"]},
    {"kind": "op", "op": "split", "inputs": ["x", 1], "names": "ab"},
    {"kind": "op", "op": "split", "inputs": ["x", 1], "names": ["a", "a"]},
    {"kind": "op", "op": "split", "inputs": ["x", 1], "names": ["a", "%2"]},
    {"kind": "op", "op": "neg", "inputs": ["x"], "no_grad": "true"},
    {"kind": "op", "op": "neg", "inputs": ["x"], "tensor": "x"},
    # backward and grad
    {"kind": "backward"},
    {"kind": "backward", "tensor": ["L"]},
    {"kind": "backward", "tensor": "L", "gradient": 1.0},
    {"kind": "backward", "tensor": "L", "retain_graph": "no"},
    {"kind": "backward", "tensor": "L", "create_graph": None, "inputs": [3]},
    {"kind": "backward", "tensor": "L", "inputs": {"x": 1}},
    {"kind": "grad", "inputs": ["x"]},
    {"kind": "grad", "outputs": ["L"]},
    {"kind": "grad", "outputs": [], "inputs": ["x"]},
    {"kind": "grad", "outputs": ["L"], "inputs": []},
    {"kind": "grad", "outputs": ["L"], "inputs": ["x"], "grad_outputs": [1.0]},
    {"kind": "grad", "outputs": ["L"], "inputs": ["x"], "names": ["g", "g"]},
    {"kind": "grad", "outputs": ["L"], "inputs": ["x"], "allow_unused": 0},
    # the others
    {"kind": "detach"},
    {"kind": "detach", "tensor": "x", "name": ""},
    {"kind": "zero_grad"},
    {"kind": "zero_grad", "tensors": []},
    {"kind": "zero_grad", "tensors": ["x"], "set_to_none": "yes"},
    {"kind": "requires_grad", "tensor": "x", "requires_grad": 0},
    {"kind": "retain_grad", "tensor": 7},
    {"kind": "release"},
    {"kind": "release", "names": "x"},
    {"kind": "release", "names": ["x", "x"]},
    {"kind": "release", "names": [None]},
    {"kind": "release", "names": ["x"], "tensor": "x"},
]


@pytest.mark.parametrize("body", BAD, ids=range(len(BAD)))
def test_bad_commands_do_not_parse(body: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse(body)
    assert info.value.code == "invalid_argument" and info.value.command_index is None


def test_parse_batch_names_the_bad_command(session: Session) -> None:
    with pytest.raises(InvalidArgument):
        parse_batch({"kind": "get", "tensor": "x"})
    good = {"kind": "create", "data": 1.0, "name": "x"}
    for index, bad in enumerate(BAD[:20]):
        bodies = [good] * index + [bad, good]
        with pytest.raises(InvalidArgument) as info:
            parse_batch(bodies)
        assert info.value.command_index == index
        before = snapshot(session)
        with pytest.raises(InvalidArgument):
            run(session, *bodies)  # parsing fails before anything runs
        assert snapshot(session) == before


def test_execute_takes_only_commands(session: Session) -> None:
    run(session, create("x", 1.0))
    before = snapshot(session)
    with pytest.raises(InvalidArgument) as info:
        session.execute([parse(create("y", 2.0)), {"kind": "get", "tensor": "x"}])  # type: ignore[list-item]
    assert info.value.command_index == 1 and snapshot(session) == before


# ----- what parses but cannot run: typed, and the session is unchanged -----


@pytest.fixture
def rich(manager: SessionManager) -> Session:
    s = open_session(manager, limits=Limits(max_elements_per_tensor=1000))
    run(
        s,
        create("x", [1.0, 2.0, 3.0], requires_grad=True),
        create("m", [[1.0, 2.0], [3.0, 4.0]]),
        create("i", [0, 2]),
        op("y", "mul", "x", 2.0),
        op("L", "sum", "y"),
        backward("L"),
        op("L2", "sum", "x"),
    )
    return s


RUNTIME: list[tuple[type[EngineError], dict[str, Any]]] = [
    (NotFound, {"kind": "get", "tensor": "nope"}),
    (NotFound, {"kind": "get", "tensor": "%99"}),
    (NotFound, op(None, "neg", "nope")),
    (NotFound, op(None, "cat", ["x", "nope"])),
    (NotFound, backward("L", gradient="nope")),
    (NotFound, {"kind": "create", "factory": "zeros_like", "args": ["nope"]}),
    (NotFound, op(None, "index", "x", key=[{"tensor": "nope"}])),
    (FailedPrecondition, {"kind": "get", "tensor": {"grad_of": "m"}}),
    (FailedPrecondition, op(None, "neg", {"grad_of": "y"})),
    (FailedPrecondition, backward("m")),
    (FailedPrecondition, backward("L")),  # its buffers were freed
    (FailedPrecondition, op(None, "add_", "x", 1.0)),  # a leaf that requires grad
    (FailedPrecondition, {"kind": "requires_grad", "tensor": "y", "requires_grad": False}),
    (FailedPrecondition, {"kind": "retain_grad", "tensor": "m"}),
    (InvalidArgument, op(None, "no_such_op", "x")),
    (InvalidArgument, op(None, "add", 1, 2)),  # no tensor at all
    (InvalidArgument, op(None, "abs", False)),
    (InvalidArgument, op(None, "neg", ["x"])),  # a list of tensors, not for neg
    (InvalidArgument, op(None, "cat", "x", ["m"])),
    (InvalidArgument, op(None, "add", "x", "m")),  # shapes
    (InvalidArgument, op(None, "matmul", "x", 1)),
    (InvalidArgument, op(None, "dot", "x", 1)),
    (InvalidArgument, op(None, "sum", "x", dim="a")),
    (InvalidArgument, op(None, "sum", "x", dim=3)),
    (InvalidArgument, op(None, "sum", "x", axis=0)),  # an unknown attribute
    (InvalidArgument, op(None, "softmax", "x")),  # a missing attribute
    (InvalidArgument, op(None, "reshape", "x", shape="ab")),
    (InvalidArgument, op(None, "reshape", "x", shape=[4])),
    (InvalidArgument, op(None, "to_dtype", "x", dtype="complex")),
    (InvalidArgument, op(None, "norm", "x", p="fro")),
    (InvalidArgument, op(None, "clamp", "x", min="a")),
    (InvalidArgument, op(None, "index", "x", key=[7])),
    (InvalidArgument, op(None, "index", "x", key="abc")),
    (InvalidArgument, op(None, "index", "x", key=[{"slice": ["a"]}])),
    (InvalidArgument, op(None, "index", "x", key=[{"slice": [0, 1, 1, 1]}])),
    (InvalidArgument, op(None, "index", "x", key=[{"tensor": ["i"]}])),
    (InvalidArgument, op(None, "index", "x", key=[{"tensor": "x"}])),  # float indices
    (InvalidArgument, op(None, "index", "x", key=[{"tensor": "i", "extra": 1}])),
    (InvalidArgument, op(None, "split", "x", split_size_or_sections="a")),
    (NotFound, op(None, "split", "x", "a")),  # a string input is a tensor's name
    (InvalidArgument, {**op(None, "split", "x", 1), "names": ["a", "b"]}),  # three results
    (InvalidArgument, op("y2", "expand", "m", shape=[3, 2])),
    (InvalidArgument, {"kind": "create", "data": [[1.0], [1.0, 2.0]]}),
    (InvalidArgument, {"kind": "create", "data": {"a": 1}}),
    (InvalidArgument, {"kind": "create", "data": None}),
    (InvalidArgument, {"kind": "create", "data": "abc"}),
    (InvalidArgument, {"kind": "create", "data": [10**30]}),
    (InvalidArgument, {"kind": "create", "data": [1], "dtype": "int64", "requires_grad": True}),
    (InvalidArgument, {"kind": "create", "factory": "zeros", "args": [[-1]]}),
    (InvalidArgument, {"kind": "create", "factory": "eye", "args": [-2]}),
    (InvalidArgument, {"kind": "create", "factory": "arange", "args": [0, 5, 0]}),
    (InvalidArgument, {"kind": "create", "factory": "arange", "args": [5, 0, 1]}),
    (InvalidArgument, {"kind": "create", "factory": "linspace", "args": [0, 1, -1]}),
    (InvalidArgument, {"kind": "create", "factory": "randn", "args": [2], "dtype": "int64"}),
    (InvalidArgument, backward("L", inputs=[])),
    (FailedPrecondition, backward("L2", inputs=["m"])),  # as PyTorch: retain_grad on m
    (InvalidArgument, {"kind": "grad", "outputs": ["L2"], "inputs": ["x"], "names": ["a", "b"]}),
    (FailedPrecondition, backward("y")),  # not a scalar
    (InvalidArgument, {"kind": "requires_grad", "tensor": "i"}),
    (ResourceExhausted, {"kind": "create", "data": [1.0] * 1001}),
    (ResourceExhausted, {"kind": "create", "factory": "ones", "args": [[10, 101]]}),
    (ResourceExhausted, op(None, "expand", "x", shape=[1000, 3])),
]


@pytest.mark.parametrize(("error", "body"), RUNTIME, ids=range(len(RUNTIME)))
def test_bad_commands_fail_typed_and_change_nothing(
    rich: Session, error: type[EngineError], body: dict[str, Any]
) -> None:
    # After two good commands, so the index and the rollback of a partial batch both show.
    fails(rich, error, create("fresh", 1.0), op(None, "neg", "m"), body)
