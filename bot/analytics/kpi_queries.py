"""Loading the facts KPIs are computed from: one query per kind, aggregated in SQL where that
is plain (counts and sums per intent), plain rows where the logic reads better in Python
(waits, intervals). Every query is bounded by the period and uses an index.

Scopes (see :class:`bot.analytics.scope.KpiFilters`):

- conversation scope: conversations that *started* in the period (channel, intent filters);
- ticket scope: tickets *created* in the period (channel, skill, agent, intent filters);
- agent time: presence intervals and handled tickets *overlapping* the period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.analytics.scope import KpiFilters, Period
from bot.handoff.records import TicketStatus
from bot.store.schema import (
    AgentPresenceRow,
    BookingRow,
    ConversationRow,
    TicketRow,
    TurnRow,
    UserRow,
)

FALLBACK_INTENT = "nlu_fallback"
USER = "user"


@dataclass(frozen=True, slots=True)
class ConversationFact:
    id: str
    channel: str
    created_at: datetime
    has_user_message: bool
    has_ticket: bool  # any ticket at all
    handed_off: bool  # a ticket of the skill filter (any ticket without one)


@dataclass(frozen=True, slots=True)
class IntentStats:
    """Customer messages of one intent (``None``: no NLU result) in scope."""

    intent: str | None
    messages: int
    conversations: int
    confidence_sum: float
    confidence_n: int
    asr_sum: float
    asr_n: int


@dataclass(frozen=True, slots=True)
class TicketFact:
    id: int
    conversation_id: str
    channel: str
    skill: str
    reason: str
    status: str
    agent_id: int | None
    created_at: datetime
    queued_at: datetime
    answered_at: datetime | None
    resolved_at: datetime | None
    abandoned_at: datetime | None
    callback_at: datetime | None


@dataclass(frozen=True, slots=True)
class PresenceInterval:
    user_id: int
    presence: str
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class HandledInterval:
    agent_id: int
    answered_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class AgentInfo:
    id: int
    name: str
    skills: dict[str, int]


def _has_intent(conversation_id: Any, intent: str) -> ColumnElement[bool]:
    return exists().where(
        TurnRow.conversation_id == conversation_id,
        TurnRow.role == USER,
        TurnRow.intent == intent,
    )


def conversation_scope(period: Period, filters: KpiFilters) -> Select[Any]:
    """Ids of the conversations in scope (started in the period, channel and intent)."""
    stmt = select(ConversationRow.id).where(
        ConversationRow.created_at >= period.start, ConversationRow.created_at < period.end
    )
    if filters.channel is not None:
        stmt = stmt.where(ConversationRow.channel == filters.channel)
    if filters.intent is not None:
        stmt = stmt.where(_has_intent(ConversationRow.id, filters.intent))
    return stmt


def _ticket_conditions(filters: KpiFilters) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if filters.skill is not None:
        conds.append(TicketRow.skill == filters.skill)
    return conds


async def conversation_facts(
    conn: AsyncConnection, period: Period, filters: KpiFilters
) -> list[ConversationFact]:
    any_ticket = exists().where(TicketRow.conversation_id == ConversationRow.id)
    skill_ticket = exists().where(
        TicketRow.conversation_id == ConversationRow.id, *_ticket_conditions(filters)
    )
    user_message = exists().where(
        TurnRow.conversation_id == ConversationRow.id, TurnRow.role == USER
    )
    stmt = select(
        ConversationRow.id,
        ConversationRow.channel,
        ConversationRow.created_at,
        user_message.label("has_user_message"),
        any_ticket.label("has_ticket"),
        skill_ticket.label("handed_off"),
    ).where(ConversationRow.id.in_(conversation_scope(period, filters)))
    rows = (await conn.execute(stmt)).all()
    return [ConversationFact(r[0], r[1], r[2], bool(r[3]), bool(r[4]), bool(r[5])) for r in rows]


async def intent_stats(
    conn: AsyncConnection, period: Period, filters: KpiFilters
) -> list[IntentStats]:
    stmt = (
        select(
            TurnRow.intent,
            func.count(),
            func.count(func.distinct(TurnRow.conversation_id)),
            func.coalesce(func.sum(TurnRow.intent_confidence), 0.0),
            func.count(TurnRow.intent_confidence),
            func.coalesce(func.sum(TurnRow.asr_confidence), 0.0),
            func.count(TurnRow.asr_confidence),
        )
        .where(
            TurnRow.role == USER,
            TurnRow.conversation_id.in_(conversation_scope(period, filters)),
        )
        .group_by(TurnRow.intent)
    )
    rows = (await conn.execute(stmt)).all()
    return [
        IntentStats(
            r[0], int(r[1]), int(r[2]), float(r[3] or 0), int(r[4]), float(r[5] or 0), int(r[6])
        )
        for r in rows
    ]


async def failing_intents(
    conn: AsyncConnection, period: Period, filters: KpiFilters
) -> dict[str, str | None]:
    """Per handed-off conversation in scope: the last recognised intent (not the fallback) of a
    customer message at or before its first ticket (of the skill filter), or ``None``."""
    first_ticket = (
        select(TicketRow.conversation_id, func.min(TicketRow.created_at).label("first_at"))
        .where(
            TicketRow.conversation_id.in_(conversation_scope(period, filters)),
            *_ticket_conditions(filters),
        )
        .group_by(TicketRow.conversation_id)
        .subquery()
    )
    firsts = {r[0]: r[1] for r in (await conn.execute(select(first_ticket))).all()}
    if not firsts:
        return {}
    stmt = (
        select(TurnRow.conversation_id, TurnRow.intent, TurnRow.created_at)
        .join(first_ticket, first_ticket.c.conversation_id == TurnRow.conversation_id)
        .where(
            TurnRow.role == USER,
            TurnRow.intent.is_not(None),
            TurnRow.intent != FALLBACK_INTENT,
            TurnRow.created_at <= first_ticket.c.first_at,
        )
        .order_by(TurnRow.conversation_id, TurnRow.seq)
    )
    out: dict[str, str | None] = dict.fromkeys(firsts)
    for conv_id, intent, _at in (await conn.execute(stmt)).all():
        out[conv_id] = intent  # ordered by seq: the last one stays
    return out


async def bookings_made(conn: AsyncConnection, period: Period, filters: KpiFilters) -> int:
    stmt = select(func.count()).where(
        BookingRow.conversation_id.in_(conversation_scope(period, filters))
    )
    return int((await conn.execute(stmt)).scalar_one())


async def ticket_facts(
    conn: AsyncConnection, period: Period, filters: KpiFilters
) -> list[TicketFact]:
    stmt = select(
        TicketRow.id,
        TicketRow.conversation_id,
        TicketRow.channel,
        TicketRow.skill,
        TicketRow.reason,
        TicketRow.status,
        TicketRow.agent_id,
        TicketRow.created_at,
        TicketRow.queued_at,
        TicketRow.answered_at,
        TicketRow.resolved_at,
        TicketRow.abandoned_at,
        TicketRow.callback_at,
    ).where(
        TicketRow.created_at >= period.start,
        TicketRow.created_at < period.end,
        *_ticket_conditions(filters),
    )
    if filters.channel is not None:
        stmt = stmt.where(TicketRow.channel == filters.channel)
    if filters.agent_id is not None:
        stmt = stmt.where(TicketRow.agent_id == filters.agent_id)
    if filters.intent is not None:
        stmt = stmt.where(_has_intent(TicketRow.conversation_id, filters.intent))
    rows = (await conn.execute(stmt.order_by(TicketRow.id))).all()
    return [
        TicketFact(
            id=r.id,
            conversation_id=r.conversation_id,
            channel=r.channel,
            skill=r.skill,
            reason=r.reason,
            status=r.status,
            agent_id=r.agent_id,
            created_at=r.created_at,
            queued_at=r.queued_at,
            answered_at=r.answered_at,
            resolved_at=r.resolved_at,
            abandoned_at=r.abandoned_at,
            callback_at=r.callback_at,
        )
        for r in rows
    ]


async def agents(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, AgentInfo]:
    if not ids:
        return {}
    rows = (
        await conn.execute(
            select(UserRow.id, UserRow.display_name, UserRow.skills).where(UserRow.id.in_(ids))
        )
    ).all()
    return {
        r[0]: AgentInfo(r[0], r[1], {str(k): int(v) for k, v in (r[2] or {}).items()}) for r in rows
    }


async def presence_intervals(
    conn: AsyncConnection, period: Period, agent_id: int | None
) -> list[PresenceInterval]:
    stmt = select(
        AgentPresenceRow.user_id,
        AgentPresenceRow.presence,
        AgentPresenceRow.started_at,
        AgentPresenceRow.ended_at,
    ).where(
        AgentPresenceRow.started_at < period.end,
        or_(AgentPresenceRow.ended_at.is_(None), AgentPresenceRow.ended_at > period.start),
    )
    if agent_id is not None:
        stmt = stmt.where(AgentPresenceRow.user_id == agent_id)
    rows = (await conn.execute(stmt.order_by(AgentPresenceRow.id))).all()
    return [PresenceInterval(*r) for r in rows]


async def handled_intervals(
    conn: AsyncConnection, period: Period, agent_id: int | None
) -> list[HandledInterval]:
    """Tickets an agent owned (answered, not since requeued) during part of the period."""
    stmt = select(TicketRow.agent_id, TicketRow.answered_at, TicketRow.resolved_at).where(
        TicketRow.agent_id.is_not(None),
        TicketRow.status.in_([TicketStatus.ASSIGNED.value, TicketStatus.RESOLVED.value]),
        TicketRow.answered_at.is_not(None),
        TicketRow.answered_at < period.end,
        or_(TicketRow.resolved_at.is_(None), TicketRow.resolved_at > period.start),
    )
    if agent_id is not None:
        stmt = stmt.where(TicketRow.agent_id == agent_id)
    rows = (await conn.execute(stmt)).all()
    return [
        HandledInterval(agent, answered, resolved)
        for agent, answered, resolved in rows
        if agent is not None and answered is not None  # both filtered in SQL
    ]
