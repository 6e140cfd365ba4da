"""Chains (engine.fusion) of every op a chain can take, against the same batches unchained.

Each batch runs through ``Twins`` (see test_fusion.py): results, errors and the whole
session state must be equal with chains and without, and so must the bytes each session
holds; the chains must have run where a case says so. The values of higher-order grads
through chains are also checked against PyTorch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import parallel
from engine.session import Limits, SessionManager
from tests.engine.session_state import backward, create, get, op
from tests.engine.test_fusion import Outcome, Twins

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nan and inf, alike in both

UNARY = [
    "abs", "ceil", "cos", "exp", "floor", "log", "sign", "sin", "sqrt", "tan", "tanh", "neg",
    "reciprocal", "relu", "round", "sigmoid",
]  # fmt: skip
BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]
SCALARS: list[Any] = [
    0, 3, -2, 10**40, 0.5, -1.25, 0.0, -0.0, math.nan, math.inf, -math.inf, True, False
]  # fmt: skip
X = [0.1, -0.2, 0.0, 2.5, -1.5, 0.5]  # signs, a zero and halves (round, floor, relu, ...)

Step = tuple[Any, ...]  # (op,) or (op, scalar)


class Held(Twins):
    """``Twins`` whose two sessions must also hold the same bytes after each batch."""

    def run(self, *bodies: dict[str, Any]) -> Outcome:
        outcome = super().run(*bodies)
        assert self.fused.bytes_held() == self.plain.bytes_held()
        return outcome


@pytest.fixture
def twins(manager: SessionManager, monkeypatch: pytest.MonkeyPatch) -> Held:
    return Held(manager, monkeypatch)


def steps(name: str, chain: list[Step]) -> list[dict[str, Any]]:
    """``name = op(name[, scalar])`` for each ``(op,)`` or ``(op, scalar)`` of ``chain``."""
    return [op(name, *step[:1], name, *step[1:]) for step in chain]


def chained(
    twins: Twins, chain: list[Step], before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> Outcome:
    """Run ``before`` (ending in an op binding y), the chain on y, then ``after``: the chain
    runs whole where the batch succeeds, as far as its failure otherwise."""
    start = twins.chained
    outcome = twins.run(*before, *steps("y", chain), *after)
    ran = twins.chained - start
    if outcome[0] == "ok":
        assert ran == len(chain)
    else:
        assert ran <= max(0, min(len(chain), outcome[1][2] - len(before)))
    return outcome


def layouts(step: Step) -> list[list[Step]]:
    """Chains of 1 to 4 ops with ``step`` first, in the middle and last."""
    return [
        [step],
        [step, ("tanh",)],
        [("sin",), step, ("mul", 0.5)],
        [("neg",), ("add", 0.25), ("exp",), step],
    ]


def _grads_twice(twins: Twins, chain: list[Step], dtype: str, requires_grad: bool) -> None:
    start = [create("x", X, dtype=dtype, requires_grad=requires_grad), op("y", "mul", "x", 1.0)]
    read = get("y", value=True, repr=True)
    if not requires_grad:
        chained(twins, chain, start, [read, op("s", "sum", "y")])
        return
    status, _ = chained(
        twins,
        chain,
        start,
        [read, op("s", "sum", "y"), backward("s", retain_graph=True), get("x", grad=True)],
    )
    if status == "ok":  # again (grads accumulate), then with the graph freed, then freed
        twins.run(backward("s", retain_graph=True), get("x", grad=True))
        twins.run(backward("s"), get("x", grad=True, value=True, repr=True))
        assert twins.run(backward("s"))[0] == "error"


@pytest.mark.parametrize("requires_grad", [True, False])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("name", UNARY)
def test_unary_ops_in_chains(twins: Twins, name: str, dtype: str, requires_grad: bool) -> None:
    for chain in layouts((name,)):
        _grads_twice(twins, chain, dtype, requires_grad)


@pytest.mark.parametrize("requires_grad", [True, False])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("name", BINARY)
def test_binary_ops_with_scalars_in_chains(
    twins: Twins, name: str, dtype: str, requires_grad: bool
) -> None:
    for scalar in SCALARS:
        for chain in layouts((name, scalar)):
            _grads_twice(twins, chain, dtype, requires_grad)
    assert twins.chained > 0


def test_a_bool_subtracted_fails_alike(twins: Twins) -> None:
    start = [create("x", X, requires_grad=True), op("y", "mul", "x", 1.0)]
    for chain in layouts(("sub", True)):
        status, (kind, text, index) = chained(twins, chain, start, [get("y")])
        assert (status, kind) == ("error", "InvalidArgument") and "bool" in text
        assert index == 2 + chain.index(("sub", True))


# ----- higher-order grads through chains, and PyTorch's values -----

POSITIVE = [0.3, 0.7, 1.1, 1.9]
HIGHER: list[tuple[float, list[Step]]] = [  # y = x * first, then the chain
    (1.5, [("sin",), ("add", 0.3), ("tanh",)]),
    (1.0, [("exp",), ("sub", 1), ("sigmoid",), ("pow", 2), ("mul", -0.5)]),
    (0.5, [("sqrt",), ("log",), ("cos",), ("div", 3.0), ("reciprocal",), ("tan",)]),
    (2.0, [("maximum", 1.0), ("pow", 3.5), ("minimum", 40.0), ("sub", 5), ("relu",), ("abs",)]),
]


def _torch(first: float, chain: list[Step], x: torch.Tensor) -> torch.Tensor:
    y = x * first
    for name, *scalar in chain:
        if name in ("maximum", "minimum"):
            y = getattr(torch, name)(y, torch.tensor(scalar[0], dtype=y.dtype))
        else:
            y = getattr(torch, name)(y, *scalar)
    return y


@pytest.mark.parametrize(("first", "chain"), HIGHER)
def test_second_order_grads_through_chains(twins: Held, first: float, chain: list[Step]) -> None:
    start = [create("x", POSITIVE, dtype="float64", requires_grad=True), op("y", "mul", "x", first)]
    chained(twins, chain, start, [op("s", "sum", "y")])
    grad = {"kind": "grad", "outputs": ["s"], "inputs": ["x"]}
    twins.run(
        {**grad, "create_graph": True, "names": ["g"]},
        op("g2", "sum", "g"),
        {**grad, "outputs": ["g2"], "retain_graph": True, "names": ["h"]},
        get("h", value=True, repr=True),
    )
    twins.run(backward("s", create_graph=True), op("gs", "sum", {"grad_of": "x"}))
    twins.run(backward("gs"), get("x", grad=True))
    assert twins.run(backward("gs"))[0] == "error"  # its graph freed, alike

    x = torch.tensor(POSITIVE, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(_torch(first, chain, x).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    tensors = twins.fused.tensors
    for ours, theirs in [("g", g), ("h", h), ("x.grad", g + h)]:
        t = tensors["x"].grad if ours == "x.grad" else tensors[ours]
        assert t is not None
        numpy.testing.assert_allclose(t.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


# ----- writes in place after a chain -----


@pytest.mark.parametrize("last", ["tanh", "exp", "sigmoid", "sqrt", "relu", "sin", "mul", "add"])
@pytest.mark.parametrize("same_batch", [True, False])
def test_writing_the_chains_result_in_place(twins: Held, last: str, same_batch: bool) -> None:
    chain = [("mul", 0.5), ("sin",), (last, 2.0) if last in BINARY else (last,)]
    start = [create("x", POSITIVE, requires_grad=True), op("y", "mul", "x", 1.0)]
    write = [op(None, "mul_", "y", 2.0), op("s", "sum", "y"), backward("s"), get("x", grad=True)]
    if same_batch:
        status = chained(twins, chain, start, write)[0]
    else:
        chained(twins, chain, start, [])
        status = twins.run(*write)[0]
    # An op that saves its output (tanh, exp, sigmoid, sqrt, relu) finds it written to.
    assert (status == "error") is (last in ("tanh", "exp", "sigmoid", "sqrt", "relu"))


ALIASES = {
    "in place, named": op("y", "mul_", "x", 1.0),  # y is x itself
    "a view": op("y", "reshape", "x", [2, 2]),  # y shares x's memory and version
    "none": None,  # the chain's first op reads x itself
}


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize(
    "first", [("sin",), ("pow", 2.0), ("pow", 3), ("maximum", 0.5), ("mul", 3.0), ("exp",)]
)
@pytest.mark.parametrize("same_batch", [True, False])
@pytest.mark.parametrize("target", ["x", "d"])  # d: x detached, sharing its version
def test_writing_the_chains_input_through_another_name(
    twins: Held, alias: str, first: Step, same_batch: bool, target: str
) -> None:
    detach = {"kind": "detach", "tensor": "x", "name": "d"}
    twins.run(create("a", POSITIVE, requires_grad=True), op("x", "mul", "a", 2.0), detach)
    made = ALIASES[alias]
    chain: list[Step] = [("tanh",), ("add", 1.0)]
    if made is None:
        before = [op("y", first[0], "x", *first[1:])]
    else:
        before, chain = [made], [first, *chain]
    write = [op(None, "mul_", target, 2.0), op("s", "sum", "y"), backward("s"), get("a", grad=True)]
    if same_batch:
        status = chained(twins, chain, before, write)[0]
    else:
        chained(twins, chain, before, [])
        status = twins.run(*write)[0]
    # The chain's first op saved its input (sin, pow, maximum), which x's write changed.
    assert (status == "error") is (first[0] in ("sin", "pow", "maximum"))


# ----- retain_grad and reading a chain's result -----


@pytest.mark.parametrize("which", ["y", "x"])  # the chain's result, or its (non-leaf) input
@pytest.mark.parametrize("same_batch", [True, False])
def test_retain_grad_on_the_chains_result_or_input(
    twins: Held, which: str, same_batch: bool
) -> None:
    twins.run(create("a", POSITIVE, requires_grad=True), op("x", "mul", "a", 2.0))
    chain = [("mul", 2.0), ("tanh",), ("pow", 2)]
    retain = {"kind": "retain_grad", "tensor": which}
    after = [op("s", "sum", "y"), backward("s"), get(which, grad=True, value=True, repr=True)]
    if same_batch:
        chained(twins, chain, [op("y", "sin", "x")], [retain, *after])
    else:
        chained(twins, chain, [op("y", "sin", "x")], [get("y", value=True, repr=True)])
        twins.run(retain, *after, get("a", grad=True, repr=True))
    t = twins.fused.tensors[which]
    assert t.retains_grad and t.grad is not None


# ----- shapes, and a chain rebinding a leaf's own name -----

LINSPACE = {"kind": "create", "factory": "linspace", "name": "x", "requires_grad": True}
SHAPES: dict[str, tuple[dict[str, Any], bool]] = {  # the create; must chains run?
    "0-d": (create("x", 0.5, requires_grad=True), False),
    "empty": (create("x", [], requires_grad=True), True),
    "2-d": (create("x", [X, X[::-1]], requires_grad=True), True),
    "below threads": ({**LINSPACE, "args": [-2, 2, parallel.MIN_SIZE - 1]}, True),
    "threaded": ({**LINSPACE, "args": [-2, 2, parallel.MIN_SIZE]}, False),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_chains_of_tensors_of_other_shapes(twins: Held, shape: str) -> None:
    made, chains = SHAPES[shape]
    chain = [("sin",), ("mul", 2.0), ("tanh",), ("pow", 2), ("maximum", 0.1), ("exp",)]
    end = [op("s", "sum", "y"), backward("s", retain_graph=True), get("x", grad=True)]
    twins.run(made, op("y", "mul", "x", 1.0), *steps("y", chain), *end)
    twins.run(backward("s"), get("x", grad=True), get("y", value=True, repr=True))
    if chains:
        assert twins.chained == len(chain)


def test_a_chain_rebinding_a_leafs_name(twins: Held) -> None:
    # The leaf is bound to no name after it; its AccumulateGrad keeps it (and its grad).
    chain = [("sin",), ("add", 1), ("sqrt",), ("div", 2)]
    twins.run(create("x", X, requires_grad=True), *steps("x", chain), op("s", "sum", "x"))
    twins.run(backward("s", retain_graph=True), get("x", value=True, repr=True))
    twins.run(backward("s"), {"kind": "retain_grad", "tensor": "x"})
    assert twins.run(backward("s"))[0] == "error"
    assert twins.chained == len(chain) - 1  # the first rebinds x by the executor


# ----- byte limits and long chains -----

CYCLE: list[Step] = [("mul", 0.999), ("sin",), ("add", 0.01), ("tanh",), ("pow", 1.01), ("exp",)]
CYCLE += [("div", 1.5), ("sigmoid",), ("maximum", -0.5), ("neg",), ("minimum", 2), ("cos",)]


def _long(length: int) -> list[Step]:
    return [CYCLE[i % len(CYCLE)] for i in range(length)]


@pytest.mark.parametrize("requires_grad", [True, False])
def test_byte_limits_fail_chains_at_the_same_command(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch, requires_grad: bool
) -> None:
    # 64 float64s: 512 bytes a tensor, and a byte count every 1/8 of the limit bound.
    start = [create("x", [0.01 * i for i in range(64)], dtype="float64")]
    start[0]["requires_grad"] = requires_grad
    start.append(op("y", "mul", "x", 1.0))
    limits = range(512, 1 << 16, 1536)
    failed = []
    for limit in limits:
        twins = Held(manager, monkeypatch, limits=Limits(max_bytes_per_session=limit))
        after = [op(f"z{i}", "mul", "x", 2.0) for i in range(6)]  # counted on from the chain
        status, detail = chained(twins, _long(120), start, after)
        if status == "error":
            failed.append(detail[2])
            assert detail[0] == "ResourceExhausted"
            assert twins.chained == max(0, min(120, detail[2] - 2))
        else:
            chained(twins, _long(40), [op("y", "mul", "y", 1.0)], [get("y", value=True)])
    # Without grads the chain holds two tensors (x and y), with them all it made.
    assert 0 < len(failed) < len(limits) and len(set(failed)) > (10 if requires_grad else 0)


def test_a_long_chain_with_backward(twins: Held) -> None:
    start = [create("x", X, requires_grad=True), op("y", "mul", "x", 1.0)]
    chained(twins, _long(300), start, [op("s", "sum", "y"), backward("s", retain_graph=True)])
    twins.run(backward("s"), get("x", grad=True, value=True), get("y", value=True, repr=True))
    assert twins.run(backward("s"))[0] == "error"
    assert twins.chained == 300


# ----- random chains -----

_scalar = st.one_of(
    st.sampled_from(SCALARS),
    st.integers(-4, 4),
    st.floats(-1e3, 1e3),
    st.sampled_from([1e30, -1e30, 2**63, 1e-30]),
)
_step = st.one_of(st.tuples(st.sampled_from(UNARY)), st.tuples(st.sampled_from(BINARY), _scalar))
FAILING = [
    op("y", "sin", "y", 1.0),
    op("y", "sub", "y", True),
    op("y", "no_such_op", "y"),
    get("nothing"),
]
GRAD = {"kind": "grad", "outputs": ["s"], "inputs": ["x"]}
TAILS: dict[str, list[dict[str, Any]]] = {
    "backward": [backward("s"), get("x", grad=True, value=True)],
    "twice": [backward("s", retain_graph=True), backward("s"), get("x", grad=True)],
    "grad": [{**GRAD, "create_graph": True, "names": ["g"]}, op("g2", "sum", "g"), backward("g2")],
    "double": [
        backward("s", create_graph=True),
        op("gs", "sum", {"grad_of": "x"}),
        backward("gs"),
        get("x", grad=True),
    ],
    "get": [get("y", value=True, grad=True, repr=True)],
    "inputs": [backward("s", inputs=["x"]), {**GRAD, "inputs": ["y"], "names": ["gy"]}],
    "gradient": [  # w: y's value, detached, and a chain of its own
        op("w", "detach", "y"),
        *steps("w", [("mul", 0.0), ("add", 0.5)]),
        backward("y", gradient="w"),
    ],
    "branch": [  # a chain on z that reads y first
        op("z", "mul", "y", 2.0),
        *steps("z", [("sin",), ("add", 1)]),
        op("t", "sum", "z"),
        backward("t", retain_graph=True),
        backward("s"),
    ],
    "release": [{"kind": "release", "names": ["y"]}, backward("s"), get("x", grad=True)],
    "requires_grad": [{"kind": "requires_grad", "tensor": "y", "requires_grad": False}],
    "write": [op(None, "mul_", "y", 0.5), backward("s"), get("x", grad=True)],
    "write_detached": [
        {"kind": "detach", "tensor": "y", "name": "d"},
        op(None, "mul_", "d", 0.5),
        backward("s"),
    ],
    "zero_grad": [
        backward("s", retain_graph=True),
        {"kind": "zero_grad", "tensors": ["x"]},
        backward("s"),
        get("x", grad=True),
    ],
}
TAIL_CHAINS = {"gradient": 2, "branch": 2}  # commands of the tails that chains run


@st.composite
def _batch(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int]:
    """The commands on y, and how many of them chains run if the batch succeeds."""
    steps = draw(st.lists(_step, min_size=1, max_size=12))
    commands = [op("y", step[0], "y", *step[1:]) for step in steps]
    chained_ = len(commands)
    at = st.one_of(st.just(None), st.just(None), st.just(None), st.integers(0, len(commands) - 1))
    no_grad = draw(at)
    if no_grad is not None:  # run as usual, and the next chain starts from it
        commands[no_grad]["no_grad"] = True
        chained_ -= 1
    failing = draw(at)
    if failing is not None:
        commands.insert(failing, draw(st.sampled_from(FAILING)))
    return commands, chained_


@settings(max_examples=250, deadline=None)
@given(
    dtype=st.sampled_from(["float16", "float32", "float64"]),
    requires_grad=st.sampled_from([True, True, True, False]),
    batch=_batch(),
    more=st.lists(_batch(), max_size=2),  # chains on y continued in later batches
    tails=st.lists(st.sampled_from(sorted(TAILS)), min_size=1, max_size=2),
)
def test_random_chains_run_alike(
    dtype: str,
    requires_grad: bool,
    batch: tuple[list[dict[str, Any]], int],
    more: list[tuple[list[dict[str, Any]], int]],
    tails: list[str],
) -> None:
    manager = SessionManager(sweep_interval=60)
    with pytest.MonkeyPatch.context() as monkeypatch:
        twins = Held(manager, monkeypatch)
        try:
            commands, chained_ = batch
            end = [op("s", "sum", "y"), *TAILS[tails[0]]]
            status, _ = twins.run(
                create("x", X, dtype=dtype, requires_grad=requires_grad),
                op("y", "mul", "x", 1.0),
                *commands,
                *([] if more else end),
            )
            if status == "ok":
                assert twins.chained == chained_ + (0 if more else TAIL_CHAINS.get(tails[0], 0))
            for i, (commands, _) in enumerate(more, 1):
                twins.run(*commands, *(end if i == len(more) else []))
            for tail in tails[1:]:
                twins.run(*TAILS[tail])
            twins.run(get("x", value=True, grad=True), get("y", value=True, grad=True))
        finally:
            manager.shutdown()
