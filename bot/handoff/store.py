"""Durable handoff state in the project's database.

Every state change is one conditional UPDATE (``WHERE status = … AND version = …``): of two
agents or two processes racing for the same ticket exactly one wins, on SQLite and on
PostgreSQL alike. Nothing lives only in memory, so a crash loses no ticket or assignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.handoff.records import (
    OPEN_STATUSES,
    WAITING_STATUSES,
    Agent,
    Presence,
    Ticket,
    TicketStatus,
    UserRole,
)
from bot.store.schema import AgentPresenceRow, ConversationRow, TicketRow, UserRow, utcnow


def ticket_of(r: TicketRow) -> Ticket:
    declined = (r.declined_by or {}).get("agents", [])
    return Ticket(
        id=r.id,
        conversation_id=r.conversation_id,
        channel=r.channel,
        status=TicketStatus(r.status),
        reason=r.reason,
        detail=r.detail,
        skill=r.skill,
        priority=r.priority,
        created_at=r.created_at,
        queued_at=r.queued_at,
        version=r.version,
        summary=r.summary,
        slots=r.slots,
        agent_id=r.agent_id,
        offered_to=r.offered_to,
        offer_expires_at=r.offer_expires_at,
        declined_by=tuple(int(a) for a in declined),
        callback_number=r.callback_number,
        callback_at=r.callback_at,
        disposition=r.disposition,
        offered_at=r.offered_at,
        answered_at=r.answered_at,
        resolved_at=r.resolved_at,
        abandoned_at=r.abandoned_at,
    )


def agent_of(r: UserRow) -> Agent:
    return Agent(
        id=r.id,
        username=r.username,
        display_name=r.display_name,
        role=UserRole(r.role),
        skills={str(k): int(v) for k, v in (r.skills or {}).items()},
        max_chats=r.max_chats,
        presence=Presence(r.presence),
        presence_since=r.presence_since,
        wrap_up_until=r.wrap_up_until,
    )


async def _log_presence(
    s: AsyncSession, user_ids: Sequence[int], presence: Presence, now: datetime
) -> None:
    """Close each user's open presence interval and open one for ``presence`` (the caller's
    transaction, so the log always agrees with ``users.presence``)."""
    await s.execute(
        update(AgentPresenceRow)
        .where(AgentPresenceRow.user_id.in_(user_ids), AgentPresenceRow.ended_at.is_(None))
        .values(ended_at=now)
    )
    s.add_all(
        AgentPresenceRow(user_id=uid, presence=presence.value, started_at=now) for uid in user_ids
    )


class SqlHandoffStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    # -- tickets -----------------------------------------------------------------------------
    async def open_ticket(
        self,
        conversation_id: str,
        *,
        channel: str,
        reason: str,
        detail: str | None,
        skill: str,
        priority: int,
        summary: str | None,
        slots: dict[str, Any] | None,
    ) -> tuple[Ticket, bool]:
        """Open a ticket for the conversation, or return its open one. (ticket, created).

        A partial unique index allows one open ticket per conversation, so two processes
        racing here end with one ticket."""
        existing = await self.open_for_conversation(conversation_id)
        if existing is not None:
            return existing, False
        now = utcnow()
        row = TicketRow(
            conversation_id=conversation_id,
            channel=channel,
            status=TicketStatus.QUEUED.value,
            reason=reason,
            detail=detail,
            skill=skill,
            priority=priority,
            summary=summary,
            slots=slots,
            version=0,
            created_at=now,
            queued_at=now,
        )
        try:
            async with self._sessions.begin() as s:
                s.add(row)
        except IntegrityError:
            winner = await self.open_for_conversation(conversation_id)
            if winner is None:
                raise
            return winner, False
        return ticket_of(row), True

    async def get(self, ticket_id: int) -> Ticket | None:
        async with self._sessions() as s:
            row = await s.get(TicketRow, ticket_id)
            return ticket_of(row) if row else None

    async def open_for_conversation(self, conversation_id: str) -> Ticket | None:
        async with self._sessions() as s:
            row = await s.scalar(
                select(TicketRow).where(
                    TicketRow.conversation_id == conversation_id,
                    TicketRow.status.in_(OPEN_STATUSES),
                )
            )
            return ticket_of(row) if row else None

    async def tickets(
        self, statuses: Sequence[TicketStatus], agent_id: int | None = None
    ) -> list[Ticket]:
        stmt = select(TicketRow).where(TicketRow.status.in_([s.value for s in statuses]))
        if agent_id is not None:
            stmt = stmt.where(or_(TicketRow.agent_id == agent_id, TicketRow.offered_to == agent_id))
        async with self._sessions() as s:
            rows = (await s.scalars(stmt.order_by(TicketRow.queued_at, TicketRow.id))).all()
        return [ticket_of(r) for r in rows]

    async def waiting(self) -> list[Ticket]:
        return await self.tickets(WAITING_STATUSES)

    async def loads(self) -> dict[int, tuple[int, int]]:
        """Per agent: (open tickets offered or assigned, of which voice)."""
        out: dict[int, tuple[int, int]] = {}
        async with self._sessions() as s:
            rows = (
                await s.execute(
                    select(TicketRow.agent_id, TicketRow.offered_to, TicketRow.channel).where(
                        TicketRow.status.in_(
                            [TicketStatus.ASSIGNED.value, TicketStatus.OFFERED.value]
                        )
                    )
                )
            ).all()
        for agent_id, offered_to, channel in rows:
            who = agent_id or offered_to
            if who is None:
                continue
            total, voice = out.get(who, (0, 0))
            out[who] = (total + 1, voice + (channel == "voice"))
        return out

    async def _transition(
        self,
        ticket: Ticket,
        expect: Sequence[TicketStatus],
        *,
        conversation_status: str | None = None,
        **values: Any,
    ) -> Ticket | None:
        """Apply ``values`` if the ticket is still in one of ``expect`` at its version; set the
        conversation's status (unless it is closed) in the same transaction."""
        async with self._sessions.begin() as s:
            res = await s.execute(
                update(TicketRow)
                .where(
                    TicketRow.id == ticket.id,
                    TicketRow.version == ticket.version,
                    TicketRow.status.in_([e.value for e in expect]),
                )
                .values(version=TicketRow.version + 1, **values)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                return None
            if conversation_status is not None:
                await s.execute(
                    update(ConversationRow)
                    .where(
                        ConversationRow.id == ticket.conversation_id,
                        ConversationRow.status != "closed",
                    )
                    .values(status=conversation_status, updated_at=utcnow())
                )
            row = await s.get(TicketRow, ticket.id, populate_existing=True)
            assert row is not None  # we just updated it in this transaction
            return ticket_of(row)

    async def offer(self, ticket: Ticket, agent_id: int, timeout_s: float) -> Ticket | None:
        now = utcnow()
        return await self._transition(
            ticket,
            [TicketStatus.QUEUED],
            status=TicketStatus.OFFERED.value,
            offered_to=agent_id,
            offered_at=now,
            offer_expires_at=now + timedelta(seconds=timeout_s),
        )

    async def accept(self, ticket_id: int, agent_id: int) -> Ticket | None:
        """The agent takes the ticket: it must be offered to them, or still queued (the service
        checks the agent's skill and room before allowing the latter)."""
        now = utcnow()
        async with self._sessions.begin() as s:
            res = await s.execute(
                update(TicketRow)
                .where(
                    TicketRow.id == ticket_id,
                    or_(
                        and_(
                            TicketRow.status == TicketStatus.OFFERED.value,
                            TicketRow.offered_to == agent_id,
                        ),
                        TicketRow.status == TicketStatus.QUEUED.value,
                    ),
                )
                .values(
                    status=TicketStatus.ASSIGNED.value,
                    agent_id=agent_id,
                    offered_to=None,
                    offer_expires_at=None,
                    answered_at=now,
                    version=TicketRow.version + 1,
                )
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = await s.get(TicketRow, ticket_id, populate_existing=True)
            assert row is not None
            await s.execute(
                update(ConversationRow)
                .where(
                    ConversationRow.id == row.conversation_id, ConversationRow.status != "closed"
                )
                .values(status="with_agent", updated_at=now)
            )
            return ticket_of(row)

    async def requeue(
        self, ticket: Ticket, *, declined_by: int | None, conversation_status: str | None = None
    ) -> Ticket | None:
        declined = list(ticket.declined_by)
        if declined_by is not None and declined_by not in declined:
            declined.append(declined_by)
        return await self._transition(
            ticket,
            [TicketStatus.OFFERED, TicketStatus.ASSIGNED],
            conversation_status=conversation_status,
            status=TicketStatus.QUEUED.value,
            offered_to=None,
            offer_expires_at=None,
            agent_id=None,
            declined_by={"agents": declined},
        )

    async def transfer(
        self,
        ticket: Ticket,
        *,
        skill: str | None,
        agent_id: int | None,
        by_agent: int | None,
        offer_timeout_s: float,
    ) -> Ticket | None:
        """Back to the queue for another skill, or offered directly to a named agent. The
        conversation waits for a person again (same transaction)."""
        values: dict[str, Any] = {
            "agent_id": None,
            "declined_by": {"agents": [by_agent] if by_agent is not None else []},
            "skill": skill or ticket.skill,
        }
        if agent_id is not None:
            now = utcnow()
            values.update(
                status=TicketStatus.OFFERED.value,
                offered_to=agent_id,
                offered_at=now,
                offer_expires_at=now + timedelta(seconds=offer_timeout_s),
            )
        else:
            values.update(status=TicketStatus.QUEUED.value, offered_to=None, offer_expires_at=None)
        return await self._transition(
            ticket,
            [TicketStatus.ASSIGNED, TicketStatus.OFFERED, TicketStatus.QUEUED],
            conversation_status="handoff_requested",
            **values,
        )

    async def resolve(
        self, ticket: Ticket, disposition: str, conversation_status: str
    ) -> Ticket | None:
        """Resolve the ticket as its owner saw it (same version, same agent)."""
        if ticket.status != TicketStatus.ASSIGNED:
            return None
        return await self._transition(
            ticket,
            [TicketStatus.ASSIGNED],
            conversation_status=conversation_status,
            status=TicketStatus.RESOLVED.value,
            disposition=disposition,
            resolved_at=utcnow(),
        )

    async def abandon(self, ticket: Ticket) -> Ticket | None:
        """The customer left while waiting (a scheduled callback is not abandoned)."""
        return await self._transition(
            ticket,
            [TicketStatus.QUEUED, TicketStatus.OFFERED],
            status=TicketStatus.ABANDONED.value,
            abandoned_at=utcnow(),
            offered_to=None,
        )

    async def transfer_out(self, ticket: Ticket) -> Ticket | None:
        """A waiting phone call left for another system (SIP REFER): resolved, no agent."""
        return await self._transition(
            ticket,
            [TicketStatus.QUEUED, TicketStatus.OFFERED],
            conversation_status="closed",
            status=TicketStatus.RESOLVED.value,
            disposition="transferred_out",
            resolved_at=utcnow(),
            offered_to=None,
            offer_expires_at=None,
        )

    async def schedule_callback(self, ticket: Ticket, number: str, at: datetime) -> Ticket | None:
        return await self._transition(
            ticket,
            [TicketStatus.QUEUED, TicketStatus.OFFERED],
            status=TicketStatus.CALLBACK.value,
            callback_number=number,
            callback_at=at,
            offered_to=None,
            offer_expires_at=None,
        )

    async def offered_to(self, agent_id: int) -> list[Ticket]:
        async with self._sessions() as s:
            rows = (
                await s.scalars(
                    select(TicketRow).where(
                        TicketRow.status == TicketStatus.OFFERED.value,
                        TicketRow.offered_to == agent_id,
                    )
                )
            ).all()
        return [ticket_of(r) for r in rows]

    async def expired_offers(self, now: datetime) -> list[Ticket]:
        async with self._sessions() as s:
            rows = (
                await s.scalars(
                    select(TicketRow).where(
                        TicketRow.status == TicketStatus.OFFERED.value,
                        TicketRow.offer_expires_at <= now,
                    )
                )
            ).all()
        return [ticket_of(r) for r in rows]

    async def due_callbacks(self, now: datetime) -> list[Ticket]:
        async with self._sessions() as s:
            rows = (
                await s.scalars(
                    select(TicketRow).where(
                        TicketRow.status == TicketStatus.CALLBACK.value,
                        TicketRow.callback_at <= now,
                    )
                )
            ).all()
        return [ticket_of(r) for r in rows]

    async def release_callback(self, ticket: Ticket) -> Ticket | None:
        """A due callback joins the queue with its priority, queued at its callback time."""
        return await self._transition(
            ticket,
            [TicketStatus.CALLBACK],
            status=TicketStatus.QUEUED.value,
            queued_at=ticket.callback_at or utcnow(),
        )

    async def average_handle_s(self, default_s: float, last: int = 200) -> float:
        async with self._sessions() as s:
            rows = (
                await s.execute(
                    select(TicketRow.answered_at, TicketRow.resolved_at)
                    .where(
                        TicketRow.status == TicketStatus.RESOLVED.value,
                        TicketRow.answered_at.is_not(None),
                    )
                    .order_by(TicketRow.resolved_at.desc())
                    .limit(last)
                )
            ).all()
        spans = [(r - a).total_seconds() for a, r in rows if a and r]
        return sum(spans) / len(spans) if spans else default_s

    async def conversations_missing_ticket(self) -> list[tuple[str, str]]:
        """(conversation id, channel) marked for handoff but without an open ticket."""
        open_ids = select(TicketRow.conversation_id).where(TicketRow.status.in_(OPEN_STATUSES))
        async with self._sessions() as s:
            rows = (
                await s.execute(
                    select(ConversationRow.id, ConversationRow.channel).where(
                        ConversationRow.status == "handoff_requested",
                        ConversationRow.id.not_in(open_ids),
                    )
                )
            ).all()
        return [(r[0], r[1]) for r in rows]

    # -- agents ------------------------------------------------------------------------------
    async def agents(self) -> list[Agent]:
        async with self._sessions() as s:
            rows = (
                await s.scalars(
                    select(UserRow).where(UserRow.disabled.is_(False)).order_by(UserRow.id)
                )
            ).all()
        return [agent_of(r) for r in rows]

    async def agent(self, agent_id: int) -> Agent | None:
        async with self._sessions() as s:
            row = await s.get(UserRow, agent_id)
            return agent_of(row) if row and not row.disabled else None

    async def set_presence(
        self, agent_id: int, presence: Presence, wrap_up_until: datetime | None = None
    ) -> None:
        now = utcnow()
        async with self._sessions.begin() as s:
            res = await s.execute(
                update(UserRow)
                .where(UserRow.id == agent_id)
                .values(presence=presence.value, presence_since=now, wrap_up_until=wrap_up_until)
            )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                await _log_presence(s, [agent_id], presence, now)

    async def end_wrap_ups(self, now: datetime) -> list[int]:
        async with self._sessions.begin() as s:
            ids = list(
                (
                    await s.scalars(
                        select(UserRow.id).where(
                            UserRow.presence == Presence.WRAP_UP.value, UserRow.wrap_up_until <= now
                        )
                    )
                ).all()
            )
            if ids:
                ended = await s.scalars(
                    update(UserRow)
                    .where(UserRow.id.in_(ids), UserRow.presence == Presence.WRAP_UP.value)
                    .values(
                        presence=Presence.AVAILABLE.value, presence_since=now, wrap_up_until=None
                    )
                    .returning(UserRow.id)
                )
                await _log_presence(s, list(ended.all()), Presence.AVAILABLE, now)
        return ids

    async def customer_history(self, conversation_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """Earlier conversations of the same customer (same phone or email), newest first."""
        async with self._sessions() as s:
            conv = await s.get(ConversationRow, conversation_id)
            if conv is None:
                return []
            keys = []
            if conv.customer_phone:
                keys.append(ConversationRow.customer_phone == conv.customer_phone)
            if conv.customer_email:
                keys.append(
                    func.lower(ConversationRow.customer_email) == conv.customer_email.lower()
                )
            if not keys:
                return []
            rows = (
                await s.scalars(
                    select(ConversationRow)
                    .where(or_(*keys), ConversationRow.id != conversation_id)
                    .order_by(ConversationRow.created_at.desc())
                    .limit(limit)
                )
            ).all()
        return [
            {
                "conversation_id": r.id,
                "channel": r.channel,
                "status": r.status,
                "created_at": r.created_at.isoformat(),
                "turns": r.turn_count,
            }
            for r in rows
        ]
