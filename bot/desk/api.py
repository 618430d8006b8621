"""The desk's HTTP API (``/desk/api/…``), its WebSocket (``/desk/ws``), login and pages.

Every endpoint checks the session cookie and the role. State-changing requests also need the
``X-CSRF-Token`` header that matches the session. The WebSocket only accepts same-origin
connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib.resources import files
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot.api.errors import ApiError, read_json
from bot.api.internal import BOOKINGS, BookingOut
from bot.api.keys import HANDOFF, HUB, SERVICE, SETTINGS
from bot.api.schemas import ConversationOut
from bot.desk import media_token
from bot.desk.users import LoginSession, UserStore
from bot.handoff.records import OPEN_STATUSES, Presence, TicketStatus, UserRole
from bot.handoff.service import HandoffError, ticket_data

USERS = web.AppKey("user_store", UserStore)
SESSION_RECHECK_S = 30.0
COOKIE = "receptionist_session"
SESSION = "desk_session"
STAFF = (UserRole.AGENT, UserRole.SUPERVISOR, UserRole.ADMIN)
LEADS = (UserRole.SUPERVISOR, UserRole.ADMIN)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LoginIn(_In):
    username: str = Field(..., min_length=1, max_length=80)
    password: str = Field(..., min_length=1, max_length=1000)


class PresenceIn(_In):
    presence: Presence


class AgentMessageIn(_In):
    text: str = Field(..., min_length=1, max_length=5000)


class TransferIn(_In):
    skill: str | None = Field(None, min_length=1, max_length=60)
    agent_id: int | None = None


class ResolveIn(_In):
    disposition: str = Field(..., min_length=1, max_length=60)
    hand_back: bool = False


class ReassignIn(_In):
    agent_id: int


async def current_session(request: web.Request) -> LoginSession | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 200:
        return None
    return await request.app[USERS].session(token)


async def logged_in(
    request: web.Request,
    roles: tuple[UserRole, ...],
    forbidden: str = "your role may not do this",
) -> LoginSession:
    """The request's login session, for a user with one of ``roles`` (else 401 or 403)."""
    sess = await current_session(request)
    if sess is None:
        raise ApiError(401, "not_logged_in", "log in to the desk first")
    if sess.user.role not in roles:
        raise ApiError(403, "forbidden", forbidden)
    return sess


def require(*roles: UserRole) -> Callable[[Handler], Handler]:
    """Only a logged-in user with one of ``roles``; unsafe methods also need the CSRF token."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            sess = await logged_in(request, roles)
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                sent = request.headers.get("X-CSRF-Token", "")
                if not sent or sent != sess.csrf_token:
                    raise ApiError(403, "csrf_failed", "missing or wrong X-CSRF-Token header")
            request[SESSION] = sess
            return await handler(request)

        guarded.__name__ = handler.__name__
        return guarded

    return wrap


def session_of(request: web.Request) -> LoginSession:
    """The login session :func:`require` checked for this request."""
    sess: LoginSession = request[SESSION]
    return sess


def query_time(
    request: web.Request, key: str, *, empty_is_missing: bool = False
) -> datetime | None:
    """The query parameter ``key`` as an ISO 8601 time with a time zone, or None when it is
    missing (or empty, with ``empty_is_missing``); 422 when it is not such a time."""
    raw = request.query.get(key)
    if raw is None or (empty_is_missing and not raw):
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"{key}: not an ISO 8601 time") from exc
    if value.tzinfo is None:
        raise ApiError(422, "invalid_request", f"{key}: give a time zone")
    return value


def _handoff_error(exc: HandoffError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


# -- login ---------------------------------------------------------------------------------
async def login(request: web.Request) -> web.Response:
    body = await read_json(request, LoginIn)
    settings = request.app[SETTINGS]
    sess = await request.app[USERS].login(body.username, body.password, settings.auth.session_hours)
    if sess is None:
        raise ApiError(401, "bad_credentials", "wrong username or password")
    resp = web.json_response({"user": _user(sess), "csrf_token": sess.csrf_token})
    resp.set_cookie(
        COOKIE,
        sess.token,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=settings.auth.cookie_secure,
        max_age=int(settings.auth.session_hours * 3600),
    )
    return resp


@require(*UserRole)
async def logout(request: web.Request) -> web.Response:
    sess = session_of(request)
    if sess.user.role in STAFF:
        await request.app[HANDOFF].set_presence(sess.user, Presence.OFFLINE)
    await request.app[USERS].logout(sess.token)
    resp = web.json_response({"ok": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


def _user(sess: LoginSession) -> dict[str, Any]:
    u = sess.user
    return {
        "id": u.id,
        "username": u.username,
        "name": u.display_name,
        "role": u.role.value,
        "skills": u.skills,
        "max_chats": u.max_chats,
    }


@require(*STAFF)
async def me(request: web.Request) -> web.Response:
    sess = session_of(request)
    agent = await request.app[HANDOFF].store.agent(sess.user.id)
    return web.json_response(
        {
            "user": _user(sess),
            "csrf_token": sess.csrf_token,
            "presence": agent.presence.value if agent else "offline",
        }
    )


# -- agent work ----------------------------------------------------------------------------
@require(*STAFF)
async def set_presence(request: web.Request) -> web.Response:
    body = await read_json(request, PresenceIn)
    await request.app[HANDOFF].set_presence(session_of(request).user, body.presence)
    return web.json_response({"presence": body.presence.value})


@require(*STAFF)
async def my_tickets(request: web.Request) -> web.Response:
    user = session_of(request).user
    store = request.app[HANDOFF].store
    if user.role in LEADS and request.query.get("all") == "1":
        tickets = await store.tickets(OPEN_STATUSES)
    else:
        tickets = await store.tickets([TicketStatus.OFFERED, TicketStatus.ASSIGNED], user.id)
        tickets = [
            t
            for t in tickets
            if (t.status == TicketStatus.OFFERED and t.offered_to == user.id)
            or (t.status == TicketStatus.ASSIGNED and t.agent_id == user.id)
        ]
    return web.json_response({"tickets": [ticket_data(t) for t in tickets]})


def _ticket_id(request: web.Request) -> int:
    raw = request.match_info["ticket_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise ApiError(404, "ticket_not_found", f"ticket {raw!r:.40} not found")
    return int(raw)


@require(*STAFF)
async def ticket_detail(request: web.Request) -> web.Response:
    user = session_of(request).user
    handoff = request.app[HANDOFF]
    t = await handoff.store.get(_ticket_id(request))
    if t is None:
        raise ApiError(404, "ticket_not_found", "ticket not found")
    if user.role not in LEADS and user.id not in (t.agent_id, t.offered_to):
        raise ApiError(403, "forbidden", "this ticket is not yours")
    conv = await request.app[SERVICE].get(t.conversation_id)
    assert conv is not None  # tickets cascade with their conversation
    body: dict[str, Any] = {
        "ticket": ticket_data(t),
        "conversation": ConversationOut.of(conv, with_transcript=True).model_dump(mode="json"),
        "history": await handoff.store.customer_history(t.conversation_id),
    }
    if t.channel == "voice" and t.status == TicketStatus.ASSIGNED and t.agent_id == user.id:
        # the agent who owns a phone call may take its audio at the media server
        settings = request.app[SETTINGS]
        body["agent_audio"] = {
            "url": media_token.agent_audio_url(settings),
            "token": media_token.issue(settings, t.conversation_id, user.id),
            "expires_in_s": media_token.TOKEN_TTL_S,
        }
    return web.json_response(body)


def _ticket_action(fn: Callable[[web.Request, int], Awaitable[dict[str, Any]]]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        try:
            return web.json_response(await fn(request, _ticket_id(request)))
        except HandoffError as exc:
            raise _handoff_error(exc) from exc

    handler.__name__ = fn.__name__
    return require(*STAFF)(handler)


async def _accept(request: web.Request, tid: int) -> dict[str, Any]:
    t = await request.app[HANDOFF].accept(session_of(request).user, tid)
    return {"ticket": ticket_data(t)}


async def _decline(request: web.Request, tid: int) -> dict[str, Any]:
    await request.app[HANDOFF].decline(session_of(request).user, tid)
    return {"ok": True}


async def _message(request: web.Request, tid: int) -> dict[str, Any]:
    body = await read_json(request, AgentMessageIn)
    turn = await request.app[HANDOFF].agent_message(session_of(request).user, tid, body.text)
    return {"seq": turn.seq, "text": turn.text}


async def _transfer(request: web.Request, tid: int) -> dict[str, Any]:
    body = await read_json(request, TransferIn)
    if (body.skill is None) == (body.agent_id is None):
        raise ApiError(422, "invalid_request", "give exactly one of skill or agent_id")
    t = await request.app[HANDOFF].transfer(
        session_of(request).user, tid, skill=body.skill, to_agent=body.agent_id
    )
    return {"ticket": ticket_data(t)}


async def _resolve(request: web.Request, tid: int) -> dict[str, Any]:
    body = await read_json(request, ResolveIn)
    t = await request.app[HANDOFF].resolve(
        session_of(request).user, tid, body.disposition, body.hand_back
    )
    return {"ticket": ticket_data(t)}


@require(*STAFF)
async def canned(request: web.Request) -> web.Response:
    return web.json_response({"responses": list(request.app[SETTINGS].handoff.canned_responses)})


@require(*STAFF)
async def bookings(request: web.Request) -> web.Response:
    found = await request.app[BOOKINGS].between(
        query_time(request, "from"), query_time(request, "to"), request.query.get("conversation_id")
    )
    return web.json_response({"bookings": [BookingOut.of(b).model_dump() for b in found]})


# -- supervisors ---------------------------------------------------------------------------
@require(*LEADS)
async def overview(request: web.Request) -> web.Response:
    return web.json_response(await request.app[HANDOFF].overview())


@require(*LEADS)
async def reassign(request: web.Request) -> web.Response:
    body = await read_json(request, ReassignIn)
    try:
        t = await request.app[HANDOFF].reassign(_ticket_id(request), body.agent_id)
    except HandoffError as exc:
        raise _handoff_error(exc) from exc
    return web.json_response({"ticket": ticket_data(t)})


# -- live push -----------------------------------------------------------------------------
def same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser: the cookie is the credential
    return origin.rstrip("/") in {
        f"{request.scheme}://{request.host}",
        request.app[SETTINGS].server.base_url,
    }


async def desk_ws(request: web.Request) -> web.StreamResponse:
    sess = await logged_in(request, tuple(UserRole))
    if not same_origin(request):
        raise ApiError(403, "bad_origin", "the desk WebSocket only accepts its own origin")
    user = sess.user
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096)
    await ws.prepare(request)
    topics = [f"agent:{user.id}", "desk:conversations"]
    if user.role in LEADS:
        topics.append("supervisors")
    handoff = request.app[HANDOFF]
    store = handoff.store
    users = request.app[USERS]
    token = request.cookies.get(COOKIE, "")
    handoff.desk_connected(user)
    with request.app[HUB].subscribe(*topics) as sub:
        await ws.send_json({"type": "hello", "user": _user(sess)})
        reader = asyncio.ensure_future(ws.receive())
        getter: asyncio.Future[dict[str, Any]] | None = None
        try:
            while not ws.closed:
                if getter is None:
                    getter = asyncio.ensure_future(sub.get())
                waiting: set[asyncio.Future[Any]] = {getter, reader}
                done, _ = await asyncio.wait(
                    waiting,
                    timeout=SESSION_RECHECK_S,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if reader in done:
                    break
                if not done:  # quiet for a while: is the login still valid?
                    if await users.session(token) is None:
                        await ws.close(code=4401, message=b"session ended")
                        break
                    continue
                event = getter.result()
                getter = None
                if event["type"] == "turn" and user.role not in LEADS:
                    t = await store.open_for_conversation(event["conversation_id"])
                    if t is None or user.id not in (t.agent_id, t.offered_to):
                        continue
                await ws.send_json(event)
        finally:
            reader.cancel()
            if getter is not None:
                getter.cancel()
            await ws.close()
            await handoff.desk_disconnected(user)
    return ws


# -- pages ---------------------------------------------------------------------------------
def static_text(name: str) -> str:
    """The text of ``bot/static/{name}``, read on every request."""
    return files("bot").joinpath(f"static/{name}").read_text(encoding="utf-8")


def page(name: str, roles: tuple[UserRole, ...], otherwise: Callable[[], Exception]) -> Handler:
    """The HTML page ``name`` for a logged-in user with one of ``roles``: without a login the
    user is sent to the login page; with another role, ``otherwise()`` is raised."""

    async def serve(request: web.Request) -> web.StreamResponse:
        sess = await current_session(request)
        if sess is None:
            raise web.HTTPFound("/desk/login")
        if sess.user.role not in roles:
            raise otherwise()
        return web.Response(
            text=static_text(name), content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    return serve


def asset(
    name: str, content_type: str = "application/javascript", cache_control: str | None = None
) -> Handler:
    """The file ``name`` for anyone (login page, scripts, style sheet): it holds no data."""
    headers = {"Cache-Control": cache_control} if cache_control else None

    async def serve(request: web.Request) -> web.StreamResponse:
        return web.Response(text=static_text(name), content_type=content_type, headers=headers)

    return serve


def add_routes(app: web.Application) -> None:
    r = app.router
    # for staff; designers are sent to their review inbox
    r.add_get("/desk", page("desk.html", STAFF, lambda: web.HTTPFound("/desk/review")))
    r.add_get("/desk/login", asset("login.html", "text/html"))
    r.add_get("/desk/desk.js", asset("desk.js"))
    r.add_get("/desk/common.js", asset("common.js"))
    r.add_get("/desk/common.css", asset("common.css", "text/css"))
    r.add_post("/desk/api/login", login)
    r.add_post("/desk/api/logout", logout)
    r.add_get("/desk/api/me", me)
    r.add_post("/desk/api/presence", set_presence)
    r.add_get("/desk/api/tickets", my_tickets)
    r.add_get("/desk/api/tickets/{ticket_id}", ticket_detail)
    r.add_post("/desk/api/tickets/{ticket_id}/accept", _ticket_action(_accept))
    r.add_post("/desk/api/tickets/{ticket_id}/decline", _ticket_action(_decline))
    r.add_post("/desk/api/tickets/{ticket_id}/messages", _ticket_action(_message))
    r.add_post("/desk/api/tickets/{ticket_id}/transfer", _ticket_action(_transfer))
    r.add_post("/desk/api/tickets/{ticket_id}/resolve", _ticket_action(_resolve))
    r.add_post("/desk/api/tickets/{ticket_id}/reassign", reassign)
    r.add_get("/desk/api/canned", canned)
    r.add_get("/desk/api/bookings", bookings)
    r.add_get("/desk/api/overview", overview)
    r.add_get("/desk/ws", desk_ws)
