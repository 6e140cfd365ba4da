"""Autograd commands on a session: ApplyOp, Backward, Grad, Detach, ZeroGrad, SetRequiresGrad,
RetainGrad. Each body is the command's fields; each response is its CommandResult."""

from __future__ import annotations

from fastapi import Response

from service.http.deps import SessionDep
from service.http.models import (
    ApplyOp,
    Backward,
    CommandResult,
    Detach,
    Grad,
    RequiresGrad,
    RetainGrad,
    ZeroGrad,
)
from service.http.routing import CommandRoute, resource_router

router = resource_router("/sessions/{session_id}", "autograd", CommandRoute)


@router.post("/ops", response_model=CommandResult, response_model_exclude_unset=True)
async def apply_op(body: ApplyOp, session: SessionDep) -> Response:
    """Applies a registered op to tensors and scalars, binding the result to a name."""
    return await session.one(body.command())


@router.post("/backward", response_model=CommandResult, response_model_exclude_unset=True)
async def backward(body: Backward, session: SessionDep) -> Response:
    """Runs a backward pass from a tensor, accumulating into leaves' grads."""
    return await session.one(body.command())


@router.post("/grad", response_model=CommandResult, response_model_exclude_unset=True)
async def grad(body: Grad, session: SessionDep) -> Response:
    """Computes gradients of outputs with respect to inputs without touching grads."""
    return await session.one(body.command())


@router.post("/detach", response_model=CommandResult, response_model_exclude_unset=True)
async def detach(body: Detach, session: SessionDep) -> Response:
    """Binds a name to a detached alias of a tensor (same memory, no graph)."""
    return await session.one(body.command())


@router.post("/zero-grad", response_model=CommandResult, response_model_exclude_unset=True)
async def zero_grad(body: ZeroGrad, session: SessionDep) -> Response:
    """Zeroes the grads of tensors in place, or drops them."""
    return await session.one(body.command())


@router.post("/requires-grad", response_model=CommandResult, response_model_exclude_unset=True)
async def set_requires_grad(body: RequiresGrad, session: SessionDep) -> Response:
    """Sets requires_grad on a leaf tensor."""
    return await session.one(body.command())


@router.post("/retain-grad", response_model=CommandResult, response_model_exclude_unset=True)
async def retain_grad(body: RetainGrad, session: SessionDep) -> Response:
    """Makes a non-leaf tensor keep its grad during backward passes."""
    return await session.one(body.command())
