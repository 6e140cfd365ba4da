"""Two apps that must answer alike: ours, and a copy whose custom routes are plain ``APIRoute``s
of the same endpoints (``test_http_routing``, ``test_http_batch``), each with one session
set up the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute

from service.config import Settings
from service.dataplane import DataPlane
from service.http import create_app
from service.http.routing import operation_id

AUTH = {"Authorization": "Bearer {token}"}


def plain(app: FastAPI, route_type: type[APIRoute]) -> FastAPI:
    """``app`` with each route of ``route_type`` replaced by an APIRoute of the same endpoint."""
    routes = app.router.routes
    for index, route in enumerate(routes):
        if isinstance(route, route_type):
            routes[index] = APIRoute(
                route.path,
                route.endpoint,
                methods=route.methods,
                response_model=route.response_model,
                response_model_exclude_unset=route.response_model_exclude_unset,
                status_code=route.status_code,
                tags=route.tags,
                generate_unique_id_function=operation_id,
            )
    return app


@contextmanager
def twin_apps(settings: Settings, route_type: type[APIRoute]) -> Iterator[tuple[FastAPI, FastAPI]]:
    """Ours and its plain copy, each over a data plane of its own."""
    planes = DataPlane(settings), DataPlane(settings)
    try:
        yield create_app(planes[0], settings), plain(create_app(planes[1], settings), route_type)
    finally:
        for plane in planes:
            plane.shutdown()


class Session:
    """The same session (same seed, same tensors) on one app."""

    def __init__(self, client: httpx.AsyncClient, id: str, token: str) -> None:
        self.client, self.id, self.token = client, id, token

    @classmethod
    async def open(cls, client: httpx.AsyncClient, setup: list[dict[str, Any]]) -> Session:
        created = (await client.post("/v1/sessions", json={"seed": 5})).json()
        session = cls(client, created["id"], created["token"])
        response = await session.send("/batch", AUTH, json={"commands": setup})
        assert response.status_code == 200, response.text
        return session

    async def send(self, path: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
        """POST to one of the session's paths; "{token}" in a header is the session's."""
        headers = {k: v.replace("{token}", self.token) for k, v in headers.items()}
        return await self.client.post(f"/v1/sessions/{self.id}{path}", headers=headers, **kwargs)


@asynccontextmanager
async def twin_sessions(
    apps: tuple[FastAPI, FastAPI], setup: list[dict[str, Any]]
) -> AsyncIterator[tuple[Session, Session]]:
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")
        for app in apps
    ]
    async with clients[0], clients[1]:
        yield await Session.open(clients[0], setup), await Session.open(clients[1], setup)


def answer(response: httpx.Response) -> tuple[Any, ...]:
    """What a client sees of a response, but for its request id."""
    headers = {k: v for k, v in response.headers.items() if k != "x-request-id"}
    return response.status_code, headers, response.content
