"""Routing decisions (ACD), as pure functions over tickets and agents.

- Order: *effective priority* first, then FIFO. A ticket's effective priority is its priority
  class plus one class for every ``ageing_s`` seconds it has waited, so low priority work is
  never starved.
- Eligibility: the agent is ``available``, has the ticket's skill (level >= 1) and a free
  slot (open chats < ``max_chats``; a voice call needs an agent with no open work and then
  fills every slot). Agents who declined or missed the ticket are asked again only when no
  one else can take it.
- Choice: highest skill level, then fewest open tickets, then longest in their presence state.
- Estimated wait: zero while the ticket's place in line is within the free capacity of
  available agents with the skill; beyond that, (place - free slots) x average handle time /
  agents staffed on the skill (available, busy or in wrap-up), at least one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.handoff.records import Agent, Presence, Ticket

VOICE = "voice"


def effective_priority(t: Ticket, now: datetime, ageing_s: float) -> int:
    waited = max(0.0, (now - t.queued_at).total_seconds())
    return t.priority + (int(waited // ageing_s) if ageing_s > 0 else 0)


def queue_order(tickets: Iterable[Ticket], now: datetime, ageing_s: float) -> list[Ticket]:
    return sorted(tickets, key=lambda t: (-effective_priority(t, now, ageing_s), t.queued_at, t.id))


def has_room(agent: Agent, load: int, voice_load: int, channel: str) -> bool:
    if voice_load:
        return False
    if channel == VOICE:
        return load == 0
    return load < agent.max_chats


def choose_agent(
    ticket: Ticket, agents: Sequence[Agent], loads: Mapping[int, tuple[int, int]]
) -> Agent | None:
    """The best available agent for this ticket, or ``None``. ``loads``: id -> (all, voice).

    Agents who declined or missed this ticket come last: they get it again only when nobody
    else can take it, so a ticket is never stranded."""
    able = [
        a
        for a in agents
        if a.presence == Presence.AVAILABLE
        and a.skills.get(ticket.skill, 0) >= 1
        and has_room(a, *loads.get(a.id, (0, 0)), ticket.channel)
    ]
    candidates = [a for a in able if a.id not in ticket.declined_by] or able
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda a: (
            -a.skills.get(ticket.skill, 0),
            loads.get(a.id, (0, 0))[0],
            a.presence_since,
            a.id,
        ),
    )


@dataclass(frozen=True, slots=True)
class Offer:
    ticket: Ticket
    agent: Agent


def plan_offers(
    queued: Iterable[Ticket],
    agents: Sequence[Agent],
    loads: Mapping[int, tuple[int, int]],
    now: datetime,
    ageing_s: float,
) -> list[Offer]:
    """Offers for as many queued tickets as agents allow, in queue order."""
    loads = dict(loads)
    offers = []
    for t in queue_order(queued, now, ageing_s):
        agent = choose_agent(t, agents, loads)
        if agent is None:
            continue
        offers.append(Offer(t, agent))
        total, voice = loads.get(agent.id, (0, 0))
        loads[agent.id] = (total + 1, voice + (t.channel == VOICE))
    return offers


@dataclass(frozen=True, slots=True)
class WaitEstimate:
    position: int  # 1 = next in line
    estimated_wait_s: float
    agents_staffed: int


def estimate_wait(
    ticket: Ticket,
    waiting: Iterable[Ticket],
    agents: Sequence[Agent],
    loads: Mapping[int, tuple[int, int]],
    now: datetime,
    ageing_s: float,
    aht_s: float,
) -> WaitEstimate:
    same_skill = [t for t in waiting if t.skill == ticket.skill]
    ordered = queue_order(same_skill, now, ageing_s)
    ids = [t.id for t in ordered]
    position = ids.index(ticket.id) + 1 if ticket.id in ids else len(ids) + 1
    staffed = sum(
        1
        for a in agents
        if a.skills.get(ticket.skill, 0) >= 1
        and a.presence in (Presence.AVAILABLE, Presence.BUSY, Presence.WRAP_UP)
    )
    free = sum(
        (1 if ticket.channel == VOICE else a.max_chats - loads.get(a.id, (0, 0))[0])
        for a in agents
        if a.presence == Presence.AVAILABLE
        and a.skills.get(ticket.skill, 0) >= 1
        and has_room(a, *loads.get(a.id, (0, 0)), ticket.channel)
    )
    wait = max(0, position - free) * aht_s / max(1, staffed)
    return WaitEstimate(position, round(wait, 1), staffed)
