"""WebSocket media streams in Twilio's message format.

Caller side (the telephony platform) sends ``connected``, ``start`` (with the media format:
8 kHz μ-law), ``media`` (base64 audio), ``dtmf``, ``mark`` and ``stop``; we send ``media``,
``mark`` and ``clear``. Any platform speaking this format can connect a call at
``ws://HOST:PORT/media/twilio``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from typing import Any

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from bot.config import Settings
from media_server.audio.codecs import (
    alaw_decode,
    alaw_encode,
    pcm_from_bytes,
    pcm_to_bytes,
    ulaw_decode,
    ulaw_encode,
)
from media_server.audio.resample import StreamResampler
from media_server.session import CallInfo, VoiceSession
from media_server.transports.common import (
    FloodGuard,
    SessionFactory,
    StreamError,
    close_with_error,
    end_call,
)

log = structlog.get_logger("media_server.twilio")

ENCODINGS = {
    "audio/x-mulaw": (ulaw_decode, ulaw_encode),
    "audio/x-alaw": (alaw_decode, alaw_encode),
}
DTMF_KEYS = frozenset("0123456789*#ABCD")


class TwilioStream:
    """The AudioSink of one Twilio media stream."""

    def __init__(self, ws: web.WebSocketResponse, stream_sid: str, encoding: str) -> None:
        self.ws = ws
        self.stream_sid = stream_sid
        self._decode, self._encode = ENCODINGS[encoding]
        self._in = StreamResampler(8000, 16000)
        self._out = StreamResampler(16000, 8000)
        self.marks_sent = 0

    def decode(self, payload: bytes) -> bytes:
        return pcm_to_bytes(self._in.process(self._decode(payload)))

    async def send_audio(self, pcm: bytes) -> None:
        if self.ws.closed:
            return
        data = self._encode(self._out.process(pcm_from_bytes(pcm)))
        if data:
            await self.ws.send_json(
                {
                    "event": "media",
                    "streamSid": self.stream_sid,
                    "media": {"payload": base64.b64encode(data).decode()},
                }
            )

    async def clear_audio(self) -> None:
        if not self.ws.closed:
            await self.ws.send_json({"event": "clear", "streamSid": self.stream_sid})

    async def send_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "reply" and not self.ws.closed:
            # a mark lets the platform tell us when the reply has been played
            self.marks_sent += 1
            await self.ws.send_json(
                {
                    "event": "mark",
                    "streamSid": self.stream_sid,
                    "mark": {"name": f"reply-{self.marks_sent}"},
                }
            )

    async def hang_up(self, reason: str) -> None:
        log.info("media.twilio.hangup", stream_sid=self.stream_sid, reason=reason)
        if not self.ws.closed:
            await self.ws.close(code=WSCloseCode.OK, message=reason.encode()[:120])


def _parse(raw: str) -> dict[str, Any]:
    try:
        msg = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StreamError(
            "invalid_json", f"frame is not JSON: {exc.msg}", WSCloseCode.INVALID_TEXT
        ) from exc
    if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
        raise StreamError(
            "invalid_message",
            'a message is a JSON object with an "event" field',
            WSCloseCode.INVALID_TEXT,
        )
    return msg


def _start_info(msg: dict[str, Any]) -> tuple[str, str, CallInfo]:
    start = msg.get("start")
    if not isinstance(start, dict):
        raise StreamError("invalid_start", '"start" message without a "start" object')
    fmt = start.get("mediaFormat") or {}
    encoding = fmt.get("encoding", "audio/x-mulaw")
    rate = fmt.get("sampleRate", 8000)
    channels = fmt.get("channels", 1)
    if encoding not in ENCODINGS or rate != 8000 or channels != 1:
        raise StreamError(
            "unsupported_codec",
            f"media format {encoding} {rate} Hz x{channels} is not supported; "
            "send audio/x-mulaw (or audio/x-alaw) at 8000 Hz, mono",
            WSCloseCode.UNSUPPORTED_DATA,
        )
    sid = str(msg.get("streamSid") or start.get("streamSid") or uuid.uuid4().hex)[:64]
    params = start.get("customParameters") or {}
    if not isinstance(params, dict):
        params = {}
    language = str(params.get("language") or "")[:12]
    caller = params.get("from") or params.get("caller")
    info = CallInfo(
        transport="twilio",
        call_id=str(start.get("callSid") or sid)[:64],
        language=language,
        caller=str(caller)[:40] if caller else None,
        metadata={"stream_sid": sid, "account_sid": str(start.get("accountSid") or "")[:64]},
    )
    return sid, encoding, info


async def handle(
    request: web.Request, settings: Settings, make_session: SessionFactory
) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=settings.media.max_frame_bytes, heartbeat=30)
    await ws.prepare(request)
    sink: TwilioStream | None = None
    session: VoiceSession | None = None
    task: asyncio.Task[None] | None = None
    guard = FloodGuard(settings.media.max_frames_per_s)
    try:
        async for frame in ws:
            if frame.type == WSMsgType.ERROR:
                break
            if frame.type != WSMsgType.TEXT:
                raise StreamError(
                    "binary_frame",
                    "this transport takes JSON text frames only",
                    WSCloseCode.UNSUPPORTED_DATA,
                )
            guard.check()
            msg = _parse(frame.data)
            event = msg["event"]
            if event == "connected":
                continue
            if event == "start":
                if sink is not None:
                    raise StreamError("duplicate_start", "the stream has already started")
                sid, encoding, info = _start_info(msg)
                if not info.language:
                    info = CallInfo(
                        **{**info.__dict__, "language": settings.media.default_language}
                    )
                sink = TwilioStream(ws, sid, encoding)
                session = await make_session(info, sink)
                task = asyncio.create_task(session.run())
                task.add_done_callback(lambda _t: asyncio.ensure_future(_close_quietly(ws)))
            elif event == "media":
                if sink is None or session is None:
                    raise StreamError("not_started", '"media" before "start"')
                media = msg.get("media")
                if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
                    raise StreamError("invalid_media", '"media" needs media.payload (base64)')
                if media.get("track", "inbound") not in ("inbound", "inbound_track"):
                    continue  # outbound echo of our own audio (bidirectional streams)
                try:
                    payload = base64.b64decode(media["payload"], validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise StreamError(
                        "invalid_media", "media.payload is not base64", WSCloseCode.INVALID_TEXT
                    ) from exc
                session.feed_audio(sink.decode(payload))
            elif event == "dtmf":
                digit = str((msg.get("dtmf") or {}).get("digit", ""))
                if digit not in DTMF_KEYS:
                    raise StreamError("invalid_dtmf", f"unknown DTMF digit {digit!r:.10}")
                if session is not None:
                    session.feed_dtmf(digit)
            elif event == "mark":
                log.debug("media.twilio.mark", name=(msg.get("mark") or {}).get("name"))
            elif event == "stop":
                break
            else:
                raise StreamError("unknown_event", f"unknown event {event!r:.40}")
    except StreamError as err:
        await close_with_error(ws, err, transport="twilio")
    finally:
        await end_call(session, task)
        if not ws.closed:
            await ws.close()
    return ws


async def _close_quietly(ws: web.WebSocketResponse) -> None:
    if not ws.closed:
        await ws.close()
