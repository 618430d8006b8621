"""Records and states of the handoff queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class TicketStatus(StrEnum):
    QUEUED = "queued"  # waiting for an agent
    OFFERED = "offered"  # offered to one agent, who has until offer_expires_at to accept
    ASSIGNED = "assigned"  # an agent owns the conversation
    CALLBACK = "callback_scheduled"  # the customer chose a callback; queued at callback_at
    RESOLVED = "resolved"
    ABANDONED = "abandoned"  # the customer left while waiting


OPEN_STATUSES = (
    TicketStatus.QUEUED,
    TicketStatus.OFFERED,
    TicketStatus.ASSIGNED,
    TicketStatus.CALLBACK,
)
WAITING_STATUSES = (TicketStatus.QUEUED, TicketStatus.OFFERED)


class Presence(StrEnum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    BUSY = "busy"
    AWAY = "away"
    WRAP_UP = "wrap_up"


class UserRole(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    DESIGNER = "designer"  # conversation designer: the review inbox, not the queue


@dataclass(frozen=True, slots=True)
class Agent:
    id: int
    username: str
    display_name: str
    role: UserRole
    skills: dict[str, int]
    max_chats: int
    presence: Presence
    presence_since: datetime
    wrap_up_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Ticket:
    id: int
    conversation_id: str
    channel: str
    status: TicketStatus
    reason: str
    detail: str | None
    skill: str
    priority: int
    created_at: datetime
    queued_at: datetime
    version: int
    summary: str | None = None
    slots: dict[str, Any] | None = None
    agent_id: int | None = None
    offered_to: int | None = None
    offer_expires_at: datetime | None = None
    declined_by: tuple[int, ...] = field(default=())
    callback_number: str | None = None
    callback_at: datetime | None = None
    disposition: str | None = None
    offered_at: datetime | None = None
    answered_at: datetime | None = None
    resolved_at: datetime | None = None
    abandoned_at: datetime | None = None
