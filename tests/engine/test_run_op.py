"""``run_op``'s lean way (one or two inputs, names and numbers, a name given) against the
reference, ``run_op_any``, which takes every op command.

Every batch runs in two sessions alike: one as the session runs it, one whose op commands
all go to ``run_op_any``. Chains are off in both (engine.fusion would take the commands that
rebind a name; tests/engine/test_fusion.py compares those). Results, errors (type, text,
index), the whole session state (values, grads, graph nodes with their saved bytes and
versions, names and which of them are one tensor, RNG) and the limits, checked at the same
command, must be equal after each batch, and the lean way must have run.
"""

from __future__ import annotations

from typing import Any

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import executors
from engine import session as session_module
from engine.commands import Op, Ref
from engine.errors import EngineError
from engine.parsing import parse_batch
from engine.session import Limits, Session, SessionManager
from engine.tensor import Tensor
from tests.engine.session_state import backward, create, get, op, open_session, snapshot

Outcome = tuple[str, Any]


class Twins:
    """Two sessions given the same batches: ``lean`` as it runs, ``ref`` by ``run_op_any``."""

    def __init__(self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch, **kw: Any):
        self.lean = open_session(manager, **kw)
        self.ref = open_session(manager, **kw)
        self.leaned = 0  # op commands of ``lean`` that took its lean way to the end
        run_op, run_op_any, op_result = executors.run_op, executors.run_op_any, executors.op_result
        handed: list[bool] = []

        def counted_any(s: Session, c: Op) -> Any:
            handed.append(True)
            return run_op_any(s, c)

        def counted_result(s: Session, c: Op, out: Any) -> Any:
            handed.append(True)
            return op_result(s, c, out)

        def either(s: Session, c: Op) -> Any:
            if s is self.ref:
                return run_op_any(s, c)
            handed.clear()
            r = run_op(s, c)
            self.leaned += not handed
            return r

        monkeypatch.setitem(executors.EXECUTORS, Op, either)
        monkeypatch.setattr(executors, "run_op_any", counted_any)
        monkeypatch.setattr(executors, "op_result", counted_result)
        monkeypatch.setattr(session_module, "run_chain", lambda s, first, cs, i, append: i)

    def run(self, *bodies: Any) -> Outcome:
        return self.run_commands(parse_batch(list(bodies)))

    def run_commands(self, commands: list[Any]) -> Outcome:
        lean, ref = _outcome(self.lean, commands), _outcome(self.ref, commands)
        assert lean == ref
        assert _state(self.lean) == _state(self.ref)
        return lean


def _outcome(s: Session, commands: list[Any]) -> Outcome:
    try:
        return "ok", [_result(r) for r in s.execute(commands)]
    except EngineError as exc:
        return "error", (type(exc).__name__, str(exc), exc.command_index)


def _result(r: Any) -> Any:
    # Arrays compared by their bytes (== on arrays is elementwise); types too (1 == True).
    return (
        type(r),
        r.kind,
        [
            None
            if t is None
            else (
                type(t),
                [(type(v), v) for v in t[:7]],
                *(None if a is None else (a.dtype.str, a.shape, a.tobytes()) for a in t[7:9]),
                t.repr,
            )
            for t in r.tensors
        ],
    )


def _state(s: Session) -> dict[str, Any]:
    state = snapshot(s)
    # Ids differ between the sessions; which names are bound to one tensor must not.
    ids = state.pop("identity")
    state["aliases"] = sorted(sorted(n for n in ids if ids[n] == i) for i in set(ids.values()))
    state["unchecked_bytes"] = s._unchecked_bytes
    return state


X = [0.1, -0.2, 0.3, 0.4]


def test_the_common_commands_take_the_lean_way(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    twins = Twins(manager, monkeypatch)
    status, results = twins.run(
        create("x", X, requires_grad=True),
        op("y", "mul", "x", 2.0),
        op("z", "sin", "y"),
        op("y", "add", "z", "x"),
        op("z", "tanh", "y"),
        op("w", "matmul", "z", "x"),  # a composite, a 0-d result: the executor's way
        op("v", "sub", 1.0, "z"),  # a number on the left: rsub(z, 1.0)
        op("u", "pow", "z", 2),
        get("z", value=True),
    )
    assert status == "ok" and len(results) == 9
    assert twins.leaned == 6
    twins.run(op("s", "sum", "y"), backward("s"), get("x", grad=True))


def test_results_are_shared_within_a_batch_only(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    twins = Twins(manager, monkeypatch)
    twins.run(create("x", X, requires_grad=True))
    results = twins.lean.execute(parse_batch([op("y", "sin", "x")] * 3))
    # A name's first result is not kept (most names are bound once); from its second on.
    assert results[0] == results[1] and results[0] is not results[1]
    assert results[1] is results[2]
    assert twins.lean.shared == {}  # nothing kept past the batch
    again = twins.lean.execute(parse_batch([op("y", "sin", "x")] * 2))
    assert again[1] == results[1] and again[1] is not results[1]


def test_results_are_shared_only_where_they_report_the_same(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``flatten`` of a 1-d tensor is that tensor: a leaf that requires grad, with a grad or
    without, where fresh results of the same layout and name are neither; and dtypes."""
    twins = Twins(manager, monkeypatch)
    twins.run(
        create("x", X, requires_grad=True),
        create("w", X, requires_grad=True),
        create("c", X),
        create("d", X, dtype="float64"),
        op("s", "sum", "x"),
        backward("s"),
    )
    for first, second in (("x", "w"), ("w", "c"), ("c", "x")):
        twins.run(
            *(op("h", "mul", n, 2.0) for n in ("x", "w", "c")),  # their layouts, found
            op("y", "neg", "c"),  # y's first result: the next are kept
            op("y", "flatten", first),
            op("y", "flatten", second),
            op("y", "sin", "c"),
            op("y", "sin", "d"),  # the same shape, another dtype
            op("y", "sin", "w"),
        )
    assert twins.leaned == 3 * 9


@pytest.mark.skipif(numpy.dtype(numpy.longdouble).itemsize <= 8, reason="no float128 here")
def test_a_result_of_an_unsupported_dtype_is_refused_alike(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A layout is of any floating dtype; a command gives only the supported ones."""
    twins = Twins(manager, monkeypatch)
    for s in (twins.lean, twins.ref):
        s.tensors["q"] = Tensor(numpy.array([1.0, 2.0], dtype=numpy.longdouble))
    status, (kind, text, index) = twins.run(op("y", "neg", "q"))
    assert (status, kind, index) == ("error", "InvalidArgument", 0)
    assert "float128" in text and twins.leaned == 0


@pytest.mark.parametrize(
    "body",
    [
        op("y", "sin", {"grad_of": "x"}),  # a grad: resolved (and refused) by run_op_any
        op("y", "sin", "nothing"),  # an unknown name
        op("y", "no_such_op", "x"),
        op("y", "add", 1.0, 2.0),  # no tensor
        op("y", "add", "x", [1.0]),  # a list
        op("y", "sum", "x", dim=0),  # attrs
        op(None, "sin", "x"),  # a server-chosen name
        op("y", "sin_", "x"),  # in place
        op("y", "gt", "x", 0.0),  # a bool result: no layout
        op("y", "max", "x", 0),  # several results
        op("y", "mul", "x", "i"),  # an int64 tensor: promoted on the general path
        op("y", "sin", "i"),
        op("y", "mul", "x", "x", "x"),  # three inputs
        op("y", "sin"),  # none
        op("y", "sqrt", "x"),  # nan
        op("y", "add", "x", True),
        op("y", "sub", "x", True),  # refused by the composite
        op("y", "floor_divide", "x", 0),
        op("y", "matmul", "x", 2.0),
        {"kind": "op", "op": "sin", "inputs": ["x"], "name": "y", "no_grad": True},
    ],
)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_edge_commands_run_alike(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any]
) -> None:
    twins = Twins(manager, monkeypatch)
    twins.run(create("x", X, requires_grad=True), create("i", [1, 2, 3, 4]))
    twins.run(body, get("y", value=True, grad=True, repr=True))
    twins.run(op("x", "mul", "x", 3.0), body, op("z", "sum", "x"), backward("z"))


@pytest.mark.parametrize(
    "command",
    [
        Op(op="sin", inputs=(Ref("x"),), name="y"),  # a tuple of inputs
        Op(op="sin", inputs=[Ref("x")], attrs={}, name="y"),  # empty attrs of its own
        Op(op="split", inputs=[Ref("x"), 2], name="y", names=["a", "b"]),
        Op(op="sin", inputs=[Ref("x")], name="y", names=[]),
        Op(op="sin", inputs=[Ref("x")], name=""),
        Op(op="mul", inputs=[Ref("x"), 1.5], name="y", no_grad=True),
        Op(op="mul", inputs=[Ref("x"), "1.5"], name="y"),  # not a number
    ],
)
def test_commands_built_directly_run_alike(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch, command: Op
) -> None:
    twins = Twins(manager, monkeypatch)
    twins.run(create("x", X, requires_grad=True))
    twins.run_commands([command, *parse_batch([get("y", value=True)])])


@pytest.mark.parametrize(
    ("limits", "index"),
    [
        (Limits(max_tensors_per_session=3), 2),
        (Limits(max_bytes_per_session=40), 3),  # checked at every binding (5 bytes or more)
        (Limits(max_elements_per_tensor=3), 10),  # a tensor of the lean way has its input's
    ],
)
def test_limits_fail_at_the_same_command(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch, limits: Limits, index: int
) -> None:
    twins = Twins(manager, monkeypatch, limits=limits)
    twins.run(create("x", [0.5, 0.25]))
    status, (kind, _, at) = twins.run(
        create("w", [1.0, 2.0, 3.0]),
        *(
            op(f"y{i % 3}", "mul", "x", 2.0) if i % 3 else op(f"y{i % 3}", "sin", "x")
            for i in range(9)
        ),
        op("z", "outer", "w", "w"),
    )
    assert (status, kind, at) == ("error", "ResourceExhausted", index)
    assert twins.leaned == index - 1


OPS = ["mul", "add", "sub", "div", "sin", "tanh", "exp", "neg", "relu", "pow", "gt", "matmul"]
NAMES = ["x", "y", "z", "i", "h"]
INPUTS = [*NAMES, *NAMES, {"grad_of": "x"}, 2, 0.5, -1.5, True, [1.0]]


@st.composite
def _command(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([*OPS, *OPS, "sum", "mul_", "no_such_op", "create", "backward"]))
    name = draw(st.sampled_from([*NAMES, *NAMES, None]))
    if kind == "create":
        data = draw(st.sampled_from([X, [1.0], 2.5, [[1.0, 2.0]], [1, 2, 3, 4], [True]]))
        dtype = draw(st.sampled_from([None, "float64", "float16"]))
        return create(name or "h", data, **({"dtype": dtype} if dtype else {}))
    if kind == "backward":
        return backward(draw(st.sampled_from(NAMES)))
    inputs = draw(st.lists(st.sampled_from(INPUTS), min_size=1, max_size=3))
    attrs = {"dim": 0} if kind == "sum" and draw(st.booleans()) else {}
    return op(name, kind, *inputs, **attrs)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nan and inf, alike in both
@settings(max_examples=80, deadline=None)
@given(
    batches=st.lists(st.lists(_command(), min_size=1, max_size=14), min_size=1, max_size=4),
    limits=st.sampled_from(
        [
            Limits(),
            Limits(max_tensors_per_session=6),
            Limits(max_elements_per_tensor=3),
            Limits(max_bytes_per_session=400),
        ]
    ),
)
def test_random_batches_run_alike(batches: list[list[dict[str, Any]]], limits: Limits) -> None:
    manager = SessionManager(sweep_interval=60)
    with pytest.MonkeyPatch.context() as monkeypatch:
        twins = Twins(manager, monkeypatch, limits=limits)
        try:
            twins.run(
                create("x", X, requires_grad=True),
                create("i", [1, 2, 3, 4]),
                op("y", "mul", "x", 1.5),
            )
            for batch in batches:
                twins.run(*batch)
            twins.run(op("t", "sum", "y"), backward("t"), get("x", grad=True))
        finally:
            manager.shutdown()
