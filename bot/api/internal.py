"""``/api/v1/internal/…``: what the Rasa action server reports back (confirmed bookings,
callback requests). Authenticated with the installation's internal token, which
``receptionist up`` hands to the action server as ``RECEPTIONIST_INTERNAL_TOKEN``."""

from __future__ import annotations

import hmac
from dataclasses import asdict
from typing import Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from bot.api.errors import ApiError, read_json
from bot.api.keys import HANDOFF, SERVICE, SETTINGS
from bot.api.routes import Route
from bot.handoff.service import HandoffError
from bot.store.bookings import Booking, SqlBookingStore
from bot.store.records import NewEvent

BOOKINGS = web.AppKey("booking_store", SqlBookingStore)
INTERNAL_TOKEN = "internal-token"


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=False)


class ServiceIn(_In):
    id: str = Field(..., min_length=1, max_length=80)
    name: str = Field(..., min_length=1, max_length=200)
    price: float | None = None
    currency: str | None = Field(None, max_length=3)
    duration_minutes: int | None = Field(None, ge=1, le=24 * 60)


class PersonIn(_In):
    name: str = Field(..., min_length=1, max_length=200)
    phone: str = Field(..., min_length=3, max_length=40)


class BookingIn(_In):
    type: Literal["booking"] = "booking"
    conversation_id: str = Field(..., min_length=32, max_length=32)
    service: ServiceIn
    start: AwareDatetime
    timezone: str = Field(..., min_length=1, max_length=60)
    customer: PersonIn


class CallbackRequestIn(_In):
    type: Literal["callback"] = "callback"
    conversation_id: str = Field(..., min_length=32, max_length=32)
    phone: str = Field(..., min_length=3, max_length=40)
    at: AwareDatetime
    timezone: str | None = Field(None, max_length=60)
    skill: str | None = Field(None, max_length=60)


class BookingOut(BaseModel):
    id: int
    conversation_id: str
    service_id: str
    service_name: str
    price: float | None
    currency: str | None
    duration_minutes: int | None
    start: str
    timezone: str
    customer_name: str
    customer_phone: str
    status: str
    created_at: str

    @classmethod
    def of(cls, b: Booking) -> BookingOut:
        fields = asdict(b)
        return cls(
            **{**fields, "start": b.start.isoformat(), "created_at": b.created_at.isoformat()}
        )


def _check_token(request: web.Request) -> None:
    want = request.app[SETTINGS].secret(INTERNAL_TOKEN)
    got = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not got or not hmac.compare_digest(got.encode(), want.encode()):
        raise ApiError(401, "bad_token", "internal endpoints need the installation's token")


async def add_booking(request: web.Request) -> web.Response:
    _check_token(request)
    body: BookingIn = await read_json(request, BookingIn)
    service = request.app[SERVICE]
    if await service.get(body.conversation_id) is None:
        raise ApiError(404, "conversation_not_found", "no such conversation")
    booking = await request.app[BOOKINGS].add(
        conversation_id=body.conversation_id,
        service_id=body.service.id,
        service_name=body.service.name,
        price=body.service.price,
        currency=body.service.currency,
        duration_minutes=body.service.duration_minutes,
        start=body.start,
        timezone=body.timezone,
        customer_name=body.customer.name,
        customer_phone=body.customer.phone,
    )
    await service.record_event(
        body.conversation_id,
        NewEvent(
            "booking_made",
            {"booking_id": booking.id, "service": body.service.id, "start": body.start.isoformat()},
        ),
    )
    return web.json_response(BookingOut.of(booking).model_dump(), status=201)


async def add_callback(request: web.Request) -> web.Response:
    _check_token(request)
    body: CallbackRequestIn = await read_json(request, CallbackRequestIn)
    if await request.app[SERVICE].get(body.conversation_id) is None:
        raise ApiError(404, "conversation_not_found", "no such conversation")
    try:
        ticket = await request.app[HANDOFF].schedule_callback_request(
            body.conversation_id, body.phone, body.at, body.skill
        )
    except HandoffError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from exc
    return web.json_response(
        {"ticket_id": ticket.id, "status": ticket.status.value, "callback_at": body.at.isoformat()},
        status=201,
    )


ROUTES = [
    Route(
        "POST",
        "/api/v1/internal/bookings",
        add_booking,
        "Action server: record a confirmed booking (Bearer internal token)",
        body=BookingIn,
        responses={
            201: ("stored", BookingOut),
            401: ("bad token", None),
            404: ("unknown conversation", None),
        },
        tag="internal",
    ),
    Route(
        "POST",
        "/api/v1/internal/callbacks",
        add_callback,
        "Action server: schedule a callback task in the agent queue (Bearer internal token)",
        body=CallbackRequestIn,
        responses={
            201: ("scheduled", None),
            401: ("bad token", None),
            404: ("unknown conversation", None),
        },
        tag="internal",
    ),
]
