"""SQL-backed conversation store: conversations, their ordered turns and events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.store.records import (
    Conversation,
    ConversationEvent,
    Customer,
    NewEvent,
    NewTurn,
    Turn,
)
from bot.store.schema import ConversationEventRow, ConversationRow, TurnRow, utcnow


class ConversationNotFound(LookupError):
    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation {conversation_id!r} not found")
        self.conversation_id = conversation_id


_TURN_FIELDS = tuple(f.name for f in fields(NewTurn))


def _turn(row: TurnRow) -> Turn:
    return Turn(
        seq=row.seq,
        created_at=row.created_at,
        **{name: getattr(row, name) for name in _TURN_FIELDS},
    )


def _conversation(
    row: ConversationRow,
    turns: Sequence[TurnRow] = (),
    events: Sequence[ConversationEventRow] = (),
) -> Conversation:
    return Conversation(
        id=row.id,
        channel=row.channel,
        status=row.status,
        customer=Customer(row.customer_name, row.customer_phone, row.customer_email),
        metadata=row.meta,
        created_at=row.created_at,
        updated_at=row.updated_at,
        turn_count=row.turn_count,
        turns=tuple(_turn(t) for t in turns),
        events=tuple(ConversationEvent(e.type, e.data, e.created_at) for e in events),
    )


class SqlConversationStore:
    """Conversations in any SQLAlchemy async database (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def create(
        self,
        channel: str,
        status: str,
        customer: Customer,
        metadata: dict[str, Any] | None,
    ) -> Conversation:
        now = utcnow()
        row = ConversationRow(
            id=uuid.uuid4().hex,
            channel=channel,
            status=status,
            customer_name=customer.name,
            customer_phone=customer.phone,
            customer_email=customer.email,
            meta=metadata,
            turn_count=0,
            created_at=now,
            updated_at=now,
        )
        async with self._sessions.begin() as session:
            session.add(row)
        return _conversation(row)

    async def get(self, conversation_id: str, *, with_turns: bool = True) -> Conversation | None:
        async with self._sessions() as session:
            row = await session.get(ConversationRow, conversation_id)
            if row is None:
                return None
            if not with_turns:
                return _conversation(row)
            turns = (
                await session.scalars(
                    select(TurnRow)
                    .where(TurnRow.conversation_id == conversation_id)
                    .order_by(TurnRow.seq)
                )
            ).all()
            events = (
                await session.scalars(
                    select(ConversationEventRow)
                    .where(ConversationEventRow.conversation_id == conversation_id)
                    .order_by(ConversationEventRow.id)
                )
            ).all()
            return _conversation(row, turns, events)

    async def exchange_for(self, conversation_id: str, client_message_id: str) -> list[Turn]:
        """The user turn with this client message id and the replies that followed it."""
        async with self._sessions() as session:
            user = await session.scalar(
                select(TurnRow).where(
                    TurnRow.conversation_id == conversation_id,
                    TurnRow.client_message_id == client_message_id,
                )
            )
            if user is None:
                return []
            following = (
                await session.scalars(
                    select(TurnRow)
                    .where(TurnRow.conversation_id == conversation_id, TurnRow.seq > user.seq)
                    .order_by(TurnRow.seq)
                )
            ).all()
            out = [_turn(user)]
            for t in following:
                if t.role == "user":
                    break
                out.append(_turn(t))
            return out

    async def append(
        self,
        conversation_id: str,
        turns: Sequence[NewTurn],
        events: Sequence[NewEvent] = (),
        status: str | None = None,
    ) -> list[Turn]:
        """Append turns and events atomically; all are stored or none is.

        The turn counter is bumped first, by one UPDATE … RETURNING: that statement takes the
        write lock (SQLite) or the row lock (PostgreSQL) before anything is read, so writers
        racing on one conversation (a visitor's message and an agent's reply) get distinct
        sequence numbers instead of a stale count and a unique-key violation."""
        now = utcnow()
        values: dict[str, Any] = {
            "turn_count": ConversationRow.turn_count + len(turns),
            "updated_at": now,
        }
        if status is not None:
            values["status"] = status
        async with self._sessions.begin() as session:
            count = await session.scalar(
                update(ConversationRow)
                .where(ConversationRow.id == conversation_id)
                .values(**values)
                .returning(ConversationRow.turn_count)
            )
            if count is None:
                raise ConversationNotFound(conversation_id)
            first = count - len(turns)
            rows = []
            for i, t in enumerate(turns, start=1):
                tr = TurnRow(
                    conversation_id=conversation_id,
                    seq=first + i,
                    created_at=now,
                    **{name: getattr(t, name) for name in _TURN_FIELDS},
                )
                session.add(tr)
                rows.append(tr)
            for e in events:
                session.add(
                    ConversationEventRow(
                        conversation_id=conversation_id, type=e.type, data=e.data, created_at=now
                    )
                )
        return [_turn(r) for r in rows]

    async def count_user_intent(self, conversation_id: str, intent: str) -> int:
        async with self._sessions() as session:
            n = await session.scalar(
                select(func.count())
                .select_from(TurnRow)
                .where(
                    TurnRow.conversation_id == conversation_id,
                    TurnRow.role == "user",
                    TurnRow.intent == intent,
                )
            )
        return int(n or 0)

    async def check_writable(self) -> None:
        """Raise if the database cannot take a write (the write is rolled back)."""
        async with self._sessions() as session, session.begin():
            probe = uuid.uuid4().hex
            now = utcnow()
            await session.execute(
                insert(ConversationRow).values(
                    id=probe,
                    channel="api",
                    status="probe",
                    turn_count=0,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.execute(delete(ConversationRow).where(ConversationRow.id == probe))
            await session.rollback()
