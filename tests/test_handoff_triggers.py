"""What makes the bot hand off, end to end with the real Rasa model: the explicit request is
covered in test_api/test_desk; here frustration, repeated not-understood and a VIP rule."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.conversation_service import HANDING_OVER, VIP_WELCOME
from tests.conftest import bot_for
from tests.procs import BotService, RasaStack

VIP_PHONE = "+44 7700 900123"


@pytest.fixture(scope="module")
def svc(rasa: RasaStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    s = bot_for(
        rasa,
        tmp_path_factory.mktemp("triggers"),
        RECEPTIONIST_HANDOFF__MAX_NOT_UNDERSTOOD="2",
        RECEPTIONIST_HANDOFF__VIP_CUSTOMERS=f'["{VIP_PHONE}", "boss@example.org"]',
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _ticket_event(svc: BotService, cid: str) -> dict[str, object]:
    conv = svc.api("GET", f"/conversations/{cid}")[1]
    [ev] = [e for e in conv["events"] if e["type"] == "handoff_requested"]
    return dict(ev["data"])


def test_frustration_hands_off_with_higher_priority(svc: BotService) -> None:
    cid = svc.new_conversation()
    calm = svc.say(cid, "what are your opening hours")
    assert calm["handoff"] is None
    res = svc.say(cid, "this is useless, you don't understand me!!")
    assert res["handoff"]["reason"] == "frustration" and res["handoff"]["priority"] == 2
    assert res["replies"][-1]["text"] == HANDING_OVER
    assert res["queue"]["status"] in ("queued", "offered")
    assert _ticket_event(svc, cid)["reason"] == "frustration"


@pytest.mark.parametrize("customer", [{"phone": VIP_PHONE}, {"email": "Boss@Example.org"}])
def test_vip_goes_straight_to_a_person(svc: BotService, customer: dict[str, str]) -> None:
    cid = svc.new_conversation(customer=customer)
    res = svc.say(cid, "what are your opening hours")
    assert [r["text"] for r in res["replies"]] == [VIP_WELCOME]
    assert res["user_turn"]["intent"] is None  # Rasa was not asked
    assert res["handoff"] == {
        "reason": "business_rule",
        "skill": "general",
        "detail": "vip_customer",
        "priority": 3,
    }


def test_ordinary_customer_is_not_vip(svc: BotService) -> None:
    cid = svc.new_conversation(customer={"phone": "+44 7700 900999"})
    res = svc.say(cid, "what are your opening hours")
    assert res["handoff"] is None and "Monday" in res["replies"][0]["text"]
