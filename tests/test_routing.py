"""ACD routing rules on hand-built tickets and agents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.handoff.records import Agent, Presence, Ticket, TicketStatus, UserRole
from bot.handoff.routing import choose_agent, estimate_wait, plan_offers, queue_order

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def ticket(
    id: int,
    *,
    skill: str = "general",
    priority: int = 1,
    waited_s: float = 0,
    channel: str = "webchat",
    declined: tuple[int, ...] = (),
) -> Ticket:
    at = NOW - timedelta(seconds=waited_s)
    return Ticket(
        id=id,
        conversation_id=f"{id:032x}",
        channel=channel,
        status=TicketStatus.QUEUED,
        reason="user_request",
        detail=None,
        skill=skill,
        priority=priority,
        created_at=at,
        queued_at=at,
        version=0,
        declined_by=declined,
    )


def agent(
    id: int,
    skills: dict[str, int],
    *,
    max_chats: int = 3,
    presence: Presence = Presence.AVAILABLE,
    idle_s: float = 0,
) -> Agent:
    return Agent(
        id=id,
        username=f"a{id}",
        display_name=f"A{id}",
        role=UserRole.AGENT,
        skills=skills,
        max_chats=max_chats,
        presence=presence,
        presence_since=NOW - timedelta(seconds=idle_s),
    )


def test_priority_then_fifo() -> None:
    ts = [ticket(1, waited_s=50), ticket(2, priority=3, waited_s=10), ticket(3, waited_s=90)]
    assert [t.id for t in queue_order(ts, NOW, ageing_s=1000)] == [2, 3, 1]


def test_ageing_lifts_low_priority() -> None:
    low_old = ticket(1, priority=0, waited_s=400)  # 0 + 400//120 = 3 classes
    high_new = ticket(2, priority=2, waited_s=5)
    assert [t.id for t in queue_order([high_new, low_old], NOW, ageing_s=120)] == [1, 2]
    assert [t.id for t in queue_order([high_new, low_old], NOW, ageing_s=10_000)] == [2, 1]


def test_agent_choice_by_skill_level_then_load_then_idle() -> None:
    t = ticket(1, skill="billing")
    a1, a2, a3 = agent(1, {"billing": 1}), agent(2, {"billing": 3}), agent(3, {"sales": 5})
    assert choose_agent(t, [a1, a2, a3], {}) == a2
    b1, b2 = agent(4, {"billing": 2}, idle_s=10), agent(5, {"billing": 2}, idle_s=100)
    assert choose_agent(t, [b1, b2], {}) == b2  # longest idle
    assert choose_agent(t, [b1, b2], {5: (2, 0)}) == b1  # fewer open tickets wins first


def test_ineligible_agents() -> None:
    t = ticket(1, declined=(2,))
    away = agent(1, {"general": 1}, presence=Presence.AWAY)
    declined = agent(2, {"general": 1})
    full = agent(3, {"general": 1}, max_chats=2)
    on_call = agent(4, {"general": 1})
    loads = {3: (2, 0), 4: (1, 1)}
    assert choose_agent(t, [away, full, on_call], loads) is None
    # the decliner is the only one able: asked again rather than leaving the ticket stranded
    assert choose_agent(t, [away, declined, full, on_call], loads) == declined


def test_voice_needs_an_idle_agent() -> None:
    call = ticket(1, channel="voice")
    busy_chatting = agent(1, {"general": 1})
    assert choose_agent(call, [busy_chatting], {1: (1, 0)}) is None
    assert choose_agent(call, [busy_chatting], {}) == busy_chatting


def test_plan_respects_capacity_and_order() -> None:
    ts = [ticket(i, waited_s=100 - i) for i in range(1, 6)]
    agents = [agent(1, {"general": 1}, max_chats=2), agent(2, {"general": 1}, max_chats=1)]
    plan = plan_offers(ts, agents, {}, NOW, ageing_s=120)
    assert [o.ticket.id for o in plan] == [1, 2, 3]
    assert sorted(o.agent.id for o in plan) == [1, 1, 2]


def test_wait_estimate() -> None:
    ts = [ticket(i, waited_s=100 - i) for i in range(1, 5)]
    agents = [
        agent(1, {"general": 1}, max_chats=1, presence=Presence.BUSY),
        agent(2, {"general": 1}, max_chats=1, presence=Presence.BUSY),
    ]
    est = estimate_wait(ts[2], ts, agents, {}, NOW, ageing_s=1000, aht_s=240)
    assert (est.position, est.agents_staffed, est.estimated_wait_s) == (3, 2, 360.0)
    free = [agent(3, {"general": 1}, max_chats=3)]
    assert estimate_wait(ts[2], ts, free, {}, NOW, 1000, 240).estimated_wait_s == 0
    nobody = estimate_wait(ts[0], ts, [], {}, NOW, 1000, 240)
    assert (nobody.position, nobody.estimated_wait_s) == (1, 240.0)


def test_decliner_gets_the_ticket_when_nobody_else_can() -> None:
    t = ticket(1, declined=(1,))
    only = agent(1, {"general": 1})
    other = agent(2, {"general": 1})
    assert choose_agent(t, [only, other], {}) == other
    assert choose_agent(t, [only], {}) == only  # never stranded
