"""Request dependencies as ``Annotated`` aliases: the data plane, the session's token, the API
key, and the data plane bound to the session a route names."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException

from engine.creation import Adopted
from engine.errors import Unauthenticated
from engine.session import Result, Session
from service import codec
from service.dataplane import DataPlane, render
from service.memo import Memo

NPY = "application/x-npy"

bearer = HTTPBearer(
    auto_error=False, description="The session's token, as POST /v1/sessions returned it."
)
api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="The server's API key, when it is configured with one.",
)


# Dependencies are coroutines: FastAPI runs a plain function in a worker thread, a hop each.
async def get_dataplane(request: Request) -> DataPlane:
    return cast(DataPlane, request.app.state.dataplane)


async def get_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    # Same words as a wrong token or an unknown session: a 401 says nothing of what exists.
    if credentials is None:
        raise Unauthenticated("invalid session id or token")
    return credentials.credentials


PlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
TokenDep = Annotated[str, Depends(get_token)]
ApiKeyDep = Annotated[str | None, Depends(api_key_header)]


@dataclass(frozen=True)
class SessionHandle:
    """The data plane bound to one session and its token. A batch, and the encoding of its
    results down to the response's bytes, runs where the data plane runs it: on an engine
    thread, or on the event loop for a small op (see ``service.dataplane``). The routes
    return these responses as they are: FastAPI's validation of a returned dict against
    ``response_model`` (which still documents them) would repeat what the renderer already
    guarantees."""

    plane: DataPlane
    session_id: str
    token: str

    async def execute(
        self, commands: list[Any] | Callable[[], list[Any]], binary: bool = False
    ) -> Response:
        """Run a batch (command dicts, or a function giving them or parsed ones, called on
        the engine's threads): its ExecuteResponse."""
        respond = functools.partial(_respond, binary=binary, batch=True, status=200)
        return await self.plane.submit(self._session(), commands, respond)

    async def one(
        self, command: dict[str, Any], binary: bool = False, status: int = 200
    ) -> Response:
        """Run one command: its CommandResult."""
        respond = functools.partial(_respond, binary=binary, batch=False, status=status)
        return await self.plane.submit(self._session(), [command], respond)

    async def read_npy(self, ref: Any) -> bytes:
        """The value of a tensor (or of a grad, for ``{"grad_of": name}``) as ``.npy`` bytes."""
        return await self.plane.call(
            self.session_id, self.token, functools.partial(self._read_npy, ref=ref)
        )

    async def write_npy(self, name: str, body: codec.NpyReader, requires_grad: bool) -> Response:
        """Bind ``name`` to a new leaf holding the ``.npy`` body's array: its CommandResult."""
        write = functools.partial(
            self._write_npy, name=name, body=body, requires_grad=requires_grad
        )
        return await self.plane.call(self.session_id, self.token, write)

    def _session(self) -> Session:
        return self.plane.session(self.session_id, self.token)

    def _write_npy(
        self, session: Session, name: str, body: codec.NpyReader, requires_grad: bool
    ) -> Response:
        # The reader's array is this request's alone: the new tensor takes it without a copy.
        data = Adopted(body.array())
        command = {"kind": "create", "name": name, "data": data, "requires_grad": requires_grad}
        return _respond(self.plane.execute(session, [command]), False, False, 200)

    def _read_npy(self, session: Session, ref: Any) -> bytes:
        (result,) = self.plane.execute(session, [{"kind": "get", "tensor": ref, "value": True}])
        info = result.tensors[0]
        assert info is not None and info.value is not None  # a get with value=True has it
        return codec.to_npy(info.value)


# Results as compact JSON by pydantic's serializer (in Rust): the same bytes as Starlette's
# ``json.dumps`` (tests/service/test_http_responses.py), four times as fast on a batch's
# thousand results. Results hold no non-finite floats (the codec writes them as strings),
# where the two differ.
RESULTS_JSON = TypeAdapter(object)


# Each result's JSON, by its record, one memo per encoding (``binary``): a batch of a
# thousand ops repeats a few distinct records, and rendering one costs ~1.5 us.
_RENDERED: tuple[Memo[Result, bytes], Memo[Result, bytes]] = (Memo(4096), Memo(4096))


def _render_json(result: Result) -> bytes:
    return RESULTS_JSON.dump_json(render(result, False))


def _render_binary(result: Result) -> bytes:
    return RESULTS_JSON.dump_json(render(result, True))


def _respond(results: list[Result], binary: bool, batch: bool, status: int) -> Response:
    """The results' JSON, by ``RESULTS_JSON``, a result's bytes remembered
    (not those with values or grads: arrays are neither hashable nor small)."""
    parts = _RENDERED[binary].recall_all(results, _render_binary if binary else _render_json)
    body = b'{"results":[' + b",".join(parts) + b"]}" if batch else parts[0]
    return Response(body, status, media_type=JSONResponse.media_type)


async def session_handle(request: Request, session_id: str, token: TokenDep) -> SessionHandle:
    return SessionHandle(request.app.state.dataplane, session_id, token)


async def get_npy_body(request: Request) -> codec.NpyReader:
    """The body of an ``application/x-npy`` request, read into its array as it arrives."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != NPY:
        raise HTTPException(415, f"the body must be {NPY} (a .npy file), not {media_type!r}")
    reader = codec.NpyReader(request.app.state.settings.max_request_bytes)
    async for chunk in request.stream():
        reader.feed(chunk)
    return reader


SessionDep = Annotated[SessionHandle, Depends(session_handle)]
NpyBodyDep = Annotated[codec.NpyReader, Depends(get_npy_body)]
