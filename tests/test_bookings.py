"""What the action server reports back: bookings (stored, visible to staff) and callback
requests (queue tasks). Token-protected; bad input is refused with nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.procs import BotService, http_json
from tests.test_desk import add_user


def _token(bot: BotService) -> str:
    return bot.settings.secret("internal-token")


def _post(bot: BotService, path: str, body: Any, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http_json("POST", f"{bot.url}/api/v1/internal/{path}", body, headers=headers)


def _booking(cid: str, **over: Any) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    body = {
        "type": "booking",
        "conversation_id": cid,
        "service": {
            "id": "sports_massage",
            "name": "sports massage",
            "price": 55.0,
            "currency": "GBP",
            "duration_minutes": 60,
        },
        "start": start.isoformat(),
        "timezone": "Europe/London",
        "customer": {"name": "Jane Doe", "phone": "+447912345678"},
    }
    body.update(over)
    return body


def test_booking_is_stored_and_listed_for_staff(bot: BotService) -> None:
    cid = bot.new_conversation()
    status, stored = _post(bot, "bookings", _booking(cid), _token(bot))
    assert status == 201 and stored["service_id"] == "sports_massage"
    conv = bot.api("GET", f"/conversations/{cid}")[1]
    assert [e["type"] for e in conv["events"]] == ["booking_made"]

    import asyncio

    from tests.test_desk import Desk

    add_user(bot, "bookkeeper", "agent", "general:1", "Bea")

    async def listed() -> list[dict[str, Any]]:
        desk = await Desk(bot.url).login("bookkeeper")
        try:
            found = await desk.call("GET", f"/desk/api/bookings?conversation_id={cid}")
            await desk.call("GET", "/desk/api/bookings?from=2020-01-01T00:00:00", expect=422)
            return list(found["bookings"])
        finally:
            await desk.close()

    [b] = asyncio.run(listed())
    assert (b["customer_name"], b["customer_phone"]) == ("Jane Doe", "+447912345678")
    assert b["start"] == stored["start"] and b["status"] == "confirmed"
    assert http_json("GET", f"{bot.url}/desk/api/bookings")[0] == 401  # anonymous


@pytest.mark.parametrize(
    "token,body,status",
    [
        (None, None, 401),
        ("wrong", None, 401),
        ("ok", {"conversation_id": "0" * 32}, 404),
        ("ok", {"start": "2026-12-01T10:00:00"}, 422),  # no time zone
        ("ok", {"customer": {"name": "x"}}, 422),
    ],
)
def test_bad_booking_reports_store_nothing(
    bot: BotService, token: str | None, body: dict[str, Any] | None, status: int
) -> None:
    cid = bot.new_conversation()
    payload = _booking(cid, **(body or {}))
    got, err = _post(bot, "bookings", payload, _token(bot) if token == "ok" else token)
    assert got == status, err
    assert bot.api("GET", f"/conversations/{cid}")[1]["events"] == []


def test_callback_request_becomes_a_queue_task(bot: BotService) -> None:
    cid = bot.new_conversation(customer={"name": "Cal"})
    at = datetime.now(UTC) + timedelta(hours=3)
    status, res = _post(
        bot,
        "callbacks",
        {
            "type": "callback",
            "conversation_id": cid,
            "phone": "+447900000001",
            "at": at.isoformat(),
            "timezone": "Europe/London",
            "skill": "billing",
        },
        _token(bot),
    )
    assert status == 201 and res["status"] == "callback_scheduled"
    conv = bot.api("GET", f"/conversations/{cid}")[1]
    [ev] = [e for e in conv["events"] if e["type"] == "callback_requested"]
    assert ev["data"]["number"] == "+447900000001"
    assert conv["status"] == "active"  # the bot keeps talking until the callback is due
    res2 = bot.say(cid, "what are your opening hours")
    assert res2["replies"] and res2["queue"] is None
