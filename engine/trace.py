"""An elementwise function traced into ufunc steps that run chunk by chunk (``engine.parallel``).

``trace(fn, args, kwargs, shape)`` calls ``fn`` once with a ``Lazy`` stand-in for each array
argument. A stand-in answers ``shape``, ``dtype``, ``ndim`` and ``size``, and records every
ufunc called on it (operators included, as ``numpy.ndarray`` maps them) as a step whose
result is another stand-in; NumPy resolves each step's dtype as it would for arrays. The
steps then run for one chunk of elements at a time: the function's results are written
straight into their slice of new arrays, its temporaries into chunk-sized scratch buffers
of the thread's own. Anything else a function does with a stand-in (``where``,
``astype`` to another dtype, a power, reading values) raises inside the trace, and ``trace``
returns None: the caller then runs the function on real arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin

from engine import parallel
from engine.graph import Meta

_OUTPUT, _SCRATCH, _IN_PLACE = 0, 1, 2  # where a step writes
_SCALARS = (int, float, complex)


class _Unsupported(Exception):
    """The traced function did something other than same-shaped elementwise ufunc calls."""


def _unsupported(*args: Any, **kwargs: Any) -> NoReturn:
    raise _Unsupported


class Lazy(NDArrayOperatorsMixin):
    """Stands for an array of the trace's shape: an argument, or the result of a step."""

    __slots__ = ("dtype", "slot", "trace")

    def __init__(self, trace: _Trace, slot: int, dtype: numpy.dtype[Any]) -> None:
        self.trace = trace
        self.slot = slot
        self.dtype = dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.trace.shape

    @property
    def ndim(self) -> int:
        return len(self.trace.shape)

    @property
    def size(self) -> int:
        return self.trace.size

    def __array_ufunc__(self, ufunc: numpy.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return self.trace.record(ufunc, method, inputs, kwargs)

    def astype(self, dtype: Any, copy: bool = True) -> Lazy:
        if copy or numpy.dtype(dtype) != self.dtype:
            raise _Unsupported
        return self

    # ndarray computes ``x ** 2`` with ``square`` (and other exponents with other ufuncs),
    # not with ``power``: leave powers to the real arrays.
    __pow__ = __rpow__ = __ipow__ = _unsupported
    __bool__ = __array__ = __array_function__ = _unsupported

    def __getattr__(self, name: str) -> NoReturn:  # any other ndarray attribute
        raise _Unsupported(name)


class _Trace:
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.size = math.prod(shape)
        self.values: list[Any] = []  # by slot: a constant operand, or None for an array
        self.leaves: list[tuple[int, numpy.ndarray]] = []  # (slot, flat argument array)
        self.arguments: dict[int, numpy.ndarray] = {}  # by slot: the argument array itself
        self.steps: list[tuple[numpy.ufunc, tuple[int, ...], int, numpy.dtype[Any], bool]] = []

    def _slot(self, value: Any) -> int:
        self.values.append(value)
        return len(self.values) - 1

    def leaf(self, array: numpy.ndarray) -> Lazy:
        slot = self._slot(None)
        self.leaves.append((slot, array.reshape(-1)))
        self.arguments[slot] = array
        return Lazy(self, slot, array.dtype)

    def record(
        self, ufunc: numpy.ufunc, method: str, inputs: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Lazy:
        """One ufunc call on stand-ins and Python or NumPy scalars, as a step."""
        if method != "__call__" or ufunc.nout != 1 or ufunc.signature is not None:
            raise _Unsupported
        out = kwargs.pop("out", None)
        if kwargs:
            raise _Unsupported
        refs = []
        types: list[Any] = []
        for x in inputs:
            if type(x) is Lazy and x.trace is self:
                refs.append(x.slot)
                types.append(x.dtype)
            elif type(x) in _SCALARS:  # Python numbers stay weak in NumPy's promotion
                refs.append(self._slot(x))
                types.append(type(x))
            elif type(x) is bool or isinstance(x, numpy.generic):
                refs.append(self._slot(x))
                types.append(numpy.dtype(type(x)) if type(x) is bool else x.dtype)
            else:
                raise _Unsupported
        dtype = ufunc.resolve_dtypes((*types, None))[-1]
        if out is None:
            result = Lazy(self, self._slot(None), dtype)
            self.steps.append((ufunc, tuple(refs), result.slot, dtype, False))
            return result
        # In place (``a += b`` on an argument): the step writes the argument's own memory.
        (target,) = out
        array = self.arguments.get(target.slot) if type(target) is Lazy else None
        if array is None or not array.flags.writeable or target.dtype != dtype:
            raise _Unsupported
        self.steps.append((ufunc, tuple(refs), target.slot, dtype, True))
        return target


class _Recipe:
    """A traced function's steps, where each writes, and the shape of its result: no arrays,
    so that the next call with the same kinds of arguments skips the trace."""

    def __init__(self, trace: _Trace, result: Any, positions: dict[int, int]) -> None:
        self.values = trace.values
        self.leaves = [(slot, positions[slot]) for slot, _ in trace.leaves]
        self.outputs: dict[int, numpy.dtype[Any]] = {}

        def hand_back(value: Any) -> tuple[str, Any]:
            if type(value) is not Lazy:
                if isinstance(value, numpy.ndarray | list | dict | Lazy):
                    raise _Unsupported  # a foreign array, or a container to look into
                return ("value", value)
            if value.trace is not trace:
                raise _Unsupported
            if value.slot in positions:  # an argument passed through (``add``'s rule: g, g)
                return ("argument", positions[value.slot])
            self.outputs[value.slot] = value.dtype
            return ("output", value.slot)

        self.many = isinstance(result, tuple)
        self.result = [hand_back(r) for r in result] if self.many else [hand_back(result)]
        self.program = self._compile(trace, self.outputs)

    @staticmethod
    def _compile(trace: _Trace, outputs: dict[int, Any]) -> list[tuple[Any, ...]]:
        """Each step with where it writes: an output, an argument, or a scratch buffer.

        A scratch buffer is reused once the value in it has been read for the last time, by
        the step that reads it, too: a ufunc may write over an operand of its own dtype.
        """
        last_read: dict[int, int] = {}
        for k, (_, refs, _, _, _) in enumerate(trace.steps):
            for r in refs:
                last_read[r] = k
        in_scratch: dict[int, tuple[numpy.dtype[Any], int]] = {}
        free: dict[numpy.dtype[Any], list[int]] = {}
        count: dict[numpy.dtype[Any], int] = {}
        program: list[tuple[Any, ...]] = []
        for k, (ufunc, refs, slot, dtype, in_place) in enumerate(trace.steps):
            for r in set(refs):
                if last_read[r] == k and r in in_scratch:
                    kind, index = in_scratch.pop(r)
                    free.setdefault(kind, []).append(index)
            if in_place:
                program.append((ufunc, refs, slot, _IN_PLACE, None))
            elif slot in outputs:
                program.append((ufunc, refs, slot, _OUTPUT, slot))
            else:
                spare = free.get(dtype)
                index = spare.pop() if spare else count.get(dtype, 0)
                count[dtype] = max(count.get(dtype, 0), index + 1)
                in_scratch[slot] = (dtype, index)
                program.append((ufunc, refs, slot, _SCRATCH, (dtype, index)))
        return program


class Plan:
    """A recipe bound to arrays: its arguments, and new arrays for its outputs.

    ``into`` (one entry per result of a function that returns a tuple) names, for a result,
    a running sum ``(acc, owned)`` to add it to in the same job: that result is then
    ``acc + result`` (written into ``acc`` itself where ``owned``), computed as its own step
    after the function's steps, so its value is the one a separate addition gives. A result
    that is not a fresh output of acc's shape and dtype is left alone; ``fused`` lists the
    positions that were added.
    """

    def __init__(
        self,
        recipe: _Recipe,
        args: Any,
        shape: tuple[int, ...],
        into: Sequence[tuple[Any, bool] | None] | None = None,
    ) -> None:
        self.program = recipe.program
        self.values = recipe.values
        self.size = size = math.prod(shape)
        flat = len(shape) == 1
        self.leaves = [
            (slot, args[position] if flat else args[position].reshape(-1))
            for slot, position in recipe.leaves
        ]
        self.outputs = {slot: numpy.empty(size, dtype) for slot, dtype in recipe.outputs.items()}
        self.fused: list[int] = []
        sums = self._fuse(recipe, into, shape) if into is not None and recipe.many else {}
        result = []
        for kind, value in recipe.result:
            if kind == "output":
                if value in sums:
                    value = sums[value]
                else:
                    value = self.outputs[value] if flat else self.outputs[value].reshape(shape)
            elif kind == "argument":
                value = args[value]
            result.append(value)
        self.result: Any = tuple(result) if recipe.many else result[0]

    def _fuse(
        self,
        recipe: _Recipe,
        into: Sequence[tuple[Any, bool] | None],
        shape: tuple[int, ...],
    ) -> dict[int, numpy.ndarray]:
        """Add the results ``into`` names to their sums: by output slot, each sum (shaped)."""
        slots = [value for kind, value in recipe.result if kind == "output"]
        sums: dict[int, numpy.ndarray] = {}
        for position, (kind, slot) in enumerate(recipe.result):
            target = into[position] if position < len(into) else None
            if target is None or kind != "output" or slots.count(slot) != 1:
                continue
            acc, owned = target
            dtype = recipe.outputs[slot]
            if (
                type(acc) is not numpy.ndarray
                or acc.shape != shape
                or acc.dtype != dtype
                or not acc.flags.c_contiguous
                or (owned and not acc.flags.writeable)
            ):
                continue
            if not self.fused:
                self.program = list(self.program)
                self.values = list(self.values)
            # The result goes to a buffer of its own (later steps may read it), then one more
            # step adds it to the sum: ``acc + result``, the operands in _sum's order.
            for k, step in enumerate(self.program):
                if step[2] == slot and step[3] == _OUTPUT:
                    self.program[k] = (*step[:3], _SCRATCH, (dtype, ("fused", slot)))
            del self.outputs[slot]
            acc_slot = len(self.values)
            self.values.append(None)
            self.leaves.append((acc_slot, acc.reshape(-1)))
            if owned:
                self.program.append((numpy.add, (acc_slot, slot), acc_slot, _IN_PLACE, None))
                sums[slot] = acc
            else:
                total = len(self.values)
                self.values.append(None)
                self.outputs[total] = out = numpy.empty(self.size, dtype)
                sums[slot] = out if len(shape) == 1 else out.reshape(shape)
                self.program.append((numpy.add, (acc_slot, slot), total, _OUTPUT, total))
            self.fused.append(position)
        return sums

    def chunk(self, lo: int, hi: int, scratch: dict[Any, numpy.ndarray]) -> None:
        """Every step for elements ``lo:hi`` (at most ``CHUNK`` of them)."""
        values = self.values.copy()
        for slot, flat in self.leaves:
            values[slot] = flat[lo:hi]
        outputs = self.outputs
        # Few bytecodes between ufunc calls: the other thread waits for the GIL meanwhile.
        for ufunc, refs, slot, kind, where in self.program:
            if kind == _OUTPUT:
                out = outputs[where][lo:hi]
            elif kind == _SCRATCH:
                buffer = scratch.get(where)
                if buffer is None:
                    buffer = scratch[where] = numpy.empty(parallel.CHUNK, dtype=where[0])
                out = buffer[: hi - lo]
            else:
                out = values[slot]
            if len(refs) == 2:  # no comprehension: it is a function call of its own
                ufunc(values[refs[0]], values[refs[1]], out=out)
            elif len(refs) == 1:
                ufunc(values[refs[0]], out=out)
            else:
                ufunc(*[values[r] for r in refs], out=out)
            values[slot] = out

    def execute(self) -> Any:
        if self.program:  # ``add``'s rule only hands its gradient on
            parallel.run_chunks(self.chunk, self.size)
        return self.result


_RECIPES: dict[Any, Any] = {}  # by ``_key``: a _Recipe, or None where tracing failed
_MAX_RECIPES = 1024
_UNSEEN: Any = object()


def _kind(value: Any) -> Any:
    """What a traced function may depend on in an argument: an array's dtype and layout, a
    scalar's type and exact value (-0.0 is not 0.0 here; a NaN is equal to itself), the
    shape and dtype an input's ``Meta`` gives."""
    if isinstance(value, numpy.ndarray):
        return value.dtype, value.flags.c_contiguous
    if isinstance(value, float):
        return type(value), value.hex()
    if isinstance(value, complex):
        return type(value), repr(value)
    if isinstance(value, numpy.generic):
        return type(value), value.tobytes()
    if type(value) is Meta:  # a new one for each node: by what it tells, not by identity
        return Meta, value.shape, value.dtype
    return type(value), value


def _key(fn: Any, args: Any, kwargs: dict[str, Any], shape: tuple[int, ...]) -> Any:
    key = (fn, shape, *[_kind(a) for a in args], *[(k, _kind(v)) for k, v in kwargs.items()])
    try:
        hash(key)
    except TypeError:
        return None
    return key


def trace(
    fn: Callable[..., Any],
    args: Any,
    kwargs: dict[str, Any],
    shape: tuple[int, ...],
    into: Sequence[tuple[Any, bool] | None] | None = None,
) -> Plan | None:
    """``fn``'s plan over ``args`` (the arrays among them all of ``shape``), or None;
    ``into``: running sums to add results to (``Plan``)."""
    key = _key(fn, args, kwargs, shape)
    recipe = _RECIPES.get(key, _UNSEEN) if key is not None else _UNSEEN
    if recipe is _UNSEEN:
        recipe = _record(fn, args, kwargs, shape)
        if key is not None:
            if len(_RECIPES) >= _MAX_RECIPES:
                _RECIPES.clear()
            _RECIPES[key] = recipe
    return None if recipe is None else Plan(recipe, args, shape, into)


def _record(
    fn: Callable[..., Any], args: Any, kwargs: dict[str, Any], shape: tuple[int, ...]
) -> _Recipe | None:
    recorder = _Trace(shape)
    positions: dict[int, int] = {}  # leaf slot -> argument position
    stand_ins = []
    for position, a in enumerate(args):
        if isinstance(a, numpy.ndarray):
            stand_in = recorder.leaf(a)
            positions[stand_in.slot] = position
            stand_ins.append(stand_in)
        else:
            stand_ins.append(a)
    try:
        return _Recipe(recorder, fn(*stand_ins, **kwargs), positions)
    except Exception:  # _Unsupported, or an error the real arrays will raise again
        return None
