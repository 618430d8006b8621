"""Plain, immutable records the store hands out (never live ORM objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Customer:
    name: str | None = None
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    seq: int
    role: str
    text: str | None
    created_at: datetime
    payload: dict[str, Any] | None = None
    intent: str | None = None
    intent_confidence: float | None = None
    asr_confidence: float | None = None
    client_message_id: str | None = None
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ConversationEvent:
    type: str
    data: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    channel: str
    status: str
    customer: Customer
    metadata: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    turn_count: int
    turns: tuple[Turn, ...] = field(default=())
    events: tuple[ConversationEvent, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class NewTurn:
    """A turn to append; the store assigns ``seq`` and ``created_at``."""

    role: str
    text: str | None
    payload: dict[str, Any] | None = None
    intent: str | None = None
    intent_confidence: float | None = None
    asr_confidence: float | None = None
    client_message_id: str | None = None
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    type: str
    data: dict[str, Any] | None = None
