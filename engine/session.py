"""Sessions: named tensors, a seeded generator, limits, and atomic batches of commands.

A batch runs under the session's lock inside ``journal.transaction()``: when a command
fails, every mutation of the batch is undone (tensor values, grads, graphs and their saved
buffers, names, the RNG state) and the error carries the failing command's index.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy

from engine import autograd, creation, journal
from engine.backend import on_device, parse_device, release_host_memory, to_numpy
from engine.commands import (
    COMMAND_TYPES,
    Backward,
    Command,
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
    parse_ref,
)
from engine.dtypes import DTYPES
from engine.errors import (
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
)
from engine.grad_mode import set_grad_enabled
from engine.ops.registry import OPS
from engine.tensor import Tensor

# What ops and factories raise for arguments of the wrong type, value or count; reported as
# InvalidArgument. Anything else from a command is a bug and propagates as it is.
BAD_ARGUMENTS = (TypeError, ValueError, IndexError, AttributeError, ArithmeticError)
SUPPORTED_DTYPES = frozenset(DTYPES.values())


@dataclass(frozen=True)
class Limits:
    """What one session, and the manager as a whole, may hold."""

    max_sessions: int = 1000
    max_bytes_per_session: int = 1 << 30
    max_tensors_per_session: int = 100_000
    max_elements_per_tensor: int = 1 << 27
    max_commands_per_batch: int = 10_000


@dataclass(slots=True)
class TensorInfo:
    """What a command reports about a tensor; ``value``, ``grad`` and ``repr`` when asked."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    is_leaf: bool
    grad_fn: str | None
    has_grad: bool
    value: numpy.ndarray | None = None
    grad: numpy.ndarray | None = None
    repr: str | None = None


@dataclass(slots=True)
class Result:
    """One command's result: the tensors it created or read (``None`` for an unused grad)."""

    kind: str
    tensors: list[TensorInfo | None] = field(default_factory=list)


def check_batch_size(count: int, limits: Limits) -> None:
    if count > limits.max_commands_per_batch:
        raise ResourceExhausted(
            f"batch of {count} commands exceeds the limit of "
            f"{limits.max_commands_per_batch} commands per batch"
        )


def info(
    name: str, t: Tensor, *, value: bool = False, grad: bool = False, text: bool = False
) -> TensorInfo:
    return TensorInfo(
        name=name,
        shape=t.shape,
        dtype=t.dtype,
        requires_grad=t.requires_grad,
        is_leaf=t.is_leaf,
        grad_fn=t.grad_fn.name if t.grad_fn is not None else None,
        has_grad=t.grad is not None,
        value=to_numpy(t.data).copy() if value else None,
        grad=to_numpy(t.grad.data).copy() if grad and t.grad is not None else None,
        repr=repr(t) if text else None,
    )


class Session:
    """One client's namespace of tensors. Use ``execute``; it holds the lock."""

    def __init__(
        self, session_id: str, token: str, device: str, seed: int, ttl: float, limits: Limits
    ) -> None:
        self.id = session_id
        self._token = token
        self.device = device
        self.seed = seed
        self.ttl = ttl
        self.limits = limits
        self.generator = creation.Generator(seed)
        self.tensors: dict[str, Tensor] = {}
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self._next_auto = 1
        self.closed = False

    def check_token(self, token: str) -> bool:
        """Constant-time comparison; anything but the right string is False."""
        if not isinstance(token, str):
            return False
        return hmac.compare_digest(self._token.encode(), token.encode("utf-8", "surrogatepass"))

    # ----- names -----

    def _bind(self, name: str, t: Tensor) -> None:
        old = self.tensors.get(name)
        journal.record(lambda: self._restore_name(name, old))
        self.tensors[name] = t

    def _unbind(self, name: str) -> None:
        old = self.tensors.pop(name)
        journal.record(lambda: self._restore_name(name, old))

    def _restore_name(self, name: str, old: Tensor | None) -> None:
        if old is None:
            self.tensors.pop(name, None)
        else:
            self.tensors[name] = old

    def _auto_name(self) -> str:
        n = self._next_auto
        journal.record(lambda: setattr(self, "_next_auto", n))
        self._next_auto = n + 1
        return f"%{n}"

    def _new(self, t: Tensor, name: str | None) -> TensorInfo:
        if t.numel() > self.limits.max_elements_per_tensor:
            raise ResourceExhausted(
                f"tensor of {t.numel()} elements exceeds the limit of "
                f"{self.limits.max_elements_per_tensor} elements per tensor"
            )
        name = name or self._auto_name()
        self._bind(name, t)
        if len(self.tensors) > self.limits.max_tensors_per_session:
            raise ResourceExhausted(
                f"session holds {len(self.tensors)} tensors, over the limit of "
                f"{self.limits.max_tensors_per_session}"
            )
        return info(name, t)

    def resolve(self, ref: Ref) -> Tensor:
        t = self.tensors.get(ref.name)
        if t is None:
            raise NotFound(f"no tensor named '{ref.name}' in this session")
        if ref.grad:
            if t.grad is None:
                raise FailedPrecondition(
                    f"'{ref.name}.grad' is None: no backward pass has reached it"
                )
            return t.grad
        return t

    def _input(self, value: Any) -> Any:
        if isinstance(value, Ref):
            return self.resolve(value)
        if isinstance(value, list):
            return [self._input(v) for v in value]
        return value

    # ----- execution -----

    def execute(self, commands: Sequence[Command]) -> list[Result]:
        """Run a batch atomically: all its commands take effect, or none does."""
        check_batch_size(len(commands), self.limits)
        with self.lock:
            if self.closed:
                raise NotFound("session is closed")
            self.last_used = time.monotonic()
            rng_state = self.generator.get_state()
            results: list[Result] = []
            index = 0
            try:
                with journal.transaction(), on_device(self.device):
                    for index in range(len(commands)):
                        results.append(self._run(commands[index]))
                    self._check_bytes()
            except EngineError as exc:
                self.generator.set_state(rng_state)
                exc.command_index = index
                raise
            except BaseException:
                self.generator.set_state(rng_state)
                raise
            finally:
                self.last_used = time.monotonic()  # a long batch is use until its end
            return results

    def _check_bytes(self) -> None:
        held = self.bytes_held()
        if held > self.limits.max_bytes_per_session:
            raise ResourceExhausted(
                f"session would hold {held} bytes, over the limit of "
                f"{self.limits.max_bytes_per_session} bytes per session"
            )

    def _run(self, command: Command) -> Result:
        if not isinstance(command, COMMAND_TYPES):
            raise InvalidArgument(f"not a command: {type(command).__name__} (use parse())")
        handler: Callable[[Any], list[TensorInfo | None]] = getattr(self, f"_do_{command.kind}")
        return Result(command.kind, handler(command))

    def _do_create(self, c: Create) -> list[TensorInfo | None]:
        try:
            t = self._create(c)
        except BAD_ARGUMENTS as exc:
            raise InvalidArgument(f"bad arguments for factory '{c.factory}': {exc}") from exc
        return [self._new(t, c.name)]

    def _create(self, c: Create) -> Tensor:
        kwargs: dict[str, Any] = {"dtype": c.dtype, "requires_grad": c.requires_grad}
        args = [self._input(a) for a in c.args]
        factory = getattr(creation, c.factory)
        if c.factory == "tensor":
            return creation.tensor(c.data, device=self.device, **kwargs)
        if c.factory.endswith("_like"):
            if not args or not isinstance(args[0], Tensor):
                raise InvalidArgument(f"{c.factory} needs a tensor as its first argument")
            return factory(*args, **kwargs)  # type: ignore[no-any-return]
        if c.factory in ("zeros", "ones", "empty", "rand", "randn"):
            size = _size(args)
            self._check_numel(size)
            if c.factory in ("rand", "randn"):
                kwargs["generator"] = self.generator
            return factory(size, device=self.device, **kwargs)  # type: ignore[no-any-return]
        if c.factory == "full":
            if len(args) != 2:
                raise InvalidArgument("full expects a size and a fill value")
            self._check_numel(_size(args[:1]))
        elif c.factory == "arange":
            self._check_range(args)
        elif c.factory == "eye":
            self._check_numel(args[:2] if len(args) > 1 else args[:1] * 2)  # eye(n) is n x n
        elif c.factory == "linspace":
            self._check_numel(args[2:3])
        return factory(*args, device=self.device, **kwargs)  # type: ignore[no-any-return]

    def _check_numel(self, shape: Any) -> None:
        numel = 1
        for n in shape:
            if not isinstance(n, int) or isinstance(n, bool):
                raise InvalidArgument(f"sizes must be integers, got {n!r}")
            numel *= max(n, 0)
        if numel > self.limits.max_elements_per_tensor:
            raise ResourceExhausted(
                f"tensor of {numel} elements exceeds the limit of "
                f"{self.limits.max_elements_per_tensor} elements per tensor"
            )

    def _check_range(self, args: list[Any]) -> None:
        if not 1 <= len(args) <= 3 or not all(
            isinstance(a, int | float) and math.isfinite(a) for a in args
        ):
            raise InvalidArgument("arange expects finite numbers: end, or start, end[, step]")
        start, end, step = (
            (0, args[0], 1) if len(args) == 1 else (*args[:2], args[2] if len(args) > 2 else 1)
        )
        if step and abs((end - start) / step) > self.limits.max_elements_per_tensor:
            raise ResourceExhausted(
                f"arange of {int(abs((end - start) / step))} elements exceeds the limit of "
                f"{self.limits.max_elements_per_tensor} elements per tensor"
            )

    def _do_op(self, c: Op) -> list[TensorInfo | None]:
        fn = OPS.get(c.op)
        if fn is None:
            raise InvalidArgument(f"unknown op '{c.op}'")
        inputs = [self._input(v) for v in c.inputs]
        if c.op in ("cat", "stack") and len(inputs) == 1 and isinstance(inputs[0], list):
            inputs = inputs[0]
        if any(isinstance(v, list) and any(isinstance(t, Tensor) for t in v) for v in inputs):
            raise InvalidArgument(f"op '{c.op}' takes no list of tensors (cat and stack take one)")
        if not any(isinstance(v, Tensor) for v in inputs):
            raise InvalidArgument(f"op '{c.op}' needs at least one tensor among its inputs")
        attrs = dict(c.attrs)
        if c.op == "index" and "key" in attrs:
            attrs["key"] = self._key(attrs["key"])
        try:
            if c.no_grad:
                with set_grad_enabled(False):
                    out = fn(*inputs, **attrs)
            else:
                out = fn(*inputs, **attrs)
        except BAD_ARGUMENTS as exc:
            raise InvalidArgument(f"bad arguments for op '{c.op}': {exc}") from exc
        outputs = list(out) if isinstance(out, tuple | list) else [out]
        for t in outputs:
            if not isinstance(t, Tensor) or t.data.dtype not in SUPPORTED_DTYPES:
                kind = t.data.dtype if isinstance(t, Tensor) else type(t).__name__
                raise InvalidArgument(f"op '{c.op}' gives {kind}, which is not a supported tensor")
        names: list[str | None] = [c.name] * (1 if c.name else len(outputs))
        if c.names:
            names = [*c.names]
        if len(names) != len(outputs):
            raise InvalidArgument(
                f"op '{c.op}' returns {len(outputs)} tensors but {len(names)} names were given"
            )
        results: list[TensorInfo | None] = []
        for t, name in zip(outputs, names, strict=True):
            existing = self._name_of(t) if c.op.endswith("_") else None
            # An in-place result keeps its name; a given name becomes an alias (y = x.add_(1)).
            results.append(info(existing, t) if existing and not name else self._new(t, name))
        return results

    def _name_of(self, t: Tensor) -> str | None:
        """The name an in-place op's result already has (its first input)."""
        for name, bound in self.tensors.items():
            if bound is t:
                return name
            if bound.grad is t:
                return f"{name}.grad"
        return None

    def _key(self, key: Any) -> Any:
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
                out.append(self.resolve(parse_ref(item["tensor"])))
            elif item is None or isinstance(item, int | list):
                out.append(item)
            else:
                raise InvalidArgument(f"invalid index item {item!r}")
        return tuple(out)

    def _do_backward(self, c: Backward) -> list[TensorInfo | None]:
        t = self.resolve(c.tensor)
        gradient = self.resolve(c.gradient) if c.gradient is not None else None
        inputs = [self.resolve(r) for r in c.inputs] if c.inputs is not None else None
        autograd.backward(
            t,
            None if gradient is None else [gradient],
            retain_graph=c.retain_graph,
            create_graph=c.create_graph,
            inputs=inputs,
        )
        return []

    def _do_grad(self, c: Grad) -> list[TensorInfo | None]:
        grads = autograd.grad(
            [self.resolve(r) for r in c.outputs],
            [self.resolve(r) for r in c.inputs],
            grad_outputs=None
            if c.grad_outputs is None
            else [self.resolve(r) for r in c.grad_outputs],
            retain_graph=c.retain_graph,
            create_graph=c.create_graph,
            allow_unused=c.allow_unused,
        )
        names: list[str | None] = [*c.names] if c.names else [None] * len(grads)
        if len(names) != len(grads):
            raise InvalidArgument(
                f"grad returns {len(grads)} tensors but {len(names)} names were given"
            )
        return [None if g is None else self._new(g, n) for g, n in zip(grads, names, strict=True)]

    def _do_detach(self, c: Detach) -> list[TensorInfo | None]:
        return [self._new(self.resolve(c.tensor).detach(), c.name)]

    def _do_zero_grad(self, c: ZeroGrad) -> list[TensorInfo | None]:
        for ref in c.tensors:
            t = self.resolve(ref)
            if c.set_to_none:
                t.set_grad(None)
            elif t.grad is not None:
                t.grad.write_(t.xp.zeros_like(t.grad.data))
        return []

    def _do_requires_grad(self, c: RequiresGrad) -> list[TensorInfo | None]:
        t = self.resolve(c.tensor)
        t.requires_grad_(c.requires_grad)
        return [info(str(c.tensor), t)]

    def _do_retain_grad(self, c: RetainGrad) -> list[TensorInfo | None]:
        t = self.resolve(c.tensor)
        t.retain_grad()
        return [info(str(c.tensor), t)]

    def _do_get(self, c: Get) -> list[TensorInfo | None]:
        t = self.resolve(c.tensor)
        return [info(str(c.tensor), t, value=c.value, grad=c.grad, text=c.repr)]

    def _do_release(self, c: Release) -> list[TensorInfo | None]:
        for name in c.names:
            if name not in self.tensors:
                raise NotFound(f"no tensor named '{name}' in this session")
            self._unbind(name)
        return []

    # ----- accounting -----

    def arrays(self) -> Iterator[Any]:
        """Every array the session keeps alive: values, grads and saved buffers."""
        seen_nodes: set[int] = set()
        stack: list[Any] = []
        for t in self.tensors.values():
            yield from _tensor_arrays(t, stack)
        while stack:
            node = stack.pop()
            if id(node) in seen_nodes:
                continue
            seen_nodes.add(id(node))
            if isinstance(node, autograd.AccumulateGrad):  # keeps its leaf alive, released or not
                yield from _tensor_arrays(node.variable, stack)
                continue
            if node.inputs is not None and node.arrays is not None:
                yield from (a for a in node.arrays if hasattr(a, "nbytes"))
            if node.out is not None:
                yield node.out
            stack.extend(e for e in node.edges if e is not None)

    def bytes_held(self) -> int:
        """Bytes of distinct memory the session holds (views counted once, by their base)."""
        bases: dict[int, int] = {}
        for a in self.arrays():
            base = a
            while getattr(base, "base", None) is not None:
                base = base.base
            bases[id(base)] = int(getattr(base, "nbytes", 0))
        return sum(bases.values())


def _tensor_arrays(t: Tensor, stack: list[Any]) -> Iterator[Any]:
    """A tensor's value and grad; the graphs behind them go on ``stack``."""
    yield t.data
    if t.grad_fn is not None:
        stack.append(t.grad_fn)
    if t.grad is not None:
        yield t.grad.data
        if t.grad.grad_fn is not None:  # a grad from create_graph=True keeps its graph
            stack.append(t.grad.grad_fn)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _size(args: list[Any]) -> list[Any]:
    """A size given as one list (``zeros([2, 3])``) or as several numbers (``zeros(2, 3)``)."""
    size = args[0] if len(args) == 1 and isinstance(args[0], list | tuple) else args
    return list(size)


class SessionManager:
    """Creates, finds, expires and closes sessions; safe to use from many threads."""

    def __init__(
        self, limits: Limits | None = None, default_ttl: float = 1800.0, sweep_interval: float = 1.0
    ) -> None:
        self.limits = limits or Limits()
        self.default_ttl = default_ttl
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper = threading.Thread(
            target=self._sweep_loop, args=(sweep_interval,), daemon=True, name="session-expiry"
        )
        self._sweeper.start()

    def create(
        self,
        device: str = "cpu",
        seed: int = 0,
        ttl: float | None = None,
        limits: Limits | None = None,
    ) -> tuple[str, str]:
        """A new session; returns its id and its secret token.

        ``limits`` may tighten the manager's limits; values above them are capped.
        """
        if device is not None and not isinstance(device, str):
            raise InvalidArgument(f"device must be a string, got {device!r}")
        dev = parse_device(device)
        if not _is_int(seed) or seed < 0:
            raise InvalidArgument(f"seed must be a non-negative integer, got {seed!r}")
        ttl = self.default_ttl if ttl is None else ttl
        if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 0 < ttl < math.inf:
            raise InvalidArgument(f"ttl must be a positive number of seconds, got {ttl!r}")
        session_limits = self._session_limits(limits)
        session_id = secrets.token_hex(16)
        token = secrets.token_urlsafe(32)
        with self._lock:
            if len(self._sessions) >= self.limits.max_sessions:
                raise ResourceExhausted(
                    f"{len(self._sessions)} sessions are open, the limit is "
                    f"{self.limits.max_sessions} sessions"
                )
            self._sessions[session_id] = Session(
                session_id, token, dev, seed, float(ttl), session_limits
            )
        return session_id, token

    def _session_limits(self, limits: Limits | None) -> Limits:
        if limits is None:
            return self.limits
        capped: dict[str, int] = {}
        for f in fields(Limits):
            asked, cap = getattr(limits, f.name), getattr(self.limits, f.name)
            if not _is_int(asked) or asked < 1:
                raise InvalidArgument(f"{f.name} must be a positive integer, got {asked!r}")
            capped[f.name] = min(asked, cap)
        return Limits(**capped)

    def get(self, session_id: str, token: str) -> Session:
        """The session, if the token matches; unknown ids and wrong tokens look the same."""
        with self._lock:
            session = self._sessions.get(session_id) if isinstance(session_id, str) else None
        # An unknown id costs the same comparison as a wrong token.
        if not (session or _NO_SESSION).check_token(token) or session is None:
            raise Unauthenticated("invalid session id or token")
        return session

    def execute(self, session_id: str, token: str, commands: Sequence[Command]) -> list[Result]:
        return self.get(session_id, token).execute(commands)

    def close(self, session_id: str, token: str) -> None:
        session = self.get(session_id, token)
        self._drop(session)

    def _drop(self, session: Session) -> None:
        with session.lock:  # waits for a batch in flight
            self._close_locked(session)

    def _close_locked(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)
        session.closed = True
        session.tensors.clear()
        release_host_memory()

    def count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def expire(self, now: float | None = None) -> int:
        """Close every session idle for longer than its TTL; returns how many."""
        now = time.monotonic() if now is None else now
        count = 0
        for s in self.sessions():
            # A session running a batch is in use; one used since the first look is kept.
            if now - s.last_used > s.ttl and s.lock.acquire(blocking=False):
                try:
                    if now - s.last_used > s.ttl and not s.closed:
                        self._close_locked(s)
                        count += 1
                finally:
                    s.lock.release()
        return count

    def _sweep_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.expire()
            except Exception:  # keep sweeping: a dead sweeper would leak every idle session
                logging.getLogger(__name__).exception("session expiry failed")

    def shutdown(self) -> None:
        self._stop.set()
        self._sweeper.join(timeout=5)
        for s in self.sessions():
            self._drop(s)


# Compared against when a session id is unknown, so that case takes as long as a wrong token.
_NO_SESSION = Session("", secrets.token_urlsafe(32), "cpu", 0, 1.0, Limits())
