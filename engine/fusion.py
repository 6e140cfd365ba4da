"""Chains of ops in a batch, run with less per-command work than one executor call each.

A batch arrives whole, so the session can see ahead: after an op bound its result to a
name, the commands that follow it often apply one more elementwise op to that name and bind
the result to the same name again (``y = sin(y)``, ``y = y * 0.9``, ...). No command can
see the tensors in between: each is replaced by the next before another command runs.
``run_chain`` runs such a run of commands itself, and each command still calls the very op
function its executor would (the graph, the values and the grads are the engine's own);
what it saves is the bookkeeping around the call:

- the name is bound once, at the end of the chain (and before a byte check, which walks
  the session's names), with one entry in the batch's undo log, the first command's;
- the op's input is the tensor at hand, not a name to look up;
- limits: the chain's tensors have their input's layout (array type, dtype, shape), which
  is checked for each result, so the element and tensor counts cannot change; the bytes are
  counted per command as ``Session.new`` counts them, and checked at the same commands;
- results are equal records (``Result`` of one ``TensorInfo``) built once per kind of
  result (grad_fn name, requires_grad) and shared, which they may be: both are immutable.

A command that does not fit, or whose result does not (an op that gave another layout, no
fresh tensor, ...), ends the chain: the session runs it the usual way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from engine.commands import Command, Op, Ref
from engine.executors import BAD_ARGUMENTS, bad_arguments, op_result
from engine.ops.registry import OPS
from engine.results import Result, brief
from engine.tensor import Tensor

if TYPE_CHECKING:
    from engine.session import Session

_SCALARS = frozenset((int, float, bool))
_new = tuple.__new__


def run_chain(
    s: Session,
    first: Op,
    commands: Sequence[Command],
    start: int,
    append: Callable[[Result], None],
) -> int:
    """Run the chain that continues ``first`` (just run) from ``commands[start]``; returns
    the index of the first command it did not run."""
    name = first.name
    if name is None or first.names is not None:  # a server-chosen name, or several
        return start
    tensors = s.tensors
    y = tensors[name]  # bound by ``first``
    layout = y._layout
    if layout is None:
        layout = y.layout()
    if not layout:
        return start
    n = len(commands)
    shared: dict[str | None, Result] = {}
    nbytes = y.data.nbytes  # of every tensor of the chain: they have its layout
    unchecked = s._unchecked_bytes
    limit = s.limits.max_bytes_per_session >> 3
    for i in range(start, n):
        c = commands[i]
        if type(c) is not Op:
            break
        op, inputs, attrs, out_name, names, no_grad = c
        if out_name != name or attrs or names is not None or no_grad:
            break
        fn = OPS.get(op)
        if fn is None:
            break
        k = len(inputs)
        ref = inputs[0] if k else None
        if type(ref) is not Ref or ref.name != name or ref.grad:
            break
        try:
            if k == 1:
                out = fn(y)
            elif k == 2 and type(inputs[1]) in _SCALARS:
                out = fn(y, inputs[1])
            else:
                break
        except BAD_ARGUMENTS as exc:
            raise bad_arguments(c, exc) from exc
        # (A failure leaves the name unbound: the batch restores every name it changed.)
        node = None
        if (
            type(out) is not Tensor
            or out._layout is not layout
            or out is y  # an in-place op
            or out.grad is not None
            or out._requires_grad is ((node := out.grad_fn) is None)
        ):
            # Not a fresh tensor of the chain's layout: the executor's way, which ends it
            # (binding the name: a tensor of the chain in it would only be replaced).
            s._unchecked_bytes = unchecked
            append(op_result(s, c, out))
            return i + 1
        y = out
        unchecked += nbytes
        if unchecked > limit:  # Session.new's check, at the same command
            tensors[name] = y
            s._check_bytes()  # which starts the count again
            unchecked = 0
        key = None if node is None else node.name
        r = shared.get(key)
        if r is None:
            r = shared[key] = _new(Result, ("op", (brief(name, out),)))
        append(r)
    else:
        i = n
    tensors[name] = y
    s._unchecked_bytes = unchecked
    return i
