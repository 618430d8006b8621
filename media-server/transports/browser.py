"""The browser microphone: the webchat widget's voice button, at ``/media/browser``.

Protocol (version 1). The browser sends a JSON ``{"type": "start", "version": 1,
"sample_rate": 16000, "language": "en", "conversation_id": "…"}`` (``conversation_id``
optional: the webchat conversation the voice turns join), then binary frames of mono
s16le PCM at that rate, and optionally ``{"type": "dtmf", "key": "1"}`` or
``{"type": "stop"}``. The server answers ``{"type": "call", …}`` once the call runs, binary
frames of the bot's speech (mono s16le, 16 kHz), and JSON events: ``transcript``
(partial/final), ``reply``, ``clear`` (stop playing what you have: the caller interrupted),
``dtmf``, ``error`` and ``end``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from bot.config import Settings
from media_server.audio.codecs import pcm_from_bytes, pcm_to_bytes
from media_server.audio.resample import StreamResampler
from media_server.session import CallInfo, VoiceSession
from media_server.transports.common import (
    FloodGuard,
    SessionFactory,
    StreamError,
    close_with_error,
    end_call,
    origin_allowed,
)

log = structlog.get_logger("media_server.browser")

RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
_ID_CHARS = frozenset("0123456789abcdef")


class BrowserStream:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def send_audio(self, pcm: bytes) -> None:
        if not self.ws.closed:
            await self.ws.send_bytes(pcm)

    async def clear_audio(self) -> None:
        await self.send_event({"type": "clear"})

    async def send_event(self, event: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_json(event)

    async def hang_up(self, reason: str) -> None:
        await self.send_event({"type": "end", "reason": reason})
        if not self.ws.closed:
            await self.ws.close(code=WSCloseCode.OK, message=reason.encode()[:120])


def _start(raw: str, settings: Settings) -> tuple[CallInfo, int]:
    try:
        msg = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StreamError(
            "invalid_json", f"frame is not JSON: {exc.msg}", WSCloseCode.INVALID_TEXT
        ) from exc
    if not isinstance(msg, dict) or msg.get("type") != "start":
        raise StreamError("not_started", 'the first frame must be {"type": "start", …}')
    if msg.get("version", 1) != 1:
        raise StreamError("unsupported_version", "this server speaks protocol version 1")
    rate = msg.get("sample_rate", 16000)
    if rate not in RATES:
        raise StreamError(
            "unsupported_rate", f"sample_rate must be one of {RATES}", WSCloseCode.UNSUPPORTED_DATA
        )
    if msg.get("encoding", "s16le") != "s16le":
        raise StreamError(
            "unsupported_codec", 'encoding must be "s16le" (mono)', WSCloseCode.UNSUPPORTED_DATA
        )
    cid = msg.get("conversation_id")
    if cid is not None and (
        not isinstance(cid, str) or len(cid) != 32 or not set(cid) <= _ID_CHARS
    ):
        raise StreamError("invalid_conversation", "conversation_id is not a conversation id")
    language = str(msg.get("language") or settings.media.default_language)[:12]
    info = CallInfo(
        transport="browser", call_id=uuid.uuid4().hex, language=language, conversation_id=cid
    )
    return info, int(rate)


async def handle(
    request: web.Request, settings: Settings, make_session: SessionFactory
) -> web.StreamResponse:
    if not origin_allowed(request, settings):
        log.warning("media.browser.origin_refused", origin=request.headers.get("Origin"))
        raise web.HTTPForbidden(text="origin not allowed")
    ws = web.WebSocketResponse(max_msg_size=settings.media.max_frame_bytes, heartbeat=30)
    await ws.prepare(request)
    session: VoiceSession | None = None
    task: asyncio.Task[None] | None = None
    resampler: StreamResampler | None = None
    guard = FloodGuard(settings.media.max_frames_per_s)
    try:
        async for frame in ws:
            if frame.type == WSMsgType.ERROR:
                break
            guard.check()
            if frame.type == WSMsgType.TEXT:
                if session is None:
                    info, rate = _start(frame.data, settings)
                    resampler = StreamResampler(rate, 16000)
                    session = await make_session(info, BrowserStream(ws))
                    task = asyncio.create_task(session.run())
                    continue
                try:
                    msg = json.loads(frame.data)
                except json.JSONDecodeError as exc:
                    raise StreamError(
                        "invalid_json", f"frame is not JSON: {exc.msg}", WSCloseCode.INVALID_TEXT
                    ) from exc
                kind = msg.get("type") if isinstance(msg, dict) else None
                if kind == "stop":
                    break
                if kind == "dtmf" and str(msg.get("key", "")) in set("0123456789*#"):
                    session.feed_dtmf(str(msg["key"]))
                    continue
                raise StreamError("unknown_type", f"unknown message type {kind!r:.40}")
            elif frame.type == WSMsgType.BINARY:
                if session is None or resampler is None:
                    raise StreamError("not_started", "audio before the start message")
                if len(frame.data) % 2:
                    raise StreamError(
                        "invalid_audio",
                        "audio frames are 16-bit samples (even length)",
                        WSCloseCode.UNSUPPORTED_DATA,
                    )
                session.feed_audio(pcm_to_bytes(resampler.process(pcm_from_bytes(frame.data))))
    except StreamError as err:
        await close_with_error(ws, err, transport="browser")
    finally:
        await end_call(session, task)
        if not ws.closed:
            await ws.close()
    return ws
