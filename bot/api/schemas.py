"""Request and response bodies of the public API (pydantic; the OpenAPI document is built
from these same models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field

from bot.events import Channel
from bot.store.records import Conversation, Turn


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CustomerIn(_Strict):
    name: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=40)
    email: EmailStr | None = None


class CreateConversation(_Strict):
    channel: Channel = Field(Channel.API, description="webchat, voice or api")
    customer: CustomerIn | None = None
    metadata: dict[str, Any] | None = Field(None, description="free-form context, stored as is")


class VoiceInfo(_Strict):
    """How a spoken turn was heard; stored with the user turn in the transcript."""

    engine: str = Field(..., max_length=40, description="ASR engine, e.g. vosk, pocketsphinx")
    language: str = Field(..., max_length=12)
    speech_start_ms: float | None = Field(None, ge=0, description="call time of speech onset")
    speech_end_ms: float | None = Field(None, ge=0, description="call time speech ended")
    asr_final_ms: float | None = Field(None, ge=0, description="call time the final was ready")
    heard: str | None = Field(
        None, max_length=5000, description="the open transcript when phrase biasing changed it"
    )
    dtmf: str | None = Field(None, max_length=32, description="keys pressed, if that is the turn")


class VoiceEventIn(_Strict):
    type: Literal[
        "voice.reply_audio",
        "voice.barge_in",
        "voice.no_speech",
        "voice.call",
        "voice.recording",
    ] = Field(..., description="what happened on the call")
    data: dict[str, Any] = Field(default_factory=dict)


class PostMessage(_Strict):
    text: str = Field(..., min_length=1, description="what the user said or typed")
    client_message_id: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="client-chosen id; posting the same id again returns the stored answer",
    )
    asr_confidence: float | None = Field(None, ge=0, le=1, description="voice channels only")
    voice: VoiceInfo | None = Field(None, description="voice channels only: how it was heard")


class ButtonOut(BaseModel):
    title: str
    payload: str


class TurnOut(BaseModel):
    seq: int
    role: str = Field(description="user, bot, agent or system")
    text: str | None
    created_at: datetime
    buttons: list[ButtonOut] | None = None
    image: str | None = None
    custom: dict[str, Any] | None = None
    intent: str | None = None
    intent_confidence: float | None = None
    asr_confidence: float | None = None
    client_message_id: str | None = None
    voice: dict[str, Any] | None = None

    @classmethod
    def of(cls, t: Turn) -> TurnOut:
        p = t.payload or {}
        return cls(
            seq=t.seq,
            role=t.role,
            text=t.text,
            created_at=t.created_at,
            buttons=[ButtonOut(**b) for b in p["buttons"]] if p.get("buttons") else None,
            image=p.get("image"),
            custom=p.get("custom"),
            intent=t.intent,
            intent_confidence=t.intent_confidence,
            asr_confidence=t.asr_confidence,
            client_message_id=t.client_message_id,
            voice=p.get("voice"),
        )


class CustomerOut(BaseModel):
    name: str | None
    phone: str | None
    email: str | None


class EventOut(BaseModel):
    type: str
    data: dict[str, Any] | None
    created_at: datetime


class ConversationOut(BaseModel):
    id: str
    channel: str
    status: str = Field(description="active, handoff_requested or closed")
    customer: CustomerOut
    metadata: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    turn_count: int
    transcript: list[TurnOut] | None = None
    events: list[EventOut] | None = None

    @classmethod
    def of(cls, c: Conversation, *, with_transcript: bool) -> ConversationOut:
        return cls(
            id=c.id,
            channel=c.channel,
            status=c.status,
            customer=CustomerOut(
                name=c.customer.name, phone=c.customer.phone, email=c.customer.email
            ),
            metadata=c.metadata,
            created_at=c.created_at,
            updated_at=c.updated_at,
            turn_count=c.turn_count,
            transcript=[TurnOut.of(t) for t in c.turns] if with_transcript else None,
            events=[EventOut(type=e.type, data=e.data, created_at=e.created_at) for e in c.events]
            if with_transcript
            else None,
        )


class HandoffOut(BaseModel):
    reason: str
    skill: str | None
    detail: str | None
    priority: int | None = None


class QueueOut(BaseModel):
    ticket_id: int
    status: str = Field(description="queued, offered, assigned or callback_scheduled")
    position: int | None = Field(None, description="1 = next to be answered")
    estimated_wait_s: float | None = None
    callback_offered: bool = Field(False, description="true when the wait is long")
    agent: str | None = Field(None, description="the agent's name once one has joined")
    transfer_to: str | None = Field(
        None, description="a phone call waiting for this skill is transferred to this SIP URI"
    )


class TransferredIn(_Strict):
    target: str = Field(..., pattern=r"^(sips?|tel):[^\s<>]{1,200}$")
    ok: bool = Field(description="true: the call left for the target; false: it stays queued")
    detail: str | None = Field(None, max_length=200, description="why it failed")


class HandoffIn(_Strict):
    skill: str | None = Field(None, min_length=1, max_length=60)
    reason: str = Field("user_request", pattern="^(user_request|dtmf_zero|business_rule)$")
    detail: str | None = Field(None, max_length=200)


class CallbackIn(_Strict):
    number: str = Field(..., min_length=3, max_length=40, pattern=r"^\+?[0-9 ()\-]{3,40}$")
    at: AwareDatetime | None = Field(
        None, description="when to call back, with a time zone (default: as soon as possible)"
    )


class MessageResult(BaseModel):
    conversation_id: str
    user_turn: TurnOut
    replies: list[TurnOut]
    handoff: HandoffOut | None = None
    queue: QueueOut | None = Field(None, description="set while a person is coming or present")
    duplicate: bool = Field(False, description="true when client_message_id was seen before")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str


class ReadyCheck(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, ReadyCheck]
