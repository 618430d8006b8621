"""The channel-agnostic conversation service.

One conversation per visitor or call, whatever the channel. A user message goes to Rasa (the
dialogue via the REST webhook and, in parallel, ``/model/parse`` for the intent and confidence
the service records); the user turn and the bot's replies are stored together in one
transaction. When Rasa fails the user gets a short apology, the conversation is marked for
handoff and the failure is recorded as an event: nothing raises past this boundary.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog

from bot.config import HandoffSettings
from bot.events import (
    BotReply,
    Channel,
    ConversationStatus,
    DependencyDown,
    DialogueOutcome,
    HandoffReason,
    HandoffRequested,
    NluResult,
    Role,
    parse_handoff_reason,
)
from bot.handoff.frustration import frustration_score
from bot.handoff.service import HandoffService, QueueInfo
from bot.rasa_client import RasaError
from bot.store.conversations import ConversationNotFound
from bot.store.records import Conversation, Customer, NewEvent, NewTurn, Turn

log = structlog.get_logger("bot.conversation")

HANDING_OVER = "I'll connect you with a colleague who can help you better."
VIP_WELCOME = "Welcome back! A colleague will be with you in a moment."
APOLOGY = (
    "Sorry, I'm having trouble answering right now. "
    "I've asked a colleague to pick up this conversation."
)


class Dialogue(Protocol):
    """What the service needs from a dialogue engine (Rasa)."""

    async def send_message(
        self, sender_id: str, text: str, metadata: dict[str, Any] | None = None
    ) -> list[BotReply]: ...

    async def latest_nlu(self, sender_id: str) -> NluResult: ...


class ConversationStore(Protocol):
    async def create(
        self, channel: str, status: str, customer: Customer, metadata: dict[str, Any] | None
    ) -> Conversation: ...

    async def get(
        self, conversation_id: str, *, with_turns: bool = True
    ) -> Conversation | None: ...

    async def exchange_for(self, conversation_id: str, client_message_id: str) -> list[Turn]: ...

    async def count_user_intent(self, conversation_id: str, intent: str) -> int: ...

    async def append(
        self,
        conversation_id: str,
        turns: list[NewTurn],
        events: list[NewEvent] = ...,
        status: str | None = None,
    ) -> list[Turn]: ...


class ConversationClosed(Exception):
    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation {conversation_id!r} is closed")
        self.conversation_id = conversation_id


@dataclass(frozen=True, slots=True)
class Exchange:
    """The stored result of one user message."""

    conversation_id: str
    user_turn: Turn
    replies: tuple[Turn, ...]
    handoff: HandoffRequested | None
    duplicate: bool = False
    queue: QueueInfo | None = None


def handoff_from_replies(replies: tuple[BotReply, ...]) -> HandoffRequested | None:
    """A reply with a custom payload ``{"handoff": {"reason", "skill"}}`` asks for a human."""
    for r in replies:
        spec = (r.custom or {}).get("handoff")
        if spec is None:
            continue
        spec = spec if isinstance(spec, dict) else {}
        reason, detail = parse_handoff_reason(spec.get("reason"))
        skill = spec.get("skill")
        return HandoffRequested(reason=reason, skill=str(skill) if skill else None, detail=detail)
    return None


class ConversationService:
    def __init__(
        self,
        store: ConversationStore,
        dialogue: Dialogue,
        handoff: HandoffService,
        rules: HandoffSettings,
    ) -> None:
        self._store = store
        self._dialogue = dialogue
        self._handoff = handoff
        self._rules = rules
        self._vips = {v.strip().lower() for v in rules.vip_customers}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def start(
        self,
        channel: Channel,
        customer: Customer | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Conversation:
        conv = await self._store.create(
            channel.value, ConversationStatus.ACTIVE.value, customer or Customer(), metadata
        )
        log.info("conversation.created", conversation_id=conv.id, channel=channel.value)
        return conv

    async def get(self, conversation_id: str) -> Conversation | None:
        return await self._store.get(conversation_id)

    def _lock(self, conversation_id: str) -> asyncio.Lock:
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[conversation_id] = lock
        return lock

    async def handle_user_message(
        self,
        conversation_id: str,
        text: str,
        *,
        client_message_id: str | None = None,
        asr_confidence: float | None = None,
        voice: dict[str, Any] | None = None,
    ) -> Exchange:
        """Run one user message through the dialogue and store it with the replies.

        Raises :class:`ConversationNotFound` or :class:`ConversationClosed`; a dialogue
        failure is not raised but turned into an apology and a handoff request.
        """
        async with self._lock(conversation_id):
            conv = await self._store.get(conversation_id, with_turns=False)
            if conv is None:
                raise ConversationNotFound(conversation_id)
            if conv.status == ConversationStatus.CLOSED:
                raise ConversationClosed(conversation_id)
            if client_message_id is not None:
                previous = await self._store.exchange_for(conversation_id, client_message_id)
                if previous:
                    log.info(
                        "conversation.message.duplicate",
                        conversation_id=conversation_id,
                        client_message_id=client_message_id,
                    )
                    return Exchange(
                        conversation_id, previous[0], tuple(previous[1:]), None, duplicate=True
                    )
            if conv.status in (
                ConversationStatus.HANDOFF_REQUESTED,
                ConversationStatus.WITH_AGENT,
            ):
                return await self._hold_for_agent(
                    conv.id, text, client_message_id, asr_confidence, voice
                )

            if self._is_vip(conv):
                outcome = DialogueOutcome(
                    nlu=None,
                    replies=(BotReply(text=VIP_WELCOME),),
                    handoff=HandoffRequested(
                        HandoffReason.BUSINESS_RULE, detail="vip_customer", priority=3
                    ),
                )
            else:
                outcome = await self._with_triggers(
                    conv, text, await self._run_dialogue(conv, text)
                )
            if outcome.handoff is not None and outcome.handoff.skill is None:
                outcome = replace(
                    outcome, handoff=replace(outcome.handoff, skill=self._rules.default_skill)
                )
            turns = [
                NewTurn(
                    role=Role.USER,
                    text=text,
                    intent=outcome.nlu.intent if outcome.nlu else None,
                    intent_confidence=outcome.nlu.confidence if outcome.nlu else None,
                    asr_confidence=asr_confidence,
                    client_message_id=client_message_id,
                    payload={"voice": voice} if voice else None,
                )
            ]
            turns += [
                NewTurn(
                    role=Role.BOT,
                    text=r.text,
                    payload=r.payload(),
                    latency_ms=outcome.rasa_latency_ms,
                )
                for r in outcome.replies
            ]
            events = [NewEvent("dependency_down", f.as_data()) for f in outcome.failures]
            status = None
            if outcome.handoff is not None:
                events.append(NewEvent("handoff_requested", outcome.handoff.as_data()))
                status = ConversationStatus.HANDOFF_REQUESTED.value
            stored = await self._store.append(conversation_id, turns, events, status)
            for t in stored:
                self._handoff.publish_turn(conversation_id, t)

            queue = None
            if outcome.handoff is not None:
                log.warning(
                    "conversation.handoff_requested",
                    conversation_id=conversation_id,
                    **outcome.handoff.as_data(),
                )
                queue = await self._handoff.request(conversation_id, outcome.handoff)
        return Exchange(conversation_id, stored[0], tuple(stored[1:]), outcome.handoff, queue=queue)

    async def request_handoff(self, conversation_id: str, handoff: HandoffRequested) -> QueueInfo:
        """Hand the conversation to a person now (explicit request, DTMF 0, business rule)."""
        async with self._lock(conversation_id):
            conv = await self._store.get(conversation_id, with_turns=False)
            if conv is None:
                raise ConversationNotFound(conversation_id)
            if conv.status == ConversationStatus.CLOSED:
                raise ConversationClosed(conversation_id)
            if conv.status == ConversationStatus.ACTIVE:
                await self._store.append(
                    conversation_id,
                    [],
                    [NewEvent("handoff_requested", handoff.as_data())],
                    ConversationStatus.HANDOFF_REQUESTED.value,
                )
            return await self._handoff.request(conversation_id, handoff)

    async def record_event(self, conversation_id: str, event: NewEvent) -> None:
        """Store an event. Not under the conversation's lock: events add no turn, and the
        action server reports a booking *while* the user's message (which holds the lock)
        waits for Rasa, so taking it here would stall both until the reporter times out."""
        await self._store.append(conversation_id, [], [event])

    async def close(self, conversation_id: str) -> Conversation:
        """The customer left: close the conversation; a wait in queue counts as abandoned."""
        async with self._lock(conversation_id):
            conv = await self._store.get(conversation_id, with_turns=False)
            if conv is None:
                raise ConversationNotFound(conversation_id)
            if conv.status != ConversationStatus.CLOSED:
                await self._handoff.abandon(conversation_id)
                await self._store.append(
                    conversation_id, [], [NewEvent("closed")], ConversationStatus.CLOSED.value
                )
        closed = await self._store.get(conversation_id)
        assert closed is not None
        return closed

    async def _hold_for_agent(
        self,
        conversation_id: str,
        text: str,
        client_message_id: str | None,
        asr_confidence: float | None,
        voice: dict[str, Any] | None,
    ) -> Exchange:
        """A person is coming or present: store the message for them; the bot stays silent."""
        [turn] = await self._store.append(
            conversation_id,
            [
                NewTurn(
                    role=Role.USER,
                    text=text,
                    asr_confidence=asr_confidence,
                    client_message_id=client_message_id,
                    payload={"voice": voice} if voice else None,
                )
            ],
        )
        self._handoff.publish_turn(conversation_id, turn)
        queue = await self._handoff.queue_info(conversation_id)
        log.info("conversation.message.for_agent", conversation_id=conversation_id)
        return Exchange(conversation_id, turn, (), None, queue=queue)

    def _is_vip(self, conv: Conversation) -> bool:
        c = conv.customer
        return bool(self._vips) and any(
            k is not None and k.strip().lower() in self._vips for k in (c.phone, c.email)
        )

    async def _with_triggers(
        self, conv: Conversation, text: str, outcome: DialogueOutcome
    ) -> DialogueOutcome:
        """Hand off when the user is frustrated or has not been understood too often."""
        if outcome.handoff is not None:
            return outcome
        handoff = None
        score = frustration_score(text)
        if score >= self._rules.frustration_threshold:
            handoff = HandoffRequested(
                HandoffReason.FRUSTRATION, detail=f"frustration score {score}", priority=2
            )
        elif outcome.nlu is not None and outcome.nlu.intent == "nlu_fallback":
            misses = await self._store.count_user_intent(conv.id, "nlu_fallback") + 1
            if misses >= self._rules.max_not_understood:
                handoff = HandoffRequested(
                    HandoffReason.NOT_UNDERSTOOD, detail=f"{misses} messages not understood"
                )
        if handoff is None:
            return outcome
        return replace(
            outcome, replies=(*outcome.replies, BotReply(text=HANDING_OVER)), handoff=handoff
        )

    async def _run_dialogue(self, conv: Conversation, text: str) -> DialogueOutcome:
        started = time.perf_counter()
        metadata = {"channel": conv.channel, "conversation_id": conv.id}
        send: list[BotReply] | RasaError
        parse: NluResult | RasaError
        try:
            send = await self._dialogue.send_message(conv.id, text, metadata)
        except RasaError as exc:
            send = exc
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        if isinstance(send, BaseException):
            parse = RasaError("rasa_skipped", "no NLU result: the dialogue call failed")
        else:
            try:
                parse = await self._dialogue.latest_nlu(conv.id)
            except RasaError as exc:
                parse = exc

        failures: list[DependencyDown] = []
        nlu: NluResult | None = None
        if isinstance(parse, NluResult):
            nlu = parse
        elif parse.code != "rasa_skipped":
            failures.append(DependencyDown("rasa", parse.code, parse.message))
            log.warning("rasa.parse.failed", conversation_id=conv.id, code=parse.code)

        if isinstance(send, RasaError):
            failures.append(DependencyDown("rasa", send.code, send.message))
            log.error(
                "rasa.webhook.failed",
                conversation_id=conv.id,
                code=send.code,
                error=send.message,
                latency_ms=latency_ms,
            )
            return DialogueOutcome(
                nlu=nlu,
                replies=(BotReply(text=APOLOGY),),
                handoff=HandoffRequested(HandoffReason.DEPENDENCY_DOWN, detail=send.code),
                failures=tuple(failures),
                rasa_latency_ms=latency_ms,
            )

        replies = tuple(send)
        log.info(
            "rasa.turn",
            conversation_id=conv.id,
            intent=nlu.intent if nlu else None,
            confidence=nlu.confidence if nlu else None,
            replies=len(replies),
            latency_ms=latency_ms,
        )
        return DialogueOutcome(
            nlu=nlu,
            replies=replies,
            handoff=handoff_from_replies(replies),
            failures=tuple(failures),
            rasa_latency_ms=latency_ms,
        )
