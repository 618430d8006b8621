"""Webchat protocol, version 1: JSON text frames over one WebSocket (``/webchat/ws``).

Client → server (``hello`` first):
  {"type": "hello", "v": 1, "conversation_id"?, "resume_token"?, "identity"?, "language"?}
  {"type": "message", "id": "<client message id>", "text": "…"}
  {"type": "handoff"}                     ask for a person
  {"type": "callback", "number": "…", "at"?: ISO 8601}
  {"type": "close"}                       the visitor ends the chat
  {"type": "ping"}

Server → client:
  {"type": "welcome", "v": 1, "conversation_id", "resume_token", "status", "history": [turn…]}
  {"type": "typing", "on": true|false}
  {"type": "turn", "turn": {"seq", "role", "text", "buttons"?, "image"?, "agent"?,
                            "client_message_id"?, "created_at"}}
  {"type": "ack", "id", "seq", "duplicate"}       the message is stored (sent once per id)
  {"type": "queue", "status", "position", "estimated_wait_s", "callback_offered", "agent"}
  {"type": "agent_joined", "agent"}
  {"type": "closed"}
  {"type": "pong"}
  {"type": "error", "code", "message", "id"?}

Error codes: malformed_json, invalid_frame, unknown_type, hello_required, frame_too_large,
message_too_long, rate_limited, identity_invalid, identity_unsupported, bad_origin,
conversation_closed, not_waiting. Turns are ordered by ``seq``; a client de-duplicates by it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

VERSION = 1


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Hello(_Frame):
    type: Literal["hello"]
    v: Literal[1] = 1
    conversation_id: str | None = Field(None, max_length=64)
    resume_token: str | None = Field(None, max_length=512)
    identity: str | None = Field(None, max_length=4096)
    language: str | None = Field(None, max_length=16)


class Message(_Frame):
    type: Literal["message"]
    id: str = Field(..., min_length=1, max_length=100)
    text: str = Field(..., min_length=1)


class AskHandoff(_Frame):
    type: Literal["handoff"]


class AskCallback(_Frame):
    type: Literal["callback"]
    number: str = Field(..., min_length=3, max_length=40, pattern=r"^\+?[0-9 ()\-]{3,40}$")
    at: AwareDatetime | None = None


class Close(_Frame):
    type: Literal["close"]


class Ping(_Frame):
    type: Literal["ping"]


ClientFrame = Annotated[
    Hello | Message | AskHandoff | AskCallback | Close | Ping, Field(discriminator="type")
]
CLIENT_FRAME: TypeAdapter[Any] = TypeAdapter(ClientFrame)
KNOWN_TYPES = ("hello", "message", "handoff", "callback", "close", "ping")


def error(code: str, message: str, id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if id is not None:
        out["id"] = id
    return out


def visitor_turn(turn: dict[str, Any]) -> dict[str, Any]:
    """A stored turn as the visitor sees it: no intents or internal payloads."""
    payload = turn.get("payload") or {}
    out: dict[str, Any] = {
        "seq": turn["seq"],
        "role": turn["role"],
        "text": turn.get("text"),
        "created_at": turn["created_at"],
    }
    if payload.get("buttons"):
        out["buttons"] = payload["buttons"]
    if payload.get("image"):
        out["image"] = payload["image"]
    if payload.get("agent"):
        out["agent"] = payload["agent"]
    if turn.get("client_message_id"):
        out["client_message_id"] = turn["client_message_id"]
    return out
