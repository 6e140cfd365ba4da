"""Chains of ops in a batch, run as one: fewer objects and less per-command work.

A batch arrives whole, so the session can see ahead: after an op bound its result to a
name, the commands that follow it often apply one more elementwise op to that name and bind
the result to the same name again (``y = sin(y)``, ``y = y * 0.9``, ...). No command can
see the tensors in between: each is replaced by the next before another command runs.
``run_chain`` runs such a run of commands itself.

Fused: an op of one small NumPy tensor of floats, or of one and a Python number on its
right (``FUSIBLE``), computes its values exactly as its fast path does (engine.ops.fast:
the same ufunc or forward on the same arrays), but makes no Tensor and no Node of its own.
A run of them records one node (``Chain``) whose rule runs the ops' own rules in turn on
the arrays each of them would have saved; everything a command or backward can observe is
that of the plain nodes: values and gradients bit for bit, the node's name (the last op's),
saved buffers and their bytes, versions, freed buffers, retained gradients. A backward
with ``create_graph=True`` first turns each fused node it reaches into the plain nodes it
stands for (``Chain.unfuse``, from engine.autograd), so that the gradient's own graph is
theirs.

Other ops of the run (a tensor on the right, say) are called as their executor would, on
the tensor at hand; whatever is fused before them is made a tensor first. Left out:
CuPy arrays, and ``floor_divide``, whose rule raises (a fused node checks its saved
input's version before its rules run, a plain node after the later ops' rules).

What the chain saves besides: the name is bound once, at the end (and before a byte check,
which walks the session's names), with one entry in the batch's undo log, the first
command's; the element and tensor counts cannot change (every tensor of the chain has its
input's layout: a ufunc on a float array and a number of that dtype or a Python number
keeps it, and another forward's result is checked); the bytes are counted per command as
``Session.bind`` counts them, and checked at the same commands; results are equal records
(``Result`` of one ``TensorInfo``) built once per kind of result and shared, which they may
be: both are immutable.

A command that does not fit, or whose result does not, ends the chain: the session runs
it the usual way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from engine import grad_mode, journal
from engine.commands import Command, Op, Ref
from engine.dtypes import CONSTANTS32, CONSTANTS64, FLOAT32, FLOAT64, NDARRAY, NUMBERS
from engine.executors import BAD_ARGUMENTS, bad_arguments, op_result
from engine.graph import NO_ATTRS, Node, new_node, skip_orders
from engine.ops import elementwise as ew
from engine.ops.registry import OPS, Primitive
from engine.results import DTYPE_NAMES, Result, TensorInfo, brief
from engine.tensor import Layout, Tensor, new_tensor

if TYPE_CHECKING:
    from engine.session import Session

_new = tuple.__new__

# A fused step: (primitive, Python number or None for an op of one operand, the index of
# the array its rule reads as its input, of the array it reads as its output; -1: none).
Step = tuple[Primitive, Any, int, int]


# What a fused step needs of its op, unpacked once a command: the primitive, its ufunc (or
# None: its forward), its operands, whether its plain node keeps its input (engine.ops.fast:
# with a number on the right, only where its own gradient reads it: ``x * 2.0`` keeps no
# x) and its output, whether it refuses a bool on the right (PyTorch refuses ``x - True``,
# engine.functional.sub), and its node's name.
Fusible = tuple[Primitive, Any, int, bool, bool, bool, str]


def _fusible_op(op: Primitive) -> Fusible:
    keeps_input = op.saves_inputs and (op.operands == 1 or op.needs is None or 0 in op.needs[0])
    return (
        op, op.ufunc, op.operands, keeps_input, op.saves_output, op is ew.sub, op.fixed_name
    )  # fmt: skip


def _fusible() -> dict[str, Fusible]:
    table = {
        name: _fusible_op(fn)
        for name, fn in OPS.items()
        if isinstance(fn, Primitive)
        and fn.fast
        and fn.differentiable
        and fn.vjp is not None
        and fn.operands in (1, 2)
        and fn is not ew.floor_divide  # whose rule raises: the chain's checks run before it
    }
    # Commands reach these through composites that take a tensor on the left straight to
    # the primitive's fast path (engine.functional).
    for name, op in (("add", ew.add), ("sub", ew.sub), ("mul", ew.mul), ("div", ew.div)):
        table[name] = _fusible_op(op)
    table["pow"] = _fusible_op(ew.pow_scalar)
    return table


FUSIBLE = _fusible()


class Chain:
    """The op of a fused node: its ops in order, and what ``plain`` needs to rebuild them.

    The node keeps, as its ``arrays``, the arrays its ops' rules read (in the order they
    were made; the first, the chain's input where the first op reads it, else None) and,
    as its ``out``, the last op's output where its rule reads it. ``inputs`` and
    ``versions`` are as long: the chain's input Tensor where the first op reads it, and its
    version (``Node.check_saved``), then None for the arrays no command can write.
    """

    __slots__ = ("edge", "layout", "name", "outputs_first", "saves", "steps")
    fused = True
    elementwise = False  # its tensors are too small for threads

    def __init__(self, steps: tuple[Step, ...], edge: Any, layout: Layout) -> None:
        self.steps = steps
        self.edge = edge
        self.layout = layout
        self.name = steps[-1][0].name
        self.saves = int(any(step[0].saves for step in steps))  # freed and checked as any
        self.outputs_first = len(steps) > 1  # the last op's output is checked first

    def vjp(self, g: Any, out: Any, *arrays: Any) -> tuple[Any, ...]:
        """The ops' rules in turn, as the plain nodes would run them (autograd's plain path)."""
        saved = (*arrays, out)
        for op, number, i_in, i_out in reversed(self.steps):
            x = saved[i_in] if i_in >= 0 else g  # a plain node keeping no input gets g
            o = saved[i_out] if i_out >= 0 else None
            grads = op.vjp(g, o, x) if number is None else op.vjp(g, o, x, number)  # type: ignore[misc]
            g = grads[0]  # every fused op's rule gives its input's gradient
        return (g,)

    def unfuse(self, node: Node) -> list[Node]:
        """Make ``node`` the last of the plain nodes it stands for and return the others,
        which run after it: under ``create_graph=True`` the graph of a gradient holds the
        nodes whose rules made it, and a later pass that frees its buffers frees theirs
        (PyTorch's graph). Journaled: a failed batch gets the fused node back."""
        if journal.active():
            state = tuple(getattr(node, field) for field in _UNFUSED)
            journal.record(lambda: _restore(node, state))
        nodes = self.plain(node)
        last = nodes.pop()
        # The orders the plain nodes would have had, taken for them when the node was made
        # (``_tensor``): each one above the next, this node's the last.
        for k, other in enumerate(nodes):
            other.order = node.order + len(nodes) - k
        for field in _UNFUSED:
            setattr(node, field, getattr(last, field))
        return nodes

    def plain(self, node: Node) -> list[Node]:
        """The plain nodes that ``node``, whose op this is, stands for, in order: those the
        fast paths would have made (engine.ops.fast), the first's edge the node's, with the
        node's saved buffers, or freed as it is."""
        inputs, versions = node.inputs, node.versions
        arrays = None if node.arrays is None else tuple(node.arrays)
        first = None if inputs is None else inputs[0]
        version = None if versions is None else versions[0]
        return self._plain(arrays, node.out, first, version, node.freed)

    def _plain(
        self,
        arrays: tuple[Any, ...] | None,
        out: Any,
        first: Tensor | None,
        version: int | None,
        freed: bool,
    ) -> list[Node]:
        """The plain nodes the fast paths would have made (engine.ops.fast), in order."""
        saved = None if arrays is None else (*arrays, out)
        nodes: list[Node] = []
        edge = self.edge
        for k, (op, number, i_in, i_out) in enumerate(self.steps):
            unary = number is None
            versions: Any = None
            if i_in >= 0:
                v = version if k == 0 else 0
                versions = (v,) if unary else (v, None)
            inputs: Any = None
            kept: Any = (None,) if unary else (None, number)  # the rule gets g for None
            if i_in >= 0 and saved is not None:
                array = saved[i_in]
                t = first if k == 0 else new_tensor(array, True, edge, self.layout)
                inputs = (t,) if unary else (t, number)
                kept = (array,) if unary else (array, number)
            edges = (edge,) if unary else (edge, None)
            node = new_node(op, op.fixed_name, NO_ATTRS, edges, kept, kept, inputs, versions, True)
            if freed and op.saves:
                node.freed = True
                node.inputs = node.arrays = node.metas = None
            elif i_out >= 0 and saved is not None:
                node.out = saved[i_out]
            nodes.append(node)
            edge = node
        return nodes


# What unfusing changes of a fused node: the last plain node's fields.
_UNFUSED = ("op", "edges", "arrays", "metas", "inputs", "versions", "freed", "out", "plain")


def _restore(node: Node, state: tuple[Any, ...]) -> None:
    for field, value in zip(_UNFUSED, state, strict=True):
        setattr(node, field, value)


def run_chain(
    s: Session,
    first: Op,
    commands: Sequence[Command],
    start: int,
    append: Callable[[Result], None],
) -> int:
    """Run the chain that continues ``first`` (just run) from ``commands[start]``, an op
    binding the same name (``Session.execute`` calls it only then); returns the index of
    the first command it did not run."""
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
    array_type, dtype, shape = layout
    fusible = FUSIBLE if array_type is NDARRAY else {}
    constants = CONSTANTS32 if dtype is FLOAT32 else CONSTANTS64 if dtype is FLOAT64 else None
    recording = grad_mode.is_grad_enabled()
    n = len(commands)
    shared: dict[str | None, Result] = {}
    nbytes = y.data.nbytes  # of every tensor of the chain: they have its layout
    unchecked = s._unchecked_bytes
    limit = s.limits.max_bytes_per_session >> 3
    # The fused run so far: its input, steps, the arrays their rules read, and the array at
    # hand with its index among them (-1: not kept).
    steps: list[Step] = []
    kept: list[Any] = [None]
    array = y.data
    at = -1
    grads = recording and y._requires_grad
    checked: Any = None  # the Ref last found to name the chain's tensor (Refs are shared)
    i = start
    while i < n:
        c = commands[i]
        if type(c) is not Op:
            break
        op, inputs, attrs, out_name, names, no_grad = c
        if out_name != name or attrs or names is not None or no_grad:
            break
        k = len(inputs)
        ref = inputs[0] if k else None
        if ref is not checked:
            if type(ref) is not Ref or ref.name != name or ref.grad:
                break
            checked = ref
        number: Any = None
        f = fusible.get(op)
        if f is not None:
            fn_op, ufunc, operands, keeps_input, keeps_output, no_bool, node_name = f
            out: Any = None
            try:
                if k == 1 and operands == 1:
                    out = ufunc(array) if ufunc is not None else fn_op.forward(array)
                elif k == 2 and operands == 2:
                    number = inputs[1]
                    kind = type(number)
                    if kind is float or kind is int or (kind is bool and not no_bool):
                        if ufunc is None:
                            out = fn_op.forward(array, number)
                        else:  # as the fast path calls it: of the array's dtype, shape, type
                            out = ufunc(array, number if constants is None else constants[number])
            except BAD_ARGUMENTS as exc:
                raise bad_arguments(c, exc) from exc
            if out is not None and (
                ufunc is not None
                or (type(out) is NDARRAY and out.dtype == dtype and out.shape == shape)
            ):
                if grads:
                    i_in = -1
                    if keeps_input:
                        if at < 0:
                            if steps:
                                at = len(kept)
                                kept.append(array)
                            else:
                                at = 0
                                kept[0] = array
                        i_in = at
                    at = -1
                    if keeps_output:
                        at = len(kept)
                        kept.append(out)
                    steps.append((fn_op, number, i_in, at))
                    key: str | None = node_name
                else:
                    steps.append((fn_op, number, -1, -1))
                    key = None
                array = out
                unchecked += nbytes
                if unchecked > limit:  # Session.bind's check, at the same command
                    y = tensors[name] = _tensor(y, steps, kept, array, layout, grads)
                    steps, kept, at = [], [None], -1
                    s._check_bytes()  # which starts the count again
                    unchecked = 0
                r = shared.get(key)
                if r is None:
                    r = shared[key] = _new(Result, ("op", (_info(name, layout, key),)))
                append(r)
                i += 1
                continue
            # A forward that gives another layout: the executor's way, on a tensor.
        fn = OPS.get(op)
        if fn is None:
            break
        if steps:
            y = _tensor(y, steps, kept, array, layout, grads)
            steps, kept, at = [], [None], -1
        try:
            if k == 1:
                out = fn(y)
            elif k == 2 and type(inputs[1]) in NUMBERS:
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
        array = out.data
        grads = recording and out._requires_grad
        i += 1
        unchecked += nbytes
        if unchecked > limit:
            tensors[name] = y
            s._check_bytes()
            unchecked = 0
        key = None if node is None else node.name
        r = shared.get(key)
        if r is None:
            r = shared[key] = _new(Result, ("op", (brief(name, out),)))
        append(r)
    if steps:
        y = _tensor(y, steps, kept, array, layout, grads)
    tensors[name] = y
    s._unchecked_bytes = unchecked
    return i


_NO_METAS = (None,)


def _info(name: str, layout: Layout, node: str | None) -> TensorInfo:
    """``brief`` of a fused op's result: of the chain's layout, made by ``node``."""
    assert layout
    fresh = node is None
    return _new(  # type: ignore[no-any-return]
        TensorInfo,
        (name, layout[2], DTYPE_NAMES[layout[1]], not fresh, fresh, node, False, None, None, None),
    )


def _tensor(
    x: Tensor, steps: list[Step], kept: list[Any], array: Any, layout: Layout, grads: bool
) -> Tensor:
    """The tensor a fused run made of ``x``: ``array``, with one node for the run's ops."""
    if not grads:
        return new_tensor(array, False, None, layout)
    out = kept.pop() if steps[-1][3] >= 0 else None  # the last op's output, kept last
    first = x if kept[0] is not None else None
    edge = x.grad_fn if x.grad_fn is not None else x.edge()
    rest = (None,) * (len(kept) - 1)  # arrays no command can write
    skip_orders(len(steps) - 1)  # the orders of all but the last op, for ``Chain.unfuse``
    node = new_node(
        Chain(tuple(steps), edge, layout),
        steps[-1][0].fixed_name,
        NO_ATTRS,
        (edge,),
        tuple(kept),
        _NO_METAS,  # autograd fits no gradient of a fused node: it has its input's layout
        (first, *rest),
        (None if first is None else x.version, *rest),
    )
    node.out = out
    return new_tensor(array, True, node, layout)
