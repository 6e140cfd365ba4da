"""A remote session usable as the ``torch`` module: the commands behind the proxies.

Each ``torch.xxx`` call or tensor method becomes a command of the engine's vocabulary, queued
by ``batch.Batcher`` with client-chosen names for its results. What the result will be (shape,
dtype, requires_grad) is inferred at once where certain (``infer``), and so is its value when
the inputs' values are known and the op exact (``known``).

A ``.grad`` proxy stands for its tensor's current grad on the server (the grad accumulates in
place, as in PyTorch); after ``x.grad = None`` an older one has nothing to stand for.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy

from . import infer, known
from .batch import Batcher
from .errors import Error, invalid
from .namespace import Namespace
from .results import SessionInfo
from .tensor import ABSENT, FAILED, UNKNOWN_FN, Tensor
from .transport import Transport

log = logging.getLogger("gradserve")


class Session(Namespace, Batcher):
    """A session on a gradserve server, usable as the ``torch`` module.

    ``eager`` sends every command at once; otherwise commands wait for a value to be needed,
    or for ``max_batch`` of them. ``local_values`` lets the client compute the few results it
    can compute exactly (see ``gradserve.known``) without a round trip.
    """

    def __init__(
        self,
        transport: Transport,
        info: SessionInfo,
        *,
        eager: bool = False,
        max_batch: int = 4096,
        local_values: bool = True,
        owner: Any = None,
    ) -> None:
        self._transport = transport
        self.id = info.id
        self._token = info.token or ""
        self.device_name = info.device
        self.seed = info.seed
        self.eager = eager
        self.max_batch = max_batch
        self.local_values = local_values
        self._client = owner  # keeps the client (and its transport) alive
        self._names = itertools.count(1)
        self._local = threading.local()
        Batcher.__init__(self)

    def __repr__(self) -> str:
        return (
            f"<gradserve.Session {self.id} on {self._transport.address} "
            f"({self.device_name}, {'eager' if self.eager else 'lazy'})>"
        )

    # ----- lifetime -----

    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        try:
            self.close()
        except Error:
            if kind is None:
                raise
            log.warning("gradserve: could not close session %s", self.id, exc_info=True)

    def close(self) -> None:
        """Close the session on the server; its tensors are freed. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pending.clear()
            self._released.clear()
        try:
            self._transport.close_session(self.id, self._token)
        except Error as exc:
            if exc.code not in ("unauthenticated", "not_found"):  # not already expired
                raise

    @property
    def closed(self) -> bool:
        return self._closed

    def info(self) -> SessionInfo:
        """The server's view of the session (tensor count, bytes held), after a flush."""
        self.flush()
        return self._transport.session_info(self.id, self._token)

    @property
    def round_trips(self) -> int:
        """Requests this session's transport has sent."""
        return self._transport.round_trips

    def flush(self) -> None:
        """Send every queued command now; raises the first failure."""
        self._flush()

    def _release(self, name: str) -> None:
        if not self._closed:
            self._released.append(name)

    # ----- queueing -----

    def _name(self) -> str:
        return f"t{next(self._names)}"

    def _input(self, value: Any) -> tuple[Any, Any, Any, bool | None]:
        """A command input (a ref or a number), its Meta, its known value, its requires_grad."""
        if isinstance(value, Tensor):
            if value._s is not self:
                raise invalid("a tensor of another session cannot be used here")
            if value._state == FAILED:
                assert value._error is not None
                raise value._error
            m = value._m
            known = m.value
            if known is not None and m.value_at != self._stamp(value):
                known = None
            ref = value._name if value._owner is None else value._ref()
            return ref, infer.Meta(m.shape, m.dtype), known, m.requires_grad
        if isinstance(value, numpy.generic):
            value = value.item()
        if isinstance(value, bool | int | float):
            return value, value, value, False
        if isinstance(value, numpy.ndarray):
            return self._input(self.tensor(value))
        raise invalid(f"unsupported operand type: {type(value).__name__}", "TypeError")

    def _op(self, op: str, inputs: Sequence[Any], attrs: dict[str, Any] | None = None) -> Tensor:
        (out,) = self._op_many(op, inputs, attrs or {}, 1)
        return out

    def _op_many(
        self, op: str, inputs: Sequence[Any], attrs: dict[str, Any], count: int
    ) -> tuple[Tensor, ...]:
        with self._lock:
            refs: list[Any] = []
            metas: list[Any] = []
            values: list[Any] = []
            flags: list[bool | None] = []
            tensors = 0
            for v in inputs:
                if isinstance(v, list | tuple):  # cat, stack
                    items = [self._input(i) for i in v]
                    refs.append([i[0] for i in items])
                    metas.append([i[1] for i in items])
                    values.append(None)
                    flags.extend(i[3] for i in items)
                    tensors += len(items)
                    continue
                ref, meta, value, flag = self._input(v)
                refs.append(ref)
                metas.append(meta)
                values.append(value)
                if type(meta) is infer.Meta:  # a tensor
                    flags.append(flag)
                    tensors += 1
            if not tensors:
                raise invalid(f"{op}() needs at least one tensor argument", "TypeError")
            recording = self.is_grad_enabled()
            outs = tuple(Tensor(self, self._name()) for _ in range(count))
            for t, (shape, dtype) in zip(outs, infer.infer(op, metas, attrs, count), strict=True):
                m = t._m
                m.shape, m.dtype = shape, dtype
                flag = m.requires_grad = infer.requires_grad(op, dtype, flags, recording)
                m.is_leaf = None if flag is None else not flag
                m.grad_fn = None if flag is False else UNKNOWN_FN
            if self.local_values and count == 1 and all(v is not None for v in values):
                self._evaluate(outs[0], op, values, attrs)
            body: dict[str, Any] = {"kind": "op", "op": op, "inputs": refs}
            if attrs:
                body["attrs"] = attrs
            if count == 1:
                body["name"] = outs[0]._name
            else:
                body["names"] = [t._name for t in outs]
            if not recording:
                body["no_grad"] = True
            self._enqueue(body, created=outs)
            return outs

    def _evaluate(self, t: Tensor, op: str, values: list[Any], attrs: dict[str, Any]) -> None:
        value = known.evaluate(op, values, attrs)
        m = t._m
        if value is None or (m.shape is not None and value.shape != m.shape):
            return
        if m.dtype is not None and value.dtype.name != m.dtype:
            return
        m.shape, m.dtype = value.shape, value.dtype.name
        m.value, m.value_at = value, self._data_epoch

    def _inplace(
        self, op: str, target: Tensor, inputs: Sequence[Any], attrs: dict[str, Any] | None = None
    ) -> Tensor:
        with self._lock:
            refs = [self._input(target)[0], *(self._input(v)[0] for v in inputs)]
            body: dict[str, Any] = {"kind": "op", "op": op, "inputs": refs}
            if attrs:
                body["attrs"] = attrs
            if not self.is_grad_enabled():
                body["no_grad"] = True
            self._data_epoch += 1
            if target._owner is not None:
                self._grad_epoch += 1
            m = target._m
            m.requires_grad = m.is_leaf = None
            m.grad_fn = UNKNOWN_FN
            self._enqueue(body, touched=[target])
            return target

    def _create(
        self,
        factory: str,
        args: list[Any],
        *,
        data: numpy.ndarray | None = None,
        dtype: str | None = None,
        requires_grad: bool = False,
        shape: tuple[int, ...] | None = None,
        out_dtype: str | None = None,
        value: numpy.ndarray | None = None,
    ) -> Tensor:
        with self._lock:
            t = Tensor(self, self._name())
            m = t._m
            m.shape, m.dtype = shape, out_dtype
            m.requires_grad, m.is_leaf, m.grad_fn = requires_grad, True, None
            if value is not None and self.local_values:
                m.value, m.value_at = value, self._data_epoch
            body: dict[str, Any] = {"kind": "create", "factory": factory, "name": t._name}
            if args:
                body["args"] = args
            if data is not None:
                body["data"] = data
            if dtype is not None:
                body["dtype"] = dtype
            if requires_grad:
                body["requires_grad"] = True
                self._watched[id(t)] = t
            self._enqueue(body, created=[t])
            return t

    # ----- autograd commands -----

    def _refs(self, tensors: Any) -> list[Any]:
        items = [tensors] if isinstance(tensors, Tensor) else list(tensors)
        return [self._input(t if isinstance(t, Tensor) else self.tensor(t))[0] for t in items]

    def _backward(
        self, t: Tensor, gradient: Any, retain_graph: Any, create_graph: bool, inputs: Any
    ) -> None:
        with self._lock:
            body: dict[str, Any] = {"kind": "backward", "tensor": self._input(t)[0]}
            if gradient is not None:
                body["gradient"] = self._refs(gradient)[0]
            if retain_graph is not None:
                body["retain_graph"] = bool(retain_graph)
            if create_graph:
                body["create_graph"] = True
            if inputs is not None:
                body["inputs"] = self._refs(inputs)
            self._backward_epoch += 1
            self._grad_epoch += 1
            self._enqueue(body)

    def _grad(
        self,
        outputs: Any,
        inputs: Any,
        grad_outputs: Any,
        retain_graph: Any,
        create_graph: bool,
        allow_unused: bool,
    ) -> tuple[Tensor | None, ...]:
        with self._lock:
            sources = [inputs] if isinstance(inputs, Tensor) else list(inputs)
            if not all(isinstance(s, Tensor) for s in sources):
                raise invalid("grad(): inputs must be tensors", "TypeError")
            input_refs = self._refs(sources)
            outs = tuple(Tensor(self, self._name()) for _ in sources)
            for t, source in zip(outs, sources, strict=True):
                t._m.shape, t._m.dtype = source._m.shape, source._m.dtype
                if not create_graph:
                    t._m.requires_grad, t._m.is_leaf, t._m.grad_fn = False, True, None
            body: dict[str, Any] = {
                "kind": "grad",
                "outputs": self._refs(outputs),
                "inputs": input_refs,
                "names": [t._name for t in outs],
            }
            if grad_outputs is not None:
                body["grad_outputs"] = self._refs(grad_outputs)
            if retain_graph is not None:
                body["retain_graph"] = bool(retain_graph)
            if create_graph:
                body["create_graph"] = True
            if allow_unused:
                body["allow_unused"] = True
            self._enqueue(body, created=outs)
            if allow_unused:  # which gradients are None is known only from the server
                self._flush()
            return tuple(None if t._state == ABSENT else t for t in outs)

    def _detach(self, t: Tensor) -> Tensor:
        with self._lock:
            ref = self._input(t)[0]
            out = Tensor(self, self._name())
            m = out._m
            m.shape, m.dtype = t._m.shape, t._m.dtype
            m.requires_grad, m.is_leaf, m.grad_fn = False, True, None
            value = self._known(t)
            if value is not None:
                m.value, m.value_at = value, self._data_epoch
            self._enqueue({"kind": "detach", "tensor": ref, "name": out._name}, created=[out])
            return out

    def _requires_grad(self, t: Tensor, flag: bool) -> Tensor:
        with self._lock:
            body = {"kind": "requires_grad", "tensor": self._input(t)[0], "requires_grad": flag}
            m = t._m
            m.requires_grad = flag if m.is_leaf else None
            m.repr = None
            if flag:
                self._watched[id(t)] = t
            self._enqueue(body, touched=[t])
            return t

    def _retain_grad(self, t: Tensor) -> None:
        with self._lock:
            t._retains_grad = True
            self._watched[id(t)] = t
            self._enqueue({"kind": "retain_grad", "tensor": self._input(t)[0]}, touched=[t])

    def _zero_grad(self, tensors: Sequence[Tensor], set_to_none: bool) -> None:
        with self._lock:
            body: dict[str, Any] = {"kind": "zero_grad", "tensors": self._refs(tensors)}
            if set_to_none:
                body["set_to_none"] = True
                for t in tensors:
                    t._has_grad, t._has_grad_at = False, self._backward_epoch
                    if t._g is not None:
                        t._g.forget()
                    self._with_grads.pop(id(t), None)
            self._data_epoch += 1
            self._grad_epoch += 1
            self._enqueue(body)

    def _key(self, key: Any) -> list[Any]:
        """An index as the command API spells it: one item per dimension."""
        items = list(key) if isinstance(key, tuple) else [key]
        out: list[Any] = []
        for item in items:
            if item is None or (isinstance(item, int) and not isinstance(item, bool)):
                out.append(item)
            elif item is Ellipsis:
                out.append("...")
            elif isinstance(item, slice):
                bounds = [item.start, item.stop, item.step]
                if not all(b is None or isinstance(b, int) for b in bounds):
                    bounds = [None if b is None else int(b) for b in bounds]
                out.append({"slice": bounds})
            elif isinstance(item, Tensor):
                out.append({"tensor": self._input(item)[0]})
            elif isinstance(item, list):
                out.append(item)
            elif isinstance(item, numpy.integer):
                out.append(int(item))
            else:
                raise invalid(
                    "only integers, slices (`:`), ellipsis (`...`), None and long or byte "
                    "Variables are valid indices",
                    "IndexError",
                )
        return out

    def _pieces(self, op: str, t: Tensor, attrs: dict[str, Any]) -> tuple[Tensor, ...]:
        sizes = infer.split_count(op, tuple(t.shape), attrs)
        if sizes is None:
            raise invalid(f"{op}: invalid arguments {attrs} for a tensor of shape {list(t.shape)}")
        return self._op_many(op, [t], attrs, len(sizes))
