"""The one core both frontends call: sessions and batches, as plain data in and out.

Frontends decode their wire format into command dicts (tensor payloads already decoded to
arrays), call these methods off the event loop, and encode what comes back.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hmac
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.commands import parse_batch
from engine.session import Result, SessionManager, TensorInfo, check_batch_size
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


T = TypeVar("T")


class DataPlane:
    """Sessions, batches and their results, independent of any transport.

    Frontends call ``await dataplane.run(dataplane.execute, ...)``: engine work runs on a
    thread pool, never on the event loop, so one slow session does not stall the others.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.manager = SessionManager(settings.limits(), default_ttl=settings.session_ttl)
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="engine")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the engine's thread pool."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)  # the request id goes along

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
        return self._info(session_id, token, include_token=True)

    def session_info(self, session_id: str, token: str) -> SessionInfo:
        return self._info(session_id, token, include_token=False)

    def _info(self, session_id: str, token: str, include_token: bool) -> SessionInfo:
        session = self.manager.get(session_id, token)
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
            token=token if include_token else None,
        )

    def close_session(self, session_id: str, token: str) -> None:
        self.manager.close(session_id, token)

    def execute(self, session_id: str, token: str, commands: list[Any]) -> list[Result]:
        """Parse and run one batch atomically; payloads in ``create.data`` may be JSON tensors."""
        session = self.manager.get(session_id, token)
        if isinstance(commands, list):
            check_batch_size(len(commands), session.limits)
        return session.execute(parse_batch(commands, prepare=_decode_payload))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
        self.manager.shutdown()


def _decode_payload(body: Any) -> Any:
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
    out: dict[str, Any] = {
        "name": info.name,
        "shape": list(info.shape),
        "dtype": info.dtype,
        "requires_grad": info.requires_grad,
        "is_leaf": info.is_leaf,
        "grad_fn": info.grad_fn,
        "has_grad": info.has_grad,
    }
    if info.value is not None:
        out["value"] = codec.encode(info.value, binary)
    if info.grad is not None:
        out["grad"] = codec.encode(info.grad, binary)
    if info.repr is not None:
        out["repr"] = info.repr
    return out


def render(result: Result, binary: bool = False) -> dict[str, Any]:
    return {"kind": result.kind, "tensors": [render_tensor(t, binary) for t in result.tensors]}
