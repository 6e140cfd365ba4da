"""When a session's queue is sent, what each batch asks for, and what comes back.

Commands collect in ``_pending`` under client-chosen tensor names and travel as one batch only
when a value is needed: a repr, a Python bool or number, a NumPy array, whether a grad
exists, a property the client cannot infer, an explicit ``flush()``, or a full queue. The
batch that answers also asks for what is likely needed next (the reprs or values of the
newest tensors and of the grads a backward pass filled, which leaves now have grads), so
that showing several tensors, or looking at a grad after a backward pass, costs one round
trip. Names of garbage-collected proxies are released at the end of the next batch.

What the client knows of a tensor (``tensor.State``) holds until an epoch moves: in-place ops
move ``_data_epoch`` (values), backward passes and ``zero_grad`` move ``_grad_epoch`` (grads'
values), backward passes move ``_backward_epoch`` (which tensors have grads).

Batches are atomic on the server. When command ``k`` fails, commands ``0..k-1`` are sent again
(they ran in PyTorch, before the failing line), the tensors of ``k`` and later ones are
marked failed, and ``Error`` names the user's line that queued command ``k``.
"""

from __future__ import annotations

import collections
import linecache
import logging
import math
import os
import sys
import threading
import weakref
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy

from .errors import Error
from .results import CommandResult, TensorInfo
from .tensor import ABSENT, FAILED, LIVE, PENDING, UNKNOWN_FN, State, Tensor
from .transport import Transport

log = logging.getLogger("gradserve")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
PREFETCH = 16  # reprs or values asked for ahead, per batch
SMALL = 64  # tensors with at most this many elements come back with their values
LEAF_CHECKS = 256  # leaves whose has_grad a batch with a backward pass reports


def _caller() -> tuple[str, int] | None:
    """The first frame outside this package: the user's line."""
    frame: Any = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return None if frame is None else (frame.f_code.co_filename, frame.f_lineno)


def _where(site: tuple[str, int] | None) -> str | None:
    if site is None:
        return None
    filename, line = site
    text = linecache.getline(filename, line).strip()
    return f'File "{filename}", line {line}' + (f": {text}" if text else "")


class _Pending:
    """A queued command, the user's line that queued it, and the proxies its result describes.

    ``created`` proxies get their names from it; ``touched`` ones already exist (in-place ops,
    requires_grad_). Both are held weakly: a proxy dropped before the batch is sent is released
    in the same batch.
    """

    __slots__ = ("at", "body", "created", "site", "touched")

    def __init__(
        self,
        body: dict[str, Any],
        site: Any,
        created: Sequence[Tensor],
        touched: Sequence[Tensor],
        at: Any,
    ) -> None:
        self.body = body
        self.site = site
        self.created = tuple([weakref.ref(t) for t in created]) if created else ()
        self.touched = tuple([weakref.ref(t) for t in touched]) if touched else ()
        self.at = at  # the epochs its result describes

    def names(self) -> list[str]:
        return [n for n in (self.body.get("name"), *(self.body.get("names") or ())) if n]


class _Get:
    """A ``get`` the batch adds: for ``tensor``, or for its grad (``grad``)."""

    __slots__ = ("grad", "repr", "speculative", "tensor", "value")

    def __init__(self, tensor: Tensor, *, grad: bool = False, value: bool = False,
                 repr: bool = False, speculative: bool = False) -> None:  # fmt: skip
        self.tensor, self.grad, self.value, self.repr = tensor, grad, value, repr
        self.speculative = speculative  # the grad may not exist: on failure, ask without it

    @classmethod
    def of(cls, t: Tensor, **kwargs: Any) -> _Get:
        owner = t._owner
        return cls(owner, grad=True, **kwargs) if owner is not None else cls(t, **kwargs)

    def body(self) -> dict[str, Any]:
        ref = {"grad_of": self.tensor._name} if self.grad else self.tensor._name
        return {"kind": "get", "tensor": ref, "value": self.value, "repr": self.repr}


class Batcher:
    """A session's queue of commands and what the client knows of its tensors."""

    id: str
    _token: str
    _transport: Transport
    eager: bool
    max_batch: int

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._recent: collections.deque[weakref.ref[Tensor]] = collections.deque(maxlen=PREFETCH)
        self._released: collections.deque[str] = collections.deque()
        self._data_epoch = 0  # values (in-place ops)
        self._grad_epoch = 0  # grads' values (backward, zero_grad)
        self._backward_epoch = 0  # which tensors have grads (backward)
        # By id: a WeakSet would compare tensors with ==, which makes a tensor.
        self._watched: weakref.WeakValueDictionary[int, Tensor] = weakref.WeakValueDictionary()
        self._with_grads: weakref.WeakValueDictionary[int, Tensor] = weakref.WeakValueDictionary()
        self._lock = threading.RLock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise Error("failed_precondition", f"session {self.id} is closed")

    def _epochs(self) -> tuple[int, int]:
        return (self._data_epoch, self._grad_epoch)

    def _known(self, t: Tensor) -> numpy.ndarray | None:
        m = t._m
        if m.value is None or m.value_at != self._stamp(t):
            return None
        return m.value

    def _stamp(self, t: Tensor) -> Any:
        return self._epochs() if t._owner is not None else self._data_epoch

    def _enqueue(
        self,
        body: dict[str, Any],
        created: Sequence[Tensor] = (),
        touched: Sequence[Tensor] = (),
    ) -> None:
        self._check_open()
        at = (self._data_epoch, self._grad_epoch, self._backward_epoch)
        p = _Pending(body, _caller(), created, touched, at)
        self._pending.append(p)
        self._recent.extend(p.created)
        self._recent.extend(p.touched)
        if self.eager or len(self._pending) >= self.max_batch:
            self._flush()

    # ----- answers: what needs the server -----

    def _repr(self, t: Tensor) -> str:
        with self._lock:
            self._usable(t)
            m = t._m
            if m.repr is None or m.repr_at != self._stamp(t):
                small = m.shape is not None and math.prod(m.shape) <= SMALL
                self._flush([_Get.of(t, repr=True, value=small)], prefetch="repr")
            assert m.repr is not None
            return m.repr

    def _value(self, t: Tensor) -> numpy.ndarray:
        with self._lock:
            self._usable(t)
            value = self._known(t)
            if value is None:
                self._flush([_Get.of(t, value=True)], prefetch="value")
                value = t._m.value
            assert value is not None
            return value

    def _meta(self, t: Tensor, field: str) -> Any:
        with self._lock:
            self._usable(t)
            value = getattr(t._m, field)
            if value is None or (field == "grad_fn" and value == UNKNOWN_FN):
                self._flush([_Get.of(t)])
                value = getattr(t._m, field)
            return value

    def _has_grad(self, t: Tensor) -> bool:
        with self._lock:
            self._usable(t)
            m = t._m
            if t._has_grad:
                return True
            can = m.requires_grad is not False and (m.is_leaf is not False or t._retains_grad)
            if t._has_grad is False and (t._has_grad_at == self._backward_epoch or not can):
                return False
            guess = bool((m.is_leaf and m.requires_grad) or t._retains_grad)
            small = m.shape is not None and math.prod(m.shape) <= SMALL  # a grad has its shape
            get = _Get(t, grad=True, repr=True, value=small, speculative=True) if guess else _Get(t)
            self._flush([get], prefetch="repr")
            return bool(t._has_grad)

    def _usable(self, t: Tensor) -> None:
        if t._state == FAILED:
            assert t._error is not None
            raise t._error
        self._check_open()

    # ----- sending -----

    def _flush(self, gets: Sequence[_Get] = (), prefetch: str | None = None) -> None:
        with self._lock:
            self._check_open()
            pending, self._pending = self._pending, []
            released = self._drain()
            wanted = list(gets)
            if prefetch:
                wanted += self._ahead(wanted, prefetch)
            if any(p.body["kind"] == "backward" for p in pending):
                wanted += self._leaf_checks(wanted)
            if pending or released or wanted:
                self._send(pending, released, wanted)

    def _drain(self) -> list[str]:
        names = []
        while self._released:
            names.append(self._released.popleft())
        return names

    def _ahead(self, wanted: list[_Get], kind: str) -> list[_Get]:
        """Gets for what is likely read next: the newest tensors, then tensors' grads."""
        taken = {(id(g.tensor), g.grad) for g in wanted}
        out: list[_Get] = []
        candidates = [(t, False) for r in reversed(self._recent) if (t := r()) is not None]
        if kind == "repr":
            candidates.extend((t, True) for t in list(self._with_grads.values()) if t._has_grad)
        for t, grad in candidates:
            if len(out) >= PREFETCH:
                break
            if t._state == FAILED or t._owner is not None or (id(t), grad) in taken:
                continue
            taken.add((id(t), grad))
            m = t._grad_state() if grad else t._m
            stamp = self._epochs() if grad else self._data_epoch
            small = m.shape is not None and math.prod(m.shape) <= SMALL
            if kind == "repr" and (m.repr is None or m.repr_at != stamp):
                out.append(_Get(t, grad=grad, repr=True, value=small))
            elif kind == "value" and small and (m.value is None or m.value_at != stamp):
                out.append(_Get(t, grad=grad, value=True))
        return out

    def _leaf_checks(self, wanted: list[_Get]) -> list[_Get]:
        """After a backward pass: which watched tensors now have grads (metadata only)."""
        asked = {id(g.tensor) for g in wanted}
        out: list[_Get] = []
        for t in list(self._watched.values()):
            if len(out) >= LEAF_CHECKS:
                break
            if t._state in (PENDING, LIVE) and not t._has_grad and id(t) not in asked:
                out.append(_Get(t))
        return out

    def _send(self, pending: list[_Pending], released: list[str], gets: list[_Get]) -> None:
        while True:
            commands = [p.body for p in pending] + [g.body() for g in gets]
            if released:
                commands.append({"kind": "release", "names": released})
            try:
                results = self._transport.execute(self.id, self._token, commands)
            except Error as exc:
                k, n = exc.command_index, len(pending)
                if k is not None and n <= k < n + len(gets) and gets[k - n].speculative:
                    gets[k - n] = _Get(gets[k - n].tensor)  # the grad is None after all
                    continue
                if k is not None and k == n + len(gets) and released:
                    log.warning("gradserve: the server refused to release %s: %s", released, exc)
                    released = []
                    continue
                self._fail(pending, released, exc)
            self._apply(pending, gets, results)
            return

    def _apply(
        self, pending: list[_Pending], gets: list[_Get], results: list[CommandResult]
    ) -> None:
        for p, result in zip(pending, results, strict=False):
            infos = result.tensors
            for ref, info in zip(p.created + p.touched, infos, strict=False):
                t = ref()
                if t is not None:
                    self._learn(t, info, p.at)
        at = (self._data_epoch, self._grad_epoch, self._backward_epoch)
        for g, result in zip(gets, results[len(pending) :], strict=False):
            info = result.tensors[0]
            if g.grad:
                g.tensor._has_grad, g.tensor._has_grad_at = True, at[2]
                self._with_grads[id(g.tensor)] = g.tensor
                self._learn_state(g.tensor._grad_state(), info, (at[0], at[1]))
            else:
                self._learn(g.tensor, info, at)

    def _learn(self, t: Tensor, info: TensorInfo | None, at: tuple[int, int, int]) -> None:
        if info is None:  # an unused input's gradient: no tensor was made
            t._state = ABSENT
            return
        if t._state == PENDING:
            t._state = LIVE
        if t._owner is not None:
            self._learn_state(t._m, info, (at[0], at[1]))
            return
        self._learn_state(t._m, info, at[0])
        t._has_grad, t._has_grad_at = info.has_grad, at[2]
        if info.has_grad:
            self._with_grads[id(t)] = t
        if info.requires_grad and info.is_leaf:
            self._watched[id(t)] = t
        if info.grad is not None:
            g = t._grad_state()
            g.value, g.value_at = info.grad, (at[0], at[1])

    @staticmethod
    def _learn_state(m: State, info: TensorInfo | None, stamp: Any) -> None:
        if info is None:
            return
        m.shape, m.dtype = info.shape, info.dtype
        m.requires_grad, m.is_leaf, m.grad_fn = info.requires_grad, info.is_leaf, info.grad_fn
        if info.value is not None:
            m.value, m.value_at = info.value, stamp
        if info.repr is not None:
            m.repr, m.repr_at = info.repr, stamp

    def _fail(self, pending: list[_Pending], released: list[str], exc: Error) -> NoReturn:
        """Recover from a failed batch, then raise ``exc`` at the user's line."""
        k = exc.command_index
        if k is None:  # the request failed as a whole: what ran is unknown
            keep: list[_Pending] = []
            failed = pending
            error = exc
        else:
            keep = pending[:k] if k < len(pending) else pending
            failed = pending[len(keep) :]
            error = exc.at(_where(failed[0].site)) if failed else exc
        dead: set[str] = set()
        for p in failed:
            dead.update(p.names())
            for ref in p.created:
                t = ref()
                if t is not None:
                    t._state, t._error = FAILED, error
            for ref in p.touched:
                t = ref()
                if t is not None:
                    t._m.forget()
                    t._has_grad = None
        survivors = [n for n in released if n not in dead]
        if k is None:
            self._released.extend(survivors)  # sent again with the next batch
            raise error
        if keep or survivors:  # what ran before the failing line in PyTorch
            commands = [p.body for p in keep]
            if survivors:
                commands.append({"kind": "release", "names": survivors})
            try:
                results = self._transport.execute(self.id, self._token, commands)
            except Error as again:
                for p in keep:
                    for ref in p.created:
                        t = ref()
                        if t is not None:
                            t._state, t._error = FAILED, again
                raise again from error
            self._apply(keep, [], results)
        raise error
