"""Scenarios for the live server, each a batch of command dicts that both wires can express.

Every scenario runs on a fresh session (seed 0) after ``SETUP``; then ``SNAPSHOT`` reads
everything the setup made, so that a failing batch is seen to change nothing. Together they
cover every factory, every op family (elementwise, reduce, shape, linalg, index, in-place),
every autograd command, and every error class the engine raises.
"""

from __future__ import annotations

from typing import Any

import pytest

ParameterSet = Any  # what pytest.param returns

GX = {"grad_of": "x"}


def create(name: str, factory: str = "tensor", *args: Any, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "create", "name": name, "factory": factory, **fields}
    if args:
        body["args"] = list(args)
    return body


def op(name: str | None, op_name: str, *inputs: Any, **attrs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "op", "op": op_name, "inputs": list(inputs), "attrs": attrs}
    if name is not None:
        body["name"] = name
    return body


def ops(op_name: str, names: list[str], *inputs: Any, **attrs: Any) -> dict[str, Any]:
    """An op with several results (split, chunk, max along a dim)."""
    return {**op(None, op_name, *inputs, **attrs), "names": names}


def read(*names: Any) -> list[dict[str, Any]]:
    """Read everything about each tensor: metadata, value, grad and repr."""
    return [{"kind": "get", "tensor": n, "value": True, "grad": True, "repr": True} for n in names]


def backward(tensor: Any, **fields: Any) -> dict[str, Any]:
    return {"kind": "backward", "tensor": tensor, **fields}


def grad(outputs: list[Any], inputs: list[Any], **fields: Any) -> dict[str, Any]:
    return {"kind": "grad", "outputs": outputs, "inputs": inputs, **fields}


def float32(shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"shape": shape, "dtype": "float32", "data": data}


SETUP_NAMES = ["x", "v", "m", "w", "i", "b", "h", "s"]
SETUP = [
    create("x", data=float32([2, 3], [1, 2, 3, 4, 5, 6]), requires_grad=True),
    create("v", data=[0.5, -1.5, 2.0], requires_grad=True),
    create("m", data={"shape": [3, 3], "dtype": "float64", "data": list(range(9))}),
    create("w", "randn", 3, 2, requires_grad=True),
    create("i", data=[2, 0, 1]),
    create("b", data=[True, False, True]),
    create("h", data={"shape": [2], "dtype": "float16", "data": [0.1, 65504]}),
    create("s", data=3.0, requires_grad=True),
]
SNAPSHOT = read(*SETUP_NAMES)


def scenario(id: str, *commands: Any) -> ParameterSet:
    flat: list[dict[str, Any]] = []
    for item in commands:
        flat.extend(item if isinstance(item, list) else [item])
    return pytest.param(flat, id=id)


SCENARIOS = [
    # ----- factories and data -----
    scenario(
        "factories",
        create("a1", "arange", 5),
        create("a2", "arange", 1.0, 2.0, 0.25),
        create("z", "zeros", 2, 3),
        create("o", "ones", [2], dtype="int32"),
        create("f", "full", [2, 2], 7),
        create("e1", "eye", 3),
        create("e2", "eye", 2, 3),
        create("ls", "linspace", 0.0, 1.0, 5),
        create("r", "rand", 2, 2),
        create("rn", "randn", [3], requires_grad=True),
        create("zl", "zeros_like", "x"),
        create("ol", "ones_like", "v"),
        create("fl", "full_like", "i", 9),
        create("em", "empty", 2),
        read("a1", "a2", "z", "o", "f", "e1", "e2", "ls", "r", "rn", "zl", "ol", "fl"),
        {"kind": "get", "tensor": "em"},  # empty's values are whatever memory held
    ),
    scenario(
        "data-forms-and-dtypes",
        create("n1", data=[[1, 2], [3, 4]]),
        create("n2", data=[[True], [False]]),
        create("n3", data=2.5),
        create("n4", data=[1, 2], dtype="float64"),
        create("n5", data={"shape": [2], "dtype": "float32", "b64": "AACAPwAAAMA="}),
        create("n6", data={"shape": [3], "dtype": "float64", "data": ["NaN", "Infinity", -0.0]}),
        create("n7", data={"shape": [2], "dtype": "uint8", "data": [0, 255]}),
        create("n8", data={"shape": [2], "dtype": "int8", "data": [-128, 127]}),
        create("n9", data={"shape": [2], "dtype": "int16", "data": [-1, 1]}),
        create("n10", data={"shape": [1, 0], "dtype": "int32", "data": []}),
        create("n11", data={"shape": [2], "dtype": "float16", "data": [1.5, "-Infinity"]}),
        read(*(f"n{k}" for k in range(1, 12))),
    ),
    # ----- op families -----
    scenario(
        "elementwise",
        op("e1", "add", "x", "v"),
        op("e2", "sub", "x", 1),
        op("e3", "mul", 2.5, "x"),
        op("e4", "div", "x", "v"),
        op("e5", "pow", "x", 2),
        op("e6", "pow", 2.0, "v"),
        op("e7", "rsub", "v", 1),
        op("e8", "floor_divide", "i", 2),
        op("u", "neg", "v"),
        *(op(f"u_{f}", f, "x") for f in ("exp", "log", "sin", "cos", "tan", "tanh", "sqrt")),
        *(op(f"w_{f}", f, "v") for f in ("sigmoid", "relu", "abs", "reciprocal", "sign")),
        *(op(f"r_{f}", f, "v") for f in ("floor", "ceil", "round")),
        op("c1", "clamp", "v", min=-1, max=1.5),
        op("c2", "maximum", "v", "s"),
        op("c3", "minimum", "x", "v"),
        op("c4", "where", "b", "v", 0.25),
        *(op(f"k_{f}", f, "x", "v") for f in ("eq", "ne", "lt", "le", "gt", "ge")),
        op("l1", "logical_and", "b", "i"),
        op("l2", "logical_or", "b", "i"),
        op("l3", "logical_xor", "b", "i"),
        op("l4", "logical_not", "b"),
        op("t1", "to_dtype", "x", dtype="float64"),
        op("total", "sum", "e5"),
        backward("total"),
        read("e1", "e4", "e5", "e6", "e7", "e8", "u", "u_log", "w_sigmoid", "r_round", "c1"),
        read("c2", "c3", "c4", "k_le", "l1", "l2", "l3", "l4", "t1", "x"),
    ),
    scenario(
        "reductions",
        op("r1", "sum", "x", dim=1, keepdim=True),
        op("r2", "mean", "x", dim=0),
        op("r3", "prod", "v"),
        op("r4", "max", "x"),
        ops("max", ["mx", "mi"], "x", dim=1),
        ops("min", ["nx", "ni"], "x", dim=0, keepdim=True),
        op("r5", "argmax", "v"),
        op("r6", "argmin", "x", dim=1),
        op("r7", "norm", "x", p=1),
        op("r8", "logsumexp", "x", dim=1),
        op("r9", "softmax", "x", dim=1),
        op("r10", "log_softmax", "v", dim=0),
        op("t", "add", "r8", "r7"),
        op("total", "sum", "t"),
        backward("total", retain_graph=True),
        op("total2", "sum", "r9"),
        backward("total2"),
        read("r1", "r2", "r3", "r4", "mx", "mi", "nx", "ni", "r5", "r6", "r7", "r8", "r9"),
        read("r10", "x"),
    ),
    scenario(
        "shape",
        op("p1", "reshape", "x", shape=[3, 2]),
        op("p2", "view", "x", shape=[-1]),
        op("p3", "transpose", "x", dim0=0, dim1=1),
        op("p4", "permute", "x", dims=[1, 0]),
        op("p5", "unsqueeze", "v", dim=0),
        op("p6", "squeeze", "p5"),
        op("p7", "flatten", "x"),
        op("p8", "expand", "v", shape=[2, 3]),
        op("p9", "cat", ["x", "p8"], dim=0),
        op("p10", "stack", ["v", "v"], dim=1),
        ops("split", ["q1", "q2"], "x", 2, dim=1),
        ops("chunk", ["k1", "k2", "k3"], "x", 3, dim=1),
        op("p11", "clone", "x"),
        op("mix", "mul", "p9", 1),
        op("total", "sum", "mix"),
        op("more", "sum", "q2"),
        op("all", "add", "total", "more"),
        backward("all"),
        read("p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "q1", "q2", "k3"),
        read("p11", "x", "v"),
    ),
    scenario(
        "linalg",
        op("a", "mm", "x", "w"),
        op("b1", "mv", "x", "v"),
        op("b2", "dot", "v", "v"),
        op("b3", "outer", "v", "v"),
        op("x3", "unsqueeze", "x", dim=0),
        op("w3", "unsqueeze", "w", dim=0),
        op("b4", "bmm", "x3", "w3"),
        op("b5", "matmul", "x", "v"),
        op("b6", "matmul", "x3", "w"),
        op("b7", "matmul", "m", "m"),
        op("total", "sum", "b6"),
        backward("total"),
        read("a", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "x", "w"),
    ),
    scenario(
        "index",
        op("g1", "index", "x", key=[0]),
        op("g2", "index", "x", key=[{"slice": [None, None, 2]}]),
        op("g3", "index", "x", key=["...", 1]),
        op("g4", "index", "v", key=[{"tensor": "i"}]),
        op("g5", "index", "x", key=[None, 1, {"slice": [0, 2]}]),
        op("g6", "index_select", "x", "i", dim=1),
        op("t", "add", "g4", "g1"),
        op("total", "sum", "t"),
        op("more", "sum", "g6"),
        op("all", "mul", "total", "more"),
        backward("all"),
        read("g1", "g2", "g3", "g4", "g5", "g6", "x", "v"),
    ),
    scenario(
        "attribute-types",  # an int attribute is an int, a whole float a float, on every wire
        op("c1", "clamp", "i", min=1.0),
        op("c2", "clamp", "i", min=1),
        op("c3", "clamp", "i", max=1.5),
        op("d", "to_dtype", "x", dtype="float64"),
        op("n", "norm", "x", p=1.0, dim=[0, 1], keepdim=True),
        read("c1", "c2", "c3", "d", "n"),
    ),
    scenario(
        "in-place",
        op("c", "clone", "x"),
        op(None, "add_", "c", 1),
        op(None, "mul_", "c", 2),
        op(None, "sub_", "c", "v", alpha=2),
        op(None, "div_", "c", 4),
        op("alias", "add_", "c", 0.5),
        op("total", "sum", "c"),
        backward("total"),
        create("d", "zeros", 3),
        op(None, "copy_", "d", "v"),
        op(None, "mul_", "m", 2),
        {**op("ng", "mul", "x", 3), "no_grad": True},
        read("c", "alias", "d", "m", "ng", "x", "v"),
    ),
    # ----- autograd commands -----
    scenario(
        "autograd",
        op("y", "mul", "x", "x"),
        {"kind": "retain_grad", "tensor": "y"},
        op("t", "sum", "y"),
        backward("t", retain_graph=True),
        backward("t", retain_graph=True),  # grads accumulate
        create("g", "ones", 3),
        op("z", "mul", "v", "v"),
        backward("z", gradient="g", inputs=["v"]),
        grad(["t"], ["x", "v"], allow_unused=True, retain_graph=True, names=["dx", "dv"]),
        grad(["t"], ["x"], create_graph=True, names=["gx"]),
        op("gs", "sum", "gx"),
        grad(["gs"], ["x"], names=["ggx"]),
        {"kind": "detach", "tensor": "y", "name": "yd"},
        {"kind": "zero_grad", "tensors": ["v"]},
        {"kind": "zero_grad", "tensors": ["s"], "set_to_none": True},
        {"kind": "requires_grad", "tensor": "m", "requires_grad": True},
        {"kind": "requires_grad", "tensor": "s", "requires_grad": False},
        {"kind": "release", "names": ["g", "z"]},
        read("y", "t", "dx", "gx", "ggx", "yd", "x", "v", "m", "s"),
        {"kind": "get", "tensor": GX, "value": True, "repr": True},
    ),
    scenario(
        "auto-names",
        op(None, "neg", "x"),
        op(None, "exp", "%1"),
        grad(["s"], ["s"]),
        read("%1", "%2", "%3"),
    ),
    # ----- failures: the batch changes nothing -----
    scenario("shape-mismatch", op("a", "neg", "x"), op("c", "add", "x", "h")),
    scenario("dtype-mismatch", create("n", "ones", 1), op("c", "dot", "v", "i")),
    scenario("dim-out-of-range", op("c", "sum", "x", dim=5)),
    scenario("matmul-shapes", op(None, "mul_", "m", 0), op("c", "mm", "x", "x")),
    scenario(
        "view-not-contiguous",
        op("t", "transpose", "x", dim0=0, dim1=1),
        op("c", "view", "t", shape=[6]),
    ),
    scenario("index-out-of-range", op("c", "index", "v", key=[7])),
    scenario("softmax-of-ints", op("c", "softmax", "i", dim=0)),
    scenario("unknown-op", op("a", "neg", "x"), op("c", "frobnicate", "x")),
    scenario("unknown-factory", create("c", "magic")),
    scenario("bad-name", create("n", "zeros", 1), create("9c", "zeros", 1)),
    scenario("wrong-arity", op("c", "dot", "x")),
    scenario("unknown-attr", op("c", "sum", "x", bogus=1)),
    scenario("names-count", ops("split", ["a"], "x", 1, dim=1)),
    scenario("missing-data", create("c")),
    scenario("unknown-tensor", op("a", "neg", "x"), op("c", "neg", "nope")),
    scenario("release-unknown", {"kind": "release", "names": ["x", "nope"]}),
    scenario("grad-is-none", {"kind": "get", "tensor": {"grad_of": "v"}}),
    scenario("backward-non-scalar", op("y", "mul", "x", 2), backward("y")),
    scenario(
        "backward-twice",
        op("y", "mul", "x", "x"),
        op("t", "sum", "y"),
        backward("t"),
        backward("t"),
    ),
    scenario("no-grad-fn", backward("i")),
    scenario("grad-unused", op("y", "sum", "x"), grad(["y"], ["v"])),
    scenario("in-place-on-leaf", op(None, "add_", "x", 1)),
    scenario(
        "modified-saved-tensor",
        op("c", "clone", "x"),
        op("y", "mul", "c", "c"),
        op(None, "add_", "c", 1),
        op("t", "sum", "y"),
        backward("t"),
    ),
    scenario("too-many-elements", create("a", "zeros", 2), create("c", "zeros", 2**28)),
    scenario("arange-too-long", create("c", "arange", 0, 2**40)),
    scenario("batch-too-long", *[op(None, "neg", "x")] * 65),
]
