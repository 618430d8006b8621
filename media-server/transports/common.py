"""What every WebSocket media transport shares: stream errors, flood control, the origin
check, and running a voice session alongside the socket's reader."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import WSCloseCode, web

from bot.config import Settings
from bot.webchat.ratelimit import TokenBucket
from media_server.session import AudioSink, CallInfo, VoiceSession

log = structlog.get_logger("media_server.transport")

SessionFactory = Callable[[CallInfo, AudioSink], Awaitable[VoiceSession]]
"""Makes the voice session of a new call (the app registers it among the active calls)."""


class StreamError(Exception):
    """A peer broke the protocol: the stream gets an error message and is closed; the
    server and every other call go on."""

    def __init__(self, code: str, message: str, close_code: int = WSCloseCode.POLICY_VIOLATION):
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


class FloodGuard:
    """Frames per second above ``max_per_s`` (sustained, with a one-second burst) is flooding."""

    def __init__(self, max_per_s: float) -> None:
        self._bucket = TokenBucket(max_per_s * 60.0, max(10.0, max_per_s))

    def check(self) -> None:
        if not self._bucket.take():
            raise StreamError("flooding", "too many frames per second; stream closed")


def origin_allowed(request: web.Request, settings: Settings) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser: telephony platforms, tests, the benchmark
    allowed = {
        f"{request.scheme}://{request.host}",
        settings.server.base_url,
        settings.media.url(),
        *settings.webchat.allowed_origins,
    }
    return origin.rstrip("/") in {a.rstrip("/") for a in allowed}


async def close_with_error(ws: web.WebSocketResponse, err: StreamError, **fields: Any) -> None:
    log.warning("media.stream.error", code=err.code, message=err.message, **fields)
    if not ws.closed:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_json(
                {"event": "error", "type": "error", "code": err.code, "message": err.message}
            )
        await ws.close(code=err.close_code, message=err.message.encode()[:120])


async def end_call(session: VoiceSession | None, task: asyncio.Task[None] | None) -> None:
    """The transport is done: tell the session the caller is gone and wait (a little) for
    its own clean-up, which closes the conversation."""
    if session is not None:
        session.hang_up()
    if task is None:
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), 10)
    except (TimeoutError, asyncio.CancelledError):
        task.cancel()
    except Exception as exc:  # noqa: BLE001 - reported here, the transport goes on closing
        log.error("media.session.failed", error=repr(exc))
