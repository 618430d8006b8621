"""An agent taking a live phone call in the desk, at ``/media/agent?token=…``.

The token comes from the desk's ticket detail (the bot issues it to the agent who owns a
voice ticket; :mod:`bot.desk.media_token`). A bad, forged or expired token is refused with
close code 4401; no live call for the conversation, with 4404. Once attached:

- the server sends ``{"type": "hello", "sample_rate": 16000, …}``, then the caller's audio
  as binary frames (mono s16le, 16 kHz, as the call receives it) and ``{"type": "caption",
  "text": …, "final": …}`` for what the caller says; when the caller hangs up,
  ``{"type": "end", "reason": …}`` and the socket closes;
- the agent sends binary frames of its microphone (mono s16le, 16 kHz, 20 ms frames),
  played to the caller, and optionally ``{"type": "end"}`` to let go of the audio.

The agent leaving does not end the call: typed messages are still spoken, and the ticket is
resolved or handed back in the desk. The token is the only authority here (no cookies), so
the route needs no origin check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from bot.config import Settings
from bot.desk import media_token
from media_server.audio import SAMPLE_RATE
from media_server.session import VoiceSession
from media_server.transports.common import FloodGuard, StreamError, close_with_error

log = structlog.get_logger("media_server.agent")

QUEUE_ITEMS = 250  # 5 s of caller audio towards the agent; beyond that frames are dropped
CLOSE_UNAUTHORIZED = 4401
CLOSE_NO_CALL = 4404

CallFinder = Callable[[str], VoiceSession | None]


class AgentStream:
    """The agent's side of a call: what the session pushes is queued (bounded, drop and
    count) and written to the socket by :meth:`write_loop`, so the call never waits."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._queue: asyncio.Queue[bytes | dict[str, Any]] = asyncio.Queue(QUEUE_ITEMS)
        self.frames_sent = 0
        self.frames_dropped = 0

    def _put(self, item: bytes | dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.frames_dropped += 1
            if self.frames_dropped in (1, 100, 1000):
                log.warning("media.agent.output_dropped", dropped=self.frames_dropped)

    def caller_audio(self, pcm: bytes) -> None:
        self._put(pcm)

    def caption(self, text: str, final: bool) -> None:
        self._put({"type": "caption", "text": text, "final": final})

    def call_ended(self, reason: str) -> None:
        while self._queue.full():  # the end always gets through
            self._queue.get_nowait()
        self._queue.put_nowait({"type": "end", "reason": reason})

    async def write_loop(self) -> None:
        while True:
            item = await self._queue.get()
            if self.ws.closed:
                return
            if isinstance(item, bytes):
                await self.ws.send_bytes(item)
                self.frames_sent += 1
            else:
                await self.ws.send_json(item)
                if item.get("type") == "end":
                    await self.ws.close(code=WSCloseCode.OK, message=b"call ended")
                    return


def _control(raw: str) -> str:
    try:
        msg = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StreamError(
            "invalid_json", f"frame is not JSON: {exc.msg}", WSCloseCode.INVALID_TEXT
        ) from exc
    kind = msg.get("type") if isinstance(msg, dict) else None
    if kind not in ("end", "ping"):
        raise StreamError("unknown_type", f"unknown message type {kind!r:.40}")
    return str(kind)


async def handle(
    request: web.Request, settings: Settings, find_call: CallFinder
) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=settings.media.max_frame_bytes, heartbeat=30)
    await ws.prepare(request)
    try:
        grant = media_token.check(
            settings.secret(media_token.SECRET_NAME), request.query.get("token", "")
        )
    except media_token.TokenError as exc:
        await close_with_error(
            ws, StreamError("unauthorized", f"token refused: {exc}", CLOSE_UNAUTHORIZED)
        )
        return ws
    session = find_call(grant.conversation_id)
    if session is None:
        await close_with_error(
            ws,
            StreamError("no_call", "no live call for this conversation", CLOSE_NO_CALL),
            conversation_id=grant.conversation_id,
        )
        return ws
    agent = AgentStream(ws)
    await ws.send_json(
        {
            "type": "hello",
            "conversation_id": grant.conversation_id,
            "sample_rate": SAMPLE_RATE,
            "encoding": "s16le",
            "frame_ms": 20,
        }
    )
    session.attach_agent(agent)
    log.info(
        "media.agent.connected",
        call_id=session.info.call_id,
        conversation_id=grant.conversation_id,
        agent_id=grant.agent_id,
    )
    writer = asyncio.create_task(agent.write_loop(), name="agent-writer")
    guard = FloodGuard(settings.media.max_frames_per_s)
    received = 0
    try:
        async for frame in ws:
            if frame.type == WSMsgType.ERROR:
                break
            guard.check()
            if frame.type == WSMsgType.TEXT:
                if _control(frame.data) == "end":
                    break
            elif frame.type == WSMsgType.BINARY:
                if len(frame.data) % 2:
                    raise StreamError(
                        "invalid_audio",
                        "audio frames are 16-bit samples (even length)",
                        WSCloseCode.UNSUPPORTED_DATA,
                    )
                received += 1
                session.play_agent_audio(agent, frame.data)
    except StreamError as err:
        await close_with_error(ws, err, transport="agent")
    finally:
        session.detach_agent(agent)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
            await writer
        if not ws.closed:
            await ws.close()
        log.info(
            "media.agent.disconnected",
            call_id=session.info.call_id,
            frames_in=received,
            frames_out=agent.frames_sent,
            frames_dropped=agent.frames_dropped,
        )
    return ws
