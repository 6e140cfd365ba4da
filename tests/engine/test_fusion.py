"""Chains of ops (engine.fusion) against the same batches run one executor call a command.

Every batch runs in two sessions alike: one as the session runs it, one with chains turned
off. Results, errors (type, text, index) and the whole session state (values, grads, graph
nodes with their saved bytes and versions, names, RNG) must be equal after each batch, and
the chains must have run (or not, where a case says so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import fusion, graph
from engine import session as session_module
from engine.commands import Op, Ref
from engine.errors import EngineError, NotFound
from engine.ops.registry import OPS
from engine.parsing import parse_batch
from engine.session import Limits, Session, SessionManager
from engine.tensor import Tensor
from tests.engine.session_state import backward, create, get, op, open_session, snapshot

Outcome = tuple[str, Any]


class Twins:
    """Two sessions given the same batches: ``fused`` as it runs, ``plain`` without chains."""

    def __init__(self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch, **kw: Any):
        self.fused = open_session(manager, **kw)
        self.plain = open_session(manager, **kw)
        self.chained = 0  # results of the commands the chains ran
        real = fusion.run_chain

        def run_chain(s: Session, first: Any, commands: Any, i: int, append: Any) -> int:
            if s is self.plain:
                return i

            def counted(result: Any) -> None:
                self.chained += 1
                append(result)

            return real(s, first, commands, i, counted)

        monkeypatch.setattr(session_module, "run_chain", run_chain)

    def run(self, *bodies: dict[str, Any]) -> Outcome:
        fused, plain = _outcome(self.fused, bodies), _outcome(self.plain, bodies)
        assert fused == plain
        assert _state(self.fused) == _state(self.plain)
        return fused


def _outcome(s: Session, bodies: tuple[dict[str, Any], ...]) -> Outcome:
    try:
        return "ok", [_result(r) for r in s.execute(parse_batch(list(bodies)))]
    except EngineError as exc:
        return "error", (type(exc).__name__, str(exc), exc.command_index)


def _result(r: Any) -> Any:
    # Arrays compared by their bytes (== on arrays is elementwise).
    return r.kind, [
        None
        if t is None
        else (
            t[:7],
            *(None if a is None else (a.dtype.str, a.shape, a.tobytes()) for a in t[7:9]),
            t.repr,
        )
        for t in r.tensors
    ]


def _state(s: Session) -> dict[str, Any]:
    state = snapshot(s)
    del state["identity"]  # ids of objects: equal names bound is what the rest says
    return state


@pytest.fixture
def twins(manager: SessionManager, monkeypatch: pytest.MonkeyPatch) -> Twins:
    return Twins(manager, monkeypatch)


def _chain(name: str, length: int, source: str | None = None) -> Iterator[dict[str, Any]]:
    """``name = mul(source, 1.0)``, then ``length`` elementwise ops rebinding ``name``."""
    yield op(name, "mul", source or name, 1.0)
    for i in range(length):
        kind = ("mul", "add", "sin", "tanh", "sub", "exp", "div", "neg")[i % 8]
        yield (
            op(name, kind, name, 0.999)
            if kind in ("mul", "add", "sub", "div")
            else op(name, kind, name)
        )


X = [0.1, -0.2, 0.3, 0.4]


def test_a_chain_runs_fused_with_equal_results_values_and_grads(twins: Twins) -> None:
    status, results = twins.run(
        create("x", X, requires_grad=True), *_chain("y", 40, "x"), op("s", "sum", "y")
    )
    assert status == "ok" and len(results) == 43
    assert twins.chained == 40
    for again in (True, False):  # the graph kept, then freed
        twins.run(backward("s", retain_graph=again), get("x", grad=True, value=True, repr=True))
    assert twins.run(backward("s"))[0] == "error"  # freed: the same error


def test_chains_in_float64_and_without_grad(twins: Twins) -> None:
    twins.run(create("x", X, dtype="float64"), *_chain("y", 9, "x"), get("y", value=True))
    twins.run(create("w", X, dtype="float64", requires_grad=True), *_chain("w", 9))
    assert twins.chained == 18


def test_higher_order_grads_through_a_chain(twins: Twins) -> None:
    twins.run(create("x", X, requires_grad=True), *_chain("y", 12, "x"), op("s", "sum", "y"))
    twins.run(
        {"kind": "grad", "outputs": ["s"], "inputs": ["x"], "create_graph": True, "names": ["g"]},
        op("g2", "sum", "g"),
        {"kind": "grad", "outputs": ["g2"], "inputs": ["x"], "names": ["h"]},
        get("h", value=True),
    )
    twins.run(backward("s", create_graph=True), op("gs", "sum", {"grad_of": "x"}))
    twins.run(backward("gs"), get("x", grad=True))
    assert twins.chained == 12


@pytest.mark.parametrize("ops", [("sin", "tanh", "exp"), ("add", "neg", "sub")])
def test_create_graph_after_a_pass_that_freed_a_chain(twins: Twins, ops: tuple[str, ...]) -> None:
    """Freed buffers fail the second pass alike; a run of ops that save nothing (add, neg,
    sub) runs it, and the gradient's graph then holds the plain nodes."""
    chain = [op("y", k, "y", 0.5) if k in ("add", "sub") else op("y", k, "y") for k in ops]
    twins.run(create("x", X, requires_grad=True), op("y", "add", "x", 3.0), *chain)
    twins.run(op("s", "sum", "y"), backward("s"))
    outcome = twins.run(backward("s", create_graph=True), op("gs", "sum", {"grad_of": "x"}))
    assert outcome[0] == ("error" if ops[0] == "sin" else "ok")
    twins.run(backward("s", create_graph=True))
    assert twins.chained == len(ops)


@pytest.mark.parametrize("ops", [("neg", "sin"), ("sin", "exp", "sin")])
def test_a_failed_batch_gives_back_a_fused_node_that_create_graph_unfused(
    twins: Twins, ops: tuple[str, ...]
) -> None:
    """The first pass frees the chain, the create_graph pass unfuses it, the batch fails:
    the fused node, freed or not, is as before (review: both were journaled apart)."""
    twins.run(
        create("x", X, requires_grad=True),
        create("w", [0.5, 0.6, 0.7, 0.8], requires_grad=True),
        op("y", "mul", "x", 1.0),
        *(op("y", k, "y") for k in ops),
        op("q", "mul", "w", 2.0),
        op("t", "add", "y", "q"),
        op("s", "sum", "t"),
        op("s1", "sum", "y"),
    )
    grad = {"kind": "grad", "outputs": ["s"], "inputs": ["w"], "create_graph": True}
    assert twins.run(backward("s1"), {**grad, "names": ["g"]}, get("nothing"))[0] == "error"
    assert twins.run(backward("s1"), get("x", grad=True))[0] == "ok"
    assert twins.chained == len(ops)


def test_a_chain_into_a_leaf_sums_its_gradients_in_the_same_order(twins: Twins) -> None:
    """A fused node's gradient for a leaf joins the leaf's other small gradients as a plain
    node's does (review: it was added first, 1 ulp apart in float32)."""
    twins.run(
        create("w", [0.1, 0.2, 0.3, 0.7], requires_grad=True),
        {"kind": "op", "op": "mul_", "inputs": ["w", 1.0], "name": "y", "no_grad": True},
        op("y", "sin", "y"),
        op("y", "mul", "y", 1.3),
        op("r", "mul", "w", 2.9),
        op("r2", "mul", "w", 0.77),
        op("s", "add", "r2", "y"),
        op("t", "add", "s", "r"),
        op("u", "sum", "t"),
        backward("u"),
    )
    assert twins.chained == 2


def test_floor_divide_is_not_fused(twins: Twins) -> None:
    """Its rule raises: a fused node would check its saved input's version first."""
    twins.run(
        create("x", X, requires_grad=True),
        op("a", "mul", "x", 2.0),
        {"kind": "op", "op": "mul_", "inputs": ["a", 1.0], "name": "y"},  # y is a
        op("y", "sin", "y"),
        op("y", "floor_divide", "y", 0.5),
        op("y", "neg", "y"),
        op("s", "sum", "y"),
        op(None, "mul_", "a", 2.0),
    )
    status, (kind, text, _) = twins.run(backward("s"))
    assert (status, kind) == ("error", "InvalidArgument") and "floor_divide" in text
    assert twins.chained == 3 and "floor_divide" not in fusion.FUSIBLE  # called, not fused


def test_unfused_nodes_take_the_orders_plain_nodes_would_have(twins: Twins) -> None:
    """Whole numbers, each one above the next op's, none shared: autograd's heap compares
    nodes by them (a tie would compare two nodes)."""
    twins.run(create("x", X, requires_grad=True), *_chain("y", 9, "x"), op("z", "mul", "x", 2.0))
    twins.run(op("s", "sum", "y"), backward("s", create_graph=True))
    for session in (twins.fused, twins.plain):
        orders, node = [], session.tensors["y"].grad_fn
        while node is not None and not isinstance(node, graph.AccumulateGrad):
            orders.append(node.order)
            node = node.edges[0]
        assert len(orders) == 10 and all(type(o) is int for o in orders)
        assert orders == sorted(orders) and len(set(orders)) == 10
        assert session.tensors["z"].grad_fn.order < orders[0]  # made after the chain
    assert twins.chained == 9


def test_a_chain_on_a_grad_made_with_create_graph(twins: Twins) -> None:
    twins.run(create("x", X, requires_grad=True), op("s", "sum", "x"))
    twins.run(backward("s", create_graph=True))
    twins.run(op("g", "mul", {"grad_of": "x"}, 3.0), *list(_chain("g", 6))[1:], op("t", "sum", "g"))
    twins.run(backward("t"), get("x", grad=True))
    assert twins.chained == 6


def test_in_place_ops_on_the_chains_input_fail_backward_alike(twins: Twins) -> None:
    twins.run(create("a", X, requires_grad=True), op("x", "mul", "a", 2.0))
    twins.run(op("y", "sin", "x"), *list(_chain("y", 8))[1:], op("s", "sum", "y"))
    twins.run(op(None, "mul_", "x", 2.0))  # x saved by the chain's first node (sin)
    assert twins.run(backward("s"))[0] == "error"
    assert twins.chained == 8


def test_in_place_ops_inside_a_chain_end_it(twins: Twins) -> None:
    twins.run(
        create("x", X, requires_grad=True),
        *_chain("y", 4, "x"),  # ending in tanh, which saves its output
        op("y", "mul_", "y", 2.0),
        *list(_chain("y", 3))[1:],
        op("s", "sum", "y"),
    )
    assert twins.chained == 7
    assert twins.run(backward("s"))[0] == "error"  # tanh's saved output was written to


@pytest.mark.parametrize("at", [1, 5, 9])
@pytest.mark.parametrize(
    "bad",
    [
        op("y", "sin", "y", 1.0),  # a bad argument inside the op
        op("y", "no_such_op", "y"),
        op("y", "mul", "y", "z"),  # no tensor named z
        op("y", "add", "y", "y", "y"),
        op("y", "split", "y", 2),  # two tensors, one name
    ],
)
def test_a_failure_in_a_chain_rolls_the_whole_batch_back(
    twins: Twins, at: int, bad: dict[str, Any]
) -> None:
    twins.run(create("x", X, requires_grad=True), *_chain("y", 4, "x"))
    before = _state(twins.fused)
    chain = list(_chain("y", 10, "x"))
    status, (_, _, index) = twins.run(*chain[:at], bad, *chain[at:])
    assert status == "error" and index == at
    assert _state(twins.fused) == before


def test_a_failure_after_a_chain_rolls_it_back(twins: Twins) -> None:
    twins.run(create("x", X, requires_grad=True), *_chain("y", 4, "x"))
    before = _state(twins.fused)
    assert twins.run(*_chain("y", 10), get("nothing"))[0] == "error"
    assert _state(twins.fused) == before
    assert twins.chained == 14


@pytest.mark.parametrize(
    "other",
    [
        op("y", "gt", "y", 0.0),  # bools: another layout
        op("y", "sum", "y"),  # 0-d
        op("y", "detach", "y"),  # no grad_fn
        op("y", "clone", "y"),
        op("y", "mul", "y", True),
        op("y", "pow", "y", 2),
        op("z", "mul", "y", 2.0),  # another name: the chain ends
        op("y", "mul", "y", "x"),  # a tensor operand
        op("y", "mul", {"grad_of": "x"}, 2.0),
        op("y", "mul", {"grad_of": "y"}, 2.0),
        {**op("y", "mul", "y", 2.0), "no_grad": True},
        op("y", "mul", "y", 2.0) | {"attrs": {}},
        op("y", "softmax", "y", dim=0),  # attributes, and the chain's layout
        {"kind": "op", "op": "neg", "inputs": ["y"], "names": ["y"]},
    ],
)
def test_commands_a_chain_hands_over(twins: Twins, other: dict[str, Any]) -> None:
    twins.run(create("x", X, requires_grad=True), op("s", "sum", "x"), backward("s"))
    twins.run(*_chain("y", 3, "x"), other, *list(_chain("y", 3))[1:], get("y", value=True))


def test_limits_are_checked_at_the_same_commands(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 16 bytes a tensor and what the nodes save: the byte count runs every 20 bytes
    # bound and fails partway through the chain.
    twins = Twins(manager, monkeypatch, limits=Limits(max_bytes_per_session=160))
    status, (kind, _, index) = twins.run(create("x", X, requires_grad=True), *_chain("y", 30, "x"))
    assert (status, kind) == ("error", "ResourceExhausted") and 2 < index < 30
    assert twins.chained > 0
    twins.run(create("x", X, requires_grad=True), *_chain("y", index - 3, "x"))


def _plain(t: Tensor) -> Tensor:
    out = Tensor(t.data + 1)
    out.layout()
    return out


def _graded(t: Tensor) -> Tensor:
    out = _plain(t)
    out.grad = Tensor(t.data * 0)
    return out


def _leaf(t: Tensor) -> Tensor:
    out = Tensor(t.data * 2, requires_grad=True)
    out.layout()
    return out


FAKES: dict[str, Callable[..., Any]] = {
    "same": lambda t, *args: t,  # the input itself
    "pair": lambda t, *args: (t, t),
    "plain": _plain,  # fresh, no grad_fn and no grad, like a detached tensor
    "graded": _graded,  # ... but with a grad
    "leaf": _leaf,  # ... but requiring grad
}


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, fn in FAKES.items():
        monkeypatch.setitem(OPS, name, fn)


@pytest.mark.usefixtures("fakes")
@pytest.mark.parametrize("fake", ["same", "pair", "plain", "graded", "leaf"])
def test_results_a_chain_hands_over(twins: Twins, fake: str) -> None:
    twins.run(create("x", X, requires_grad=True), op("s", "sum", "x"), backward("s"))
    for n in range(2, 6):
        chain = list(_chain("y", 6, "x"))
        twins.run(*chain[:n], op("y", "plain", "y"), op("y", fake, "y"), *chain[n:])
    assert twins.chained > 0


@pytest.mark.usefixtures("fakes")
@pytest.mark.parametrize("handed_over", [True, False])
@pytest.mark.parametrize("length", range(1, 14))
def test_the_byte_limit_fails_a_batch_at_the_same_command(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch, length: int, handed_over: bool
) -> None:
    # 16 bytes a tensor, a byte count every 20 bytes bound: one of the commands after the
    # chain (the first of them, "same", run by the chain's hand-over or not) fails the batch.
    twins = Twins(manager, monkeypatch, limits=Limits(max_bytes_per_session=160))
    status, (kind, _, index) = twins.run(
        create("x", X, requires_grad=True),
        *_chain("y", length, "x"),
        op("y" if handed_over else "z", "same", "y"),
        *(op(f"z{i}", "mul", "x", 2.0) for i in range(12)),
    )
    assert (status, kind) == ("error", "ResourceExhausted")
    assert twins.chained == min(length + handed_over, index - 2)


@pytest.mark.parametrize(
    "limits",
    [Limits(max_tensors_per_session=2), Limits(max_elements_per_tensor=4)],
)
def test_count_limits_fail_a_batch_with_chains_alike(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch, limits: Limits
) -> None:
    # A chain's tensors have its layout and rebind its name: neither count can change.
    twins = Twins(manager, monkeypatch, limits=limits)
    assert twins.run(create("x", X, requires_grad=True), *_chain("y", 8, "x"))[0] == "ok"
    failing = (
        op("z", "mul", "y", 2.0) if limits.max_tensors_per_session == 2 else create("w", [1.0] * 5)
    )
    status, (kind, _, index) = twins.run(*_chain("y", 8), failing, *_chain("y", 3))
    assert (status, kind, index) == ("error", "ResourceExhausted", 9)
    assert twins.chained == 16


OPS_ = ["mul", "add", "sub", "div", "sin", "tanh", "exp", "neg", "relu", "sigmoid", "pow", "gt"]
NAMES = ["x", "y", "z"]


@st.composite
def _command(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(NAMES))
    source = draw(st.sampled_from([name, name, name, *NAMES, {"grad_of": "x"}]))
    kind = draw(st.sampled_from([*OPS_, "mul_", "no_such_op"]))
    inputs: list[Any] = [source]
    if kind in ("mul", "add", "sub", "div", "pow", "gt", "mul_"):
        inputs.append(draw(st.sampled_from([2, 0.5, -1.5, True, *NAMES])))
    return op(draw(st.sampled_from([name, name, name, None])), kind, *inputs)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nan and inf, alike in both
@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(_command(), min_size=1, max_size=14), min_size=1, max_size=4))
def test_random_batches_run_alike(batches: list[list[dict[str, Any]]]) -> None:
    manager = SessionManager(sweep_interval=60)
    with pytest.MonkeyPatch.context() as monkeypatch:
        twins = Twins(manager, monkeypatch)
        try:
            twins.run(
                create("x", X, requires_grad=True),
                *(op(n, "mul", "x", 1.5) for n in NAMES[1:]),
                op("s", "sum", "x"),
                backward("s"),
            )
            for batch in batches:
                twins.run(*batch)
            twins.run(op("t", "sum", "y"), backward("t"), get("x", grad=True))
        finally:
            manager.shutdown()


def test_an_op_built_with_a_name_and_names_starts_no_chain(manager: SessionManager) -> None:
    """``parse`` refuses ``name`` with ``names``; an ``Op`` built directly binds ``names``
    only, and the next command finds no ``y``, as it would without chains."""
    session = open_session(manager)
    first = Op(op="split", inputs=[Ref("x"), 2], name="y", names=["a", "b"])
    batch = [*parse_batch([create("x", [1.0, 2.0, 3.0, 4.0])]), first]
    batch += parse_batch([op("y", "neg", "y")])
    with pytest.raises(NotFound, match="no tensor named 'y'"):
        session.execute(batch)
