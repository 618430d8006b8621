"""The webchat WebSocket protocol against the real bot service and Rasa: bad input gets clear
errors, floods are cut off without affecting others, resume and de-duplication work, and
signed identities are checked."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from bot.webchat.identity import sign
from tests.conftest import bot_for
from tests.procs import BotService, RasaStack

SECRET = "shared-test-secret-0123456789"


@pytest.fixture(scope="module")
def chat(rasa: RasaStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    svc = bot_for(
        rasa,
        tmp_path_factory.mktemp("webchat"),
        RECEPTIONIST_WEBCHAT__IDENTITY_SECRET=SECRET,
        RECEPTIONIST_WEBCHAT__BURST="5",
        RECEPTIONIST_WEBCHAT__MESSAGES_PER_MINUTE="60",
        RECEPTIONIST_WEBCHAT__MAX_VIOLATIONS="3",
        # every test client is 127.0.0.1: the per-IP bucket is sized for the whole module
        RECEPTIONIST_WEBCHAT__IP_BURST="1000",
        RECEPTIONIST_WEBCHAT__ALLOWED_ORIGINS='["https://shop.example"]',
    )
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


class Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, frame: Any) -> None:
        await self.ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def until(self, kind: str, limit_s: float = 15, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            msg = await self.ws.receive(timeout=deadline - time.monotonic())
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"socket ended: {msg.type} {msg.data!r} {msg.extra!r}")
            f = json.loads(msg.data)
            if f["type"] == kind and all(f.get(k) == v for k, v in match.items()):
                return dict(f)
        raise AssertionError(f"no {kind} {match} within {limit_s}s")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def connect(
    http: aiohttp.ClientSession, svc: BotService, **hello: Any
) -> tuple[Client, dict[str, Any]]:
    ws = await http.ws_connect(svc.url.replace("http", "ws") + "/webchat/ws")
    c = Client(ws)
    await c.send({"type": "hello", "v": 1, **hello})
    return c, await c.until("welcome")


async def test_chat_ack_typing_and_replies(chat: BotService, http: aiohttp.ClientSession) -> None:
    c, welcome = await connect(http, chat)
    assert welcome["v"] == 1 and welcome["history"] == [] and welcome["resume_token"]
    await c.send({"type": "message", "id": "m1", "text": "what are your opening hours"})
    frames = [await c.until("typing")]
    while frames[-1]["type"] != "ack":
        msg = await c.ws.receive(timeout=15)
        frames.append(json.loads(msg.data))
    kinds = [
        (f["type"], f.get("on") if f["type"] == "typing" else f.get("turn", {}).get("role"))
        for f in frames
    ]
    # typing on, the visitor's turn, the bot's reply, typing off, then the ack
    assert kinds == [
        ("typing", True),
        ("turn", "user"),
        ("turn", "bot"),
        ("typing", False),
        ("ack", None),
    ]
    reply = frames[2]["turn"]
    assert "Monday to Friday" in reply["text"] and "intent" not in reply  # no internals
    assert frames[1]["turn"]["client_message_id"] == "m1"
    assert frames[-1] == {"type": "ack", "id": "m1", "seq": 1, "duplicate": False}


async def test_resume_and_exactly_once(chat: BotService, http: aiohttp.ClientSession) -> None:
    c, welcome = await connect(http, chat)
    cid, token = welcome["conversation_id"], welcome["resume_token"]
    await c.send({"type": "message", "id": "x1", "text": "hello"})
    await c.until("ack", id="x1")
    await c.ws.close()
    # reconnect: same conversation, its history; re-sending x1 is answered from storage
    c2, again = await connect(http, chat, conversation_id=cid, resume_token=token)
    assert again["conversation_id"] == cid
    assert [t["seq"] for t in again["history"]] == [1, 2]
    await c2.send({"type": "message", "id": "x1", "text": "hello"})
    ack = await c2.until("ack", id="x1")
    assert ack["duplicate"] is True and ack["seq"] == 1
    conv = chat.api("GET", f"/conversations/{cid}")[1]
    assert [t["text"] for t in conv["transcript"] if t["role"] == "user"] == ["hello"]
    # a wrong token cannot take over the conversation: a new one starts
    _, other = await connect(http, chat, conversation_id=cid, resume_token=token[:-2] + "xx")
    assert other["conversation_id"] != cid and other["history"] == []


@pytest.mark.parametrize(
    "frame,code",
    [
        ("{not json", "malformed_json"),
        ("[1, 2]", "invalid_frame"),
        ({"type": "launch_rockets"}, "unknown_type"),
        ({"type": "message", "text": "no id"}, "invalid_frame"),
        ({"type": "message", "id": "a", "text": "x" * 5001}, "message_too_long"),
        ({"type": "message", "id": "b", "text": "y" * 9000}, "frame_too_large"),
        ({"type": "callback", "number": "call me maybe"}, "invalid_frame"),
        ({"type": "hello", "v": 1}, "invalid_frame"),
    ],
)
async def test_bad_frames_get_clear_errors(
    chat: BotService, http: aiohttp.ClientSession, frame: Any, code: str
) -> None:
    c, welcome = await connect(http, chat)
    await c.send(frame)
    err = await c.until("error")
    assert err["code"] == code and err["message"]
    await c.send({"type": "ping"})  # the connection is still usable
    await c.until("pong")
    conv = chat.api("GET", f"/conversations/{welcome['conversation_id']}")[1]
    assert conv["turn_count"] == 0


async def test_hello_required(chat: BotService, http: aiohttp.ClientSession) -> None:
    ws = await http.ws_connect(chat.url.replace("http", "ws") + "/webchat/ws")
    c = Client(ws)
    await c.send({"type": "message", "id": "1", "text": "hi"})
    assert (await c.until("error"))["code"] == "hello_required"


async def test_flood_is_cut_off_and_others_are_unaffected(
    chat: BotService, http: aiohttp.ClientSession
) -> None:
    calm, _ = await connect(http, chat)
    flood, _ = await connect(http, chat)
    codes = []
    for _ in range(40):
        if flood.ws.closed:
            break
        await flood.send({"type": "ping"})
    while True:
        msg = await flood.ws.receive(timeout=10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        f = json.loads(msg.data)
        codes.append(f.get("code") or f["type"])
    assert "rate_limited" in codes
    assert flood.ws.close_code == 1008
    await calm.send({"type": "message", "id": "c1", "text": "hello"})
    assert (await calm.until("ack", id="c1"))["duplicate"] is False


async def test_signed_identity(chat: BotService, http: aiohttp.ClientSession) -> None:
    good = sign({"name": "Iris", "email": "iris@example.org", "exp": time.time() + 600}, SECRET)
    _, welcome = await connect(http, chat, identity=good)
    conv = chat.api("GET", f"/conversations/{welcome['conversation_id']}")[1]
    assert conv["customer"] == {"name": "Iris", "phone": None, "email": "iris@example.org"}

    tampered = sign({"name": "Iris", "exp": time.time() + 600}, SECRET)
    _body, mac = tampered.split(".")
    forged = sign({"name": "Mallory", "exp": time.time() + 600}, "guess").split(".")[0] + "." + mac
    expired = sign({"name": "Iris", "exp": time.time() - 1}, SECRET)
    for token, why in ((forged, "bad signature"), (expired, "expired"), ("junk", "malformed")):
        ws = await http.ws_connect(chat.url.replace("http", "ws") + "/webchat/ws")
        c = Client(ws)
        await c.send({"type": "hello", "v": 1, "identity": token})
        err = await c.until("error")
        assert err["code"] == "identity_invalid" and why in err["message"]
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 4401


async def test_origin_allow_list(chat: BotService, http: aiohttp.ClientSession) -> None:
    url = chat.url.replace("http", "ws") + "/webchat/ws"
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await http.ws_connect(url, origin="https://evil.example")
    assert err.value.status == 403
    ok = await http.ws_connect(url, origin="https://shop.example")
    await ok.send_str(json.dumps({"type": "hello", "v": 1}))
    assert json.loads((await ok.receive(timeout=10)).data)["type"] == "welcome"
    await ok.close()


async def test_handoff_and_callback_over_the_socket(
    chat: BotService, http: aiohttp.ClientSession
) -> None:
    c, welcome = await connect(http, chat)
    await c.send({"type": "handoff"})
    q = await c.until("queue")
    assert q["status"] == "queued" and q["position"] >= 1
    await c.send({"type": "callback", "number": "+44 117 000 0000"})
    q = await c.until("queue", status="callback_scheduled")
    await c.send({"type": "close"})
    await c.until("closed")
    conv = chat.api("GET", f"/conversations/{welcome['conversation_id']}")[1]
    kinds = [e["type"] for e in conv["events"]]
    assert kinds[:2] == ["handoff_requested", "callback_requested"] and "closed" in kinds
    assert "abandoned" not in kinds  # leaving after asking for a callback keeps the callback
