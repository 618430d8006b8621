"""The bot service's aiohttp application: ``create_app(settings) -> web.Application``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import structlog
from aiohttp import web

from bot.analytics import api as analytics_api
from bot.api import conversations, health, home, internal
from bot.api.errors import MAX_BODY_KEY, error_middleware
from bot.api.keys import HANDOFF, HUB, RASA, SERVICE, SETTINGS, STORE
from bot.api.openapi import build_openapi
from bot.api.routes import register
from bot.business_hours import BusinessHours
from bot.config import Settings
from bot.conversation_service import ConversationService
from bot.desk import api as desk
from bot.desk import recordings
from bot.desk.users import UserStore
from bot.handoff.service import HandoffService
from bot.handoff.store import SqlHandoffStore
from bot.hub import EventHub
from bot.metrics import METRICS, metrics_middleware
from bot.metrics import setup as setup_metrics
from bot.rasa_client import RasaClient, RasaPool
from bot.review import api as review
from bot.store import SqlConversationStore, create_engine, migrate
from bot.store.bookings import SqlBookingStore
from bot.webchat import channel as webchat

log = structlog.get_logger("bot.app")

ROUTES = [*home.ROUTES, *health.ROUTES, *conversations.ROUTES, *internal.ROUTES]
OPENAPI = web.AppKey("openapi", dict)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware],
        client_max_size=settings.limits.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[MAX_BODY_KEY] = settings.limits.max_body_bytes
    app[OPENAPI] = build_openapi(ROUTES, settings.server.base_url)
    register(app, ROUTES)
    app.router.add_get("/api/v1/openapi.json", openapi_json)
    desk.add_routes(app)
    recordings.add_routes(app)
    analytics_api.add_routes(app)
    review.add_routes(app)
    webchat.add_routes(app)
    setup_metrics(app, settings.handoff.default_skill)
    app.cleanup_ctx.append(_resources)
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = create_engine(settings.database_url, echo=settings.database.echo)
    metrics = app[METRICS]
    try:
        await migrate(engine)
        store = SqlConversationStore(engine)
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=30)
        ) as http:
            rasa = RasaPool(
                [
                    RasaClient(http, url, settings.rasa_token(), settings.rasa.timeout_s, metrics)
                    for url in settings.rasa.urls
                ]
            )
            hub = EventHub()
            hours = BusinessHours(settings.rasa_project)
            handoff = HandoffService(
                SqlHandoffStore(engine), store, hub, settings.handoff, hours.open_at
            )
            app[STORE] = store
            app[RASA] = rasa
            app[HUB] = hub
            app[HANDOFF] = handoff
            app[desk.USERS] = UserStore(engine)
            app[internal.BOOKINGS] = SqlBookingStore(engine)
            app[SERVICE] = ConversationService(store, rasa, handoff, settings.handoff)
            reopened = await handoff.reconcile()
            if reopened:
                log.warning("handoff.reconciled", tickets_opened=reopened)
            metrics.engine = engine
            app[analytics_api.ENGINE] = engine
            router = asyncio.create_task(handoff.run_router(), name="handoff-router")
            log.info(
                "bot.started",
                url=settings.server.base_url,
                database=engine.url.render_as_string(hide_password=True),
                rasa=rasa.base_url,
            )
            try:
                yield
            finally:
                metrics.engine = None
                router.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await router
    finally:
        await engine.dispose()
        log.info("bot.stopped")
