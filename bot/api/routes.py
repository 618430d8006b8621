"""A route table that both registers aiohttp handlers and describes them in OpenAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    responses: dict[int, tuple[str, type[BaseModel] | None]] = field(default_factory=dict)
    tag: str = "conversations"


def register(app: web.Application, routes: list[Route]) -> None:
    for r in routes:
        app.router.add_route(r.method, r.path, r.handler)
