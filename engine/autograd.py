"""Graph nodes and the reverse-mode pass: ``backward`` and the functional ``grad``.

The pass is an iterative loop over a local dict of pending gradients, in a topological order
computed without recursion, so graphs of any depth work. It runs in two phases: every
gradient is computed first, and only when all of them succeeded are leaf ``.grad`` fields
written and saved buffers freed, so a failed pass changes nothing.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from engine import dtypes, grad_mode, journal
from engine.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from engine.ops.registry import Primitive
    from engine.tensor import Tensor

_FREED = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward."
)
_HINT = (
    "Hint: enable anomaly detection to find the operation that failed to compute its "
    "gradient, with torch.autograd.set_detect_anomaly(True, check_nan=False)."
)


def size_str(shape: Sequence[int]) -> str:
    """PyTorch's repr of a shape: ``torch.Size([2, 3])``."""
    return f"torch.Size([{', '.join(str(n) for n in shape)}])"


class AccumulateGrad:
    """The graph's edge into a leaf that requires grad."""

    __slots__ = ("__weakref__", "variable")
    name = "AccumulateGrad"

    def __init__(self, variable: Tensor) -> None:
        self.variable = variable


class Node:
    """One recorded op application: what its VJP needs, and edges to its inputs' nodes."""

    __slots__ = (
        "__weakref__",
        "arrays",
        "attrs",
        "edges",
        "freed",
        "inputs",
        "metas",
        "name",
        "op",
        "out",
        "out_version",
        "out_versions",
        "retained",
        "versions",
    )

    def __init__(self, op: Primitive, name: str, attrs: dict[str, Any]) -> None:
        self.op = op
        self.name = name
        self.attrs = attrs
        self.edges: list[Node | AccumulateGrad | None] = []
        self.metas: list[Any] = []
        self.inputs: tuple[Any, ...] | None = None
        self.arrays: list[Any] | None = None
        self.versions: list[int] | None = None
        self.freed = False
        self.retained: list[weakref.ref[Tensor]] | None = None
        self.out: Any = None
        self.out_version: Any = None
        self.out_versions = 0

    @classmethod
    def record(
        cls,
        op: Primitive,
        args: tuple[Any, ...],
        arrays: list[Any],
        attrs: dict[str, Any],
        result: Tensor,
    ) -> Node:
        """Build the node for ``result = op(*args, **attrs)``."""
        from engine.ops.registry import INPUTS, OUTPUT, Meta
        from engine.tensor import Tensor

        node = cls(op, op.node if isinstance(op.node, str) else op.node(**attrs), attrs)
        edges: list[Any] = []
        metas: list[Any] = []
        for a, _arr in zip(args, arrays, strict=True):
            if isinstance(a, Tensor):
                edges.append(a.edge() if a.requires_grad else None)
                metas.append(Meta(a.data))
            else:
                edges.append(None)
                metas.append(None)
        node.edges = edges
        node.metas = metas
        if op.saves & INPUTS:
            node.inputs = args
            node.arrays = arrays
            node.versions = [a._version.value if isinstance(a, Tensor) else 0 for a in args]
        else:
            node.inputs = None
            node.arrays = [m if m is not None else a for m, a in zip(metas, args, strict=True)]
            node.versions = None
        if op.saves & OUTPUT:
            node.out = result.data
            node.out_version = result._version
            node.out_versions = result._version.value
        return node

    def adopt_output(self, target: Tensor) -> None:
        """After an in-place op, the node's saved output is ``target`` itself."""
        if self.out is not None:
            self.out = target.data
            self.out_version = target._version
            self.out_versions = target._version.value

    @property
    def saves(self) -> bool:
        return bool(self.op.saves)

    def check_saved(self) -> None:
        """Raise PyTorch's errors for freed buffers or saved tensors modified in place."""
        if not self.op.saves:
            return
        if self.freed:
            raise FailedPrecondition(_FREED)
        if self.versions is not None and self.inputs is not None:
            for a, saved in zip(self.inputs, self.versions, strict=True):
                if hasattr(a, "_version") and a._version.value != saved:
                    producer = a.grad_fn.name if a.grad_fn is not None else None
                    _raise_modified(a.data, a._version.value, saved, producer)
        if self.out_version is not None and self.out_version.value != self.out_versions:
            _raise_modified(self.out, self.out_version.value, self.out_versions, self.name)

    def free(self) -> None:
        """Drop the saved buffers (journaled, so a failed batch can restore them)."""
        if not self.op.saves or self.freed:
            return
        state = (self.inputs, self.arrays, self.out)
        journal.record(lambda: self._restore(state))
        self.freed = True
        if self.inputs is not None:
            self.inputs = None
            self.arrays = None
        self.out = None

    def _restore(self, state: tuple[Any, ...]) -> None:
        self.inputs, self.arrays, self.out = state
        self.freed = False

    def saved_bytes(self) -> int:
        """Bytes of the arrays this node keeps alive for its rule."""
        total = 0
        if self.arrays is not None and self.inputs is not None:
            total += sum(int(a.nbytes) for a in self.arrays if hasattr(a, "nbytes"))
        if self.out is not None:
            total += int(self.out.nbytes)
        return total

    def run(self, g: Any, create_graph: bool) -> tuple[Any, ...]:
        """Apply the VJP to the gradient of this node's output."""
        vjp = self.op.vjp
        if vjp is None:
            raise InvalidArgument(f"the derivative for '{self.op.name}' is not implemented")
        if create_graph:
            from engine.tensor import Tensor

            inputs: Any = self.inputs if self.inputs is not None else self.arrays
            out = None
            if self.out is not None:
                out = Tensor(self.out, requires_grad=True)
                out.grad_fn = self
                out._version = self.out_version
            grads = vjp(g, out, *inputs, **self.attrs)
        else:
            grads = vjp(g, self.out, *(self.arrays or ()), **self.attrs)
        if len(grads) != len(self.edges):
            raise AssertionError(f"{self.name}: rule returned {len(grads)} grads")
        return tuple(grads)

    def __repr__(self) -> str:
        return f"<{self.name}>"


GraphNode: TypeAlias = Node | AccumulateGrad


def _raise_modified(data: Any, version: int, expected: int, producer: str | None) -> None:
    shape = ", ".join(str(n) for n in data.shape)
    clause = ""
    if producer is not None:
        short = producer.rstrip("0123456789").removesuffix("Backward")
        clause = f", which is output 0 of {short}"
    raise FailedPrecondition(
        "one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: [torch.{dtypes.legacy_name(data.dtype)}Tensor [{shape}]]{clause}, is at "
        f"version {version}; expected version {expected} instead. {_HINT}"
    )




def _topological_order(roots: list[GraphNode]) -> list[GraphNode]:
    """Nodes reachable from ``roots``, each after every node that feeds it a gradient."""
    deps: dict[GraphNode, int] = {}
    stack = list(dict.fromkeys(roots))
    seen = set(stack)
    while stack:
        node = stack.pop()
        if isinstance(node, Node):
            for child in node.edges:
                if child is None:
                    continue
                deps[child] = deps.get(child, 0) + 1
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
    ready = [n for n in dict.fromkeys(roots) if deps.get(n, 0) == 0]
    order: list[GraphNode] = []
    while ready:
        node = ready.pop()
        order.append(node)
        if isinstance(node, Node):
            for child in node.edges:
                if child is None:
                    continue
                deps[child] -= 1
                if deps[child] == 0:
                    ready.append(child)
    return order


def _needed(order: list[GraphNode], targets: set[GraphNode]) -> set[GraphNode]:
    """Nodes on some path to a target (the order is walked backwards, children first)."""
    needed: set[GraphNode] = set()
    for node in reversed(order):
        if node in targets or (
            isinstance(node, Node) and any(c in needed for c in node.edges if c is not None)
        ):
            needed.add(node)
    return needed


def _fit(g: Any, meta: Any, create_graph: bool) -> Any:
    """Sum broadcast dimensions away and cast to the input's dtype: done once, for every rule."""
    shape = meta.shape
    if g.shape != shape:
        from engine.ops import reduce

        lead = g.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1
        )
        if axes:
            g = reduce.sum(g, dim=axes, keepdim=True)
        if lead or g.shape != shape:
            from engine.ops import shape as shape_ops

            g = shape_ops.reshape(g, shape=tuple(shape))
    if g.dtype != meta.dtype:
        if create_graph:
            from engine.ops import elementwise

            g = elementwise.to_dtype(g, dtype=meta.dtype.name)
        else:
            g = g.astype(meta.dtype)
    return g


def run_backward(
    roots: list[tuple[GraphNode, Any]],
    targets: list[GraphNode] | None,
    retain_graph: bool,
    create_graph: bool,
) -> tuple[dict[GraphNode, Any], list[tuple[Tensor, Any]], list[Node]]:
    """Compute gradients from ``roots``; nothing is written.

    Returns the gradient reaching each leaf accumulator (or each target), the gradients of
    tensors that retain theirs, and the nodes whose buffers to free.
    """
    order = _topological_order([node for node, _ in roots])
    target_set = set(targets) if targets is not None else None
    needed = _needed(order, target_set) if target_set is not None else None
    grads: dict[GraphNode, Any] = {}
    for node, g in roots:
        grads[node] = grads[node] + g if node in grads else g
    captured: dict[GraphNode, Any] = {}
    retained: list[tuple[Tensor, Any]] = []
    executed: list[Node] = []
    with grad_mode.set_grad_enabled(create_graph):
        for node in order:
            g = grads.pop(node, None)
            if g is None:
                continue
            if target_set is None:
                if isinstance(node, AccumulateGrad):
                    captured[node] = g
                    continue
            else:
                if node in target_set:
                    captured[node] = g
                if (
                    isinstance(node, AccumulateGrad)
                    or needed is None
                    or not any(c in needed for c in node.edges if c is not None)
                ):
                    continue
            if node.retained:
                for ref in node.retained:
                    t = ref()
                    if t is not None and t.grad_fn is node:
                        retained.append((t, g))
            node.check_saved()
            executed.append(node)
            for child, gi, meta in zip(
                node.edges, node.run(g, create_graph), node.metas, strict=True
            ):
                if child is None or gi is None:
                    continue
                gi = _fit(gi, meta, create_graph)
                grads[child] = grads[child] + gi if child in grads else gi
    freed = [] if retain_graph else executed
    return captured, retained, freed


def free_buffers(nodes: list[Node]) -> None:
    for node in nodes:
        node.free()


def is_scalar_like(shape: Sequence[int]) -> bool:
    n = 1
    for d in shape:
        n *= d
    return n == 1


def _root_grads(
    outputs: Sequence[Tensor], grad_outputs: Sequence[Any] | None, create_graph: bool
) -> list[tuple[GraphNode, Any]]:
    from engine.tensor import Tensor

    if grad_outputs is not None and len(grad_outputs) != len(outputs):
        raise InvalidArgument(
            f"grad requires one gradient per output: got {len(grad_outputs)} gradients "
            f"for {len(outputs)} outputs"
        )
    roots: list[tuple[GraphNode, Any]] = []
    for i, out in enumerate(outputs):
        if not out.requires_grad:
            raise FailedPrecondition(
                f"element {i} of tensors does not require grad and does not have a grad_fn"
            )
        given = grad_outputs[i] if grad_outputs is not None else None
        if given is None:
            if not is_scalar_like(out.shape):
                raise FailedPrecondition("grad can be implicitly created only for scalar outputs")
            g: Any = out.xp.ones(out.data.shape, dtype=out.data.dtype)
        else:
            g_data = given.data if isinstance(given, Tensor) else given
            if tuple(g_data.shape) != tuple(out.shape):
                raise InvalidArgument(
                    f"Mismatch in shape: grad_output[{i}] has a shape of "
                    f"{size_str(g_data.shape)} and output[{i}] has a shape of "
                    f"{size_str(out.shape)}."
                )
            g = g_data.astype(out.data.dtype, copy=True)
        if create_graph:
            g = Tensor(g) if not isinstance(given, Tensor) else given
        roots.append((out.edge(), g))
    return roots


def backward(
    tensors: Tensor | Sequence[Tensor],
    grad_tensors: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    inputs: Tensor | Sequence[Tensor] | None = None,
) -> None:
    """Accumulate d(tensors)/d(leaves) into the leaves' ``.grad`` (PyTorch's ``backward``)."""
    from engine.tensor import Tensor

    outputs = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if grad_tensors is not None and not isinstance(grad_tensors, list | tuple):
        grad_tensors = [grad_tensors]
    retain = create_graph if retain_graph is None else retain_graph
    roots = _root_grads(outputs, grad_tensors, create_graph)
    targets = None
    if inputs is not None:
        wanted = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        if not wanted:
            raise InvalidArgument("'inputs' argument to backward() cannot be empty.")
        for t in wanted:
            if not t.requires_grad:
                raise InvalidArgument("One of the differentiated Tensors does not require grad")
        targets = [t.edge() for t in wanted]
    captured, retained, freed = run_backward(roots, targets, retain, create_graph)
    # Commit: everything below succeeds or was journaled.
    if inputs is None:
        for node, g in captured.items():
            assert isinstance(node, AccumulateGrad)
            node.variable.accumulate_grad_(g, create_graph)
    else:
        for t in wanted:
            g = captured.get(t.edge())
            if g is not None:
                t.accumulate_grad_(g, create_graph)
    for t, g in retained:
        t.accumulate_grad_(g, create_graph)
    free_buffers(freed)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
    materialize_grads: bool = False,
) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``, without touching ``.grad``."""
    from engine.tensor import Tensor, owned

    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is not None and not isinstance(grad_outputs, list | tuple):
        grad_outputs = [grad_outputs]
    for t in ins:
        if not t.requires_grad:
            raise InvalidArgument("One of the differentiated Tensors does not require grad")
    retain = create_graph if retain_graph is None else retain_graph
    roots = _root_grads(outs, grad_outputs, create_graph)
    targets = [t.edge() for t in ins]
    captured, _, freed = run_backward(roots, targets, retain, create_graph)
    result: list[Tensor | None] = []
    for i, (t, node) in enumerate(zip(ins, targets, strict=True)):
        g = captured.get(node)
        if g is None:
            if not (allow_unused or materialize_grads):
                raise InvalidArgument(
                    f"The differentiated Tensor at index {i} appears to not have been used in "
                    "the graph. Set allow_unused=True if this is the desired behavior."
                )
            result.append(t.zeros_like_detached() if materialize_grads else None)
        elif isinstance(g, Tensor):
            result.append(g)
        else:
            result.append(Tensor(owned(g.astype(t.data.dtype, copy=False))))
    free_buffers(freed)
    return tuple(result)
