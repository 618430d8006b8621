"""The small typed vocabulary of conversation events.

Each event is a frozen dataclass. Failure outcomes (``NotUnderstood``, ``HandoffRequested``,
``DependencyDown``) are events too, not exceptions: the conversation service turns every
stage error into one of these at its boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Channel(StrEnum):
    WEBCHAT = "webchat"
    VOICE = "voice"
    API = "api"


class Role(StrEnum):
    USER = "user"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"


class ConversationStatus(StrEnum):
    ACTIVE = "active"
    HANDOFF_REQUESTED = "handoff_requested"  # waiting in the agent queue; the bot is silent
    WITH_AGENT = "with_agent"  # a human owns the conversation; the bot is silent
    CLOSED = "closed"


class HandoffReason(StrEnum):
    USER_REQUEST = "user_request"
    BOT_REQUEST = "bot_request"
    DEPENDENCY_DOWN = "dependency_down"
    DTMF_ZERO = "dtmf_zero"
    NOT_UNDERSTOOD = "not_understood"
    FRUSTRATION = "frustration"
    BUSINESS_RULE = "business_rule"


def parse_handoff_reason(raw: object) -> tuple[HandoffReason, str | None]:
    """A reason as sent by a custom action: a known one, or ``bot_request`` with the unknown
    reason string kept as the detail."""
    text = str(raw or HandoffReason.BOT_REQUEST.value)
    if text in HandoffReason.__members__.values():
        return HandoffReason(text), None
    return HandoffReason.BOT_REQUEST, text


@dataclass(frozen=True, slots=True)
class Button:
    title: str
    payload: str


@dataclass(frozen=True, slots=True)
class NluResult:
    """What Rasa's NLU made of one user message."""

    intent: str | None
    confidence: float | None
    entities: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class BotReply:
    """One message the bot sends: text and/or buttons, image or a custom payload."""

    text: str | None = None
    buttons: tuple[Button, ...] = ()
    image: str | None = None
    custom: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any] | None:
        """The non-text parts, as stored with the turn (``None`` when there are none)."""
        out: dict[str, Any] = {}
        if self.buttons:
            out["buttons"] = [{"title": b.title, "payload": b.payload} for b in self.buttons]
        if self.image:
            out["image"] = self.image
        if self.custom is not None:
            out["custom"] = self.custom
        return out or None


@dataclass(frozen=True, slots=True)
class HandoffRequested:
    """The conversation needs a human. ``skill`` is the routing target when known."""

    reason: HandoffReason
    skill: str | None = None
    detail: str | None = None
    priority: int | None = None  # None: the configured default

    def as_data(self) -> dict[str, Any]:
        return {
            "reason": self.reason.value,
            "skill": self.skill,
            "detail": self.detail,
            "priority": self.priority,
        }


@dataclass(frozen=True, slots=True)
class DependencyDown:
    """A dependency (Rasa, the action server…) failed during a turn."""

    dependency: str
    code: str
    message: str

    def as_data(self) -> dict[str, Any]:
        return {"dependency": self.dependency, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class DialogueOutcome:
    """Everything one user message produced: NLU, replies and any handoff signal."""

    nlu: NluResult | None
    replies: tuple[BotReply, ...]
    handoff: HandoffRequested | None = None
    failures: tuple[DependencyDown, ...] = field(default=())
    rasa_latency_ms: float | None = None
