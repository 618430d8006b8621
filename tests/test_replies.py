"""Parsing Rasa's REST replies and recognising the handoff payload."""

from __future__ import annotations

import pytest

from bot.conversation_service import handoff_from_replies
from bot.events import BotReply, Button, HandoffReason
from bot.rasa_client import RasaError, parse_reply


def test_text_buttons_image_custom() -> None:
    r = parse_reply(
        {
            "recipient_id": "x",
            "text": "Hi",
            "image": "http://i/x.png",
            "buttons": [
                {"title": "Hours", "payload": "/opening_hours"},
                {"title": "Only title"},
                "junk",
            ],
            "custom": {"k": 1},
        }
    )
    assert r.text == "Hi"
    assert r.buttons == (Button("Hours", "/opening_hours"), Button("Only title", "Only title"))
    assert r.payload() == {
        "buttons": [
            {"title": "Hours", "payload": "/opening_hours"},
            {"title": "Only title", "payload": "Only title"},
        ],
        "image": "http://i/x.png",
        "custom": {"k": 1},
    }


def test_plain_text_has_no_payload() -> None:
    assert parse_reply({"text": "ok"}).payload() is None


def test_non_object_reply_is_an_error() -> None:
    with pytest.raises(RasaError) as err:
        parse_reply(["not", "a", "dict"])
    assert err.value.code == "rasa_bad_response"


def test_handoff_payload_is_recognised() -> None:
    replies = (
        BotReply(text="hold on"),
        BotReply(custom={"handoff": {"reason": "user_request", "skill": "billing"}}),
    )
    h = handoff_from_replies(replies)
    assert h is not None
    assert h.reason is HandoffReason.USER_REQUEST
    assert h.skill == "billing"


def test_unknown_handoff_reason_kept_as_detail() -> None:
    h = handoff_from_replies((BotReply(custom={"handoff": {"reason": "vip_customer"}}),))
    assert h is not None
    assert h.reason is HandoffReason.BOT_REQUEST
    assert h.detail == "vip_customer"
    assert h.skill is None


def test_no_handoff_without_payload() -> None:
    assert handoff_from_replies((BotReply(text="hi"), BotReply(custom={"other": 1}))) is None
