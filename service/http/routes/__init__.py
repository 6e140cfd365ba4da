"""One router per resource, all under ``/v1``."""

from fastapi import APIRouter

from service.http.routes import batch, ops, sessions, tensors

api_router = APIRouter()
api_router.include_router(sessions.router)
api_router.include_router(tensors.router)
api_router.include_router(ops.router)
api_router.include_router(batch.router)
