"""KPI endpoints for the supervisor dashboard (desk session, supervisor or admin):

- ``GET /desk/api/kpis?from=&to=&channel=&skill=&intent=&agent=``
- ``GET /desk/api/kpis/timeseries?…&bucket=minute|15min|hour|day``
- ``GET /desk/dashboard``: the supervisor dashboard page (tiles and charts)
- ``GET /desk/dashboard/ws``: live KPI snapshots (``{"type": "kpis", "kpis", "series"}``),
  pushed when the queue changes and every few seconds

``from``/``to`` are days (``YYYY-MM-DD``, UTC; ``to`` inclusive) or ISO 8601 times with a
time zone (``to`` exclusive). Without them: today (UTC), live. The app must hold the
database engine under :data:`ENGINE`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, time, timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.analytics.kpis import compute_kpis, definitions, timeseries
from bot.analytics.live import LiveKpis
from bot.analytics.scope import KpiFilters, Period, ScopeError, parse_moment
from bot.api.errors import ApiError
from bot.api.keys import HUB, SETTINGS
from bot.desk.api import LEADS, asset, logged_in, page, require, same_origin
from bot.store.schema import utcnow

ENGINE = web.AppKey("analytics_engine", AsyncEngine)
LIVE = web.AppKey("analytics_live", LiveKpis)
TICK_S = 5.0  # new conversations and bot turns publish nothing: refresh at least this often
MAX_FILTER_CHARS = 200


def _text(request: web.Request, key: str) -> str | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_FILTER_CHARS:
        raise ApiError(422, "invalid_request", f"{key}: longer than {MAX_FILTER_CHARS} characters")
    return raw


def scope_of(request: web.Request, now: datetime) -> tuple[Period, KpiFilters]:
    """The period and filters a request asks for (422 with a clear message if malformed)."""
    try:
        raw_from, raw_to = _text(request, "from"), _text(request, "to")
        today = datetime.combine(now.astimezone(UTC).date(), time(), UTC)
        start = parse_moment(raw_from, "from") if raw_from else today
        end = parse_moment(raw_to, "to", end_of_day=True) if raw_to else today + timedelta(days=1)
        period = Period(start, end)
    except ScopeError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    agent = _text(request, "agent")
    if agent is not None and not (agent.isdigit() and len(agent) <= 12):
        raise ApiError(422, "invalid_request", f"agent: {agent!r:.40} is not a user id")
    filters = KpiFilters(
        channel=_text(request, "channel"),
        skill=_text(request, "skill"),
        intent=_text(request, "intent"),
        agent_id=int(agent) if agent is not None else None,
    )
    return period, filters


@require(*LEADS)
async def kpis(request: web.Request) -> web.Response:
    period, filters = scope_of(request, utcnow())
    report = await compute_kpis(
        request.app[ENGINE], period, filters, request.app[SETTINGS].analytics
    )
    return web.json_response({**report.as_data(), "definitions": definitions()})


@require(*LEADS)
async def kpi_timeseries(request: web.Request) -> web.Response:
    period, filters = scope_of(request, utcnow())
    bucket = request.query.get("bucket", "hour")
    try:
        series = await timeseries(
            request.app[ENGINE], period, bucket, filters, request.app[SETTINGS].analytics
        )
    except ScopeError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    return web.json_response(series.as_data())


def _live(app: web.Application) -> LiveKpis:
    if LIVE not in app:
        app[LIVE] = LiveKpis(app[ENGINE], app[SETTINGS].analytics)
    return app[LIVE]


async def dashboard_ws(request: web.Request) -> web.StreamResponse:
    await logged_in(request, LEADS, "the dashboard is for supervisors and admins")
    if not same_origin(request):
        raise ApiError(403, "bad_origin", "the dashboard WebSocket only accepts its own origin")
    live = _live(request.app)
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1024)
    await ws.prepare(request)
    with request.app[HUB].subscribe("supervisors") as sub:
        reader = asyncio.ensure_future(ws.receive())
        try:
            while not ws.closed:
                await ws.send_json(await live.snapshot())
                changed = asyncio.ensure_future(sub.get())
                done, _ = await asyncio.wait(
                    {changed, reader}, timeout=TICK_S, return_when=asyncio.FIRST_COMPLETED
                )
                changed.cancel()
                if reader in done:
                    break
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await ws.close()
    return ws


def add_routes(app: web.Application) -> None:
    app.router.add_get("/desk/api/kpis", kpis)
    app.router.add_get("/desk/api/kpis/timeseries", kpi_timeseries)
    # for supervisors and admins; agents are sent back to the desk
    app.router.add_get(
        "/desk/dashboard", page("dashboard.html", LEADS, lambda: web.HTTPFound("/desk"))
    )
    app.router.add_get("/desk/dashboard.js", asset("dashboard.js"))
    app.router.add_get(
        "/desk/vendor/chart.umd.min.js",
        asset("vendor/chart.umd.min.js", cache_control="public, max-age=86400"),
    )
    app.router.add_get("/desk/dashboard/ws", dashboard_ws)
