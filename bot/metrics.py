"""``GET /metrics``: the bot service's operational metrics in Prometheus' text format.

Each application has its own :class:`~prometheus_client.CollectorRegistry` (several apps in
one test process do not collide). What is measured:

- every HTTP request, by method, route *template* (``/api/v1/conversations/{cid}``, never the
  raw path; ``unmatched`` when no route matched) and status, with its latency; WebSocket
  connections are counted while open instead of timed (webchat visitors, agents' desks);
- each Rasa call (webhook, parse, tracker) with its latency and error code;
- at scrape time, from the database: open conversations, handoff tickets by status and skill,
  the longest wait per skill, agents by presence.

``/metrics`` is for operations and unauthenticated, like ``/healthz``; the service listens on
127.0.0.1 by default. Its own requests are not counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

import structlog
from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.handoff.records import OPEN_STATUSES, WAITING_STATUSES, Presence
from bot.store.schema import ConversationRow, TicketRow, UserRow, utcnow

log = structlog.get_logger("bot.metrics")

PATH = "/metrics"
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NLU_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SNAPSHOT_TIMEOUT_S = 5.0
# what generate_latest writes (newer clients call 1.0.0 "latest"; every scraper reads 0.0.4)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Snapshot:
    """What the database said at the last scrape."""

    ok: bool = False
    conversations: dict[tuple[str, str], int] = field(default_factory=dict)
    tickets: dict[tuple[str, str], int] = field(default_factory=dict)
    oldest_wait_s: dict[str, float] = field(default_factory=dict)
    agents: dict[str, int] = field(default_factory=dict)


async def read_snapshot(engine: AsyncEngine, default_skill: str) -> Snapshot:
    snap = Snapshot(ok=True)
    now = utcnow()
    async with engine.connect() as db:
        conv_rows = await db.execute(
            select(ConversationRow.channel, ConversationRow.status, func.count())
            .where(ConversationRow.status.not_in(("closed", "probe")))
            .group_by(ConversationRow.channel, ConversationRow.status)
        )
        snap.conversations = {(str(c), str(s)): int(n) for c, s, n in conv_rows}
        # every open status of the default skill is present, so queues read 0, not nothing
        snap.tickets = {(s.value, default_skill): 0 for s in OPEN_STATUSES}
        ticket_rows = await db.execute(
            select(TicketRow.status, TicketRow.skill, func.count())
            .where(TicketRow.status.in_([s.value for s in OPEN_STATUSES]))
            .group_by(TicketRow.status, TicketRow.skill)
        )
        snap.tickets.update({(str(st), str(sk)): int(n) for st, sk, n in ticket_rows})
        snap.oldest_wait_s = {default_skill: 0.0}
        oldest = await db.execute(
            select(TicketRow.skill, func.min(TicketRow.queued_at))
            .where(TicketRow.status.in_([s.value for s in WAITING_STATUSES]))
            .group_by(TicketRow.skill)
        )
        for skill, queued_at in oldest:
            if queued_at is not None:
                snap.oldest_wait_s[str(skill)] = max(0.0, (now - queued_at).total_seconds())
        snap.agents = {p.value: 0 for p in Presence}
        agent_rows = await db.execute(
            select(UserRow.presence, func.count())
            .where(UserRow.disabled.is_(False))
            .group_by(UserRow.presence)
        )
        snap.agents.update({str(p): int(n) for p, n in agent_rows})
    return snap


class StateCollector(Collector):
    """Gauges of the last database snapshot, produced when the registry is collected."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        up = GaugeMetricFamily(
            "receptionist_database_up",
            "1 when this scrape read the queues and agents from the database",
        )
        up.add_metric([], 1.0 if snap.ok else 0.0)
        yield up
        if not snap.ok:
            return
        conv = GaugeMetricFamily(
            "receptionist_conversations_open",
            "Conversations not closed, by channel and status",
            labels=["channel", "status"],
        )
        for (channel, status), n in sorted(snap.conversations.items()):
            conv.add_metric([channel, status], n)
        yield conv
        tickets = GaugeMetricFamily(
            "receptionist_handoff_tickets",
            "Open handoff tickets by status (queued, offered, assigned, callback_scheduled) "
            "and skill",
            labels=["status", "skill"],
        )
        for (status, skill), n in sorted(snap.tickets.items()):
            tickets.add_metric([status, skill], n)
        yield tickets
        wait = GaugeMetricFamily(
            "receptionist_handoff_oldest_wait_seconds",
            "How long the longest-waiting queued or offered ticket of each skill has waited",
            labels=["skill"],
        )
        for skill, s in sorted(snap.oldest_wait_s.items()):
            wait.add_metric([skill], round(s, 3))
        yield wait
        agents = GaugeMetricFamily(
            "receptionist_agents", "Enabled desk users by presence", labels=["presence"]
        )
        for presence, n in sorted(snap.agents.items()):
            agents.add_metric([presence], n)
        yield agents


class BotMetrics:
    """The metrics of one bot application; also the Rasa clients' :class:`NluObserver`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "receptionist_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "receptionist_http_request_duration_seconds",
            "Time to answer an HTTP request (WebSocket connections excluded), by route template",
            ["method", "route"],
            registry=r,
        )
        self.websockets = Gauge(
            "receptionist_websocket_connections",
            "Open WebSocket connections by route (/webchat/ws: visitors, /desk/ws: agents)",
            ["route"],
            registry=r,
        )
        self.nlu_latency = Histogram(
            "receptionist_nlu_request_duration_seconds",
            "Rasa calls by operation (webhook: dialogue turn, parse, tracker: NLU of the turn)",
            ["operation"],
            buckets=NLU_BUCKETS,
            registry=r,
        )
        self.nlu_errors = Counter(
            "receptionist_nlu_errors",
            "Failed Rasa calls by operation and error code",
            ["operation", "code"],
            registry=r,
        )
        self.state = StateCollector()
        r.register(self.state)
        ProcessCollector(registry=r)
        self.engine: AsyncEngine | None = None
        self.default_skill = "general"

    def observe_nlu(self, operation: str, seconds: float, error: str | None) -> None:
        self.nlu_latency.labels(operation).observe(seconds)
        if error is not None:
            self.nlu_errors.labels(operation, error).inc()

    async def refresh(self) -> None:
        """Read the database-backed gauges; a failure shows as ``receptionist_database_up 0``."""
        if self.engine is None:
            self.state.snapshot = Snapshot()
            return
        try:
            self.state.snapshot = await asyncio.wait_for(
                read_snapshot(self.engine, self.default_skill), SNAPSHOT_TIMEOUT_S
            )
        except Exception as exc:  # noqa: BLE001 - reported as a metric and logged
            log.warning("metrics.snapshot_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            self.state.snapshot = Snapshot()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", BotMetrics)


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = route_of(request)
    if route == PATH:
        return await handler(request)
    metrics = request.app[METRICS]
    method = request.method if request.method in METHODS else "other"
    websocket = route != UNMATCHED and request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
    started = time.perf_counter()
    status = 500
    if websocket:
        metrics.websockets.labels(route).inc()
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away first
        raise
    finally:
        if websocket:
            metrics.websockets.labels(route).dec()
        else:
            metrics.latency.labels(method, route).observe(time.perf_counter() - started)
        metrics.requests.labels(method, route, str(status)).inc()


async def metrics_handler(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    await metrics.refresh()
    return web.Response(body=metrics.exposition(), headers={hdrs.CONTENT_TYPE: CONTENT_TYPE})


def setup(app: web.Application, default_skill: str) -> BotMetrics:
    """Give ``app`` its metrics and ``GET /metrics``; put :func:`metrics_middleware` first
    in the app's middlewares. The database engine is attached once it is open."""
    metrics = BotMetrics()
    metrics.default_skill = default_skill
    app[METRICS] = metrics
    app.router.add_get(PATH, metrics_handler)
    return metrics
