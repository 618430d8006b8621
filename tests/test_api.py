"""The public API end to end: real bot service, real Rasa server and action server."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.procs import BotService, http_json


def test_greeting_with_buttons_and_recorded_intent(bot: BotService) -> None:
    cid = bot.new_conversation(channel="webchat", customer={"name": "Ana"})
    res = bot.say(cid, "hello there")
    assert res["user_turn"]["intent"] == "greet"
    assert res["user_turn"]["intent_confidence"] > 0.5
    [reply] = res["replies"]
    assert "virtual receptionist" in reply["text"]
    assert {b["payload"] for b in reply["buttons"]} >= {"/opening_hours", "/request_human"}


def test_opening_hours_and_stored_transcript(bot: BotService) -> None:
    cid = bot.new_conversation()
    res = bot.say(cid, "what are your opening hours")
    assert "Monday to Friday" in res["replies"][0]["text"]
    bot.say(cid, "where are you located")
    status, conv = bot.api("GET", f"/conversations/{cid}")
    assert status == 200
    assert conv["status"] == "active"
    roles = [(t["seq"], t["role"]) for t in conv["transcript"]]
    assert roles == [(1, "user"), (2, "bot"), (3, "user"), (4, "bot")]
    assert conv["transcript"][0]["intent"] == "opening_hours"
    assert conv["transcript"][2]["intent"] == "location"
    assert "Harbour Street" in conv["transcript"][3]["text"]


def test_button_payload_is_a_message(bot: BotService) -> None:
    cid = bot.new_conversation()
    res = bot.say(cid, "/location")
    assert "Harbour Street" in res["replies"][0]["text"]


def test_asking_for_a_human_hands_off(bot: BotService) -> None:
    cid = bot.new_conversation()
    res = bot.say(cid, "can i speak to a real person please")
    assert res["handoff"] == {
        "reason": "user_request",
        "skill": "general",
        "detail": None,
        "priority": None,
    }
    assert any("colleague" in (r["text"] or "") for r in res["replies"])
    conv = bot.api("GET", f"/conversations/{cid}")[1]
    assert conv["status"] == "handoff_requested"
    assert [e["type"] for e in conv["events"]] == ["handoff_requested"]
    assert conv["events"][0]["data"]["reason"] == "user_request"


def test_client_message_id_is_deduplicated(bot: BotService) -> None:
    cid = bot.new_conversation()
    first = bot.say(cid, "hi", client_message_id="c-1")
    again = bot.say(cid, "hi", client_message_id="c-1")
    assert again["duplicate"] is True and first["duplicate"] is False
    assert again["user_turn"]["seq"] == first["user_turn"]["seq"] == 1
    assert [r["text"] for r in again["replies"]] == [r["text"] for r in first["replies"]]
    assert bot.api("GET", f"/conversations/{cid}")[1]["turn_count"] == 2


def test_concurrent_messages_get_distinct_ordered_turns(bot: BotService) -> None:
    cid = bot.new_conversation()
    with ThreadPoolExecutor(5) as pool:
        results = list(
            pool.map(lambda t: bot.say(cid, t), ["hi", "thanks", "bye", "hello", "where are you"])
        )
    conv = bot.api("GET", f"/conversations/{cid}")[1]
    assert [t["seq"] for t in conv["transcript"]] == list(range(1, conv["turn_count"] + 1))
    assert sorted(r["user_turn"]["seq"] for r in results) == [
        t["seq"] for t in conv["transcript"] if t["role"] == "user"
    ]


def _turns(bot: BotService, cid: str) -> int:
    return int(bot.api("GET", f"/conversations/{cid}")[1]["turn_count"])


@pytest.mark.parametrize(
    "body,status,code",
    [
        ({"text": 123}, 422, "invalid_request"),
        ({"text": ""}, 422, "invalid_request"),
        ({"text": "   "}, 422, "empty_message"),
        ({}, 422, "invalid_request"),
        ({"text": "hi", "surprise": 1}, 422, "invalid_request"),
        ({"text": "hi", "asr_confidence": 3}, 422, "invalid_request"),
        ({"text": "x" * 5001}, 422, "message_too_long"),
        ([1, 2], 422, "invalid_request"),
    ],
)
def test_bad_messages_are_4xx_and_store_nothing(
    bot: BotService, body: object, status: int, code: str
) -> None:
    cid = bot.new_conversation()
    got_status, err = bot.api("POST", f"/conversations/{cid}/messages", body)
    assert (got_status, err["error"]["code"]) == (status, code), err
    assert err["error"]["message"]
    assert _turns(bot, cid) == 0


def test_limit_is_inclusive(bot: BotService) -> None:
    cid = bot.new_conversation()
    res = bot.say(cid, "a" * 5000)
    assert len(res["user_turn"]["text"]) == 5000


def test_wrong_type_names_the_field(bot: BotService) -> None:
    cid = bot.new_conversation()
    _, err = bot.api("POST", f"/conversations/{cid}/messages", {"text": 5})
    assert err["error"]["details"][0]["field"] == "text"


def test_malformed_json_empty_body_and_wrong_content_type(bot: BotService) -> None:
    cid = bot.new_conversation()
    path = f"/conversations/{cid}/messages"
    status, err = bot.api("POST", path, raw=b'{"text": "hi"')
    assert (status, err["error"]["code"]) == (400, "invalid_json")
    status, err = bot.api("POST", path, raw=b"")
    assert (status, err["error"]["code"]) == (400, "invalid_json")
    status, err = bot.api(
        "POST", path, raw=b"text=hi", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert (status, err["error"]["code"]) == (415, "unsupported_media_type")
    assert _turns(bot, cid) == 0


def test_oversized_body_is_413(bot: BotService) -> None:
    cid = bot.new_conversation()
    raw = json.dumps({"text": "x" * 200_000}).encode()
    status, err = bot.api("POST", f"/conversations/{cid}/messages", raw=raw)
    assert (status, err["error"]["code"]) == (413, "payload_too_large")
    assert _turns(bot, cid) == 0


def test_unknown_ids_and_routes(bot: BotService) -> None:
    for cid in ("0" * 32, "nope", "Z" * 32, "%2e%2e"):
        status, err = bot.api("GET", f"/conversations/{cid}")
        assert (status, err["error"]["code"]) == (404, "conversation_not_found")
        status, err = bot.api("POST", f"/conversations/{cid}/messages", {"text": "hi"})
        assert (status, err["error"]["code"]) == (404, "conversation_not_found")
    assert bot.api("GET", "/nothing-here")[0] == 404
    status, err = bot.api("DELETE", "/conversations")
    assert (status, err["error"]["code"]) == (405, "method_not_allowed")


@pytest.mark.parametrize(
    "body",
    [
        {"channel": "carrier-pigeon"},
        {"customer": {"email": "not-an-email"}},
        {"customer": {"name": 42}},
        {"metadata": "string"},
    ],
)
def test_bad_conversation_creation(bot: BotService, body: dict[str, object]) -> None:
    status, err = bot.api("POST", "/conversations", body)
    assert (status, err["error"]["code"]) == (422, "invalid_request")


def test_create_returns_location_and_customer(bot: BotService) -> None:
    status, conv = bot.api(
        "POST",
        "/conversations",
        {
            "channel": "voice",
            "customer": {"name": "Bo", "phone": "+4411", "email": "bo@ex.org"},
            "metadata": {"caller_id": "+4411"},
        },
    )
    assert status == 201
    assert conv["channel"] == "voice"
    assert conv["customer"] == {"name": "Bo", "phone": "+4411", "email": "bo@ex.org"}
    assert conv["transcript"] == []


def test_openapi_document(bot: BotService) -> None:
    status, doc = http_json("GET", bot.url + "/api/v1/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    assert set(paths["/api/v1/conversations"]) == {"post"}
    assert "get" in paths["/api/v1/conversations/{conversation_id}"]
    post = paths["/api/v1/conversations/{conversation_id}/messages"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/PostMessage"
    )
    schemas = doc["components"]["schemas"]
    assert schemas["PostMessage"]["properties"]["text"]["type"] == "string"
    for ref in ("MessageResult", "ConversationOut", "ErrorOut", "TurnOut"):
        assert ref in schemas


def test_health_and_readiness(bot: BotService) -> None:
    assert http_json("GET", bot.url + "/healthz") == (200, {"status": "ok"})
    status, ready = http_json("GET", bot.url + "/readyz")
    assert status == 200 and ready["ready"] is True
    assert ready["checks"]["rasa_model"]["detail"].startswith("receptionist-")
    assert ready["checks"]["database"]["ok"] is True


def test_home_page_lists_endpoints(bot: BotService) -> None:
    import urllib.request

    with urllib.request.urlopen(bot.url + "/", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/html")
        page = r.read().decode()
    assert f"{bot.url}/api/v1/conversations" in page
    assert 'href="/readyz"' in page
