"""Graph nodes: what an op records for the backward pass (``Node``), the leaf accumulator
(``AccumulateGrad``) and the order and write marks the pass relies on.

The pass itself is ``engine.autograd``.
"""

from __future__ import annotations

import collections
import itertools
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from engine import dtypes, journal, parallel
from engine.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from engine.fusion import Chain
    from engine.ops.registry import Primitive
    from engine.tensor import Tensor, VersionCounter

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


class Meta:
    """Shape and dtype of an input whose values a node does not keep."""

    __slots__ = ("dtype", "ndim", "shape")

    def __init__(self, array: Any) -> None:
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim


# Each node takes the next number down: a node's inputs come from nodes made before it, so
# visiting the smallest number first (a heap) runs a node only after every node that feeds
# it a gradient. PyTorch orders its ready queue by the same sequence numbers.
_ORDER = itertools.count(0, -1)
next_order = _ORDER.__next__  # a bound method: cheaper to call than ``next(_ORDER)``


def skip_orders(n: int) -> None:
    """Take the next ``n`` numbers, for nodes made later (engine.fusion), in one C loop."""
    collections.deque(itertools.islice(_ORDER, n), maxlen=0)


class Writes:
    """When the latest in-place write happened (``Tensor.write_``), as a number of ``_ORDER``:
    a node made since then has a smaller ``order``, and nothing to check (``check_saved``)."""

    __slots__ = ("mark",)

    def __init__(self) -> None:
        self.mark = 1  # above every order: no write yet

    def note(self) -> None:
        """A tensor was just written in place."""
        self.mark = next_order()


WRITES = Writes()

NO_ATTRS: dict[str, Any] = {}  # the attributes of most calls; never written to


class Node:
    """One recorded op application: what its VJP needs, and edges to its inputs' nodes.

    ``plain`` marks a node of ``apply``'s fast path: an elementwise op on small tensors that
    all have the output's shape and dtype. Its gradients need no fitting (``_fit``) and no
    threads, and it keeps no Meta for an input it does not save: the gradient of its output
    has that input's shape and dtype, so the rule gets the gradient in its place.
    """

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
        "order",
        "out",
        "out_version",
        "out_versions",
        "plain",
        "retained",
        "versions",
    )

    op: Primitive | Chain
    name: str
    attrs: dict[str, Any]
    edges: tuple[Node | AccumulateGrad | None, ...]
    # What the rule gets for each input: the saved array where the node keeps inputs
    # (``inputs`` and ``versions`` are then set), else a Meta for each tensor.
    arrays: tuple[Any, ...] | list[Any] | None
    # Shape and dtype of each tensor input, for ``_fit``: a Meta, or the saved input array
    # itself where the node keeps it uncast (dropped with the buffers, see ``free``).
    metas: tuple[Any, ...] | list[Any] | None
    inputs: tuple[Any, ...] | None
    versions: tuple[int | None, ...] | None  # to detect in-place writes; None: no Tensor
    plain: bool
    freed: bool
    retained: list[weakref.ref[Tensor]] | None
    out: Any
    out_version: VersionCounter | None
    out_versions: int
    order: int

    @staticmethod
    def record(
        op: Primitive,
        args: tuple[Any, ...],
        arrays: list[Any],
        attrs: dict[str, Any],
        result: Tensor,
    ) -> Node:
        """Build the node for ``result = op(*args, **attrs)`` (the general case).

        ``arrays`` is ``args`` with each Tensor replaced by its array (cast to the op's dtype),
        so an argument that is its own entry is no Tensor. Testing that, rather than
        ``isinstance(a, Tensor)``, keeps an import of engine.tensor off this path.
        """
        n = len(args)
        edges: list[Node | AccumulateGrad | None] = [None] * n
        name = op.node if isinstance(op.node, str) else op.node(**attrs)
        if op.saves_inputs:
            versions: list[int | None] = [None] * n
            metas = arrays  # the saved arrays also give _fit each input's shape and dtype,
            needed = _needed(op.needs, args, arrays)
            for i, a in enumerate(args):
                array = arrays[i]
                if array is a:
                    continue
                if a._requires_grad:
                    edges[i] = a.grad_fn if a.grad_fn is not None else a.edge()
                if needed is None or needed[i]:
                    versions[i] = a.version
                if array is not a.data:  # except where a cast made a new array
                    if metas is arrays:
                        metas = list(arrays)
                    metas[i] = Meta(a.data)
            node = new_node(op, name, attrs, tuple(edges), arrays, metas, args, tuple(versions))
        else:
            stand_ins = list(args)  # the rule gets a Meta for each tensor input; so does _fit
            for i, a in enumerate(args):
                if arrays[i] is a:
                    continue
                if a._requires_grad:
                    edges[i] = a.grad_fn if a.grad_fn is not None else a.edge()
                stand_ins[i] = Meta(a.data)
            node = new_node(op, name, attrs, tuple(edges), stand_ins, stand_ins)
        if op.saves_output:
            node.out = result.data
            node.out_version = counter = result.counter()
            node.out_versions = counter.value
        return node

    def adopt_output(self, target: Tensor) -> None:
        """After an in-place op, the node's saved output is ``target`` itself."""
        if self.out is not None:
            self.out = target.data
            self.out_version = counter = target.counter()
            self.out_versions = counter.value

    def check_saved(self) -> None:
        """Raise PyTorch's errors for freed buffers or saved tensors modified in place."""
        if not self.op.saves:
            return
        if self.freed:
            raise FailedPrecondition(_FREED)
        if self.order < WRITES.mark:  # no tensor was written in place since this node was made
            return
        # A fused node (engine.fusion) of several ops checks its output first, as the last
        # of its ops would run first.
        outputs_first = self.op.outputs_first
        if outputs_first:
            self._check_output()
        if self.versions is not None and self.inputs is not None:
            for a, saved in zip(self.inputs, self.versions, strict=True):
                # A tensor without a counter was never written in place (Tensor.counter).
                if saved is not None and a._version is not None and a._version.value != saved:
                    producer = a.grad_fn.name if a.grad_fn is not None else None
                    _raise_modified(a.data, a._version.value, saved, producer)
        if not outputs_first:
            self._check_output()

    def _check_output(self) -> None:
        if self.out_version is not None and self.out_version.value != self.out_versions:
            _raise_modified(self.out, self.out_version.value, self.out_versions, self.name)

    def free(self) -> None:
        """Drop the saved buffers (journaled, so a failed batch can restore them)."""
        if not self.op.saves or self.freed:
            return
        if journal.active():
            state = (self.inputs, self.arrays, self.metas, self.out)
            journal.record(lambda: self._restore(state))
        self.freed = True
        self.inputs = None
        self.arrays = None
        self.metas = None  # may hold saved arrays; a freed node never runs again
        self.out = None

    def _restore(self, state: tuple[Any, ...]) -> None:
        self.inputs, self.arrays, self.metas, self.out = state
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
        arrays = self.arrays
        assert arrays is not None  # check_saved raised if the buffers were freed
        if self.plain and self.inputs is None:
            arrays = _stand_ins(arrays, g)
        grads: tuple[Any, ...] | None = None
        attrs = self.attrs
        if create_graph:
            from engine.tensor import Tensor

            # The rule runs on Tensors, so that it is recorded: the saved inputs themselves.
            inputs = self.inputs if self.inputs is not None else arrays
            out = None
            if self.out is not None:
                out = Tensor(self.out, True, self, self.out_version)
            grads = vjp(g, out, *inputs, **attrs)
        else:
            if self.op.elementwise and not self.plain and g.size >= parallel.MIN_SIZE:
                grads = parallel.run(vjp, (g, self.out, *arrays), attrs)
            if grads is None:
                grads = vjp(g, self.out, *arrays, **attrs) if attrs else vjp(g, self.out, *arrays)
        if len(grads) == len(self.edges):  # the common case, first: this runs once per node
            return tuple(grads)
        return self.complete(grads)

    def complete(self, grads: tuple[Any, ...]) -> tuple[Any, ...]:
        """One gradient per edge: a rule may leave out the trailing inputs that take none
        (attributes passed positionally, as in ``unsqueeze(x, 0)``, are inputs without edges)."""
        extra = self.edges[len(grads) :]
        if not extra or any(edge is not None for edge in extra):
            raise AssertionError(f"{self.name}: rule returned {len(grads)} grads")
        return (*grads, *(None,) * len(extra))

    def __repr__(self) -> str:
        return f"<{self.name}>"


_new = object.__new__


def new_node(
    op: Primitive | Chain,
    name: str,
    attrs: dict[str, Any],
    edges: tuple[Node | AccumulateGrad | None, ...],
    arrays: tuple[Any, ...] | list[Any],
    metas: tuple[Any, ...] | list[Any],
    inputs: tuple[Any, ...] | None = None,
    versions: tuple[int | None, ...] | None = None,
    plain: bool = False,
) -> Node:
    """A new Node: the one place that sets its fields, but for the fast paths' plain nodes
    (engine.ops.fast sets them inline). Node has no ``__init__``: a class call runs it in a
    nested interpreter call, ~400 instructions more a node than this function."""
    node: Node = _new(Node)
    node.op = op
    node.name = name
    node.attrs = attrs
    node.edges = edges
    node.arrays = arrays
    node.metas = metas
    node.inputs = inputs
    node.versions = versions
    node.plain = plain
    node.freed = False
    node.retained = None
    node.out = None
    node.out_version = None
    node.out_versions = 0
    node.order = next_order()
    return node


GraphNode: TypeAlias = Node | AccumulateGrad


def _needed(
    needs: tuple[tuple[int, ...], ...] | None, args: tuple[Any, ...], arrays: list[Any]
) -> list[bool] | None:
    """Which inputs some input requiring grad needs (``Primitive.needs``); None: all."""
    if needs is None:
        return None
    # An argument that is its own entry of ``arrays`` is no Tensor (see ``record``).
    wants = [arrays[j] is not a and a._requires_grad for j, a in enumerate(args)]
    return [any(wants[j] for j in needs[i]) if i < len(needs) else True for i in range(len(args))]


def _stand_ins(arrays: tuple[Any, ...] | list[Any], g: Any) -> tuple[Any, ...]:
    """A plain node's arguments for its rule: ``g`` for each tensor input (``None``)."""
    if len(arrays) == 1:
        return (g,)
    return (g, g if arrays[1] is None else arrays[1])


def _raise_modified(data: Any, version: int, expected: int, producer: str | None) -> None:
    shape = ", ".join(str(n) for n in data.shape)
    clause = ""
    if producer is not None:
        short = producer.rstrip("0123456789")
        # PyTorch names generated nodes by their op ("Mul"), hand-written ones by C++ class.
        if short != producer and short.endswith("Backward"):
            short = short.removesuffix("Backward")
        else:
            short = f"torch::autograd::{producer}"
        clause = f", which is output 0 of {short},"
    raise FailedPrecondition(
        "one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: [torch.{dtypes.legacy_name(data.dtype)}Tensor [{shape}]]{clause} is at "
        f"version {version}; expected version {expected} instead. {_HINT}"
    )
