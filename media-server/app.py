"""The media server process: an aiohttp application with the media transports.

``create_app(settings)`` loads the speech engines once and serves:

- ``ws://HOST:PORT/media/twilio``: WebSocket media streams in Twilio's format (μ-law 8 kHz)
- ``ws://HOST:PORT/media/browser``: the webchat widget's microphone (PCM)
- ``ws://HOST:PORT/media/agent``: an agent taking a live call in the desk (PCM, token)
- ``sip:HOST:SIP_PORT``: SIP calls (UDP and TCP) with G.711 RTP, from a PBX or trunk
- ``/healthz`` and ``/readyz`` (engines, fallbacks, the bot service)
- ``/stats`` (JSON, for ``receptionist bench voice``) and ``/metrics`` (Prometheus)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from bot.config import Settings
from media_server import metrics
from media_server.bot_client import BotClient
from media_server.engines import MediaEngines
from media_server.hold import MohLibrary
from media_server.metrics import STATS
from media_server.recording import RecordingStore, stop_sweeper
from media_server.session import AudioSink, CallInfo, VoiceSession
from media_server.transports import agent, audiosocket, browser, twilio
from media_server.transports.common import SessionFactory
from media_server.transports.sip import SipServer

log = structlog.get_logger("media_server.app")

SETTINGS = web.AppKey("settings", Settings)
ENGINES = web.AppKey("engines", MediaEngines)
BOT = web.AppKey("bot", BotClient)
HTTP = web.AppKey("http", aiohttp.ClientSession)
CALLS = web.AppKey("calls", dict)
RECORDINGS = web.AppKey("recordings", RecordingStore)
MOH = web.AppKey("moh", MohLibrary)
TRANSFERS = web.AppKey("transfers", audiosocket.TransferNotes)


def create_app(settings: Settings, engines: MediaEngines | None = None) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[CALLS] = {}
    app[TRANSFERS] = audiosocket.TransferNotes()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/stats", stats)
    app.router.add_get("/metrics", prometheus_metrics)
    app.router.add_get("/media/twilio", twilio_stream)
    app.router.add_get("/media/browser", browser_stream)
    app.router.add_get("/media/agent", agent_stream)
    app.router.add_get("/media/audiosocket/{call_uuid}/transfer", audiosocket_transfer)
    app.cleanup_ctx.append(_resources(engines))
    return app


def _resources(preloaded: MediaEngines | None) -> Any:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        engines = preloaded
        if engines is None:
            engines = MediaEngines(settings)
            await asyncio.to_thread(engines.load)
        app[ENGINES] = engines
        app[MOH] = MohLibrary(settings.moh_path)
        app[RECORDINGS] = RecordingStore(
            settings.recordings_path, settings.media.recording_retention_days
        )
        async with aiohttp.ClientSession() as http:
            app[HTTP] = http
            app[BOT] = BotClient(http, settings.media.bot_url or settings.server.base_url)
            tcp = await _start_audiosocket(app) if settings.media.audiosocket_port else None
            sip = await _start_sip(app) if settings.media.sip_port else None
            sweeper = asyncio.create_task(app[RECORDINGS].run_sweeper(), name="recording-sweep")
            yield
            await stop_sweeper(sweeper)
            if tcp is not None:
                tcp.close()
            if sip is not None:
                await sip.close()
            calls: dict[str, VoiceSession] = app[CALLS]
            for s in list(calls.values()):
                s.hang_up()
        if preloaded is None:
            engines.close()

    return ctx


async def _start_audiosocket(app: web.Application) -> asyncio.Server:
    settings = app[SETTINGS]
    make = _make_session(app)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            transfers = app[TRANSFERS] if settings.media.audiosocket_transfer else None
            await audiosocket.serve_connection(reader, writer, settings, make, transfers)
        finally:
            _forget_closed(app)

    server = await asyncio.start_server(
        on_connect, settings.media.host, settings.media.audiosocket_port
    )
    log.info(
        "media.audiosocket.listening",
        url=f"tcp://{settings.media.host}:{settings.media.audiosocket_port}",
    )
    return server


async def audiosocket_transfer(request: web.Request) -> web.Response:
    """For the dialplan after ``AudioSocket()`` returns: where the bot transferred the call
    (text/plain, the SIP URI), or with ``?field=conversation_id`` the conversation's id; 404
    when it was not transferred (the caller hung up, or it was not for transfer)."""
    note = request.app[TRANSFERS].get(request.match_info["call_uuid"].lower())
    if note is None:
        raise web.HTTPNotFound(text="no transfer for this call\n")
    field = request.query.get("field", "target")
    if field not in ("target", "conversation_id"):
        raise web.HTTPBadRequest(text="field is target or conversation_id\n")
    value = note.target if field == "target" else (note.conversation_id or "")
    return web.Response(text=value, content_type="text/plain")


async def _start_sip(app: web.Application) -> SipServer:
    make = _make_session(app)

    async def make_and_track(info: CallInfo, sink: AudioSink) -> VoiceSession:
        _forget_closed(app)
        return await make(info, sink)

    server = SipServer(app[SETTINGS], make_and_track)
    await server.start()
    return server


def _session_factory(request: web.Request) -> SessionFactory:
    return _make_session(request.app)


def _make_session(app: web.Application) -> SessionFactory:
    async def make(info: CallInfo, sink: AudioSink) -> VoiceSession:
        session = VoiceSession(
            info,
            app[ENGINES],
            app[BOT],
            app[SETTINGS].media,
            sink,
            recordings=app[RECORDINGS],
            moh=app[MOH],
        )
        calls: dict[str, VoiceSession] = app[CALLS]
        calls[info.call_id] = session
        return session

    return make


async def twilio_stream(request: web.Request) -> web.StreamResponse:
    try:
        return await twilio.handle(request, request.app[SETTINGS], _session_factory(request))
    finally:
        _forget_closed(request.app)


async def browser_stream(request: web.Request) -> web.StreamResponse:
    try:
        return await browser.handle(request, request.app[SETTINGS], _session_factory(request))
    finally:
        _forget_closed(request.app)


async def agent_stream(request: web.Request) -> web.StreamResponse:
    calls: dict[str, VoiceSession] = request.app[CALLS]

    def find_call(conversation_id: str) -> VoiceSession | None:
        return next(
            (s for s in calls.values() if s.conversation_id == conversation_id and not s.ended),
            None,
        )

    return await agent.handle(request, request.app[SETTINGS], find_call)


def _forget_closed(app: web.Application) -> None:
    calls: dict[str, VoiceSession] = app[CALLS]
    for cid in [cid for cid, s in calls.items() if s.ended]:
        del calls[cid]


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(STATS.snapshot())


async def prometheus_metrics(request: web.Request) -> web.Response:
    return web.Response(body=metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE})


async def readyz(request: web.Request) -> web.Response:
    engines = request.app[ENGINES]
    settings = request.app[SETTINGS]
    asr = engines.registry.status()
    warnings = [
        f"{s['language']}: speech recognition falls back to {s['engine']} (no Vosk model "
        f"installed); install one with `receptionist models pull`"
        for s in asr
        if s.get("fallback")
    ]
    bot_ok = True
    try:
        async with request.app[HTTP].get(
            (settings.media.bot_url or settings.server.base_url) + "/healthz",
            timeout=aiohttp.ClientTimeout(total=2),
        ) as resp:
            bot_ok = resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        bot_ok = False
    if not bot_ok:
        warnings.append("the bot service is not reachable")
    calls: dict[str, VoiceSession] = request.app[CALLS]
    body = {
        "status": "degraded" if warnings else "ready",
        "asr": asr,
        "asr_workers": engines.registry.workers(),
        "tts": {"voice": engines.tts.synth.voice_id},
        "bot_service": bot_ok,
        "active_calls": sum(1 for s in calls.values() if not s.ended),
        "warnings": warnings,
    }
    return web.json_response(body, status=200 if bot_ok else 503)
