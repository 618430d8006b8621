"""The handoff service: opens tickets, routes them to agents, and carries the human part of
a conversation (agent messages, transfer, resolve, callback, abandonment).

The router runs as a background task: every ``router_interval_s`` and whenever something
changes it expires unanswered offers, ends wrap-up timers, releases due callbacks and offers
queued tickets to the best available agents. All state is in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from bot.config import HandoffSettings
from bot.events import ConversationStatus, HandoffRequested, Role, parse_handoff_reason
from bot.handoff import routing
from bot.handoff.records import (
    OPEN_STATUSES,
    WAITING_STATUSES,
    Agent,
    Presence,
    Ticket,
    TicketStatus,
)
from bot.handoff.store import SqlHandoffStore
from bot.handoff.summary import build_summary
from bot.hub import EventHub
from bot.store.conversations import SqlConversationStore
from bot.store.records import NewEvent, NewTurn, Turn
from bot.store.schema import utcnow

log = structlog.get_logger("bot.handoff")


class HandoffError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class QueueInfo:
    ticket_id: int
    status: str
    position: int | None
    estimated_wait_s: float | None
    callback_offered: bool
    agent: str | None = None
    transfer_to: str | None = None  # a phone call for this skill leaves for this SIP URI

    def as_data(self) -> dict[str, Any]:
        return asdict(self)


def turn_data(t: Turn) -> dict[str, Any]:
    """A stored turn as pushed to desks and channels (JSON-ready)."""
    return {
        "seq": t.seq,
        "role": t.role,
        "text": t.text,
        "payload": t.payload,
        "intent": t.intent,
        "intent_confidence": t.intent_confidence,
        "client_message_id": t.client_message_id,
        "created_at": t.created_at.isoformat(),
    }


def turn_event(conversation_id: str, t: Turn) -> dict[str, Any]:
    return {"type": "turn", "conversation_id": conversation_id, "turn": turn_data(t)}


def ticket_data(t: Ticket) -> dict[str, Any]:
    d = asdict(t)
    for k, v in d.items():
        if isinstance(v, datetime):
            d[k] = v.isoformat()
    d["declined_by"] = list(t.declined_by)
    return d


class HandoffService:
    def __init__(
        self,
        store: SqlHandoffStore,
        conversations: SqlConversationStore,
        hub: EventHub,
        settings: HandoffSettings,
        open_at: Callable[[datetime], bool | None] | None = None,
    ) -> None:
        self._open_at = open_at
        self.store = store
        self._conversations = conversations
        self._hub = hub
        self._settings = settings
        self._kick = asyncio.Event()
        self._desks: dict[int, int] = {}
        self.offer_latencies_ms: list[float] = []

    # -- opening and queue status --------------------------------------------------------
    async def request(
        self, conversation_id: str, handoff: HandoffRequested, slots: dict[str, Any] | None = None
    ) -> QueueInfo:
        conv = await self._conversations.get(conversation_id)
        if conv is None:
            raise HandoffError(404, "conversation_not_found", "conversation not found")
        skill = handoff.skill or self._settings.default_skill
        ticket, created = await self.store.open_ticket(
            conversation_id,
            channel=conv.channel,
            reason=handoff.reason.value,
            detail=handoff.detail,
            skill=skill,
            priority=(
                self._settings.default_priority if handoff.priority is None else handoff.priority
            ),
            summary=build_summary(conv, handoff.reason.value, handoff.detail, slots),
            slots=slots,
        )
        if created:
            log.info(
                "handoff.ticket.opened",
                ticket_id=ticket.id,
                conversation_id=conversation_id,
                skill=skill,
                reason=handoff.reason.value,
            )
            self._publish_overview_changed()
            self.kick()
        info = await self.queue_info(conversation_id)
        assert info is not None  # the ticket was just opened or found open
        return info

    async def queue_info(self, conversation_id: str) -> QueueInfo | None:
        ticket = await self.store.open_for_conversation(conversation_id)
        if ticket is None:
            return None
        if ticket.status == TicketStatus.ASSIGNED:
            agent = await self.store.agent(ticket.agent_id) if ticket.agent_id else None
            return QueueInfo(
                ticket.id, ticket.status, None, None, False, agent.display_name if agent else None
            )
        if ticket.status == TicketStatus.CALLBACK:
            return QueueInfo(ticket.id, ticket.status, None, None, False)
        est = await self._estimate(ticket)
        closed = self._open_at is not None and self._open_at(utcnow()) is False
        return QueueInfo(
            ticket.id,
            ticket.status,
            est.position,
            est.estimated_wait_s,
            closed or est.estimated_wait_s > self._settings.callback_offer_wait_s,
            transfer_to=self.transfer_target(ticket),
        )

    def transfer_target(self, ticket: Ticket) -> str | None:
        """Where a waiting phone call goes instead of the desk (per skill, configured)."""
        if ticket.channel != "voice" or ticket.status not in WAITING_STATUSES:
            return None
        return self._settings.transfer_to.get(ticket.skill)

    async def transferred_out(
        self, conversation_id: str, target: str, ok: bool, detail: str | None
    ) -> Ticket | None:
        """The media server's report on a transfer out. Success resolves the waiting ticket
        (``transferred_out``, no agent: neither answered nor abandoned in the KPIs) and
        closes the conversation; a failure is recorded and the ticket keeps its place."""
        t = await self.store.open_for_conversation(conversation_id)
        if not ok:
            await self._conversations.append(
                conversation_id,
                [],
                [NewEvent("transfer_failed", {"target": target, "detail": detail})],
            )
            log.warning("handoff.transfer_failed", conversation_id=conversation_id, target=target)
            return t
        done = await self.store.transfer_out(t) if t is not None else None
        turns = await self._conversations.append(
            conversation_id,
            [NewTurn(Role.SYSTEM, f"The call was transferred to {target}.")],
            [
                NewEvent(
                    "transferred_out",
                    {"target": target, "ticket_id": t.id if t is not None else None},
                )
            ],
        )
        self._publish_turns(conversation_id, turns)
        if t is not None and t.offered_to:
            self._hub.publish(f"agent:{t.offered_to}", {"type": "offer_revoked", "ticket_id": t.id})
        log.info("handoff.transferred_out", conversation_id=conversation_id, target=target)
        self._publish_overview_changed()
        return done

    async def _estimate(self, ticket: Ticket) -> routing.WaitEstimate:
        aht = await self.store.average_handle_s(self._settings.default_aht_s)
        return routing.estimate_wait(
            ticket,
            await self.store.waiting(),
            await self.store.agents(),
            await self.store.loads(),
            utcnow(),
            self._settings.ageing_s,
            aht,
        )

    # -- routing -----------------------------------------------------------------------------
    def kick(self) -> None:
        self._kick.set()

    async def route_once(self) -> int:
        now = utcnow()
        for t in await self.store.expired_offers(now):
            back = await self.store.requeue(t, declined_by=t.offered_to)
            if back is not None:
                log.info("handoff.offer.expired", ticket_id=t.id, agent_id=t.offered_to)
                self._hub.publish(
                    f"agent:{t.offered_to}", {"type": "offer_revoked", "ticket_id": t.id}
                )
        for agent_id in await self.store.end_wrap_ups(now):
            self._hub.publish(f"agent:{agent_id}", {"type": "presence", "presence": "available"})
        for t in await self.store.due_callbacks(now):
            await self.store.release_callback(t)
        queued = await self.store.tickets([TicketStatus.QUEUED])
        if not queued:
            return 0
        agents = await self.store.agents()
        plan = routing.plan_offers(
            queued, agents, await self.store.loads(), now, self._settings.ageing_s
        )
        made = 0
        for offer in plan:
            offered = await self.store.offer(
                offer.ticket, offer.agent.id, self._settings.offer_timeout_s
            )
            if offered is None:
                continue  # someone else changed it first
            made += 1
            latency = (utcnow() - offered.queued_at).total_seconds() * 1000
            self.offer_latencies_ms.append(latency)
            log.info(
                "handoff.offer",
                ticket_id=offered.id,
                agent_id=offer.agent.id,
                latency_ms=round(latency, 1),
            )
            self._hub.publish(
                f"agent:{offer.agent.id}", {"type": "offer", "ticket": ticket_data(offered)}
            )
        if made:
            self._publish_overview_changed()
        await self._publish_queue_updates()
        return made

    async def _publish_queue_updates(self) -> None:
        for t in await self.store.waiting():
            topic = f"conversation:{t.conversation_id}"
            if self._hub.subscribers(topic):
                info = await self.queue_info(t.conversation_id)
                if info:
                    self._hub.publish(topic, {"type": "queue", **info.as_data()})

    async def run_router(self) -> None:
        while True:
            started = time.perf_counter()
            try:
                await self.route_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handoff.router.failed")
            elapsed = time.perf_counter() - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._kick.wait(), max(0.05, self._settings.router_interval_s - elapsed)
                )
            self._kick.clear()

    async def reconcile(self) -> int:
        """Open tickets for conversations marked for handoff that have none (after a crash)."""
        n = 0
        for conv_id, _channel in await self.store.conversations_missing_ticket():
            conv = await self._conversations.get(conv_id)
            last = (
                next((e for e in reversed(conv.events) if e.type == "handoff_requested"), None)
                if conv
                else None
            )
            data = last.data if last and last.data else {}
            reason, _ = parse_handoff_reason(data.get("reason"))
            await self.request(
                conv_id, HandoffRequested(reason, data.get("skill"), data.get("detail"))
            )
            n += 1
        return n

    # -- the agent's side --------------------------------------------------------------------
    async def _own_ticket(self, agent: Agent, ticket_id: int) -> Ticket:
        t = await self.store.get(ticket_id)
        if t is None:
            raise HandoffError(404, "ticket_not_found", f"ticket {ticket_id} not found")
        if t.status != TicketStatus.ASSIGNED or t.agent_id != agent.id:
            raise HandoffError(409, "not_your_ticket", f"ticket {ticket_id} is not assigned to you")
        return t

    async def accept(self, agent: Agent, ticket_id: int) -> Ticket:
        current = await self.store.get(ticket_id)
        if current is not None and current.status == TicketStatus.QUEUED:
            # taking a waiting ticket unoffered: only with the skill and room for it
            loads = (await self.store.loads()).get(agent.id, (0, 0))
            if agent.skills.get(current.skill, 0) < 1 or not routing.has_room(
                agent, *loads, current.channel
            ):
                raise HandoffError(
                    409, "not_eligible", f"you lack the skill or room for ticket {ticket_id}"
                )
        t = await self.store.accept(ticket_id, agent.id)
        if t is None:
            raise HandoffError(
                409,
                "ticket_unavailable",
                f"ticket {ticket_id} was taken, withdrawn or not offered to you",
            )
        log.info("handoff.accepted", ticket_id=t.id, agent_id=agent.id)
        turns = await self._conversations.append(
            t.conversation_id,
            [
                NewTurn(
                    Role.SYSTEM,
                    f"{agent.display_name} joined the conversation.",
                    payload={"agent": agent.display_name},
                )
            ],
            [NewEvent("agent_joined", {"agent_id": agent.id, "ticket_id": t.id})],
        )
        self._publish_turns(t.conversation_id, turns)
        self._hub.publish(
            f"conversation:{t.conversation_id}",
            {"type": "agent_joined", "agent": agent.display_name},
        )
        self._publish_overview_changed()
        return t

    async def decline(self, agent: Agent, ticket_id: int) -> None:
        t = await self.store.get(ticket_id)
        if t is None or t.status != TicketStatus.OFFERED or t.offered_to != agent.id:
            raise HandoffError(409, "ticket_unavailable", "this ticket is not offered to you")
        await self.store.requeue(t, declined_by=agent.id)
        self.kick()

    async def agent_message(self, agent: Agent, ticket_id: int, text: str) -> Turn:
        t = await self._own_ticket(agent, ticket_id)
        [turn] = await self._conversations.append(
            t.conversation_id, [NewTurn(Role.AGENT, text, payload={"agent": agent.display_name})]
        )
        self._publish_turns(t.conversation_id, [turn])
        return turn

    async def transfer(
        self, agent: Agent, ticket_id: int, *, skill: str | None, to_agent: int | None
    ) -> Ticket:
        t = await self._own_ticket(agent, ticket_id)
        if to_agent is not None and await self.store.agent(to_agent) is None:
            raise HandoffError(422, "unknown_agent", f"no agent {to_agent}")
        moved = await self.store.transfer(
            t,
            skill=skill,
            agent_id=to_agent,
            by_agent=agent.id,
            offer_timeout_s=self._settings.offer_timeout_s,
        )
        if moved is None:
            raise HandoffError(409, "ticket_changed", "the ticket changed; reload it")
        await self._conversations.append(
            t.conversation_id,
            [],
            [
                NewEvent(
                    "transferred", {"from_agent": agent.id, "skill": skill, "to_agent": to_agent}
                )
            ],
        )
        if to_agent is not None:
            self._hub.publish(f"agent:{to_agent}", {"type": "offer", "ticket": ticket_data(moved)})
        self._publish_overview_changed()
        self.kick()
        return moved

    async def resolve(
        self, agent: Agent, ticket_id: int, disposition: str, hand_back: bool
    ) -> Ticket:
        t = await self._own_ticket(agent, ticket_id)
        status = ConversationStatus.ACTIVE if hand_back else ConversationStatus.CLOSED
        done = await self.store.resolve(t, disposition, status.value)
        if done is None:
            raise HandoffError(409, "ticket_changed", "the ticket changed; reload it")
        text = (
            "You're back with the virtual receptionist."
            if hand_back
            else "This conversation has been closed. Thank you!"
        )
        turns = await self._conversations.append(
            t.conversation_id,
            [NewTurn(Role.SYSTEM, text)],
            [
                NewEvent(
                    "resolved",
                    {"ticket_id": t.id, "disposition": disposition, "hand_back": hand_back},
                )
            ],
        )
        self._publish_turns(t.conversation_id, turns)
        if self._settings.wrap_up_s > 0:
            me = await self.store.agent(agent.id)
            if me is not None and me.presence == Presence.AVAILABLE:
                await self.store.set_presence(
                    agent.id,
                    Presence.WRAP_UP,
                    utcnow() + timedelta(seconds=self._settings.wrap_up_s),
                )
        self._publish_overview_changed()
        self.kick()
        return done

    async def set_presence(self, agent: Agent, presence: Presence) -> None:
        await self.store.set_presence(agent.id, presence)
        if presence != Presence.AVAILABLE:
            for t in await self.store.offered_to(agent.id):
                if await self.store.requeue(t, declined_by=None) is not None:
                    self._hub.publish(
                        f"agent:{agent.id}", {"type": "offer_revoked", "ticket_id": t.id}
                    )
        self._publish_overview_changed()
        self.kick()

    def desk_connected(self, agent: Agent) -> None:
        self._desks[agent.id] = self._desks.get(agent.id, 0) + 1

    async def desk_disconnected(self, agent: Agent) -> None:
        """The agent's last desk closed: nobody sees offers there, so they go offline."""
        left = self._desks.get(agent.id, 1) - 1
        if left > 0:
            self._desks[agent.id] = left
            return
        self._desks.pop(agent.id, None)
        current = await self.store.agent(agent.id)
        if current is not None and current.presence in (Presence.AVAILABLE, Presence.WRAP_UP):
            log.info("handoff.agent.gone", agent_id=agent.id)
            await self.set_presence(agent, Presence.OFFLINE)

    async def reassign(self, ticket_id: int, to_agent: int) -> Ticket:
        """Supervisor: move an open ticket to a named agent (offered to them). The router may
        move the ticket at the same moment; the supervisor's decision is retried and wins."""
        if await self.store.agent(to_agent) is None:
            raise HandoffError(422, "unknown_agent", f"no agent {to_agent}")
        for _ in range(5):
            t = await self.store.get(ticket_id)
            if t is None or t.status not in OPEN_STATUSES:
                raise HandoffError(404, "ticket_not_found", "no open ticket with this id")
            if t.status == TicketStatus.CALLBACK:
                raise HandoffError(
                    409, "callback_scheduled", "this ticket waits for its callback time"
                )
            previous = t.agent_id or t.offered_to
            moved = await self.store.transfer(
                t,
                skill=None,
                agent_id=to_agent,
                by_agent=None,
                offer_timeout_s=self._settings.offer_timeout_s,
            )
            if moved is not None:
                break
        else:
            raise HandoffError(409, "ticket_changed", "the ticket keeps changing; try again")
        if previous is not None and previous != to_agent:
            self._hub.publish(f"agent:{previous}", {"type": "offer_revoked", "ticket_id": t.id})
        self._hub.publish(f"agent:{to_agent}", {"type": "offer", "ticket": ticket_data(moved)})
        self._publish_overview_changed()
        return moved

    # -- the customer's side -----------------------------------------------------------------
    async def schedule_callback_request(
        self, conversation_id: str, number: str, at: datetime, skill: str | None
    ) -> Ticket:
        """The customer asked the bot for a callback: a task that joins the queue at ``at``."""
        conv = await self._conversations.get(conversation_id)
        if conv is None:
            raise HandoffError(404, "conversation_not_found", "conversation not found")
        ticket, _ = await self.store.open_ticket(
            conversation_id,
            channel=conv.channel,
            reason="callback_request",
            detail=None,
            skill=skill or self._settings.default_skill,
            priority=self._settings.default_priority,
            summary=build_summary(conv, "callback_request", None, {"callback": number}),
            slots={"callback_number": number},
        )
        if ticket.status == TicketStatus.CALLBACK:
            return ticket
        done = await self.store.schedule_callback(ticket, number, at)
        if done is None:
            raise HandoffError(409, "ticket_changed", "the conversation's ticket is busy")
        await self._conversations.append(
            conversation_id,
            [],
            [
                NewEvent(
                    "callback_requested",
                    {"ticket_id": done.id, "number": number, "at": at.isoformat()},
                )
            ],
        )
        self._publish_overview_changed()
        return done

    async def abandon(self, conversation_id: str) -> Ticket | None:
        t = await self.store.open_for_conversation(conversation_id)
        if t is None or t.status == TicketStatus.CALLBACK:
            return None  # a scheduled callback stands when the customer hangs up
        if t.status == TicketStatus.ASSIGNED:
            ended = await self.store.resolve(t, "customer_left", ConversationStatus.CLOSED.value)
            if ended is not None:
                turns = await self._conversations.append(
                    conversation_id,
                    [NewTurn(Role.SYSTEM, "The customer left the conversation.")],
                    [NewEvent("resolved", {"ticket_id": t.id, "disposition": "customer_left"})],
                )
                self._publish_turns(conversation_id, turns)
                self._hub.publish(
                    f"agent:{t.agent_id}", {"type": "offer_revoked", "ticket_id": t.id}
                )
                self._publish_overview_changed()
            return ended
        done = await self.store.abandon(t)
        if done is not None:
            waited = ((done.abandoned_at or utcnow()) - t.queued_at).total_seconds()
            await self._conversations.append(
                conversation_id,
                [],
                [NewEvent("abandoned", {"ticket_id": t.id, "wait_s": round(waited, 1)})],
            )
            log.info("handoff.abandoned", ticket_id=t.id, wait_s=round(waited, 1))
            if t.offered_to:
                self._hub.publish(
                    f"agent:{t.offered_to}", {"type": "offer_revoked", "ticket_id": t.id}
                )
            self._publish_overview_changed()
        return done

    async def request_callback(
        self, conversation_id: str, number: str, at: datetime | None
    ) -> Ticket:
        t = await self.store.open_for_conversation(conversation_id)
        if t is None or t.status not in WAITING_STATUSES:
            raise HandoffError(409, "not_waiting", "this conversation is not waiting in queue")
        done = await self.store.schedule_callback(t, number, at or utcnow())
        if done is None:
            raise HandoffError(409, "ticket_changed", "the ticket changed; try again")
        await self._conversations.append(
            conversation_id,
            [],
            [
                NewEvent(
                    "callback_requested",
                    {"ticket_id": t.id, "number": number, "at": (at or utcnow()).isoformat()},
                )
            ],
        )
        if t.offered_to:
            self._hub.publish(f"agent:{t.offered_to}", {"type": "offer_revoked", "ticket_id": t.id})
        self._publish_overview_changed()
        return done

    # -- views -------------------------------------------------------------------------------
    async def overview(self) -> dict[str, Any]:
        now = utcnow()
        waiting = await self.store.waiting()
        agents = await self.store.agents()
        loads = await self.store.loads()
        queues: dict[str, dict[str, Any]] = {}
        for t in waiting:
            q = queues.setdefault(t.skill, {"skill": t.skill, "waiting": 0, "longest_wait_s": 0})
            q["waiting"] += 1
            q["longest_wait_s"] = max(
                q["longest_wait_s"], round((now - t.queued_at).total_seconds(), 1)
            )
        by_state: dict[str, int] = {}
        for a in agents:
            by_state[a.presence.value] = by_state.get(a.presence.value, 0) + 1
        assigned = await self.store.tickets([TicketStatus.ASSIGNED])
        return {
            "queues": sorted(queues.values(), key=lambda q: q["skill"]),
            "agents": [
                {
                    "id": a.id,
                    "name": a.display_name,
                    "role": a.role.value,
                    "presence": a.presence.value,
                    "skills": a.skills,
                    "open": loads.get(a.id, (0, 0))[0],
                }
                for a in agents
            ],
            "agents_by_state": by_state,
            "waiting": [ticket_data(t) for t in waiting],
            "active": [ticket_data(t) for t in assigned],
        }

    def _publish_turns(self, conversation_id: str, turns: list[Turn]) -> None:
        for t in turns:
            self.publish_turn(conversation_id, t)

    def publish_turn(self, conversation_id: str, turn: Turn) -> None:
        event = turn_event(conversation_id, turn)
        self._hub.publish(f"conversation:{conversation_id}", event)
        self._hub.publish("desk:conversations", event)

    def _publish_overview_changed(self) -> None:
        self._hub.publish("supervisors", {"type": "overview_changed"})
