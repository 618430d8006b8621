"""The conversation service as a pipeline: user text in, stored turns and handoff events
out. The dialogue engine is scripted here (it is not what these tests are about); the
store and the handoff queue are the real ones on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import HandoffSettings
from bot.conversation_service import HANDING_OVER, ConversationService
from bot.events import BotReply, Channel, NluResult
from bot.handoff.service import HandoffService
from bot.handoff.store import SqlHandoffStore
from bot.hub import EventHub
from bot.rasa_client import RasaError
from bot.store import SqlConversationStore, create_engine, migrate


class ScriptedDialogue:
    """Answers with a fixed intent per text; raises RasaError for texts marked 'down'."""

    def __init__(self, intents: dict[str, tuple[str, float]]) -> None:
        self.intents = intents
        self.sent: list[str] = []
        self.last: dict[str, str] = {}

    async def send_message(
        self, sender_id: str, text: str, metadata: dict[str, Any] | None = None
    ) -> list[BotReply]:
        if text == "down":
            raise RasaError("rasa_unreachable", "scripted outage")
        self.sent.append(text)
        self.last[sender_id] = text
        return [BotReply(text=f"reply to {text}")]

    async def latest_nlu(self, sender_id: str) -> NluResult:
        intent, conf = self.intents.get(self.last[sender_id], ("nlu_fallback", 0.3))
        return NluResult(intent, conf)


@pytest.fixture
async def parts(
    tmp_path: Path,
) -> AsyncIterator[tuple[ConversationService, ScriptedDialogue, SqlConversationStore]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    await migrate(engine)
    store = SqlConversationStore(engine)
    rules = HandoffSettings(max_not_understood=3)
    dialogue = ScriptedDialogue({"hello": ("greet", 0.98), "hours": ("opening_hours", 0.95)})
    handoff = HandoffService(SqlHandoffStore(engine), store, EventHub(), rules)
    yield ConversationService(store, dialogue, handoff, rules), dialogue, store
    await engine.dispose()


async def test_third_miss_hands_off_and_then_the_bot_is_silent(parts: Any) -> None:
    service, dialogue, store = parts
    conv = await service.start(Channel.WEBCHAT)
    assert (await service.handle_user_message(conv.id, "???")).handoff is None
    assert (await service.handle_user_message(conv.id, "hello")).handoff is None
    assert (await service.handle_user_message(conv.id, "blah")).handoff is None
    third = await service.handle_user_message(conv.id, "mmm")
    assert third.handoff is not None and third.handoff.reason == "not_understood"
    assert third.handoff.detail == "3 messages not understood"
    assert third.handoff.skill == "general"
    assert third.replies[-1].text == HANDING_OVER
    assert third.queue is not None and third.queue.position == 1
    sent = len(dialogue.sent)
    held = await service.handle_user_message(conv.id, "hours")
    assert held.replies == () and len(dialogue.sent) == sent  # Rasa not asked
    stored = await store.get(conv.id)
    assert stored.status == "handoff_requested"
    assert [e.type for e in stored.events] == ["handoff_requested"]


async def test_understood_messages_do_not_count(parts: Any) -> None:
    service, _, _ = parts
    conv = await service.start(Channel.API)
    for text in ("???", "hello", "!!!", "hours", "hours"):
        assert (await service.handle_user_message(conv.id, text)).handoff is None


async def test_outage_hands_off_once(parts: Any) -> None:
    service, _, store = parts
    conv = await service.start(Channel.VOICE)
    res = await service.handle_user_message(conv.id, "down")
    assert res.handoff is not None and res.handoff.reason == "dependency_down"
    assert res.handoff.skill == "general"
    again = await service.handle_user_message(conv.id, "down")
    assert again.handoff is None and again.replies == ()  # already waiting
    stored = await store.get(conv.id)
    assert [e.type for e in stored.events] == ["dependency_down", "handoff_requested"]


def test_business_hours_from_the_real_profile(tmp_path: Path) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from bot.business_hours import BusinessHours
    from tests.procs import ROOT

    hours = BusinessHours(ROOT / "nlu-data")
    london = ZoneInfo("Europe/London")
    assert hours.open_at(datetime(2026, 11, 23, 10, 0, tzinfo=london)) is True  # Monday
    assert hours.open_at(datetime(2026, 11, 23, 19, 0, tzinfo=london)) is False  # evening
    assert hours.open_at(datetime(2026, 11, 22, 12, 0, tzinfo=london)) is False  # Sunday
    assert hours.open_at(datetime(2026, 12, 25, 11, 0, tzinfo=london)) is False  # closure
    assert BusinessHours(tmp_path).open_at(datetime(2026, 11, 23, 10, 0, tzinfo=london)) is None


@pytest.mark.parametrize("open_now,offered", [(True, False), (False, True), (None, False)])
async def test_callback_offered_when_closed(
    tmp_path: Path, open_now: bool | None, offered: bool
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    await migrate(engine)
    store = SqlConversationStore(engine)
    rules = HandoffSettings()  # the estimate (300 s, nobody staffed) is not over the threshold
    handoff = HandoffService(
        SqlHandoffStore(engine), store, EventHub(), rules, lambda _now: open_now
    )
    service = ConversationService(store, ScriptedDialogue({}), handoff, rules)
    conv = await service.start(Channel.WEBCHAT)
    from bot.events import HandoffReason, HandoffRequested

    info = await service.request_handoff(conv.id, HandoffRequested(HandoffReason.USER_REQUEST))
    assert info.estimated_wait_s == 300.0
    assert info.callback_offered is offered
    await engine.dispose()
