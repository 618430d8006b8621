"""Bookings made by the bot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.store.schema import BookingRow, utcnow


@dataclass(frozen=True, slots=True)
class Booking:
    id: int
    conversation_id: str
    service_id: str
    service_name: str
    price: float | None
    currency: str | None
    duration_minutes: int | None
    start: datetime
    timezone: str
    customer_name: str
    customer_phone: str
    status: str
    created_at: datetime


def _booking(r: BookingRow) -> Booking:
    return Booking(
        r.id,
        r.conversation_id,
        r.service_id,
        r.service_name,
        r.price,
        r.currency,
        r.duration_minutes,
        r.start,
        r.timezone,
        r.customer_name,
        r.customer_phone,
        r.status,
        r.created_at,
    )


class SqlBookingStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def add(
        self,
        *,
        conversation_id: str,
        service_id: str,
        service_name: str,
        price: float | None,
        currency: str | None,
        duration_minutes: int | None,
        start: datetime,
        timezone: str,
        customer_name: str,
        customer_phone: str,
    ) -> Booking:
        row = BookingRow(
            conversation_id=conversation_id,
            service_id=service_id,
            service_name=service_name,
            price=price,
            currency=currency,
            duration_minutes=duration_minutes,
            start=start,
            timezone=timezone,
            customer_name=customer_name,
            customer_phone=customer_phone,
            status="confirmed",
            created_at=utcnow(),
        )
        async with self._sessions.begin() as s:
            s.add(row)
        return _booking(row)

    async def between(
        self, start: datetime | None, end: datetime | None, conversation_id: str | None = None
    ) -> list[Booking]:
        stmt = select(BookingRow).order_by(BookingRow.start)
        if start is not None:
            stmt = stmt.where(BookingRow.start >= start)
        if end is not None:
            stmt = stmt.where(BookingRow.start < end)
        if conversation_id is not None:
            stmt = stmt.where(BookingRow.conversation_id == conversation_id)
        async with self._sessions() as s:
            return [_booking(r) for r in (await s.scalars(stmt)).all()]
