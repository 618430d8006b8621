"""The review inbox's raw material: user turns the bot did not understand (``nlu_fallback``),
was unsure about (confidence below ``analytics.low_confidence``), or that came last before a
handoff ticket was opened. Turns a designer has decided about are left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.schema import ConversationRow, ReviewDecisionRow, TicketRow, TurnRow

FALLBACK_INTENT = "nlu_fallback"
# How many of the bot-handled user turns before a ticket count as "preceded a handoff".
HANDOFF_CONTEXT_TURNS = 2
MAX_TURNS = 20_000


class Reason:
    FALLBACK = "fallback"
    LOW_CONFIDENCE = "low_confidence"
    HANDOFF = "handoff"


@dataclass
class Candidate:
    """One user turn for review, and why it is there."""

    turn_id: int
    conversation_id: str
    channel: str
    text: str
    intent: str | None
    confidence: float | None
    created_at: datetime
    reasons: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "turn_id": self.turn_id,
            "conversation_id": self.conversation_id,
            "channel": self.channel,
            "text": self.text,
            "intent": self.intent,
            "confidence": self.confidence,
            "created_at": self.created_at.isoformat(),
            "reasons": self.reasons,
        }


def _undecided() -> Any:
    return ~select(ReviewDecisionRow.id).where(ReviewDecisionRow.turn_id == TurnRow.id).exists()


async def collect(
    engine: AsyncEngine,
    start: datetime,
    end: datetime,
    low_confidence: float,
    *,
    limit: int = MAX_TURNS,
) -> list[Candidate]:
    """Undecided candidate user turns of ``[start, end)``, oldest first."""
    cols = (
        TurnRow.id,
        TurnRow.conversation_id,
        ConversationRow.channel,
        TurnRow.text,
        TurnRow.intent,
        TurnRow.intent_confidence,
        TurnRow.created_at,
    )
    found: dict[int, Candidate] = {}

    def add(row: Any, reason: str) -> None:
        c = found.get(row.id)
        if c is None:
            c = found[row.id] = Candidate(
                turn_id=row.id,
                conversation_id=row.conversation_id,
                channel=row.channel,
                text=row.text,
                intent=row.intent,
                confidence=row.intent_confidence,
                created_at=row.created_at,
            )
        if reason not in c.reasons:
            c.reasons.append(reason)

    async with engine.connect() as conn:
        # not understood, or understood with low confidence
        rows = await conn.execute(
            select(*cols)
            .join(ConversationRow, ConversationRow.id == TurnRow.conversation_id)
            .where(
                TurnRow.role == "user",
                TurnRow.text.is_not(None),
                TurnRow.created_at >= start,
                TurnRow.created_at < end,
                or_(
                    TurnRow.intent == FALLBACK_INTENT,
                    and_(
                        TurnRow.intent_confidence.is_not(None),
                        TurnRow.intent_confidence < low_confidence,
                    ),
                ),
                _undecided(),
            )
            .order_by(TurnRow.created_at, TurnRow.id)
            .limit(limit)
        )
        for row in rows:
            if row.intent == FALLBACK_INTENT:
                add(row, Reason.FALLBACK)
            if row.intent_confidence is not None and row.intent_confidence < low_confidence:
                add(row, Reason.LOW_CONFIDENCE)

        # the last bot-handled user turns before each ticket opened in the period
        tickets = (
            await conn.execute(
                select(TicketRow.conversation_id, TicketRow.created_at).where(
                    TicketRow.created_at >= start, TicketRow.created_at < end
                )
            )
        ).all()
        opened: dict[str, list[datetime]] = {}
        for t in tickets:
            opened.setdefault(t.conversation_id, []).append(t.created_at)
        ids = sorted(opened)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = await conn.execute(
                select(*cols, _undecided().label("undecided"))
                .join(ConversationRow, ConversationRow.id == TurnRow.conversation_id)
                .where(
                    TurnRow.conversation_id.in_(chunk),
                    TurnRow.role == "user",
                    TurnRow.text.is_not(None),
                    TurnRow.intent.is_not(None),  # seen by the bot, not held for an agent
                )
                .order_by(TurnRow.conversation_id, TurnRow.seq)
            )
            by_conv: dict[str, list[Any]] = {}
            for row in rows:
                by_conv.setdefault(row.conversation_id, []).append(row)
            for cid, turns in by_conv.items():
                for at in opened[cid]:
                    before = [r for r in turns if r.created_at <= at]
                    for row in before[-HANDOFF_CONTEXT_TURNS:]:
                        if row.undecided:
                            add(row, Reason.HANDOFF)
    out = sorted(found.values(), key=lambda c: (c.created_at, c.turn_id))
    return out[:limit]
