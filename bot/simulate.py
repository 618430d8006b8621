"""``receptionist simulate``: scripted contact-centre traffic through the real, running stack.

Webchat visitors speak the real WebSocket protocol to the bot service (and so to Rasa and the
action server); desk agents log in to the real desk API, take offers from the desk WebSocket,
answer, and resolve with a disposition. Nothing is written to the database directly except
the simulated agents' accounts. Voice callers (through the media server) are driven by
``media_server.simulate_calls`` and the command line joins both.

Every visitor follows one script, drawn by weight: FAQ questions answered by the bot
(contained), a booking, a callback request, a request for a person, a question the bot does
not understand (the fallback ladder ends in a handoff), or a complaint. Visitors who wait
longer than their patience for an agent leave (an abandoned ticket). Arrivals are a Poisson
process spread over ``duration_s``; the figures come from what really happened, not from the
script.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import structlog

log = structlog.get_logger("bot.simulate")

AGENT_PREFIX = "sim-agent-"
SKILLS = {"general": 2, "sales": 1, "billing": 1, "support": 1}


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    weight: float
    lines: tuple[str, ...]
    wants_human: bool = False


def _day_phrase(day: date) -> str:
    return f"{day.day} {day.strftime('%B')} {day.year}"


def next_weekday(min_ahead: int = 2, today: date | None = None) -> date:
    """A Monday-to-Friday date at least ``min_ahead`` days away (the demo practice is open
    on weekdays 9:00-17:30; a profile without weekdays simply gets its re-asks)."""
    d = (today or datetime.now(UTC).date()) + timedelta(days=min_ahead)
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


def scripts(today: date | None = None) -> list[Script]:
    day = _day_phrase(next_weekday(2, today))
    return [
        Script("faq", 30, ("hello", "what are your opening hours", "where are you", "thanks bye")),
        Script("faq_prices", 12, ("how much is a sports massage", "do you have parking", "thanks")),
        Script(
            "booking",
            10,
            (
                "i'd like to book an appointment",
                "sports massage",
                f"{day} at 10am",
                "my name is Jane Doe",
                "07912 345678",
                "yes",
            ),
        ),
        Script("callback", 6, ("can someone call me back", "07912 345678", f"{day} at 11am")),
        Script(
            "human",
            20,
            ("hi", "i have a question about my invoice", "can i speak to a real person"),
            wants_human=True,
        ),
        Script(
            "not_understood",
            14,
            ("blorf the quantum giraffe", "zibble zabble wonk", "plimp the frobnicator"),
            wants_human=True,
        ),
        Script(
            "complaint",
            8,
            ("i want to make a complaint", "this is ridiculous, nobody answers, i am furious"),
            wants_human=True,
        ),
    ]


@dataclass
class Tally:
    """What happened, counted by the simulator as it saw it."""

    started: Counter[str] = field(default_factory=Counter)
    handed_off: int = 0
    answered: int = 0
    abandoned: int = 0
    resolved_by_agents: int = 0
    accepted_by_agents: int = 0
    messages: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    reply_ms: list[float] = field(default_factory=list)

    def as_data(self) -> dict[str, Any]:
        s = sorted(self.reply_ms)
        return {
            "conversations": sum(self.started.values()),
            "by_script": dict(self.started),
            "messages": self.messages,
            "handed_off": self.handed_off,
            "answered_by_agent": self.answered,
            "abandoned": self.abandoned,
            "accepted_by_agents": self.accepted_by_agents,
            "resolved_by_agents": self.resolved_by_agents,
            "reply_p50_ms": round(s[len(s) // 2], 1) if s else None,
            "errors": dict(self.errors),
        }


class _Visitor:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, tally: Tally) -> None:
        self.ws = ws
        self.tally = tally
        self.handed_off = False
        self.agent_joined = asyncio.Event()
        self.finished = asyncio.Event()  # an agent resolved it (a system turn after joining)
        self.acks: dict[str, asyncio.Future[None]] = {}

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            ev = msg.json()
            kind = ev.get("type")
            if kind == "ack" and ev.get("id") in self.acks:
                fut = self.acks.pop(ev["id"])
                if not fut.done():
                    fut.set_result(None)
            elif kind == "queue":
                self.handed_off = True
            elif kind == "agent_joined":
                self.agent_joined.set()
            elif kind == "turn" and ev["turn"]["role"] == "system" and self.agent_joined.is_set():
                self.finished.set()
            elif kind == "error":
                self.tally.errors[str(ev.get("code"))] += 1

    async def say(self, mid: str, text: str) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks[mid] = fut
        t0 = time.perf_counter()
        await self.ws.send_json({"type": "message", "id": mid, "text": text})
        await asyncio.wait_for(fut, 60)
        self.tally.reply_ms.append((time.perf_counter() - t0) * 1000)
        self.tally.messages += 1


async def run_visitor(
    http: aiohttp.ClientSession,
    ws_url: str,
    script: Script,
    n: int,
    tally: Tally,
    *,
    think_s: float,
    patience_s: float,
) -> None:
    tally.started[script.name] += 1
    try:
        async with http.ws_connect(ws_url, heartbeat=20) as ws:
            await ws.send_json({"type": "hello", "v": 1})
            while (await ws.receive_json(timeout=30))["type"] != "welcome":
                pass
            v = _Visitor(ws, tally)
            reader = asyncio.create_task(v.read())
            try:
                for i, line in enumerate(script.lines):
                    await v.say(f"sim{n}-{i}", line)
                    await asyncio.sleep(random.uniform(0.5, 1.5) * think_s)
                    if v.handed_off:
                        break
                if script.wants_human and not v.handed_off:
                    await ws.send_json({"type": "handoff"})
                    await asyncio.sleep(0.5)
                if v.handed_off or script.wants_human:
                    tally.handed_off += 1
                    try:
                        await asyncio.wait_for(v.agent_joined.wait(), patience_s)
                    except TimeoutError:
                        tally.abandoned += 1  # closing while queued records the abandonment
                    else:
                        tally.answered += 1
                        await v.say(f"sim{n}-agent", "thanks, that answers my question")
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(v.finished.wait(), 120)
                await ws.send_json({"type": "close"})
                await asyncio.sleep(0.2)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        tally.errors[type(exc).__name__] += 1


@dataclass(frozen=True, slots=True)
class AgentSpec:
    username: str
    password: str


async def ensure_agents(database_url: str, count: int) -> list[AgentSpec]:
    """``count`` simulated agents with fresh random passwords (created on first use)."""
    from bot.desk.users import UserStore
    from bot.handoff.records import UserRole
    from bot.store import create_engine, migrate

    engine = create_engine(database_url)
    try:
        await migrate(engine)
        store = UserStore(engine)
        existing = {u.username for u in await store.list()}
        out = []
        for i in range(1, count + 1):
            name = f"{AGENT_PREFIX}{i}"
            password = secrets.token_urlsafe(18)
            if name in existing:
                await store.set_password(name, password)
            else:
                await store.add(
                    name,
                    password,
                    role=UserRole.AGENT,
                    display_name=f"Sim Agent {i}",
                    skills=SKILLS,
                    max_chats=2,
                )
            out.append(AgentSpec(name, password))
        return out
    finally:
        await engine.dispose()


async def run_agent(
    base: str,
    spec: AgentSpec,
    tally: Tally,
    stop: asyncio.Event,
    *,
    answer_s: tuple[float, float],
    handle_s: tuple[float, float],
) -> None:
    """A desk agent: available, accepts each offer after a human-like delay, greets, waits a
    handle time, resolves. Runs until ``stop`` and its tickets are done, then logs out."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            base + "/desk/api/login", json={"username": spec.username, "password": spec.password}
        ) as r:
            r.raise_for_status()
            csrf = {"X-CSRF-Token": (await r.json())["csrf_token"]}
        working: set[asyncio.Task[None]] = set()

        async def handle(ticket_id: int) -> None:
            await asyncio.sleep(random.uniform(*answer_s))
            url = f"{base}/desk/api/tickets/{ticket_id}"
            async with http.post(url + "/accept", json={}, headers=csrf) as r:
                if r.status != 200:
                    return  # the offer expired or moved on: the router re-offers it
            tally.accepted_by_agents += 1
            async with http.post(
                url + "/messages",
                json={"text": f"Hello, this is {spec.username}. How can I help?"},
                headers=csrf,
            ) as r:
                r.raise_for_status()
            await asyncio.sleep(random.uniform(*handle_s))
            async with http.post(
                url + "/resolve", json={"disposition": "resolved"}, headers=csrf
            ) as r:
                if r.status == 200:
                    tally.resolved_by_agents += 1

        async with http.ws_connect(base + "/desk/ws", heartbeat=20) as ws:
            await ws.receive_json(timeout=10)  # hello
            async with http.post(
                base + "/desk/api/presence", json={"presence": "available"}, headers=csrf
            ) as r:
                r.raise_for_status()
            while not (stop.is_set() and not working):
                try:
                    msg = await ws.receive(timeout=1.0)
                except TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                ev = msg.json()
                if ev.get("type") == "offer":
                    task = asyncio.create_task(handle(int(ev["ticket"]["id"])))
                    working.add(task)
                    task.add_done_callback(working.discard)
            async with http.post(base + "/desk/api/logout", json={}, headers=csrf):
                pass


async def simulate_chats(
    base: str,
    agents: list[AgentSpec],
    conversations: int,
    *,
    duration_s: float,
    think_s: float = 1.0,
    patience_s: float = 45.0,
    answer_s: tuple[float, float] = (1.0, 6.0),
    handle_s: tuple[float, float] = (4.0, 15.0),
    seed: int | None = None,
    extra: list[asyncio.Task[Any]] | None = None,
) -> Tally:
    """Runs the visitors and the agents until every visitor is done (and ``extra`` tasks,
    e.g. voice calls, which the agents also serve)."""
    rnd = random.Random(seed)
    pool = scripts()
    tally = Tally()
    stop = asyncio.Event()
    ws_url = base.replace("http", "ws", 1) + "/webchat/ws"
    agent_tasks = [
        asyncio.create_task(run_agent(base, a, tally, stop, answer_s=answer_s, handle_s=handle_s))
        for a in agents
    ]
    await asyncio.sleep(1.0)  # agents are available before the first visitor
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        visitors = []
        at = 0.0
        rate = conversations / max(duration_s, 1.0)
        for n in range(conversations):
            script = rnd.choices(pool, weights=[s.weight for s in pool])[0]

            async def later(delay: float, script: Script = script, n: int = n) -> None:
                await asyncio.sleep(delay)
                await run_visitor(
                    http, ws_url, script, n, tally, think_s=think_s, patience_s=patience_s
                )

            visitors.append(asyncio.create_task(later(at)))
            at += rnd.expovariate(rate) if rate > 0 else 0.0
        await asyncio.gather(*visitors)
        if extra:
            await asyncio.gather(*extra, return_exceptions=True)
    stop.set()
    for res in await asyncio.gather(*agent_tasks, return_exceptions=True):
        if isinstance(res, BaseException):
            tally.errors[f"agent_{type(res).__name__}"] += 1
            log.warning("simulate.agent_failed", error=repr(res))
    return tally
