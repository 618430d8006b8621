"""The durable queue under concurrency, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.desk.users import UserStore
from bot.handoff.records import Agent, TicketStatus, UserRole
from bot.handoff.store import SqlHandoffStore
from bot.store import SqlConversationStore, create_engine, migrate
from bot.store.records import Customer
from tests.procs import Postgres


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    else:
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.url
    eng = create_engine(url)
    await migrate(eng)
    try:
        yield eng
    finally:
        await eng.dispose()


async def _agents(engine: AsyncEngine, n: int, tag: str) -> list[Agent]:
    users = UserStore(engine)
    return [
        await users.add(
            f"{tag}-agent{i}",
            "a-long-password",
            role=UserRole.AGENT,
            display_name=f"Agent {i}",
            skills={"general": 1},
            max_chats=20,
        )
        for i in range(n)
    ]


async def _tickets(engine: AsyncEngine, n: int) -> list[int]:
    convs = SqlConversationStore(engine)
    q = SqlHandoffStore(engine)
    ids = []
    for _ in range(n):
        c = await convs.create("webchat", "handoff_requested", Customer(), None)
        t, created = await q.open_ticket(
            c.id,
            channel="webchat",
            reason="user_request",
            detail=None,
            skill="general",
            priority=1,
            summary=None,
            slots=None,
        )
        assert created
        ids.append(t.id)
    return ids


async def test_twenty_tickets_five_agents_each_assigned_once(engine: AsyncEngine) -> None:
    tag = f"c{random.randrange(10**9)}"
    agents = await _agents(engine, 5, tag)
    ticket_ids = await _tickets(engine, 20)
    q = SqlHandoffStore(engine)

    async def grab(agent: Agent) -> list[int]:
        order = ticket_ids[:]
        random.shuffle(order)
        won = []
        for tid in order:
            if await q.accept(tid, agent.id) is not None:
                won.append(tid)
        return won

    results = await asyncio.gather(*(grab(a) for a in agents))
    won = [tid for r in results for tid in r]
    assert sorted(won) == sorted(ticket_ids)  # every ticket won exactly once
    for agent, mine in zip(agents, results, strict=True):
        for tid in mine:
            t = await q.get(tid)
            assert t is not None and t.status == TicketStatus.ASSIGNED and t.agent_id == agent.id


async def test_one_open_ticket_per_conversation(engine: AsyncEngine) -> None:
    convs = SqlConversationStore(engine)
    q = SqlHandoffStore(engine)
    c = await convs.create("api", "handoff_requested", Customer(), None)
    kw = dict(
        channel="api",
        reason="user_request",
        detail=None,
        skill="general",
        priority=1,
        summary=None,
        slots=None,
    )
    first, created = await q.open_ticket(c.id, **kw)  # type: ignore[arg-type]
    again, created_again = await q.open_ticket(c.id, **kw)  # type: ignore[arg-type]
    assert created and not created_again and first.id == again.id


async def test_offer_only_from_queue_and_accept_only_by_offeree(engine: AsyncEngine) -> None:
    a, b = await _agents(engine, 2, f"o{random.randrange(10**9)}")
    [tid] = await _tickets(engine, 1)
    q = SqlHandoffStore(engine)
    t = await q.get(tid)
    assert t is not None
    offered = await q.offer(t, a.id, 30)
    assert offered is not None and offered.status == TicketStatus.OFFERED
    assert await q.offer(t, b.id, 30) is None  # stale version: no double offer
    assert await q.accept(tid, b.id) is None  # offered to a, not b
    assert await q.accept(tid, a.id) is not None
    assert await q.accept(tid, a.id) is None  # already assigned


async def test_racing_openers_get_one_ticket(engine: AsyncEngine) -> None:
    convs = SqlConversationStore(engine)
    q = SqlHandoffStore(engine)
    c = await convs.create("api", "handoff_requested", Customer(), None)
    results = await asyncio.gather(
        *(
            q.open_ticket(
                c.id,
                channel="api",
                reason="user_request",
                detail=None,
                skill="general",
                priority=1,
                summary=None,
                slots=None,
            )
            for _ in range(8)
        )
    )
    assert len({t.id for t, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_stale_resolve_cannot_close_someone_elses_chat(engine: AsyncEngine) -> None:
    a, b = await _agents(engine, 2, f"r{random.randrange(10**9)}")
    [tid] = await _tickets(engine, 1)
    q = SqlHandoffStore(engine)
    mine = await q.accept(tid, a.id)
    assert mine is not None
    moved = await q.transfer(mine, skill=None, agent_id=b.id, by_agent=None, offer_timeout_s=30)
    assert moved is not None
    assert await q.accept(tid, b.id) is not None
    assert await q.resolve(mine, "done", "closed") is None  # a's stale view
    t = await q.get(tid)
    assert t is not None and t.status == TicketStatus.ASSIGNED and t.agent_id == b.id


async def test_customer_leaving_keeps_a_scheduled_callback(engine: AsyncEngine) -> None:
    from datetime import UTC, datetime, timedelta

    [tid] = await _tickets(engine, 1)
    q = SqlHandoffStore(engine)
    t = await q.get(tid)
    assert t is not None
    cb = await q.schedule_callback(t, "+44 1", datetime.now(UTC) + timedelta(hours=1))
    assert cb is not None
    assert await q.abandon(cb) is None
    after = await q.get(tid)
    assert after is not None and after.status == TicketStatus.CALLBACK
