"""The seed notebook on a live server: each cell as batches of commands, on any wire.

``replay_seed`` takes any ``Remote`` (HTTP, gRPC, in process) and returns what each cell
shows, rendered by the notebook's display rules (``tests.seed.display``), so that a test
compares it with the notebook's own output.
"""

from __future__ import annotations

from typing import Any

from tests import seed
from tests.service.remote import Remote, Result


class Shown:
    """A repr the server sent, displayed by the notebook's rules."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _op(name: str, op: str, *inputs: Any, **attrs: Any) -> dict[str, Any]:
    return {"kind": "op", "op": op, "inputs": list(inputs), "name": name, "attrs": attrs}


def _show(*names: Any) -> list[dict[str, Any]]:
    return [{"kind": "get", "tensor": n, "repr": True} for n in names]


def _shown(results: list[Result]) -> str:
    """What a cell shows: the reprs its gets read, one value or a tuple of them."""
    reprs = [
        Shown(t.repr)
        for r in results
        if r.kind == "get"
        for t in r.tensors
        if t is not None and t.repr is not None
    ]
    if not reprs:
        return ""
    return seed.display(reprs[0] if len(reprs) == 1 else tuple(reprs))


GRAD_X = {"grad_of": "x"}
ZERO_GRAD_X = {"kind": "op", "op": "zero_", "inputs": [GRAD_X]}
MAX_LOOPS = 64  # f(a) doubles b until its norm reaches 1000: a bound, not a limit of f


def _f(remote: Remote, a: str) -> str:
    """The notebook's f(a): Python control flow on the client, tensors on the server."""
    remote.run([_op("b", "mul", a, 2)])
    for _ in range(MAX_LOOPS):
        cond = _op("nb", "norm", "b"), _op("cond", "lt", "nb", 1000)
        (*_, read) = remote.run([*cond, {"kind": "get", "tensor": "cond", "value": True}])
        assert read.tensors[0] is not None
        if not read.tensors[0].item():
            break
        remote.run([_op("b", "mul", "b", 2)])
    else:
        raise AssertionError("f(a) did not leave its loop")
    (*_, read) = remote.run(
        [
            _op("bs", "sum", "b"),
            _op("cond", "gt", "bs", 0),
            {"kind": "get", "tensor": "cond", "value": True},
        ]
    )
    assert read.tensors[0] is not None
    if read.tensors[0].item():
        return "b"  # c = b: the client's name for the same tensor
    remote.run([_op("c", "mul", 100, "b")])
    return "c"


def replay_seed(remote: Remote) -> dict[str, str]:
    """Every cell of the notebook as batches of commands; what each cell shows, by label."""
    run = remote.run
    shown = {"In [1]": "", "In [68]": ""}  # import torch; def f(a): ...
    shown["In [2]"] = _shown(
        run([{"kind": "create", "name": "x", "factory": "arange", "args": [4.0]}, *_show("x")])
    )
    (_, read) = run(
        [
            {"kind": "requires_grad", "tensor": "x", "requires_grad": True},
            {"kind": "get", "tensor": "x"},
        ]
    )
    assert read.tensors[0] is not None and not read.tensors[0].has_grad  # x.grad is None
    shown["In [3]"] = ""
    shown["In [5]"] = _shown(run([_op("out", "dot", "x", "x"), *_show("out")]))
    shown["In [4]"] = _shown(
        run([_op("xx", "dot", "x", "x"), _op("y", "mul", 2, "xx"), *_show("y")])
    )
    shown["In [6]"] = _shown(run([{"kind": "backward", "tensor": "y"}, *_show(GRAD_X)]))
    shown["In [8]"] = _shown(run([_op("out", "mul", 4, "x"), *_show(GRAD_X, "out")]))
    shown["In [9]"] = _shown(
        run([_op("x4", "mul", 4, "x"), _op("out", "eq", GRAD_X, "x4"), *_show("out")])
    )
    shown["In [10]"] = _shown(run([_op("out", "sum", "x"), *_show("out")]))
    shown["In [11]"] = _shown(
        run(
            [
                ZERO_GRAD_X,
                _op("y", "sum", "x"),
                {"kind": "backward", "tensor": "y"},
                *_show(GRAD_X),
            ]
        )
    )
    shown["In [18]"] = _shown(run([_op("out", "mul", "x", "x"), *_show("x", "out")]))
    (_, y) = run([ZERO_GRAD_X, _op("y", "mul", "x", "x")])
    assert y.tensors[0] is not None
    length = y.tensors[0].shape[0]  # len(y), which the client needs for torch.ones
    ones = {"kind": "create", "name": "ones", "factory": "ones", "args": [length]}
    shown["In [20]"] = _shown(
        run([ones, {"kind": "backward", "tensor": "y", "gradient": "ones"}, *_show(GRAD_X)])
    )
    shown["In [22]"] = _shown(run([_op("out", "sum", "y"), ones, *_show("out", "ones")]))
    shown["In [64]"] = _shown(
        run(
            [
                ZERO_GRAD_X,
                _op("y", "mul", "x", "x"),
                {"kind": "detach", "tensor": "y", "name": "u"},
                _op("z", "mul", "u", "x"),
                _op("zs", "sum", "z"),
                {"kind": "backward", "tensor": "zs"},
                _op("out", "eq", GRAD_X, "u"),
                *_show("out"),
            ]
        )
    )
    shown["In [66]"] = _shown(run(_show("y", "z", "u", GRAD_X)))
    shown["In [67]"] = _shown(
        run(
            [
                ZERO_GRAD_X,
                _op("ys", "sum", "y"),
                {"kind": "backward", "tensor": "ys"},
                _op("x2", "mul", 2, "x"),
                _op("out", "eq", GRAD_X, "x2"),
                *_show("out"),
            ]
        )
    )
    run(
        [
            {
                "kind": "create",
                "name": "a",
                "factory": "randn",
                "args": [[]],
                "requires_grad": True,
            },
            {"kind": "create", "name": "a", "data": 100.0, "requires_grad": True},
        ]
    )
    d = _f(remote, "a")
    shown["In [79]"] = _shown(run([{"kind": "backward", "tensor": d}, *_show("a", d)]))
    shown["In [80]"] = _shown(
        run(
            [
                _op("q", "div", d, "a"),
                _op("out", "eq", {"grad_of": "a"}, "q"),
                *_show("out", {"grad_of": "a"}),
            ]
        )
    )
    return shown
