"""How each kind of command runs against a session: one executor per command type.

``Session.execute`` looks the executor up by the command's type and calls it with the
session; it returns the command's Result. Every change an executor makes goes through the
session (names) or the engine (tensors, graphs), both of which the batch can undo.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine import autograd, creation
from engine.commands import (
    Backward,
    Create,
    Detach,
    Get,
    Grad,
    Op,
    Ref,
    Release,
    RequiresGrad,
    RetainGrad,
    ZeroGrad,
)
from engine.dtypes import DTYPES, NUMBERS
from engine.errors import InvalidArgument, NotFound, ResourceExhausted
from engine.grad_mode import set_grad_enabled
from engine.ops.registry import OPS, Primitive
from engine.parsing import parse_ref
from engine.results import Result, TensorInfo, brief, info, result
from engine.tensor import Tensor

if TYPE_CHECKING:
    from engine.session import Session

# What ops and factories raise for arguments of the wrong type, value or count; reported as
# InvalidArgument. Anything else from a command is a bug and propagates as it is.
BAD_ARGUMENTS = (TypeError, ValueError, IndexError, AttributeError, ArithmeticError)
SUPPORTED_DTYPES = frozenset(DTYPES.values())

_new = tuple.__new__


# ----- op -----


def run_op(s: Session, c: Op) -> Result:
    """Apply an op. The common command of a batch (one or two inputs, each a name or a
    Python number, a name given, nothing else) takes the lean way here, where its op's
    errors and its binding's limits are raised as ``run_op_any`` raises them; everything
    else, and every bad input, is ``run_op_any``'s (the reference: tests/engine/test_run_op.py)."""
    op, inputs, attrs, name, names, no_grad = c
    n = len(inputs)
    if not name or names is not None or attrs or no_grad or not 0 < n < 3:
        return run_op_any(s, c)
    fn = OPS.get(op)
    tensors = s.tensors
    tensor = False  # a tensor among the inputs
    a = inputs[0]
    kind = type(a)
    if kind is Ref:
        a = None if a.grad else tensors.get(a.name)
        tensor = a is not None
    elif kind not in NUMBERS:
        a = None
    if n == 2:
        b = inputs[1]
        kind = type(b)
        if kind is Ref:
            b = None if b.grad else tensors.get(b.name)
            tensor = b is not None or tensor
        elif kind not in NUMBERS:
            b = None
    if fn is None or a is None or (n == 2 and b is None) or not tensor:
        return run_op_any(s, c)
    try:
        if type(fn) is Primitive and fn.fast and fn.operands == n:
            # What ``fn(...)`` gives with a Tensor among its operands (Primitive.__call__,
            # registry.apply), two calls fewer.
            out = fn.unary(a) if n == 1 else fn.binary(a, b)
        else:
            out = fn(a) if n == 1 else fn(a, b)
    except BAD_ARGUMENTS as exc:
        raise bad_arguments(c, exc) from exc
    layout = out._layout if type(out) is Tensor and op[-1] != "_" else None
    if not layout:
        return op_result(s, c, out)
    # A tensor with a layout (small, of floats). Its result, an immutable record, is shared
    # by the commands of the batch that report the same (as a fused chain's are:
    # engine.fusion), from a name's second result on: most names of a batch (a training
    # step's) are bound once, and a key kept for each would outlive it.
    shared = s.shared
    key: Any = None
    if name in shared:
        node = out.grad_fn
        grad_fn = None if node is None else node.name
        key = (name, layout, out._requires_grad, grad_fn, out.grad is not None)
        r = shared.get(key)
        if r is not None:
            s.bind(out, name)
            return r
    else:
        shared[name] = None
    if layout[1] not in SUPPORTED_DTYPES:
        return op_result(s, c, out)
    s.bind(out, name)
    r = _new(Result, ("op", (brief(name, out),)))
    if key is not None:
        shared[key] = r
    return r  # type: ignore[no-any-return]


def run_op_any(s: Session, c: Op) -> Result:
    """Apply any op command. The common case (refs and scalars in, one new tensor out) takes
    one pass over the inputs; lists, in-place ops and several results go the general way."""
    op, inputs, attrs, _, _, no_grad = c
    fn = OPS.get(op)
    if fn is None:
        raise InvalidArgument(f"unknown op '{op}'")
    tensors = s.tensors
    args: list[Any] = []
    has_tensor = False
    for v in inputs:
        if type(v) is Ref:
            t = None if v.grad else tensors.get(v.name)
            args.append(s.resolve(v) if t is None else t)
            has_tensor = True
        elif type(v) is list:
            return _run_op_general(s, c, fn)
        else:
            args.append(v)
    if not has_tensor:
        raise InvalidArgument(f"op '{op}' needs at least one tensor among its inputs")
    if attrs or no_grad:
        out = _call(s, fn, c, args)
    else:
        try:
            out = fn(*args)
        except BAD_ARGUMENTS as exc:
            raise bad_arguments(c, exc) from exc
    return op_result(s, c, out)


def op_result(s: Session, c: Op, out: Any) -> Result:
    """What an op command returns for ``out``, its op's result, bound to the command's name."""
    op, _, _, name, names, _ = c
    if type(out) is not Tensor or names or op[-1] == "_" or out.data.dtype not in SUPPORTED_DTYPES:
        return _results(s, c, out)
    return _new(Result, ("op", (s.new(out, name),)))  # type: ignore[no-any-return]


def bad_arguments(c: Op, exc: Exception) -> InvalidArgument:
    return InvalidArgument(f"bad arguments for op '{c.op}': {exc}")


def _run_op_general(s: Session, c: Op, fn: Callable[..., Any]) -> Result:
    inputs = [s.input(v) for v in c.inputs]
    if c.op in ("cat", "stack") and len(inputs) == 1 and isinstance(inputs[0], list):
        inputs = inputs[0]
    if any(isinstance(v, list) and any(isinstance(t, Tensor) for t in v) for v in inputs):
        raise InvalidArgument(f"op '{c.op}' takes no list of tensors (cat and stack take one)")
    if not any(isinstance(v, Tensor) for v in inputs):
        raise InvalidArgument(f"op '{c.op}' needs at least one tensor among its inputs")
    return _results(s, c, _call(s, fn, c, inputs))


def _call(s: Session, fn: Callable[..., Any], c: Op, args: list[Any]) -> Any:
    attrs = c.attrs
    if attrs and c.op == "index" and "key" in attrs:
        attrs = {**attrs, "key": _key(s, attrs["key"])}
    try:
        if c.no_grad:
            with set_grad_enabled(False):
                return fn(*args, **attrs)
        return fn(*args, **attrs) if attrs else fn(*args)
    except BAD_ARGUMENTS as exc:
        raise bad_arguments(c, exc) from exc


def _unsupported(c: Op, t: Any) -> None:
    kind = t.data.dtype if isinstance(t, Tensor) else type(t).__name__
    raise InvalidArgument(f"op '{c.op}' gives {kind}, which is not a supported tensor")


def _results(s: Session, c: Op, out: Any) -> Result:
    """Name each result of an op: several outputs, given names, in-place results."""
    outputs = list(out) if isinstance(out, tuple | list) else [out]
    for t in outputs:
        if not isinstance(t, Tensor) or t.data.dtype not in SUPPORTED_DTYPES:
            _unsupported(c, t)
    names: list[str | None] = [c.name] * (1 if c.name else len(outputs))
    if c.names:
        names = [*c.names]
    if len(names) != len(outputs):
        raise InvalidArgument(
            f"op '{c.op}' returns {len(outputs)} tensors but {len(names)} names were given"
        )
    infos: list[TensorInfo | None] = []
    for t, name in zip(outputs, names, strict=True):
        existing = s.name_of(t) if c.op.endswith("_") else None
        # An in-place result keeps its name; a given name becomes an alias (y = x.add_(1)).
        infos.append(brief(existing, t) if existing and not name else s.new(t, name))
    return result("op", *infos)


def _key(s: Session, key: Any) -> Any:
    """An index key: ints, None, lists, "...", {"slice": [...]}, {"tensor": ref}."""
    items = key if isinstance(key, list) else [key]
    out: list[Any] = []
    for item in items:
        if item == "...":
            out.append(Ellipsis)
        elif isinstance(item, dict) and set(item) == {"slice"}:
            bounds = item["slice"]
            if (
                not isinstance(bounds, list)
                or len(bounds) > 3
                or not all(b is None or _is_int(b) for b in bounds)
            ):
                raise InvalidArgument("a slice is {'slice': [start, stop, step]} (integers)")
            out.append(slice(*bounds))
        elif isinstance(item, dict) and set(item) == {"tensor"}:
            out.append(s.resolve(parse_ref(item["tensor"])))
        elif item is None or isinstance(item, int | list):
            out.append(item)
        else:
            raise InvalidArgument(f"invalid index item {item!r}")
    return tuple(out)


# ----- create -----


def run_create(s: Session, c: Create) -> Result:
    try:
        t = _create(s, c)
    except BAD_ARGUMENTS as exc:
        raise InvalidArgument(f"bad arguments for factory '{c.factory}': {exc}") from exc
    return result("create", s.new(t, c.name))


def _create(s: Session, c: Create) -> Tensor:
    kwargs: dict[str, Any] = {"dtype": c.dtype, "requires_grad": c.requires_grad}
    args = [s.input(a) for a in c.args]
    factory = getattr(creation, c.factory)
    if c.factory == "tensor":
        return creation.tensor(c.data, device=s.device, **kwargs)
    if c.factory.endswith("_like"):
        if not args or not isinstance(args[0], Tensor):
            raise InvalidArgument(f"{c.factory} needs a tensor as its first argument")
        return factory(*args, **kwargs)  # type: ignore[no-any-return]
    if c.factory in ("zeros", "ones", "empty", "rand", "randn"):
        size = _size(args)
        _check_numel(s, size)
        if c.factory in ("rand", "randn"):
            kwargs["generator"] = s.generator
        return factory(size, device=s.device, **kwargs)  # type: ignore[no-any-return]
    if c.factory == "full":
        if len(args) != 2:
            raise InvalidArgument("full expects a size and a fill value")
        _check_numel(s, _size(args[:1]))
    elif c.factory == "arange":
        _check_range(s, args)
    elif c.factory == "eye":
        _check_numel(s, args[:2] if len(args) > 1 else args[:1] * 2)  # eye(n) is n x n
    elif c.factory == "linspace":
        _check_numel(s, args[2:3])
    return factory(*args, device=s.device, **kwargs)  # type: ignore[no-any-return]


def _check_numel(s: Session, shape: Any) -> None:
    numel = 1
    for n in shape:
        if not isinstance(n, int) or isinstance(n, bool):
            raise InvalidArgument(f"sizes must be integers, got {n!r}")
        numel *= max(n, 0)
    limit = s.limits.max_elements_per_tensor
    if numel > limit:
        raise ResourceExhausted(
            f"tensor of {numel} elements exceeds the limit of {limit} elements per tensor"
        )


def _check_range(s: Session, args: list[Any]) -> None:
    if not 1 <= len(args) <= 3 or not all(
        isinstance(a, int | float) and math.isfinite(a) for a in args
    ):
        raise InvalidArgument("arange expects finite numbers: end, or start, end[, step]")
    start, end, step = (
        (0, args[0], 1) if len(args) == 1 else (*args[:2], args[2] if len(args) > 2 else 1)
    )
    limit = s.limits.max_elements_per_tensor
    if step and abs((end - start) / step) > limit:
        raise ResourceExhausted(
            f"arange of {int(abs((end - start) / step))} elements exceeds the limit of "
            f"{limit} elements per tensor"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _size(args: list[Any]) -> list[Any]:
    """A size given as one list (``zeros([2, 3])``) or as several numbers (``zeros(2, 3)``)."""
    size = args[0] if len(args) == 1 and isinstance(args[0], list | tuple) else args
    return list(size)


# ----- autograd -----


def run_backward(s: Session, c: Backward) -> Result:
    t = s.resolve(c.tensor)
    gradient = s.resolve(c.gradient) if c.gradient is not None else None
    inputs = [s.resolve(r) for r in c.inputs] if c.inputs is not None else None
    autograd.backward(
        t,
        None if gradient is None else [gradient],
        retain_graph=c.retain_graph,
        create_graph=c.create_graph,
        inputs=inputs,
    )
    return result("backward")


def run_grad(s: Session, c: Grad) -> Result:
    grads = autograd.grad(
        [s.resolve(r) for r in c.outputs],
        [s.resolve(r) for r in c.inputs],
        grad_outputs=None if c.grad_outputs is None else [s.resolve(r) for r in c.grad_outputs],
        retain_graph=c.retain_graph,
        create_graph=c.create_graph,
        allow_unused=c.allow_unused,
    )
    names: list[str | None] = [*c.names] if c.names else [None] * len(grads)
    if len(names) != len(grads):
        raise InvalidArgument(
            f"grad returns {len(grads)} tensors but {len(names)} names were given"
        )
    return result(
        "grad", *(None if g is None else s.new(g, n) for g, n in zip(grads, names, strict=True))
    )


def run_detach(s: Session, c: Detach) -> Result:
    return result("detach", s.new(s.resolve(c.tensor).detach(), c.name))


def run_zero_grad(s: Session, c: ZeroGrad) -> Result:
    for ref in c.tensors:
        t = s.resolve(ref)
        if c.set_to_none:
            t.set_grad(None)
        elif t.grad is not None:
            t.grad.write_(t.xp.zeros_like(t.grad.data))
    return result("zero_grad")


def run_requires_grad(s: Session, c: RequiresGrad) -> Result:
    t = s.resolve(c.tensor)
    t.requires_grad_(c.requires_grad)
    return result("requires_grad", brief(str(c.tensor), t))


def run_retain_grad(s: Session, c: RetainGrad) -> Result:
    t = s.resolve(c.tensor)
    t.retain_grad()
    return result("retain_grad", brief(str(c.tensor), t))


# ----- reading and releasing -----


def run_get(s: Session, c: Get) -> Result:
    t = s.resolve(c.tensor)
    return result("get", info(str(c.tensor), t, value=c.value, grad=c.grad, text=c.repr))


def run_release(s: Session, c: Release) -> Result:
    for name in c.names:
        if name not in s.tensors:
            raise NotFound(f"no tensor named '{name}' in this session")
        s.unbind(name)
    return result("release")


EXECUTORS: dict[type, Callable[[Any, Any], Result]] = {
    Create: run_create, Op: run_op, Backward: run_backward, Grad: run_grad,
    Detach: run_detach, ZeroGrad: run_zero_grad, RequiresGrad: run_requires_grad,
    RetainGrad: run_retain_grad, Get: run_get, Release: run_release,
}  # fmt: skip
