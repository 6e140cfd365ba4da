"""Tensors of a session: create, read, release, and ``.npy`` upload and download."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from service.http.deps import NPY, NpyBodyDep, SessionDep
from service.http.models import CommandResult, CreateTensor
from service.http.routing import resource_router

router = resource_router("/sessions/{session_id}/tensors", "tensors")

NPY_BODY = {
    "requestBody": {
        "required": True,
        "content": {NPY: {"schema": {"type": "string", "format": "binary"}}},
    }
}
NPY_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {NPY: {"schema": {"type": "string", "format": "binary"}}}}
}


@router.post("", status_code=201, response_model=CommandResult, response_model_exclude_unset=True)
async def create_tensor(body: CreateTensor, session: SessionDep) -> Response:
    """Creates a tensor from data or a factory (arange, zeros, randn, ...)."""
    return await session.one(body.command(), status=201)


@router.get("/{name}", response_model=CommandResult, response_model_exclude_unset=True)
async def get_tensor(
    name: str,
    session: SessionDep,
    value: bool = False,
    grad: bool = False,
    repr: bool = False,
    binary: bool = False,
) -> Response:
    """Reads a tensor's metadata, and its value, grad and repr when asked."""
    command = {"kind": "get", "tensor": name, "value": value, "grad": grad, "repr": repr}
    return await session.one(command, binary)


@router.get("/{name}/grad", response_model=CommandResult, response_model_exclude_unset=True)
async def get_grad(
    name: str, session: SessionDep, value: bool = False, repr: bool = False, binary: bool = False
) -> Response:
    """Reads a tensor's ``.grad`` as a tensor of its own."""
    command = {"kind": "get", "tensor": {"grad_of": name}, "value": value, "repr": repr}
    return await session.one(command, binary)


@router.delete("/{name}", status_code=204)
async def release(name: str, session: SessionDep) -> Response:
    """Drops a name so that its memory can be freed."""
    await session.one({"kind": "release", "names": [name]})
    return Response(status_code=204)


@router.put(
    "/{name}",
    response_model=CommandResult,
    response_model_exclude_unset=True,
    openapi_extra=NPY_BODY,
)
async def upload_npy(
    name: str, body: NpyBodyDep, session: SessionDep, requires_grad: bool = False
) -> Response:
    """Binds a name to a new leaf holding an ``application/x-npy`` body."""
    return await session.write_npy(name, body, requires_grad)


@router.get("/{name}/npy", response_class=Response, responses=NPY_RESPONSE)
async def download_npy(name: str, session: SessionDep, grad: bool = False) -> Response:
    """Downloads a tensor's value, or its grad's, as a ``.npy`` file."""
    raw = await session.read_npy({"grad_of": name} if grad else name)
    return Response(raw, media_type=NPY)
