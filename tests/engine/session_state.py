"""Test helpers for sessions: command builders, running a batch, and a session's whole state."""

from __future__ import annotations

from typing import Any

import numpy
import pytest

from engine import fusion, graph
from engine.errors import EngineError
from engine.parsing import parse_batch
from engine.session import Result, Session, SessionManager
from engine.tensor import Tensor

# ----- running commands -----


def open_session(manager: SessionManager, **kwargs: Any) -> Session:
    session_id, token = manager.create(**kwargs)
    return manager.get(session_id, token)


def run(session: Session, *bodies: dict[str, Any]) -> list[Result]:
    """Parse and execute one batch of JSON-like commands."""
    return session.execute(parse_batch(list(bodies)))


def fails(
    session: Session, error: type[EngineError], *bodies: dict[str, Any], index: int | None = None
) -> EngineError:
    """Run a batch that must fail with ``error`` at ``index`` (default: its last command),
    leaving the session exactly as it was."""
    before = snapshot(session)
    with pytest.raises(error) as info:
        run(session, *bodies)
    assert info.value.command_index == (len(bodies) - 1 if index is None else index)
    assert snapshot(session) == before
    return info.value


def value(session: Session, ref: Any) -> numpy.ndarray:
    info = run(session, get(ref, value=True))[0].tensors[0]
    assert info is not None and info.value is not None
    return info.value


def grad(session: Session, name: str) -> numpy.ndarray | None:
    info = run(session, get(name, grad=True))[0].tensors[0]
    assert info is not None
    return info.grad


def create(name: str, data: Any, **extra: Any) -> dict[str, Any]:
    return {"kind": "create", "data": data, "name": name, **extra}


def op(name: str | None, op_name: str, *inputs: Any, **attrs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "op", "op": op_name, "inputs": list(inputs)}
    if attrs:
        body["attrs"] = attrs
    if name is not None:
        body["name"] = name
    return body


def backward(name: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "backward", "tensor": name, **extra}


def get(ref: Any, **extra: Any) -> dict[str, Any]:
    return {"kind": "get", "tensor": ref, **extra}


# ----- the state of a session -----


def _array(a: Any) -> tuple[str, tuple[int, ...], bytes]:
    a = numpy.asarray(a)
    return a.dtype.str, a.shape, a.tobytes()


def _graph(root: Any, names: dict[int, str]) -> list[Any]:
    """Every node reachable from ``root``, depth first in edge order, with what it saves."""
    out: list[Any] = []
    seen: set[int] = set()
    alive: list[Any] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None:
            out.append(None)
            continue
        if id(node) in seen:
            out.append(("seen", node.name))
            continue
        seen.add(id(node))
        if isinstance(node, graph.AccumulateGrad):
            leaf = node.variable
            out.append(("AccumulateGrad", names.get(id(leaf)), _tensor(leaf, names, deep=False)))
            continue
        node = _expand(node)  # a fused node as the plain nodes it stands for
        alive.append(node)  # so that no other node takes its id
        saved = None
        if node.inputs is not None and node.arrays is not None:
            saved = [_array(a) if hasattr(a, "shape") else repr(a) for a in node.arrays]
        out.append(
            {
                "name": node.name,
                "freed": node.freed,
                "saved": saved,
                "versions": None if node.versions is None else list(node.versions),
                "out": None if node.out is None else _array(node.out),
                "out_versions": node.out_versions,
                "retained": None if node.retained is None else len(node.retained),
                "edges": len(node.edges),
            }
        )
        stack.extend(reversed(node.edges))
    return out


def _expand(node: Any) -> Any:
    """The last of the plain nodes that a fused node (engine.fusion) stands for, with its
    fields, for a graph to compare with the unfused one; any other node itself."""
    if not isinstance(node.op, fusion.Chain):
        return node
    last = node.op.plain(node)[-1]
    last.retained = node.retained
    last.out_version = node.out_version
    last.out_versions = node.out_versions
    return last


def _tensor(t: Tensor, names: dict[int, str], deep: bool = True) -> dict[str, Any]:
    state: dict[str, Any] = {
        "value": _array(t.data),
        "grad": None if t.grad is None else _array(t.grad.data),
        "requires_grad": t.requires_grad,
        "version": t.version,
        "grad_fn": None if t.grad_fn is None else t.grad_fn.name,
        "is_leaf": t.is_leaf,
        "retains_grad": t.retains_grad,
    }
    if deep:
        state["graph"] = _graph(t.grad_fn, names) if t.grad_fn is not None else []
        grad_fn = t.grad.grad_fn if t.grad is not None else None
        state["grad_graph"] = _graph(grad_fn, names) if grad_fn is not None else []
    return state


def snapshot(session: Session) -> dict[str, Any]:
    """Names -> (value, grad, flags, version, graph with freed flags and saved bytes); RNG."""
    names = {id(t): name for name, t in session.tensors.items()}
    return {
        "tensors": {name: _tensor(t, names) for name, t in sorted(session.tensors.items())},
        "identity": {name: id(t) for name, t in session.tensors.items()},
        "rng": session.generator.get_state(),
        "next_auto": session._next_auto,
    }


# ----- the byte count, as first written: the oracle for Session.bytes_held -----


def reference_bytes(session: Session) -> int:
    """Distinct bytes of every array reachable from the session's tensors, by their base."""
    arrays: list[Any] = []
    stack: list[Any] = []
    seen: set[int] = set()

    def tensor(t: Tensor) -> None:
        arrays.append(t.data)
        if t.grad_fn is not None:
            stack.append(t.grad_fn)
        if t.grad is not None:
            arrays.append(t.grad.data)
            if t.grad.grad_fn is not None:
                stack.append(t.grad.grad_fn)

    for t in session.tensors.values():
        tensor(t)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, graph.AccumulateGrad):
            tensor(node.variable)
            continue
        if node.inputs is not None and node.arrays is not None:
            arrays.extend(a for a in node.arrays if hasattr(a, "nbytes"))
        if node.out is not None:
            arrays.append(node.out)
        stack.extend(e for e in node.edges if e is not None)
    bases: dict[int, int] = {}
    for a in arrays:
        while getattr(a, "base", None) is not None:
            a = a.base
        bases[id(a)] = int(a.nbytes)
    return sum(bases.values())
