"""Sessions: named tensors, a seeded generator, limits, and atomic batches of commands.

A batch runs under the session's lock inside ``journal.transaction()``: when a command
fails, every mutation of the batch is undone (tensor values, grads, graphs and their saved
buffers, names, the RNG state) and the error carries the failing command's index. The
commands themselves run in ``engine.executors``; runs of elementwise ops that rebind one
name run in ``engine.fusion``.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy

from engine import creation, executors, journal
from engine.accounting import process_bytes_bound
from engine.backend import on_device, parse_device, release_host_memory
from engine.commands import Command, Op, Ref
from engine.errors import (
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
)
from engine.fusion import run_chain
from engine.graph import AccumulateGrad
from engine.results import Result, TensorInfo, brief
from engine.tensor import Tensor

__all__ = ["Limits", "Result", "Session", "SessionManager", "TensorInfo", "check_batch_size"]

# Tensors and graph nodes a session may keep and still be counted exactly after each batch.
_SMALL_WALK = 64


@dataclass(frozen=True)
class Limits:
    """What one session, and the manager as a whole, may hold."""

    max_sessions: int = 1000
    max_bytes_per_session: int = 1 << 30
    max_tensors_per_session: int = 100_000
    max_elements_per_tensor: int = 1 << 27
    max_commands_per_batch: int = 10_000


def check_batch_size(count: int, limits: Limits) -> None:
    if count > limits.max_commands_per_batch:
        raise ResourceExhausted(
            f"batch of {count} commands exceeds the limit of "
            f"{limits.max_commands_per_batch} commands per batch"
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
        # The batch's undo log for names, flat (no tuple per binding): name, what it was
        # bound to before (None: nothing), name, ...
        self._rebound: list[Any] = []
        # Bytes of the tensors this batch bound since the limit was last checked: a batch
        # checks again once they pass an eighth of the limit, so it cannot allocate far past
        # the limit before it fails (the exact check also runs at the batch's end).
        self._unchecked_bytes = 0
        # The batch's results that commands may share (engine.executors.run_op), by what
        # they report; and the names run_op's lean way bound since the batch began (None).
        self.shared: dict[Any, Result | None] = {}
        self.closed = False

    def check_token(self, token: str) -> bool:
        """Constant-time comparison; anything but the right string is False."""
        if not isinstance(token, str):
            return False
        return hmac.compare_digest(self._token.encode(), token.encode("utf-8", "surrogatepass"))

    # ----- names -----

    def new(self, t: Tensor, name: str | None) -> TensorInfo:
        """Bind a tensor a command made to ``name`` (server-chosen when None), within limits."""
        if not name:
            name = f"%{self._next_auto}"
            self._next_auto += 1
        self.bind(t, name)
        return brief(name, t)

    def bind(self, t: Tensor, name: str) -> None:
        """``new`` without its result, for a name given."""
        limits = self.limits
        size = t.data.size
        if size > limits.max_elements_per_tensor:
            raise ResourceExhausted(
                f"tensor of {int(size)} elements exceeds the limit of "
                f"{limits.max_elements_per_tensor} elements per tensor"
            )
        tensors = self.tensors
        old = tensors.get(name)
        rebound = self._rebound
        rebound.append(name)
        rebound.append(old)
        tensors[name] = t
        if old is None and len(tensors) > limits.max_tensors_per_session:
            raise ResourceExhausted(
                f"session holds {len(tensors)} tensors, over the limit of "
                f"{limits.max_tensors_per_session}"
            )
        self._unchecked_bytes += t.data.nbytes
        if self._unchecked_bytes > limits.max_bytes_per_session >> 3:
            self._check_bytes()

    def unbind(self, name: str) -> None:
        old = self.tensors.pop(name)
        self._rebound.append(name)
        self._rebound.append(old)

    def _restore_names(self) -> None:
        tensors = self.tensors
        rebound = self._rebound
        for i in range(len(rebound) - 2, -1, -2):
            name, old = rebound[i], rebound[i + 1]
            if old is None:
                tensors.pop(name, None)
            else:
                tensors[name] = old

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

    def input(self, value: Any) -> Any:
        """A command's input: refs become tensors, in lists too."""
        if isinstance(value, Ref):
            return self.resolve(value)
        if isinstance(value, list):
            return [self.input(v) for v in value]
        return value

    def name_of(self, t: Tensor) -> str | None:
        """The name an in-place op's result already has (its first input)."""
        for name, bound in self.tensors.items():
            if bound is t:
                return name
            if bound.grad is t:
                return f"{name}.grad"
        return None

    # ----- execution -----

    def execute(self, commands: Sequence[Command]) -> list[Result]:
        """Run a batch atomically: all its commands take effect, or none does."""
        check_batch_size(len(commands), self.limits)
        with self.lock:
            if self.closed:
                raise NotFound("session is closed")
            self.last_used = time.monotonic()
            self.generator.checkpoint()
            next_auto = self._next_auto
            self._rebound = []
            self._unchecked_bytes = 0
            self.shared = {}
            results: list[Result] = []
            append = results.append
            run = executors.EXECUTORS.get
            try:
                with journal.transaction(), on_device(self.device):
                    i, n = 0, len(commands)
                    while i < n:
                        command = commands[i]
                        executor = run(type(command))
                        if executor is None:
                            raise InvalidArgument(
                                f"not a command: {type(command).__name__} (use parse())"
                            )
                        append(executor(self, command))
                        i += 1
                        # A chain continues a name: only a next op that binds the same
                        # name can start one (a call for every op of unrelated commands
                        # cost ~0.2 us each).
                        if type(command) is Op and i < n:
                            following = commands[i]
                            if (
                                type(following) is Op
                                and following.name == command.name
                                and command.name is not None
                            ):
                                i = run_chain(self, command, commands, i, append)
                    self._check_bytes()
            except BaseException as exc:
                self._restore_names()
                self._next_auto = next_auto
                self.generator.rollback()
                if isinstance(exc, EngineError):
                    # The commands before it ran; a failed byte count is the last command's.
                    exc.command_index = min(len(results), max(len(commands) - 1, 0))
                raise
            finally:
                self._rebound = []
                self.shared = {}
                self.last_used = time.monotonic()  # a long batch is use until its end
            return results

    def _check_bytes(self) -> None:
        self._unchecked_bytes = 0
        limit = self.limits.max_bytes_per_session
        # A small session is counted exactly: walking a few nodes (~2 us) costs less than the
        # process-wide bound, which reads every pool of Python's small-object allocator
        # (20-30 us in a server process).
        arrays = self._walk(_SMALL_WALK)
        if arrays is not None:
            held = _distinct_bytes(arrays)
        else:
            bound = process_bytes_bound()
            if bound is not None and bound <= limit:
                return  # the whole process holds less: no need to count this session's bytes
            held = self.bytes_held()
        if held > limit:
            raise ResourceExhausted(
                f"session would hold {held} bytes, over the limit of {limit} bytes per session"
            )

    # ----- accounting -----

    def arrays(self) -> list[Any]:
        """Every array the session keeps alive: values, grads and saved buffers."""
        arrays = self._walk(sys.maxsize)
        assert arrays is not None
        return arrays

    def _walk(self, most: int) -> list[Any] | None:
        """``arrays()``, or None once the walk meets more than ``most`` tensors and nodes."""
        # One flat loop over tensors and graph nodes (this runs after every batch): the None
        # of a missing edge is marked seen up front, so it is skipped like a visited node.
        seen = {id(None)}
        mark = seen.add
        stack: list[Any] = list(self.tensors.values())
        push = stack.append
        pop = stack.pop
        arrays: list[Any] = []
        keep = arrays.append
        while stack:
            obj = pop()
            key = id(obj)
            if key in seen:
                continue
            mark(key)
            most -= 1
            if most < 0:
                return None
            kind = type(obj)
            if kind is Tensor:
                keep(obj.data)
                if obj.grad_fn is not None:
                    push(obj.grad_fn)
                grad = obj.grad
                if grad is not None:
                    keep(grad.data)
                    if grad.grad_fn is not None:  # a grad from create_graph=True keeps its graph
                        push(grad.grad_fn)
            elif kind is AccumulateGrad:  # keeps its leaf alive, released or not
                push(obj.variable)
            else:
                if obj.inputs is not None and obj.arrays is not None:
                    arrays.extend(obj.arrays)  # with Python numbers, skipped below
                if obj.out is not None:
                    keep(obj.out)
                stack.extend(obj.edges)
        return arrays

    def bytes_held(self) -> int:
        """Bytes of distinct memory the session holds (views counted once, by their base)."""
        return _distinct_bytes(self.arrays())


def _distinct_bytes(arrays: list[Any]) -> int:
    """The bytes of the memory under ``arrays``: views counted once, by their base."""
    bases: dict[int, int] = {}
    ndarray = numpy.ndarray
    for a in arrays:
        if type(a) is not ndarray and not hasattr(a, "nbytes"):
            continue
        base = a.base
        while base is not None:
            a = base
            base = a.base
        bases[id(a)] = a.nbytes
    return sum(bases.values())


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
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
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
            if not isinstance(asked, int) or isinstance(asked, bool) or asked < 1:
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
