"""The one core both frontends call: sessions and batches, as plain data in and out.

Frontends decode their wire format into command dicts (tensor payloads already decoded to
arrays), hand them to ``DataPlane.submit`` with a function that encodes the results, and
send what comes back.

Engine work runs on a thread pool, so that one slow session never stalls the others, with
one exception: a command whose cost is small and bounded runs on the event loop, because
the hop to a pool thread and back (two cross-thread wakeups, about 250 us on a VM) costs
several times what the command does. Such a command is one elementwise op (its output has
its inputs' broadcast shape) on at most ``inline_max_elements`` elements, on the CPU, in a
session that no pool thread is using or waiting for, whose last such command took at most
``inline_max_seconds`` (a batch also counts the session's bytes, a walk of its graph, which
only a measurement bounds). Anything else, and the first command after anything else, goes
to the pool.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import hmac
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.commands import Command, Op, Ref
from engine.ops.registry import PRIMITIVES
from engine.parsing import parse_batch
from engine.session import Result, Session, SessionManager, TensorInfo, check_batch_size
from service import codec
from service.config import Settings
from service.errors import PermissionDenied


@dataclass(frozen=True)
class SessionInfo:
    """What the service says about a session; the token only when it is created."""

    id: str
    device: str
    seed: int
    ttl: float
    tensors: int
    bytes_held: int
    token: str | None = None


class Parsed(list[Command]):
    """A batch a frontend has already parsed (``service.grpc_batch`` remembers commands)."""


T = TypeVar("T")
# What a small op may hold, tested by exact type: JSON and protobuf decode to no subclasses.
_ELEMENTWISE = frozenset(name for name, primitive in PRIMITIVES.items() if primitive.elementwise)
_SCALAR_TYPES = frozenset((bool, int, float))
_ATTR_TYPES = _SCALAR_TYPES | {str, type(None)}


class DataPlane:
    """Sessions, batches and their results, independent of any transport.

    ``submit`` runs a batch (inline or on the pool, as the module says); ``call`` runs any
    other work on a session on the pool; ``run`` runs work that needs no session.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.manager = SessionManager(settings.limits(), default_ttl=settings.session_ttl)
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="engine")
        # Sessions with work queued or running on the pool, and how much: a session listed
        # here may take its lock at any moment, so nothing of it runs on the event loop.
        self._pooled: dict[Session, int] = {}
        self._pooled_lock = threading.Lock()
        # Seconds that each session's last small batch took, written on the event loop only.
        self._small_cost: weakref.WeakKeyDictionary[Session, float] = weakref.WeakKeyDictionary()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the engine's thread pool (the request id goes along)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    def session(self, session_id: str, token: str) -> Session:
        """The session, if the token matches (else Unauthenticated, which says no more)."""
        return self.manager.get(session_id, token)

    async def call(self, session_id: str, token: str, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` on the engine's thread pool, the session marked as in use."""
        return await self._pooled_call(self.session(session_id, token), fn)

    def lane(self) -> Lane:
        """A lane for batches that must run in the order they are submitted (a stream's)."""
        return Lane(self._pool)

    async def submit(
        self,
        session: Session,
        commands: list[Any] | Callable[[], list[Any]],
        finish: Callable[[list[Result]], T],
        lane: Lane | None = None,
    ) -> T:
        """Run a batch atomically and ``finish`` its results (encode them): on the event loop
        when the batch is small and cheap, else on the pool; the outcome is the same either
        way. ``commands`` are command dicts, or a function that decodes them (on the pool:
        wire messages that may carry large payloads). Batches submitted through one ``lane``
        run in the order they were submitted, even while earlier ones have not ended (a
        batch only runs on the loop when nothing of its session is in the pool's hands)."""
        small = not callable(commands) and self._is_small(session, commands)
        if small and self._may_run_inline(session):
            start = time.perf_counter()
            results = self.execute(session, commands)  # type: ignore[arg-type]
            self._small_cost[session] = time.perf_counter() - start
            return finish(results)

        def work(session: Session) -> tuple[T, float]:
            batch = commands() if callable(commands) else commands
            start = time.perf_counter()
            results = self.execute(session, batch)
            elapsed = time.perf_counter() - start
            return finish(results), elapsed

        if small:
            out, elapsed = await self._pooled_call(session, work, lane)
            self._small_cost[session] = elapsed
            return out
        # It may grow the session's graph: the next small batch is measured anew, including
        # one that ran before it but reports after it was submitted.
        self._small_cost.pop(session, None)
        try:
            return (await self._pooled_call(session, work, lane))[0]
        finally:
            self._small_cost.pop(session, None)

    def execute(self, session: Session, commands: list[Any]) -> list[Result]:
        """Parse and run one batch atomically; payloads in ``create.data`` may be JSON tensors."""
        if isinstance(commands, list):
            check_batch_size(len(commands), session.limits)
        if type(commands) is Parsed:
            return session.execute(commands)
        return session.execute(parse_batch(commands, prepare=decode_payload))

    # ----- where a batch runs -----

    def _is_small(self, session: Session, commands: Sequence[Any]) -> bool:
        """Whether a batch is one elementwise op on few elements, by its still unparsed dict
        (anything unexpected in it is for the pool, where it is parsed, and reported) or by
        the command parsed from it."""
        limit = self.settings.inline_max_elements
        if len(commands) != 1 or limit <= 0 or session.device != "cpu":
            return False
        command = commands[0]
        if type(command) is Op:  # parsed (``Parsed``): judged as its dict would be
            if command.op not in _ELEMENTWISE:
                return False
            attrs, refs = command.attrs, _parsed_refs(command.inputs)
        else:
            if not isinstance(command, dict) or command.get("kind") != "op":
                return False
            name, inputs = command.get("op"), command.get("inputs")
            attrs = command.get("attrs") or {}
            if type(name) is not str or name not in _ELEMENTWISE or type(inputs) is not list:
                return False
            if type(attrs) is not dict:
                return False
            refs = _dict_refs(inputs)
        if refs is None or (attrs and not all(type(v) in _ATTR_TYPES for v in attrs.values())):
            return False
        shapes = []
        tensors = session.tensors
        for name, grad in refs:
            tensor = tensors.get(name)
            if grad and tensor is not None:
                tensor = tensor.grad
            if tensor is not None:  # else the engine says what is missing, at once
                shapes.append(tensor.shape)
        return _broadcast_numel(shapes) <= limit

    def _may_run_inline(self, session: Session) -> bool:
        # Not in the pool's hands, so no thread can take its lock while the loop waits for
        # it (the expiry sweeper and a metrics scrape hold it for no longer than a small
        # batch's byte count); and cheap the last time, graph walk included.
        if session in self._pooled or session.lock.locked():
            return False
        return self._small_cost.get(session, math.inf) <= self.settings.inline_max_seconds

    async def _pooled_call(
        self, session: Session, fn: Callable[[Session], T], lane: Lane | None = None
    ) -> T:
        with self._pooled_lock:
            self._pooled[session] = self._pooled.get(session, 0) + 1

        def work() -> T:
            try:
                return fn(session)
            finally:
                self._release(session)

        call = functools.partial(contextvars.copy_context().run, work)
        future = (lane or self._pool).submit(call)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if future.cancel():  # it never started, so it will not release the session
                self._release(session)
            raise

    def _release(self, session: Session) -> None:
        with self._pooled_lock:
            left = self._pooled[session] - 1
            if left:
                self._pooled[session] = left
            else:
                del self._pooled[session]

    # ----- sessions -----

    def check_api_key(self, key: str | None) -> None:
        expected = self.settings.api_key
        if expected is None:
            return
        if key is None or not hmac.compare_digest(expected.encode(), key.encode()):
            raise PermissionDenied("a valid API key is required to create sessions")

    def create_session(
        self,
        device: str | None = None,
        seed: int = 0,
        ttl: float | None = None,
        api_key: str | None = None,
    ) -> SessionInfo:
        self.check_api_key(api_key)
        session_id, token = self.manager.create(
            device=device or self.settings.device, seed=seed, ttl=ttl
        )
        return self._info(self.manager.get(session_id, token), token)

    async def session_info(self, session_id: str, token: str) -> SessionInfo:
        return await self.call(session_id, token, self._info)

    def _info(self, session: Session, token: str | None = None) -> SessionInfo:
        with session.lock:
            held = session.bytes_held()
            count = len(session.tensors)
        return SessionInfo(
            id=session.id,
            device=session.device,
            seed=session.seed,
            ttl=session.ttl,
            tensors=count,
            bytes_held=held,
            token=token,
        )

    async def close_session(self, session_id: str, token: str) -> None:
        await self.call(session_id, token, lambda session: self.manager.close(session_id, token))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
        self.manager.shutdown()


class Lane:
    """Runs what is submitted to it one call at a time, in order, on the pool: a call
    submitted while another runs is taken by the same pool job once that one ends, with no
    hop to another thread (a stream's batches: each one hop less, and no gap between them).
    After ``BURST`` calls the job goes to the back of the pool's queue, so that a lane that
    never empties does not keep a thread from other sessions' work.
    """

    BURST = 4

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._calls: collections.deque[tuple[Future[Any], Callable[[], Any]]] = collections.deque()
        self._lock = threading.Lock()
        self._draining = False

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            self._calls.append((future, fn))
            if self._draining:
                return future
            self._draining = True
        try:
            self._pool.submit(self._drain)
        except BaseException:
            with self._lock:
                self._calls.clear()
                self._draining = False
            raise
        return future

    def _drain(self) -> None:
        if self._run(self.BURST):
            try:
                self._pool.submit(self._drain)
            except RuntimeError:  # the pool is shutting down: what is left runs here
                while self._run(self.BURST):
                    pass

    def _run(self, most: int) -> bool:
        """Run up to ``most`` calls; whether the lane is still draining after them."""
        for _ in range(most):
            with self._lock:
                if not self._calls:
                    self._draining = False
                    return False
                future, fn = self._calls.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # cancelled before it started
            try:
                result = fn()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
        return True


def _dict_refs(inputs: list[Any]) -> list[tuple[str, bool]] | None:
    """The tensors an op's unparsed inputs name (and whether their grad); None for anything
    but names, ``{"grad_of": name}`` and scalars."""
    refs = []
    for value in inputs:
        if type(value) is str:
            refs.append((value, False))
        elif type(value) in _SCALAR_TYPES:
            continue
        elif type(value) is dict and type(value.get("grad_of")) is str:
            refs.append((value["grad_of"], True))
        else:
            return None
    return refs


def _parsed_refs(inputs: Sequence[Any]) -> list[tuple[str, bool]] | None:
    """``_dict_refs`` for a parsed op's inputs: refs and scalars (a list input is for ``cat``)."""
    refs = []
    for value in inputs:
        if type(value) is Ref:
            refs.append((value.name, value.grad))
        elif type(value) not in _SCALAR_TYPES:
            return None
    return refs


def _broadcast_numel(shapes: Sequence[tuple[int, ...]]) -> int:
    """The element count of the shapes' broadcast, or more when they do not broadcast."""
    if len(shapes) == 1:
        return math.prod(shapes[0])
    dims = [1] * max((len(shape) for shape in shapes), default=0)
    for shape in shapes:
        for axis, n in enumerate(shape, len(dims) - len(shape)):
            if dims[axis] == 1 or (n != 1 and n > dims[axis]):
                dims[axis] = n
    return math.prod(dims)


def decode_payload(body: Any) -> Any:
    """A command dict with its JSON tensor payload (``create.data``) decoded to an array."""
    if (
        isinstance(body, dict)
        and body.get("kind") == "create"
        and isinstance(body.get("data"), dict)
    ):
        return {**body, "data": codec.decode(body["data"])}
    return body


def render_tensor(info: TensorInfo | None, binary: bool = False) -> dict[str, Any] | None:
    """A TensorInfo as JSON-ready data (arrays through the codec)."""
    if info is None:
        return None
    # Unpacked at once: a batch renders one per command, and each field read by name is a
    # property call.
    name, shape, dtype, requires_grad, is_leaf, grad_fn, has_grad, value, grad, text = info
    out: dict[str, Any] = {
        "name": name,
        "shape": list(shape),
        "dtype": dtype,
        "requires_grad": requires_grad,
        "is_leaf": is_leaf,
        "grad_fn": grad_fn,
        "has_grad": has_grad,
    }
    if value is not None:
        out["value"] = codec.encode(value, binary)
    if grad is not None:
        out["grad"] = codec.encode(grad, binary)
    if text is not None:
        out["repr"] = text
    return out


def render(result: Result, binary: bool = False) -> dict[str, Any]:
    kind, tensors = result
    return {"kind": kind, "tensors": [render_tensor(t, binary) for t in tensors]}
