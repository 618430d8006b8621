"""Handoff to a human end to end: real bot service, real Rasa, agents over HTTP + WebSocket."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.business_hours import BusinessHours
from tests.conftest import bot_for
from tests.procs import ROOT, BotService, RasaStack

PASSWORD = "a-long-test-password"
USERS = [
    ("ana", "agent", "general:2", "Ana"),
    ("ben", "agent", "general:1,billing:2", "Ben"),
    ("sue", "supervisor", "general:1", "Sue"),
]


def add_user(svc: BotService, username: str, role: str, skills: str, name: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "users",
            "add",
            username,
            "--role",
            role,
            "--skills",
            skills,
            "--name",
            name,
            "--password-stdin",
        ],
        cwd=ROOT,
        env=svc.env,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def desk_service(rasa: RasaStack, data_dir: Path) -> Iterator[BotService]:
    svc = bot_for(
        rasa,
        data_dir,
        RECEPTIONIST_HANDOFF__OFFER_TIMEOUT_S="2",
        RECEPTIONIST_HANDOFF__WRAP_UP_S="0",
        RECEPTIONIST_HANDOFF__CALLBACK_OFFER_WAIT_S="60",
        RECEPTIONIST_HANDOFF__ROUTER_INTERVAL_S="0.2",
    )
    for u in USERS:
        add_user(svc, *u)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def desk(rasa: RasaStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    yield from desk_service(rasa, tmp_path_factory.mktemp("desk"))


@pytest.fixture
def fresh_desk(rasa: RasaStack, tmp_path: Path) -> Iterator[BotService]:
    """A desk service of its own, for a test that must not see other tests' tickets."""
    yield from desk_service(rasa, tmp_path)


class Desk:
    """One logged-in desk user (cookie session + CSRF token)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""
        self.user: dict[str, Any] = {}
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def login(self, username: str) -> Desk:
        async with self.http.post(
            self.base + "/desk/api/login", json={"username": username, "password": PASSWORD}
        ) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        self.csrf, self.user = body["csrf_token"], body["user"]
        return self

    async def call(
        self, method: str, path: str, body: Any = None, expect: int = 200
    ) -> dict[str, Any]:
        async with self.http.request(
            method, self.base + path, json=body, headers={"X-CSRF-Token": self.csrf}
        ) as r:
            data = await r.json()
            assert r.status == expect, data
            return dict(data)

    async def available(self) -> None:
        await self.call("POST", "/desk/api/presence", {"presence": "available"})

    async def connect(self) -> None:
        self.ws = await self.http.ws_connect(self.base + "/desk/ws")
        assert (await self.ws.receive_json())["type"] == "hello"

    async def next_event(
        self, kind: str, limit_s: float = 10, text: str | None = None
    ) -> dict[str, Any]:
        """The next pushed event of this type (and, for turns, with this text)."""
        assert self.ws is not None
        async with asyncio.timeout(limit_s):
            while True:
                ev = await self.ws.receive_json()
                if ev["type"] == kind and (text is None or ev["turn"]["text"] == text):
                    return dict(ev)

    async def offer_for(self, cid: str, limit_s: float = 10) -> dict[str, Any]:
        """The offer for this conversation (offers of other tests' tickets are skipped)."""
        async with asyncio.timeout(limit_s):
            while True:
                ev = await self.next_event("offer", limit_s)
                if ev["ticket"]["conversation_id"] == cid:
                    return ev

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.http.close()


async def logged_in(svc: BotService) -> dict[str, Desk]:
    return {name: await Desk(svc.url).login(name) for name, *_ in USERS}


@pytest.fixture
async def staff(desk: BotService) -> AsyncIterator[dict[str, Desk]]:
    people = await logged_in(desk)
    try:
        yield people
    finally:
        for p in people.values():
            await p.call("POST", "/desk/api/presence", {"presence": "offline"})
            await p.close()


async def _visitor_handoff(http: aiohttp.ClientSession, base: str, **customer: str) -> str:
    async with http.post(
        base + "/api/v1/conversations", json={"channel": "webchat", "customer": customer or None}
    ) as r:
        cid = str((await r.json())["id"])
    async with http.post(
        f"{base}/api/v1/conversations/{cid}/messages", json={"text": "what are your opening hours"}
    ) as r:
        assert r.status == 200
    async with http.post(
        f"{base}/api/v1/conversations/{cid}/messages",
        json={"text": "i want to speak to a real person"},
    ) as r:
        res = await r.json()
    assert res["handoff"]["reason"] == "user_request"
    assert res["queue"]["status"] in ("queued", "offered")
    return cid


async def test_full_loop_offer_accept_chat_resolve(
    desk: BotService, staff: dict[str, Desk]
) -> None:
    ana = staff["ana"]
    await ana.connect()
    await ana.available()
    async with aiohttp.ClientSession() as visitor:
        cid = await _visitor_handoff(visitor, desk.url, name="Cleo", email="cleo@example.org")
        stream = await visitor.ws_connect(f"{desk.url}/api/v1/conversations/{cid}/stream")

        offer = await ana.offer_for(cid)
        ticket = offer["ticket"]
        assert ticket["conversation_id"] == cid and ticket["skill"] == "general"
        assert "Cleo" in ticket["summary"] and "opening hours" in ticket["summary"]

        await ana.call("POST", f"/desk/api/tickets/{ticket['id']}/accept")
        detail = await ana.call("GET", f"/desk/api/tickets/{ticket['id']}")
        transcript = detail["conversation"]["transcript"]
        assert transcript[0]["intent"] == "opening_hours" and transcript[0]["intent_confidence"]
        assert detail["conversation"]["customer"]["email"] == "cleo@example.org"
        t = detail["ticket"]
        assert t["created_at"] <= t["offered_at"] <= t["answered_at"]

        await ana.call(
            "POST",
            f"/desk/api/tickets/{ticket['id']}/messages",
            {"text": "Hi Cleo, Ana here. How can I help?"},
        )
        seen = []
        async with asyncio.timeout(10):
            while "Hi Cleo, Ana here. How can I help?" not in seen:
                ev = await stream.receive_json()
                if ev["type"] == "turn":
                    seen.append(ev["turn"]["text"])
        assert "Ana joined the conversation." in seen

        # while Ana owns it the bot is silent; Ana sees the visitor's message live
        async with visitor.post(
            f"{desk.url}/api/v1/conversations/{cid}/messages",
            json={"text": "what are your opening hours"},
        ) as r:
            held = await r.json()
        assert held["replies"] == [] and held["queue"] == {
            "ticket_id": ticket["id"],
            "status": "assigned",
            "position": None,
            "estimated_wait_s": None,
            "callback_offered": False,
            "agent": "Ana",
            "transfer_to": None,
        }
        turn = await ana.next_event("turn", text="what are your opening hours")
        assert turn["conversation_id"] == cid and turn["turn"]["role"] == "user"

        await ana.call(
            "POST",
            f"/desk/api/tickets/{ticket['id']}/resolve",
            {"disposition": "information_given", "hand_back": True},
        )
        async with visitor.post(
            f"{desk.url}/api/v1/conversations/{cid}/messages",
            json={"text": "where are you located"},
        ) as r:
            back = await r.json()
        assert "Harbour Street" in back["replies"][0]["text"]
        await stream.close()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{desk.url}/api/v1/conversations/{cid}") as r,
    ):
        conv = await r.json()
    kinds = [e["type"] for e in conv["events"]]
    assert kinds.count("handoff_requested") == 1 and "agent_joined" in kinds
    assert "resolved" in kinds and conv["status"] == "active"


async def test_unanswered_offer_goes_to_the_next_agent(
    desk: BotService, staff: dict[str, Desk]
) -> None:
    ana, ben = staff["ana"], staff["ben"]
    await ana.connect()
    await ben.connect()
    await ana.available()
    async with aiohttp.ClientSession() as visitor:
        cid = await _visitor_handoff(visitor, desk.url)
    first = await ana.offer_for(cid)  # skill level 2 beats Ben's 1
    await ben.available()
    assert first["ticket"]["conversation_id"] == cid
    await ana.next_event("offer_revoked", limit_s=10)  # 2 s accept timeout
    second = await ben.offer_for(cid)
    assert second["ticket"]["id"] == first["ticket"]["id"]
    assert first["ticket"]["id"] not in [
        t["id"] for t in (await ana.call("GET", "/desk/api/tickets"))["tickets"]
    ]
    await ben.call("POST", f"/desk/api/tickets/{second['ticket']['id']}/accept")
    await ana.call("POST", f"/desk/api/tickets/{first['ticket']['id']}/accept", expect=409)
    await ben.call("POST", "/desk/api/presence", {"presence": "busy"})  # his only billing peer
    await ben.call(
        "POST", f"/desk/api/tickets/{second['ticket']['id']}/transfer", {"skill": "billing"}
    )
    overview = await staff["sue"].call("GET", "/desk/api/overview")
    moved = next(t for t in overview["waiting"] if t["id"] == second["ticket"]["id"])
    assert moved["skill"] == "billing" and moved["status"] == "queued"
    assert {
        k: v
        for k, v in next(q for q in overview["queues"] if q["skill"] == "billing").items()
        if k != "longest_wait_s"
    } == {"skill": "billing", "waiting": 1}
    # the supervisor hands it to Ana directly
    await staff["sue"].call(
        "POST", f"/desk/api/tickets/{moved['id']}/reassign", {"agent_id": ana.user["id"]}
    )
    direct = await ana.offer_for(cid)
    assert direct["ticket"]["id"] == moved["id"]
    await ana.call("POST", f"/desk/api/tickets/{moved['id']}/accept")


async def test_abandonment_and_callback(desk: BotService, staff: dict[str, Desk]) -> None:
    sue = staff["sue"]
    async with aiohttp.ClientSession() as visitor:
        cid = await _visitor_handoff(visitor, desk.url)  # nobody available
        async with visitor.post(f"{desk.url}/api/v1/conversations/{cid}/close") as r:
            closed = await r.json()
        assert closed["status"] == "closed"
        ab = [e for e in closed["events"] if e["type"] == "abandoned"]
        assert len(ab) == 1 and ab[0]["data"]["wait_s"] >= 0

        cid2 = await _visitor_handoff(visitor, desk.url)
        async with visitor.post(
            f"{desk.url}/api/v1/conversations/{cid2}/messages", json={"text": "hello?"}
        ) as r:
            waiting = (await r.json())["queue"]
        # offered exactly when the estimate (from observed handle times) exceeds 60 s, or
        # when the business is closed right now (its profile's opening hours)
        closed = BusinessHours(ROOT / "nlu-data").open_at(datetime.now(UTC)) is False
        assert waiting["callback_offered"] == (closed or waiting["estimated_wait_s"] > 60)
        assert waiting["position"] >= 1
        at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        async with visitor.post(
            f"{desk.url}/api/v1/conversations/{cid2}/callback",
            json={"number": "+44 117 496 0000", "at": at},
        ) as r:
            cb = await r.json()
            assert r.status == 200, cb
        assert cb["status"] == "callback_scheduled"
        async with visitor.post(
            f"{desk.url}/api/v1/conversations/{cid2}/callback", json={"number": "not a number"}
        ) as r:
            assert r.status == 422
    await asyncio.sleep(2)  # the router queues the callback when it is due
    overview = await sue.call("GET", "/desk/api/overview")
    waiting_ids = [t["conversation_id"] for t in overview["waiting"]]
    assert cid2 in waiting_ids and cid not in waiting_ids
    t = next(t for t in overview["waiting"] if t["conversation_id"] == cid2)
    assert t["callback_number"] == "+44 117 496 0000"


async def test_customer_history_across_conversations(
    desk: BotService, staff: dict[str, Desk]
) -> None:
    sue = staff["sue"]
    async with aiohttp.ClientSession() as visitor:
        first = await _visitor_handoff(visitor, desk.url, email="dora@example.org")
        async with visitor.post(f"{desk.url}/api/v1/conversations/{first}/close"):
            pass
        second = await _visitor_handoff(visitor, desk.url, email="Dora@Example.org")
    overview = await sue.call("GET", "/desk/api/overview")
    t = next(t for t in overview["waiting"] if t["conversation_id"] == second)
    detail = await sue.call("GET", f"/desk/api/tickets/{t['id']}")
    assert [h["conversation_id"] for h in detail["history"]] == [first]


DESK_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/desk/api/me", None, "agent"),
    ("POST", "/desk/api/presence", {"presence": "away"}, "agent"),
    ("GET", "/desk/api/tickets", None, "agent"),
    ("GET", "/desk/api/tickets/1", None, "agent"),
    ("POST", "/desk/api/tickets/1/accept", None, "agent"),
    ("POST", "/desk/api/tickets/1/decline", None, "agent"),
    ("POST", "/desk/api/tickets/1/messages", {"text": "x"}, "agent"),
    ("POST", "/desk/api/tickets/1/transfer", {"skill": "billing"}, "agent"),
    ("POST", "/desk/api/tickets/1/resolve", {"disposition": "x"}, "agent"),
    ("GET", "/desk/api/canned", None, "agent"),
    ("POST", "/desk/api/logout", None, "agent"),
    ("GET", "/desk/api/overview", None, "supervisor"),
    ("POST", "/desk/api/tickets/1/reassign", {"agent_id": 1}, "supervisor"),
]


@pytest.mark.parametrize(
    "method,path,body,role", DESK_ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in DESK_ENDPOINTS]
)
async def test_desk_authorisation(
    desk: BotService, method: str, path: str, body: dict[str, Any] | None, role: str
) -> None:
    async with (
        aiohttp.ClientSession() as anon,
        anon.request(method, desk.url + path, json=body) as r,
    ):
        assert r.status == 401 and (await r.json())["error"]["code"] == "not_logged_in"
    agent = await Desk(desk.url).login("ben")
    try:
        if role == "supervisor":
            err = await agent.call(method, path, body, expect=403)
            assert err["error"]["code"] == "forbidden"
    finally:
        await agent.close()
    if method == "POST":  # a forged cross-site request has no CSRF token
        entitled = await Desk(desk.url).login("sue" if role == "supervisor" else "ben")
        try:
            async with entitled.http.post(desk.url + path, json=body) as r:
                assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"
        finally:
            await entitled.close()


async def test_login_and_websocket_guards(desk: BotService) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            desk.url + "/desk/api/login", json={"username": "ana", "password": "wrong-password"}
        ) as r:
            assert r.status == 401
        async with http.post(desk.url + "/desk/api/login", json={"username": "ana"}) as r:
            assert r.status == 422
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(desk.url + "/desk/ws")
        assert err.value.status == 401
        async with http.get(desk.url + "/desk", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/desk/login"
        for path, kind in (  # the login page, scripts and style sheet need no login
            ("/desk/login", "text/html"),
            ("/desk/common.js", "application/javascript"),
            ("/desk/common.css", "text/css"),
            ("/desk/desk.js", "application/javascript"),
        ):
            async with http.get(desk.url + path) as r:
                assert (r.status, r.content_type) == (200, kind), path
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            desk.url + "/desk/api/login", json={"username": "ana", "password": PASSWORD}
        ) as r,
    ):
        cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    ana = await Desk(desk.url).login("ana")
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await ana.http.ws_connect(desk.url + "/desk/ws", origin="http://evil.example")
        assert err.value.status == 403
    finally:
        await ana.close()


def test_kill_9_keeps_tickets_and_assignments(rasa: RasaStack, tmp_path: Path) -> None:
    svc = bot_for(rasa, tmp_path, RECEPTIONIST_HANDOFF__ROUTER_INTERVAL_S="0.2")
    add_user(svc, "zed", "agent", "general:1", "Zed")
    add_user(svc, "boss", "supervisor", "general:1", "Boss")
    svc.start()
    try:

        async def before() -> tuple[list[str], int]:
            async with aiohttp.ClientSession() as visitor:
                cids = [await _visitor_handoff(visitor, svc.url) for _ in range(3)]
            zed = await Desk(svc.url).login("zed")
            tickets = (
                await (await Desk(svc.url).login("boss")).call("GET", "/desk/api/tickets?all=1")
            )["tickets"]
            mine = next(t for t in tickets if t["conversation_id"] == cids[0])
            await zed.call("POST", f"/desk/api/tickets/{mine['id']}/accept")
            await zed.close()
            # no handle time observed yet (300 s default), nobody staffed, 2nd in line
            async with (
                aiohttp.ClientSession() as visitor,
                visitor.post(
                    f"{svc.url}/api/v1/conversations/{cids[2]}/messages", json={"text": "hello?"}
                ) as r,
            ):
                queue = (await r.json())["queue"]
            assert (queue["position"], queue["estimated_wait_s"]) == (2, 600.0)
            assert queue["callback_offered"] is True
            return cids, int(mine["id"])

        cids, assigned_id = asyncio.run(before())
        svc.stop(signal.SIGKILL)
        svc.start()

        async def after() -> None:
            boss = await Desk(svc.url).login("boss")
            tickets = {
                t["conversation_id"]: t
                for t in (await boss.call("GET", "/desk/api/tickets?all=1"))["tickets"]
            }
            assert set(cids) <= set(tickets)
            assert tickets[cids[0]]["status"] == "assigned"
            assert tickets[cids[0]]["id"] == assigned_id
            assert {tickets[c]["status"] for c in cids[1:]} == {"queued"}
            zed = await Desk(svc.url).login("zed")
            mine = (await zed.call("GET", "/desk/api/tickets"))["tickets"]
            assert [t["id"] for t in mine] == [assigned_id]
            await zed.call(
                "POST",
                f"/desk/api/tickets/{assigned_id}/messages",
                {"text": "still here after the restart"},
            )
            await zed.close()
            await boss.close()

        asyncio.run(after())
    finally:
        svc.stop()


async def test_review_regressions(fresh_desk: BotService) -> None:
    """Leaving the desk, leaving the chat, naive times and unoffered grabs."""
    desk = fresh_desk
    staff = await logged_in(desk)
    ana, ben = staff["ana"], staff["ben"]
    await ana.connect()
    await ana.available()
    async with aiohttp.ClientSession() as visitor:
        # closing the last desk tab takes the agent offline and returns the offer
        cid = await _visitor_handoff(visitor, desk.url)
        offer = await ana.offer_for(cid)
        assert ana.ws is not None
        await ana.ws.close()
        ana.ws = None

        async def presence() -> str:
            return str((await ana.call("GET", "/desk/api/me"))["presence"])

        for _ in range(100):
            if await presence() == "offline":
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the agent stayed available after closing the desk")
        t = await staff["sue"].call("GET", f"/desk/api/tickets/{offer['ticket']['id']}")
        assert t["ticket"]["status"] == "queued" and t["ticket"]["offered_to"] is None

        # an agent without the skill cannot take a waiting ticket that was not offered
        await ben.call("POST", "/desk/api/presence", {"presence": "busy"})
        ana2 = await Desk(desk.url).login("ana")
        try:
            # ana has no billing skill: move it there via ben, then ana may not grab it
            await ben.call("POST", f"/desk/api/tickets/{offer['ticket']['id']}/accept")
            await ben.call(
                "POST", f"/desk/api/tickets/{offer['ticket']['id']}/transfer", {"skill": "billing"}
            )
            err = await ana2.call(
                "POST", f"/desk/api/tickets/{offer['ticket']['id']}/accept", expect=409
            )
            assert err["error"]["code"] == "not_eligible"
        finally:
            await ana2.close()

        # the customer leaves while an agent owns the chat: the agent's ticket ends
        await ben.connect()
        await ben.call("POST", f"/desk/api/tickets/{offer['ticket']['id']}/accept")
        async with visitor.post(f"{desk.url}/api/v1/conversations/{cid}/close") as r:
            assert (await r.json())["status"] == "closed"
        revoked = await ben.next_event("offer_revoked")
        assert revoked["ticket_id"] == offer["ticket"]["id"]
        t = await staff["sue"].call("GET", f"/desk/api/tickets/{offer['ticket']['id']}")
        assert (t["ticket"]["status"], t["ticket"]["disposition"]) == ("resolved", "customer_left")

        # a callback time needs a time zone: a clear 422, not a 500
        cid2 = await _visitor_handoff(visitor, desk.url)
        async with visitor.post(
            f"{desk.url}/api/v1/conversations/{cid2}/callback",
            json={"number": "+44 1 2345", "at": "2026-12-01T10:00:00"},
        ) as r:
            assert r.status == 422
            assert "timezone" in (await r.text()).lower()
    for person in staff.values():
        await person.close()
