"""The media server's view of the bot service: its public conversation API over HTTP.

The media server has no dialogue logic: it sends what the caller said (or pressed) and
speaks what comes back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

log = structlog.get_logger("media_server.bot")


class BotUnavailable(Exception):
    """The bot service could not be reached or failed; the caller hears an apology."""


class ConversationGone(Exception):
    """The conversation is unknown or closed on the bot side."""


@dataclass(frozen=True)
class Reply:
    text: str
    options: tuple[str, ...] = ()  # button titles, spoken as choices


@dataclass(frozen=True)
class QueueStatus:
    position: int | None
    estimated_wait_s: float | None
    callback_offered: bool = False
    status: str | None = None  # queued, offered, assigned, callback_scheduled
    transfer_to: str | None = None  # the bot routes this waiting call out, to this SIP URI

    @property
    def waiting(self) -> bool:
        """Still waiting for a person (no agent yet, no callback booked)."""
        return self.status not in ("assigned", "callback_scheduled")


@dataclass(frozen=True)
class TurnResult:
    replies: tuple[Reply, ...]
    intent: str | None
    handoff: bool
    queue: QueueStatus | None
    user_seq: int | None = None
    recording: str | None = None  # "pause" or "resume": a sensitive step starts or ends
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def recording_marker(turns: list[dict[str, Any]]) -> str | None:
    """The last ``{"recording": "pause"|"resume"}`` custom payload of the bot's replies: how
    a conversation designer marks a sensitive step (card details) in a Rasa response."""
    marker = None
    for t in turns:
        value = (t.get("custom") or {}).get("recording")
        if t.get("role") == "bot" and value in ("pause", "resume"):
            marker = str(value)
    return marker


def _replies(turns: list[dict[str, Any]]) -> tuple[Reply, ...]:
    out = []
    for t in turns:
        if t.get("role") not in ("bot", "agent"):
            continue
        text = (t.get("text") or "").strip()
        options = tuple(b["title"] for b in (t.get("buttons") or []) if b.get("title"))
        if text or options:
            out.append(Reply(text, options))
    return tuple(out)


def _queue(data: dict[str, Any] | None) -> QueueStatus | None:
    if not data:
        return None
    return QueueStatus(
        position=data.get("position"),
        estimated_wait_s=data.get("estimated_wait_s"),
        callback_offered=bool(data.get("callback_offered")),
        status=data.get("status"),
        transfer_to=data.get("transfer_to"),
    )


class BotClient:
    def __init__(self, http: aiohttp.ClientSession, base_url: str, timeout_s: float = 15.0):
        self._http = http
        self._base = base_url.rstrip("/") + "/api/v1/conversations"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        try:
            async with self._http.request(
                method, self._base + path, json=body, timeout=self._timeout
            ) as resp:
                data: dict[str, Any] = await resp.json(content_type=None)
                if resp.status in (404, 409):
                    raise ConversationGone(data.get("error", {}).get("message", resp.reason))
                if resp.status >= 400:
                    raise BotUnavailable(f"bot service answered {resp.status}: {data}")
                return data
        except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError) as exc:
            raise BotUnavailable(f"bot service unreachable: {exc!r}") from exc

    async def start(self, metadata: dict[str, Any], phone: str | None = None) -> str:
        body: dict[str, Any] = {"channel": "voice", "metadata": metadata}
        if phone:
            body["customer"] = {"phone": phone[:40]}
        data = await self._call("POST", "", body)
        return str(data["id"])

    async def say(
        self,
        conversation_id: str,
        text: str,
        *,
        client_message_id: str,
        asr_confidence: float | None,
        voice: dict[str, Any],
    ) -> TurnResult:
        body: dict[str, Any] = {
            "text": text,
            "client_message_id": client_message_id,
            "voice": voice,
        }
        if asr_confidence is not None:
            body["asr_confidence"] = round(min(1.0, max(0.0, asr_confidence)), 4)
        data = await self._call("POST", f"/{conversation_id}/messages", body)
        user = data.get("user_turn") or {}
        return TurnResult(
            replies=_replies(data.get("replies") or []),
            intent=user.get("intent"),
            handoff=data.get("handoff") is not None,
            queue=_queue(data.get("queue")),
            user_seq=user.get("seq"),
            recording=recording_marker(data.get("replies") or []),
            raw=data,
        )

    async def handoff(
        self, conversation_id: str, reason: str, detail: str | None = None
    ) -> QueueStatus:
        body: dict[str, Any] = {"reason": reason}
        if detail:
            body["detail"] = detail
        data = await self._call("POST", f"/{conversation_id}/handoff", body)
        status = _queue(data)
        return status or QueueStatus(None, None)

    async def request_callback(self, conversation_id: str, number: str) -> QueueStatus:
        """Call the caller back on ``number`` instead of keeping them waiting (as soon as
        possible). :class:`ConversationGone` when no longer waiting (an agent took it)."""
        data = await self._call("POST", f"/{conversation_id}/callback", {"number": number})
        return _queue(data) or QueueStatus(None, None, status="callback_scheduled")

    async def transferred(
        self, conversation_id: str, target: str, ok: bool, detail: str | None
    ) -> None:
        """Report a transfer out: done (the bot closes the ticket) or failed (it stays)."""
        body: dict[str, Any] = {"target": target, "ok": ok}
        if detail:
            body["detail"] = detail[:200]
        await self._call("POST", f"/{conversation_id}/transferred", body)

    async def event(self, conversation_id: str, type_: str, data: dict[str, Any]) -> None:
        await self._call("POST", f"/{conversation_id}/events", {"type": type_, "data": data})

    async def close(self, conversation_id: str) -> None:
        await self._call("POST", f"/{conversation_id}/close", None)

    async def stream(self, conversation_id: str) -> AsyncIterator[dict[str, Any]]:
        """Live events of the conversation (agent messages, queue updates) until it ends."""
        url = self._base.replace("http", "ws", 1) + f"/{conversation_id}/stream"
        async with self._http.ws_connect(url, heartbeat=20) as ws:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                try:
                    event = json.loads(msg.data)
                except json.JSONDecodeError:
                    log.warning("media.bot.stream_bad_frame")
                    continue
                if isinstance(event, dict):
                    yield event
