"""``/healthz`` (the process is alive) and ``/readyz`` (Rasa, model and database usable)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bot.api.keys import RASA, STORE
from bot.api.routes import Route
from bot.api.schemas import Health, Readiness, ReadyCheck
from bot.rasa_client import RasaError


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(Health(status="ok").model_dump())


async def _rasa_check(request: web.Request) -> tuple[ReadyCheck, ReadyCheck]:
    try:
        st = await request.app[RASA].status()
    except RasaError as exc:
        down = ReadyCheck(ok=False, detail=f"{exc.code}: {exc.message}")
        return down, ReadyCheck(ok=False, detail="unknown: Rasa not reachable")
    model = st.get("model_file")
    reach = ReadyCheck(ok=True, detail=request.app[RASA].base_url)
    loaded = ReadyCheck(ok=bool(model), detail=str(model) if model else "no model loaded")
    return reach, loaded


async def _db_check(request: web.Request) -> ReadyCheck:
    try:
        await asyncio.wait_for(request.app[STORE].check_writable(), timeout=5)
    except Exception as exc:  # noqa: BLE001 - any failure means "not writable"; reported below
        return ReadyCheck(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
    return ReadyCheck(ok=True, detail="writable")


async def readyz(request: web.Request) -> web.Response:
    (reach, loaded), db = await asyncio.gather(_rasa_check(request), _db_check(request))
    checks = {"rasa": reach, "rasa_model": loaded, "database": db}
    ready = all(c.ok for c in checks.values())
    body = Readiness(ready=ready, checks=checks)
    return web.json_response(body.model_dump(), status=200 if ready else 503)


ROUTES = [
    Route("GET", "/healthz", healthz, "Liveness", responses={200: ("alive", Health)}, tag="ops"),
    Route(
        "GET",
        "/readyz",
        readyz,
        "Readiness: Rasa reachable, model loaded, database writable",
        responses={200: ("ready", Readiness), 503: ("not ready", Readiness)},
        tag="ops",
    ),
]
