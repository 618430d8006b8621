"""``/webchat/ws``: the webchat channel, a thin adapter from the protocol to the conversation
service. No dialogue logic lives here.

Per connection: a reader that validates frames and rate-limits them, one worker that runs the
visitor's messages in order, and a forwarder that pushes the conversation's live events
(bot replies, agent messages, queue updates). A misbehaving client gets error frames and, past
``webchat.max_violations`` rate-limit hits, is disconnected; other sessions are untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from importlib.resources import files
from typing import Any

import structlog
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from bot.api.keys import HANDOFF, HUB, SERVICE, SETTINGS
from bot.conversation_service import ConversationClosed
from bot.events import Channel, HandoffReason, HandoffRequested
from bot.handoff.service import HandoffError, turn_data
from bot.store.conversations import ConversationNotFound
from bot.store.records import Conversation, Customer
from bot.webchat import identity
from bot.webchat.protocol import (
    CLIENT_FRAME,
    KNOWN_TYPES,
    VERSION,
    AskCallback,
    AskHandoff,
    Close,
    Hello,
    Message,
    Ping,
    error,
    visitor_turn,
)
from bot.webchat.ratelimit import BucketsByKey, TokenBucket

log = structlog.get_logger("bot.webchat")
IP_BUCKETS = web.AppKey("webchat_ip_buckets", BucketsByKey)
RESUME_SECRET = "webchat-resume"


def allowed_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser
    settings = request.app[SETTINGS]
    allowed = {
        f"{request.scheme}://{request.host}",
        settings.server.base_url,
        *settings.webchat.allowed_origins,
    }
    return origin.rstrip("/") in {a.rstrip("/") for a in allowed}


def client_ip(request: web.Request) -> str:
    return request.remote or "unknown"


class WebchatSession:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.request = request
        self.ws = ws
        app = request.app
        self.settings = app[SETTINGS]
        self.service = app[SERVICE]
        self.handoff = app[HANDOFF]
        self.hub = app[HUB]
        w = self.settings.webchat
        self.bucket = TokenBucket(w.messages_per_minute, w.burst)
        self.ip = client_ip(request)
        self.ip_buckets = app[IP_BUCKETS]
        self.violations = 0
        self.conversation: Conversation | None = None
        self.sent_seq = 0  # highest turn seq pushed to this client
        self.sent_changed = asyncio.Condition()
        self.inbox: asyncio.Queue[Message | AskHandoff | AskCallback | Close] = asyncio.Queue(64)

    async def send(self, frame: dict[str, Any]) -> None:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionResetError):
                await self.ws.send_json(frame)

    # -- start -------------------------------------------------------------------------------
    async def hello(self, frame: Hello) -> Conversation | None:
        customer = Customer()
        if frame.identity is not None:
            secret = self.settings.webchat.identity_secret
            if secret is None:
                await self.send(
                    error("identity_unsupported", "this site has no identity secret configured")
                )
                return None
            try:
                claims = identity.verify(frame.identity, secret.get_secret_value())
            except identity.TokenError as exc:
                await self.send(error("identity_invalid", f"identity rejected: {exc}"))
                return None
            customer = Customer(
                *(
                    str(claims[k])[:200] if claims.get(k) else None
                    for k in ("name", "phone", "email")
                )
            )
        resume_secret = self.settings.secret(RESUME_SECRET)
        if frame.conversation_id and frame.resume_token:
            try:
                claims = identity.verify(frame.resume_token, resume_secret)
            except identity.TokenError:
                claims = {}
            if claims.get("c") == frame.conversation_id:
                conv = await self.service.get(frame.conversation_id)
                if conv is not None and conv.status != "closed":
                    return conv
        metadata = {"language": frame.language} if frame.language else None
        return await self.service.start(Channel.WEBCHAT, customer, metadata)

    async def welcome(self, conv: Conversation) -> None:
        token = identity.sign({"c": conv.id}, self.settings.secret(RESUME_SECRET))
        history = [visitor_turn(turn_data(t)) for t in conv.turns]
        await self.send(
            {
                "type": "welcome",
                "v": VERSION,
                "conversation_id": conv.id,
                "resume_token": token,
                "status": conv.status,
                "history": history,
            }
        )
        info = await self.handoff.queue_info(conv.id)
        if info is not None:
            await self.send({"type": "queue", **info.as_data()})

    # -- reading -----------------------------------------------------------------------------
    async def read_frame(self, raw: str) -> Any:
        """A validated client frame, or ``None`` after sending the error."""
        if len(raw.encode()) > self.settings.webchat.max_frame_bytes:
            await self.send(
                error(
                    "frame_too_large",
                    f"frames are limited to {self.settings.webchat.max_frame_bytes} bytes",
                )
            )
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            await self.send(error("malformed_json", "the frame is not valid JSON"))
            return None
        if not isinstance(data, dict) or "type" not in data:
            await self.send(error("invalid_frame", 'a frame is a JSON object with a "type"'))
            return None
        if data["type"] not in KNOWN_TYPES:
            await self.send(
                error(
                    "unknown_type",
                    f"unknown frame type {str(data['type'])[:40]!r}"
                    f"; known: {', '.join(KNOWN_TYPES)}",
                )
            )
            return None
        try:
            return CLIENT_FRAME.validate_python(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"][1:]) or "frame"
            mid = data.get("id") if isinstance(data.get("id"), str) else None
            await self.send(error("invalid_frame", f"{where}: {first['msg']}", mid))
            return None

    async def allow(self) -> bool:
        if self.bucket.take() and self.ip_buckets.take(self.ip):
            return True
        self.violations += 1
        await self.send(error("rate_limited", "slow down: too many frames"))
        if self.violations >= self.settings.webchat.max_violations:
            log.warning("webchat.disconnect.flood", ip=self.ip)
            await self.ws.close(code=1008, message=b"rate limit")
        return False

    # -- work --------------------------------------------------------------------------------
    async def worker(self) -> None:
        assert self.conversation is not None
        cid = self.conversation.id
        limit = self.settings.limits.max_message_chars
        while True:
            frame = await self.inbox.get()
            try:
                if isinstance(frame, Message):
                    if len(frame.text) > limit:
                        await self.send(
                            error(
                                "message_too_long",
                                f"messages are limited to {limit} characters",
                                frame.id,
                            )
                        )
                        continue
                    if not frame.text.strip():
                        await self.send(error("invalid_frame", "text is blank", frame.id))
                        continue
                    await self.send({"type": "typing", "on": True})
                    try:
                        ex = await self.service.handle_user_message(
                            cid, frame.text, client_message_id=frame.id
                        )
                        if not ex.duplicate:  # the turns go out first, then the ack
                            await self.wait_sent(max(t.seq for t in (ex.user_turn, *ex.replies)))
                    finally:
                        await self.send({"type": "typing", "on": False})
                    await self.send(
                        {
                            "type": "ack",
                            "id": frame.id,
                            "seq": ex.user_turn.seq,
                            "duplicate": ex.duplicate,
                        }
                    )
                    if ex.duplicate:  # the live turns went out the first time; resend them
                        for t in (ex.user_turn, *ex.replies):
                            await self.send(
                                {
                                    "type": "turn",
                                    "turn": visitor_turn(turn_data(t)),
                                }
                            )
                elif isinstance(frame, AskHandoff):
                    await self.service.request_handoff(
                        cid, HandoffRequested(HandoffReason.USER_REQUEST)
                    )
                elif isinstance(frame, AskCallback):
                    await self.handoff.request_callback(cid, frame.number, frame.at)
                    info = await self.handoff.queue_info(cid)
                    if info:
                        await self.send({"type": "queue", **info.as_data()})
                elif isinstance(frame, Close):
                    await self.service.close(cid)
                    await self.send({"type": "closed"})
            except ConversationClosed:
                await self.send(error("conversation_closed", "this conversation has ended"))
            except HandoffError as exc:
                await self.send(error(exc.code, exc.message))
            except ConversationNotFound:
                await self.send(error("conversation_closed", "this conversation is gone"))

    async def wait_sent(self, seq: int, limit_s: float = 5.0) -> None:
        """Until the forwarder has pushed every turn up to ``seq`` (bounded wait)."""
        async with self.sent_changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.sent_changed.wait_for(lambda: self.sent_seq >= seq), limit_s
                )

    async def forward(self) -> None:
        assert self.conversation is not None
        with self.hub.subscribe(f"conversation:{self.conversation.id}") as sub:
            self.subscribed.set()
            while True:
                ev = await sub.get()
                if ev["type"] == "turn":
                    await self.send({"type": "turn", "turn": visitor_turn(ev["turn"])})
                    async with self.sent_changed:
                        self.sent_seq = max(self.sent_seq, int(ev["turn"]["seq"]))
                        self.sent_changed.notify_all()
                elif ev["type"] in ("queue", "agent_joined"):
                    await self.send(ev)

    subscribed: asyncio.Event

    async def run(self) -> None:
        self.subscribed = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        await self.send(error("invalid_frame", "send JSON text frames"))
                    continue
                if not await self.allow():
                    continue
                frame = await self.read_frame(msg.data)
                if frame is None:
                    continue
                if isinstance(frame, Ping):
                    await self.send({"type": "pong"})
                elif self.conversation is None:
                    if not isinstance(frame, Hello):
                        await self.send(error("hello_required", "send hello first"))
                        continue
                    conv = await self.hello(frame)
                    if conv is None:
                        await self.ws.close(code=4401, message=b"identity rejected")
                        break
                    self.conversation = conv
                    tasks.append(asyncio.create_task(self.forward()))
                    await self.subscribed.wait()  # no live turn is missed after the history
                    fresh = await self.service.get(conv.id)
                    await self.welcome(fresh or conv)
                    tasks.append(asyncio.create_task(self.worker()))
                    log.info("webchat.connected", conversation_id=conv.id, ip=self.ip)
                elif isinstance(frame, Hello):
                    await self.send(error("invalid_frame", "hello was already sent"))
                elif self.inbox.full():
                    await self.send(error("rate_limited", "too many messages waiting"))
                else:
                    self.inbox.put_nowait(frame)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t


async def webchat_ws(request: web.Request) -> web.StreamResponse:
    if not allowed_origin(request):
        log.warning("webchat.origin.refused", origin=request.headers.get("Origin"))
        raise web.HTTPForbidden(text="origin not allowed")
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(heartbeat=25, max_msg_size=settings.webchat.max_frame_bytes * 4)
    await ws.prepare(request)
    session = WebchatSession(request, ws)
    try:
        await session.run()
    finally:
        await ws.close()
    return ws


_WIDGET = files("bot").joinpath("static/widget.js").read_text(encoding="utf-8")


async def widget_js(request: web.Request) -> web.Response:
    return web.Response(
        text=_WIDGET,
        content_type="application/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


def add_routes(app: web.Application) -> None:
    w = app[SETTINGS].webchat
    app[IP_BUCKETS] = BucketsByKey(w.ip_messages_per_minute, w.ip_burst)
    app.router.add_get("/webchat/ws", webchat_ws)
    app.router.add_get("/webchat/widget.js", widget_js)
