"""``/api/v1/conversations``: create, read, and post user messages."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from bot.api.errors import ApiError, read_json
from bot.api.keys import HANDOFF, HUB, SERVICE, SETTINGS
from bot.api.routes import Route
from bot.api.schemas import (
    CallbackIn,
    ConversationOut,
    CreateConversation,
    HandoffIn,
    HandoffOut,
    MessageResult,
    PostMessage,
    QueueOut,
    TransferredIn,
    TurnOut,
    VoiceEventIn,
)
from bot.conversation_service import ConversationClosed
from bot.events import HandoffReason, HandoffRequested
from bot.handoff.service import HandoffError
from bot.store.conversations import ConversationNotFound
from bot.store.records import Customer, NewEvent

M = TypeVar("M", bound=BaseModel)

_ID_CHARS = frozenset("0123456789abcdef")


async def _body(request: web.Request, model: type[M]) -> M:
    if request.content_type not in ("application/json", ""):
        raise ApiError(
            415, "unsupported_media_type", "send the body as JSON (Content-Type: application/json)"
        )
    return await read_json(request, model)


def _conversation_id(request: web.Request) -> str:
    cid = request.match_info["conversation_id"]
    if len(cid) != 32 or not set(cid) <= _ID_CHARS:
        raise ApiError(404, "conversation_not_found", f"conversation {cid!r:.60} not found")
    return cid


async def create_conversation(request: web.Request) -> web.Response:
    body = await _body(request, CreateConversation)
    c = body.customer
    customer = Customer(c.name, c.phone, str(c.email) if c.email else None) if c else None
    conv = await request.app[SERVICE].start(body.channel, customer, body.metadata)
    out = ConversationOut.of(conv, with_transcript=True)
    return web.json_response(
        out.model_dump(mode="json"),
        status=201,
        headers={"Location": f"/api/v1/conversations/{conv.id}"},
    )


async def get_conversation(request: web.Request) -> web.Response:
    cid = _conversation_id(request)
    conv = await request.app[SERVICE].get(cid)
    if conv is None:
        raise ApiError(404, "conversation_not_found", f"conversation {cid!r} not found")
    return web.json_response(ConversationOut.of(conv, with_transcript=True).model_dump(mode="json"))


async def post_message(request: web.Request) -> web.Response:
    cid = _conversation_id(request)
    body = await _body(request, PostMessage)
    limit = request.app[SETTINGS].limits.max_message_chars
    if len(body.text) > limit:
        raise ApiError(
            422,
            "message_too_long",
            f"text is {len(body.text)} characters; the limit is {limit}",
            [{"field": "text", "message": f"at most {limit} characters"}],
        )
    if not body.text.strip():
        raise ApiError(422, "empty_message", "text is blank")
    try:
        ex = await request.app[SERVICE].handle_user_message(
            cid,
            body.text,
            client_message_id=body.client_message_id,
            asr_confidence=body.asr_confidence,
            voice=body.voice.model_dump(exclude_none=True) if body.voice else None,
        )
    except ConversationNotFound as exc:
        raise ApiError(404, "conversation_not_found", str(exc)) from exc
    except ConversationClosed as exc:
        raise ApiError(409, "conversation_closed", str(exc)) from exc
    out = MessageResult(
        conversation_id=cid,
        user_turn=TurnOut.of(ex.user_turn),
        replies=[TurnOut.of(t) for t in ex.replies],
        handoff=HandoffOut(**ex.handoff.as_data()) if ex.handoff else None,
        duplicate=ex.duplicate,
        queue=QueueOut(**ex.queue.as_data()) if ex.queue else None,
    )
    return web.json_response(out.model_dump(mode="json"))


async def request_handoff(request: web.Request) -> web.Response:
    cid = _conversation_id(request)
    body = await _body(request, HandoffIn)
    try:
        info = await request.app[SERVICE].request_handoff(
            cid, HandoffRequested(HandoffReason(body.reason), body.skill, body.detail)
        )
    except ConversationNotFound as exc:
        raise ApiError(404, "conversation_not_found", str(exc)) from exc
    except ConversationClosed as exc:
        raise ApiError(409, "conversation_closed", str(exc)) from exc
    return web.json_response(QueueOut(**info.as_data()).model_dump(mode="json"))


async def transferred(request: web.Request) -> web.Response:
    """The media server transferred a waiting call out (SIP REFER) or failed to."""
    cid = _conversation_id(request)
    body = await _body(request, TransferredIn)
    if await request.app[SERVICE].get(cid) is None:
        raise ApiError(404, "conversation_not_found", f"conversation {cid!r} not found")
    await request.app[HANDOFF].transferred_out(cid, body.target, body.ok, body.detail)
    return web.json_response({"recorded": "transferred_out" if body.ok else "transfer_failed"})


async def voice_event(request: web.Request) -> web.Response:
    """The media server reports what happened on a call (reply audio timing, barge-in…)."""
    cid = _conversation_id(request)
    body = await _body(request, VoiceEventIn)
    if await request.app[SERVICE].get(cid) is None:
        raise ApiError(404, "conversation_not_found", f"conversation {cid!r} not found")
    await request.app[SERVICE].record_event(cid, NewEvent(body.type, body.data))
    return web.json_response({"recorded": body.type}, status=201)


async def close_conversation(request: web.Request) -> web.Response:
    cid = _conversation_id(request)
    try:
        conv = await request.app[SERVICE].close(cid)
    except ConversationNotFound as exc:
        raise ApiError(404, "conversation_not_found", str(exc)) from exc
    return web.json_response(ConversationOut.of(conv, with_transcript=True).model_dump(mode="json"))


async def request_callback(request: web.Request) -> web.Response:
    cid = _conversation_id(request)
    body = await _body(request, CallbackIn)
    if await request.app[SERVICE].get(cid) is None:
        raise ApiError(404, "conversation_not_found", f"conversation {cid!r} not found")
    try:
        await request.app[HANDOFF].request_callback(cid, body.number, body.at)
    except HandoffError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from exc
    info = await request.app[HANDOFF].queue_info(cid)
    if info is None:  # the customer closed in the meantime
        raise ApiError(409, "not_waiting", "this conversation is no longer waiting")
    return web.json_response(QueueOut(**info.as_data()).model_dump(mode="json"))


async def stream(request: web.Request) -> web.StreamResponse:
    """WebSocket of live events for one conversation: turns, queue updates, agent joined."""
    cid = _conversation_id(request)
    if await request.app[SERVICE].get(cid) is None:
        raise ApiError(404, "conversation_not_found", f"conversation {cid!r} not found")
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096)
    await ws.prepare(request)
    with request.app[HUB].subscribe(f"conversation:{cid}") as sub:
        info = await request.app[HANDOFF].queue_info(cid)
        if info is not None:
            await ws.send_json({"type": "queue", **info.as_data()})
        reader = asyncio.ensure_future(ws.receive())
        getter: asyncio.Future[dict[str, Any]] | None = None
        try:
            while not ws.closed:
                getter = asyncio.ensure_future(sub.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    break  # the client closed (or sent something: this stream is one-way)
                await ws.send_json(getter.result())
        finally:
            reader.cancel()
            if getter is not None:
                getter.cancel()
            await ws.close()
    return ws


_ERRORS: dict[int, tuple[str, type[BaseModel] | None]] = {
    400: ("malformed JSON", None),
    413: ("body too large", None),
    415: ("not JSON", None),
    422: ("invalid fields", None),
}

ROUTES = [
    Route(
        "POST",
        "/api/v1/conversations/{conversation_id}/events",
        voice_event,
        "Record a call event from the media server (reply audio timing, barge-in, no speech)",
        body=VoiceEventIn,
        responses={201: ("recorded", None), 404: ("unknown id", None), **_ERRORS},
    ),
    Route(
        "POST",
        "/api/v1/conversations/{conversation_id}/handoff",
        request_handoff,
        "Hand the conversation to a person now; answers the queue position and wait",
        body=HandoffIn,
        responses={200: ("queued", QueueOut), 404: ("unknown id", None), **_ERRORS},
    ),
    Route(
        "POST",
        "/api/v1/conversations/{conversation_id}/transferred",
        transferred,
        "The media server reports a transfer out (SIP REFER) of a waiting call: done or failed",
        body=TransferredIn,
        responses={200: ("recorded", None), 404: ("unknown id", None), **_ERRORS},
    ),
    Route(
        "POST",
        "/api/v1/conversations/{conversation_id}/close",
        close_conversation,
        "The customer left: close it (a wait in queue is recorded as abandoned)",
        responses={200: ("closed", ConversationOut), 404: ("unknown id", None)},
    ),
    Route(
        "POST",
        "/api/v1/conversations/{conversation_id}/callback",
        request_callback,
        "Ask for a callback instead of waiting in queue",
        body=CallbackIn,
        responses={200: ("scheduled", QueueOut), 409: ("not waiting", None), **_ERRORS},
    ),
    Route(
        "GET",
        "/api/v1/conversations/{conversation_id}/stream",
        stream,
        "WebSocket: live turns, queue position and agent events of one conversation",
        responses={101: ("switching protocols", None), 404: ("unknown id", None)},
    ),
    Route(
        "POST",
        "/api/v1/conversations",
        create_conversation,
        "Start a conversation",
        body=CreateConversation,
        responses={201: ("created", ConversationOut), **_ERRORS},
    ),
    Route(
        "GET",
        "/api/v1/conversations/{conversation_id}",
        get_conversation,
        "Read a conversation with its transcript and events",
        responses={200: ("the conversation", ConversationOut), 404: ("unknown id", None)},
    ),
    Route(
        "POST",
        "/api/v1/conversations/{conversation_id}/messages",
        post_message,
        "Post a user message and get the bot's replies",
        body=PostMessage,
        responses={
            200: ("the stored user turn and the bot's replies", MessageResult),
            404: ("unknown id", None),
            409: ("conversation closed", None),
            **_ERRORS,
        },
    ),
]
