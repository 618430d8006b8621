"""An agent takes a handed-off phone call in the desk: the ticket detail gives the agent who
owns a voice ticket a signed token; with it the agent's browser hears the caller and talks
back through the media server (``/media/agent``), while the caller's words keep arriving
as turns (live captions). Real bot and media server (same data dir: the shared secret),
scripted Rasa; a protocol-level agent, then real Chromium with a fake microphone."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from playwright.sync_api import sync_playwright

from bot.desk import media_token
from bot.webchat.identity import sign
from media_server.caller import TwilioCaller
from media_server.tts.piper_engine import PiperSynthesizer
from tests.conftest import ARGS, CHROMIUM
from tests.media.callers import speech
from tests.media.test_hold import conversation_of, greeted, on_hold, rms
from tests.procs import BotService, MediaService, free_port, instance_settings, running_media
from tests.stub_rasa import StubRasa, stub_rasa
from tests.test_desk import PASSWORD, Desk, add_user

MEDIA_PORT = free_port()


@pytest.fixture(scope="module")
def rasa_stub() -> Iterator[StubRasa]:
    with stub_rasa() as stub:
        yield stub


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agent-audio")  # one data dir: one media-agent secret


@pytest.fixture(scope="module")
def desk_bot(rasa_stub: StubRasa, home: Path) -> Iterator[BotService]:
    settings, env = instance_settings(
        home,
        RECEPTIONIST_RASA__URL=rasa_stub.url,
        RECEPTIONIST_MEDIA__PORT=str(MEDIA_PORT),
        RECEPTIONIST_HANDOFF__ROUTER_INTERVAL_S="0.3",
        RECEPTIONIST_HANDOFF__WRAP_UP_S="0",
    )
    svc = BotService(settings, env)
    add_user(svc, "ana", "agent", "general:2", "Ana")
    add_user(svc, "bo", "agent", "general:2", "Bo")
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def call_media(desk_bot: BotService, home: Path) -> Iterator[MediaService]:
    yield from running_media(
        home,
        RECEPTIONIST_MEDIA__PORT=str(MEDIA_PORT),
        RECEPTIONIST_MEDIA__BOT_URL=desk_bot.url,
        RECEPTIONIST_MEDIA__NO_SPEECH_TIMEOUT_S="30",
    )


async def _stream(ws: aiohttp.ClientWebSocketResponse, pcm: np.ndarray) -> None:
    """16 kHz PCM in 20 ms frames at real-time pace (the agent's microphone)."""
    start = time.monotonic()
    for i in range(0, len(pcm), 320):
        await ws.send_bytes(pcm[i : i + 320].tobytes())
        delay = start + (i // 320 + 1) * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


async def refusal(url: str) -> tuple[int | None, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        msg = await ws.receive(timeout=10)
        error = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else {}
        await ws.receive(timeout=10)
        return ws.close_code, error


async def test_agent_hears_the_caller_and_is_heard(
    call_media: MediaService, desk_bot: BotService, voice: PiperSynthesizer
) -> None:
    ana = await Desk(desk_bot.url).login("ana")
    try:
        await ana.connect()
        async with TwilioCaller(call_media.ws + "/media/twilio") as caller:
            await greeted(caller)
            await on_hold(call_media, caller)
            cid = conversation_of(call_media, caller.call_sid)
            await ana.available()
            offer = await ana.offer_for(cid)
            tid = offer["ticket"]["id"]
            await ana.call("POST", f"/desk/api/tickets/{tid}/accept")
            grant = (await ana.call("GET", f"/desk/api/tickets/{tid}"))["agent_audio"]
            assert grant["url"] == call_media.ws + "/media/agent"
            await caller.wait_quiet(0.8, timeout=15)  # "Ana has joined the call."
            frames: list[tuple[float, bytes]] = []
            events: list[dict[str, Any]] = []
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"{grant['url']}?token={grant['token']}") as ws,
            ):
                assert (await ws.receive_json(timeout=5))["type"] == "hello"

                async def read() -> None:
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            frames.append((time.monotonic(), msg.data))
                        elif msg.type == aiohttp.WSMsgType.TEXT:
                            events.append(json.loads(msg.data))

                reader = asyncio.create_task(read())
                said, _ = await caller.say(
                    speech(voice, "I want to change my booking please", 8000)
                )
                heard = b"".join(f for t, f in frames if t >= said)
                assert rms(np.frombuffer(heard, dtype=np.int16)) > 300  # the caller's voice
                # the caller's words reach the desk as a user turn while Ana owns the call
                async with asyncio.timeout(20):
                    while True:
                        ev = await ana.next_event("turn", 20)
                        if ev["turn"]["role"] == "user":
                            break
                assert "booking" in ev["turn"]["text"] or "change" in ev["turn"]["text"], ev
                assert any(e["type"] == "caption" and e["final"] for e in events), events
                sent = time.monotonic()
                await _stream(ws, tone(1.0))
                first = await caller.wait_speech(sent, timeout=5)
                assert first - sent < 1.0  # the agent's voice, at once
                await ws.send_json({"type": "end"})
                reader.cancel()
            await asyncio.sleep(1.0)
            assert not caller.closed.is_set()  # the agent let go of the audio; the call goes on
            # a second attachment hears the caller hang up
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"{grant['url']}?token={grant['token']}") as ws,
            ):
                assert (await ws.receive_json(timeout=5))["type"] == "hello"
                await caller.hang_up()
                async with asyncio.timeout(10):
                    while (msg := await ws.receive()).type == aiohttp.WSMsgType.BINARY:
                        pass
                assert msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "end"
    finally:
        await ana.call("POST", "/desk/api/presence", {"presence": "offline"})
        await ana.close()


async def test_bad_tokens_are_refused(call_media: MediaService, desk_bot: BotService) -> None:
    url = call_media.ws + "/media/agent?token="
    settings = desk_bot.settings
    forged = sign({"cid": "a" * 32, "agent": 1, "exp": 2**40, "use": "agent-audio"}, "forger")
    expired = media_token.issue(settings, "a" * 32, 1, ttl_s=-5)
    for token, why in [("nonsense", "malformed"), (forged, "signature"), (expired, "expired")]:
        code, error = await refusal(url + token)
        assert code == 4401 and error["code"] == "unauthorized" and why in error["message"]
    code, error = await refusal(url + media_token.issue(settings, "b" * 32, 1))
    assert code == 4404 and error["code"] == "no_call"


def test_agent_takes_the_call_in_the_desk(call_media: MediaService, desk_bot: BotService) -> None:
    stop = threading.Event()
    placed: list[str] = []

    async def call() -> None:
        async with TwilioCaller(call_media.ws + "/media/twilio") as caller:
            await greeted(caller)
            await caller.press("0")  # a person, please
            placed.append(caller.call_sid)
            await asyncio.to_thread(stop.wait, 120)

    caller_thread = threading.Thread(target=asyncio.run, args=(call(),), daemon=True)
    caller_thread.start()
    args = [
        *ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
            try:
                page = browser.new_context(permissions=["microphone"]).new_page()
                r = page.request.post(
                    desk_bot.url + "/desk/api/login", data={"username": "bo", "password": PASSWORD}
                )
                assert r.ok, r.text()
                page.goto(desk_bot.url + "/desk")
                page.locator("#live").get_by_text("live").wait_for(timeout=10_000)
                page.select_option("#presence", "available")
                page.get_by_role("button", name="Accept").first.click(timeout=60_000)
                page.get_by_role("button", name="Take the call (audio)").click(timeout=10_000)
                page.wait_for_function(
                    "() => window.__agentAudio.received > 10 && window.__agentAudio.sent > 10",
                    timeout=15_000,
                )
                page.get_by_role("button", name="Hang up audio").click()
                page.get_by_role("button", name="Take the call (audio)").wait_for(timeout=5_000)
            finally:
                browser.close()
    finally:
        stop.set()
        caller_thread.join(30)
    assert placed
    assert call_media.log_events("media.agent.connected")
