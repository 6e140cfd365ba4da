"""The reverse-mode pass: ``backward`` and the functional ``grad``, over the nodes of
``engine.graph``.

The pass is an iterative loop over a local dict of pending gradients, in a topological order
computed without recursion, so graphs of any depth work. It runs in two phases: every
gradient is computed first, and only when all of them succeeded are leaf ``.grad`` fields
written and saved buffers freed, so a failed pass changes nothing.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine import grad_mode, journal, parallel
from engine.backend import xp_of
from engine.errors import FailedPrecondition, InvalidArgument
from engine.graph import WRITES, AccumulateGrad, GraphNode, Node, size_str

if TYPE_CHECKING:
    from engine.tensor import Tensor


def _topological_order(roots: list[GraphNode]) -> list[GraphNode]:
    """Nodes reachable from ``roots``, each after every node that feeds it a gradient."""
    unique = list(dict.fromkeys(roots))
    deps: dict[GraphNode, int] = dict.fromkeys(unique, 0)  # edges in; also the nodes seen
    stack = list(unique)
    while stack:
        node = stack.pop()
        if isinstance(node, Node):
            for child in node.edges:
                if child is None:
                    continue
                if child in deps:
                    deps[child] += 1
                else:
                    deps[child] = 1
                    stack.append(child)
    ready = [n for n in unique if deps[n] == 0]
    order: list[GraphNode] = []
    while ready:
        node = ready.pop()
        order.append(node)
        if isinstance(node, Node):
            for child in node.edges:
                if child is None:
                    continue
                left = deps[child] - 1
                deps[child] = left
                if left == 0:
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
    parallel.flush()  # g may be a sum left to the next job (parallel.add_later)
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


def _sum(a: Any, b: Any, create_graph: bool, sums: dict[int, Any]) -> Any:
    """``a + b`` for two gradients reaching one node; large arrays are added on several threads.

    ``sums`` holds the sums this pass made, which nothing else can see yet: adding into one
    of them in place spares a new array for each further gradient (a weight used by many ops).
    """
    if create_graph or a.size < parallel.MIN_SIZE:  # small: a new array costs less than `sums`
        return a + b
    owned = sums.get(id(a)) is a
    total = parallel.add_later(a, b, owned)  # done with the next rule's job
    if total is None:
        total = parallel.run(operator.iadd if owned else operator.add, (a, b), {})
    if total is None:
        if owned:
            a += b
            total = a
        else:
            total = a + b
    sums[id(total)] = total
    return total


def _run_adding(
    node: Node, edges: tuple[Any, ...], g: Any, grads: dict[GraphNode, Any], sums: dict[int, Any]
) -> tuple[Any, ...] | None:
    """``node.run`` for a large elementwise node, each gradient that meets an earlier one at
    its input's node added to it in the rule's own job on the threads (``parallel.run_into``):
    one job instead of two, values as ``_sum``'s. Such sums go into ``grads`` and ``sums`` at
    once and come back as None. None where nothing is to be added, or it cannot be done so.
    """
    metas = node.metas
    into: list[tuple[Any, bool] | None] | None = None
    for i, child in enumerate(edges):
        before = grads.get(child) if child is not None else None
        # Only a child's first edge: later ones are added after it, in _sum's order.
        if before is None or child in edges[:i]:
            continue
        assert metas is not None
        meta = metas[i]
        if meta.shape != before.shape or meta.dtype != before.dtype:
            continue
        if into is None:
            into = [None] * len(edges)
        into[i] = (before, sums.get(id(before)) is before)
    if into is None or node.op.vjp is None or node.arrays is None:
        return None
    done = parallel.run_into(node.op.vjp, (g, node.out, *node.arrays), node.attrs, into)
    if done is None:
        return None
    results, fused = done
    results = list(results)
    for i in fused:
        total = results[i]
        grads[edges[i]] = total
        sums[id(total)] = total
        results[i] = None
    return tuple(results) if len(results) == len(edges) else node.complete(tuple(results))


# The largest gradients (elements) kept apart until the end of a pass for a leaf: the parts
# are all alive at once, so this bounds the memory they take (a leaf used by 1000 ops: 4 MB
# of float32 at most) where the running sum took one array.
_PART_SIZE = 1024


def _add_up(parts: list[Any]) -> Any:
    """The sum of a leaf's gradients: arrays of one shape and dtype, from plain nodes (small).

    One reduction over them all costs less than an addition each beyond a few: a weight used
    by 125 ops of a chain took 124 NumPy calls.
    """
    if len(parts) < 4:
        if len(parts) == 1:
            return parts[0]
        total = parts[0] + parts[1]
        for g in parts[2:]:
            total = total + g
        return total
    first = parts[0]  # not 0-d: concatenated along its first axis, then summed over the parts
    joined = xp_of(first).concatenate(parts).reshape(len(parts), *first.shape)
    return joined.sum(axis=0)


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
    target_set = set(targets) if targets is not None else None
    needed = None
    if target_set is not None:
        needed = _needed(_topological_order([node for node, _ in roots]), target_set)
    grads: dict[GraphNode, Any] = {}  # the gradient reaching each node so far
    ready: list[tuple[int, Node]] = []  # the nodes that have one, as a heap by Node.order
    for root, root_g in roots:
        if root in grads:
            grads[root] = grads[root] + root_g
        else:
            grads[root] = root_g
            if type(root) is Node and (needed is None or root in needed):
                heapq.heappush(ready, (root.order, root))
    captured: dict[GraphNode, Any] = {}
    retained: list[tuple[Tensor, Any]] = []
    executed: list[Node] = []
    sums: dict[int, Any] = {}  # see _sum
    # Gradients of small leaves from plain nodes, summed at the end with any in ``grads``.
    leaf_parts: dict[AccumulateGrad, list[Any]] = {}
    mark = WRITES.mark  # nothing writes in place during the pass
    node: Node | None = None
    g: Any = None
    if ready:
        node = heapq.heappop(ready)[1]
        g = grads.pop(node)
    # The common pass (every node runs, no graph of the rules): plain nodes take a short way.
    simple = target_set is None and not create_graph
    with grad_mode.set_grad_enabled(create_graph), parallel.Deferred():
        while node is not None:
            if sums:
                sums.pop(id(g), None)
            op = node.op
            if create_graph and op.fused:
                # A fused node (engine.fusion) as the plain nodes it stands for: the graph of
                # the rules holds theirs. Those are needed where the chain's input is.
                others = op.unfuse(node)  # type: ignore[union-attr]
                if needed is not None and op.edge in needed:  # type: ignore[union-attr]
                    needed.update(others)
                op = node.op
            edges = node.edges
            n = len(edges)
            if simple and node.plain and not node.retained and op.vjp is not None:
                # Node.run's common case, inlined: this runs once per node.
                if op.saves:
                    if node.freed or node.order > mark:
                        node.check_saved()
                    executed.append(node)
                arrays = node.arrays
                assert arrays is not None
                if n == 1:  # a plain node keeps one entry an input: ``arrays`` is as long
                    results = op.vjp(g, node.out, g if node.inputs is None else arrays[0])
                elif node.inputs is None:
                    results = op.vjp(g, node.out, g, g if arrays[1] is None else arrays[1])
                else:
                    results = op.vjp(g, node.out, arrays[0], arrays[1])
                if len(results) != n:
                    results = node.complete(results)
                # The loop below in short, for what plain nodes mostly have: a second edge
                # into a leaf or none (x * w, x / 2.0), and a first into a node reached for
                # the first time and the newest with a gradient (a chain): it runs next.
                if n == 2:
                    leaf = edges[1]
                    gi = results[1]
                    if leaf is None or gi is None:
                        n = 1
                    elif type(leaf) is AccumulateGrad and gi.size <= _PART_SIZE:
                        parts = leaf_parts.get(leaf)
                        if parts is None:
                            leaf_parts[leaf] = [gi]
                        else:
                            parts.append(gi)
                        n = 1  # the loop below takes the first edge only
                if n == 1:
                    child = edges[0]
                    gi = results[0]
                    if (
                        type(child) is Node
                        and gi is not None
                        and child not in grads
                        and (not ready or child.order < ready[0][0])
                    ):
                        node, g = child, gi
                        continue
            else:
                if target_set is not None:
                    if node in target_set:
                        captured[node] = g
                    if not any(c in needed for c in edges if c is not None):  # type: ignore[operator]
                        edges = ()  # the node need not run: nothing below it is needed
                        n = 0
                if node.retained:  # PyTorch fills these on every path to a target, targets too
                    _retain(node, g, retained)
                if not n:
                    results = ()
                else:
                    if op.saves:
                        node.check_saved()
                        executed.append(node)
                    adding = None
                    if op.elementwise and not create_graph and g.size >= parallel.MIN_SIZE:
                        adding = _run_adding(node, edges, g, grads, sums)
                    else:
                        parallel.flush()  # the rule reads its arrays at once
                    results = adding if adding is not None else node.run(g, create_graph)
            fit = not (node.plain or op.fused)  # a fused node's gradient has its input's layout
            metas = node.metas
            # The node to run next is the newest of those with a gradient: in a chain, the one
            # this node reaches first. Its gradient stays out of ``grads`` and the heap.
            new = None
            new_g: Any = None
            i = 0
            while i < n:  # no zip: it costs more than this loop, for two edges
                child = edges[i]
                gi = results[i]
                i += 1
                if child is None or gi is None:
                    continue
                if fit:
                    assert metas is not None
                    meta = metas[i - 1]
                    if create_graph or gi.shape != meta.shape or gi.dtype != meta.dtype:
                        gi = _fit(gi, meta, create_graph)
                if child is new:
                    new_g = _sum(new_g, gi, create_graph, sums)
                    continue
                before = grads.get(child)
                if before is not None:
                    if (
                        not fit
                        and not create_graph
                        and type(child) is AccumulateGrad
                        and gi.size <= _PART_SIZE
                    ):
                        # A small leaf used by many ops (a weight): its gradients are summed
                        # once, at the end of the pass (_add_up), not one addition each.
                        parts = leaf_parts.get(child)
                        if parts is None:
                            leaf_parts[child] = [gi]
                        else:
                            parts.append(gi)
                        continue
                    grads[child] = _sum(before, gi, create_graph, sums)
                elif type(child) is not Node or (needed is not None and child not in needed):
                    grads[child] = gi
                elif new is None:
                    new, new_g = child, gi
                else:
                    grads[child] = gi
                    heapq.heappush(ready, (child.order, child))
            if new is not None and (not ready or new.order < ready[0][0]):
                node, g = new, new_g
                continue
            if new is not None:
                grads[new] = new_g
                heapq.heappush(ready, (new.order, new))
            if ready:
                node = heapq.heappop(ready)[1]
                g = grads.pop(node)
            else:
                node = None
    for leaf, parts in leaf_parts.items():  # added to what the leaf got otherwise
        first = grads.get(leaf)
        grads[leaf] = _add_up(parts if first is None else [first, *parts])
    # What is left: the gradients reaching leaves (and nodes no target needs).
    for reached, g in grads.items():
        if type(reached) is AccumulateGrad and (target_set is None or reached in target_set):
            captured[reached] = g
    freed = [] if retain_graph else executed
    return captured, retained, freed


def _retain(node: Node, g: Any, retained: list[tuple[Tensor, Any]]) -> None:
    """Note ``g`` for the tensors that retain the gradient of ``node``'s output."""
    for ref in node.retained or ():
        t = ref()
        if t is not None and t.grad_fn is node:
            retained.append((t, g))


def free_buffers(nodes: list[Node]) -> None:
    if journal.active():
        for node in nodes:
            node.free()
        return
    for node in nodes:  # Node.free without a journal, inlined: this runs once per node
        node.freed = True  # (only nodes that save something are executed's)
        node.inputs = node.arrays = node.metas = node.out = None


def is_scalar_like(shape: Sequence[int]) -> bool:
    n = 1
    for d in shape:
        n *= d
    return n == 1


def _root_grads(
    outputs: Sequence[Tensor], grad_outputs: Sequence[Any] | None, create_graph: bool
) -> list[tuple[GraphNode, Any]]:
    from engine.tensor import Tensor

    # As PyTorch: extra gradients are ignored; every gradient is checked before any graph.
    if grad_outputs is not None and len(grad_outputs) < len(outputs):
        raise InvalidArgument(f"got {len(outputs)} tensors and {len(grad_outputs)} gradients")
    roots: list[tuple[GraphNode, Any]] = []
    for i, out in enumerate(outputs):
        given = grad_outputs[i] if grad_outputs is not None else None
        if given is None:
            if not out._requires_grad:
                continue
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
    for i, out in enumerate(outputs):
        if not out._requires_grad:
            raise FailedPrecondition(
                f"element {i} of tensors does not require grad and does not have a grad_fn"
            )
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
    if inputs is not None:
        wanted = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        if not wanted:
            raise InvalidArgument("`inputs` argument to `backward()` cannot be empty.")
    roots = _root_grads(outputs, grad_tensors, create_graph)
    targets = None
    if inputs is not None:
        for t in wanted:
            if not t._requires_grad:
                raise FailedPrecondition("can't retain_grad on Tensor that has requires_grad=False")
        targets = [t.edge() for t in wanted]
    captured, retained, freed = run_backward(roots, targets, retain, create_graph)
    # Commit: everything below succeeds or was journaled.
    given: set[int] = set()

    def distinct(g: Any) -> Any:
        """A rule may pass one array to several inputs (add): each ``.grad`` gets its own.
        (A Tensor, under ``create_graph``, ``accumulate_grad_`` copies itself.)"""
        if type(g) is Tensor:
            return g
        if id(g) in given:
            return g.copy()
        given.add(id(g))
        return g

    if inputs is None:
        for node, g in captured.items():
            assert isinstance(node, AccumulateGrad)
            node.variable.accumulate_grad_(distinct(g), create_graph)
    else:
        for t in {id(t): t for t in wanted}.values():
            if not t.is_leaf:  # PyTorch retains a non-leaf input's grad from now on
                t.retain_grad()
            g = captured.get(t.edge())
            if g is not None:
                t.accumulate_grad_(distinct(g), create_graph, retained=not t.is_leaf)
    for t, g in retained:
        if inputs is None or all(t is not w for w in wanted):
            t.accumulate_grad_(distinct(g), create_graph, retained=True)
    free_buffers(freed)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool | None = None,
    materialize_grads: bool = False,
) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``; leaves' ``.grad`` stay untouched."""
    from engine.tensor import Tensor, owned

    if materialize_grads and allow_unused is False:
        raise InvalidArgument(
            "Expected allow_unused to be True or not passed when materialize_grads=True, "
            "but got: allow_unused=False.",
            torch_type="ValueError",
        )
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is not None and not isinstance(grad_outputs, list | tuple):
        grad_outputs = [grad_outputs]
    if not ins:
        raise InvalidArgument("`inputs` argument to `grad()` cannot be empty.")
    retain = create_graph if retain_graph is None else retain_graph
    roots = _root_grads(outs, grad_outputs, create_graph)
    for t in ins:
        if not t._requires_grad:
            raise InvalidArgument("One of the differentiated Tensors does not require grad")
    targets = [t.edge() for t in ins]
    captured, retained, freed = run_backward(roots, targets, retain, create_graph)
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
    for r, g in retained:  # PyTorch fills retained grads on the way, even here
        r.accumulate_grad_(g if isinstance(g, Tensor) else g.copy(), create_graph, retained=True)
    free_buffers(freed)
    return tuple(result)
