"""An agent takes a handed-off phone call in the desk: the ticket detail gives the agent who
owns a voice ticket a signed token; with it the agent's browser hears the caller and talks
back through the media server (``/media/agent``), while the caller's words keep arriving
as turns (live captions). Real bot and media server (same data dir: the shared secret),
scripted Rasa; a protocol-level agent, then SIPp calling and real Chromium answering with
a fake microphone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from bot.desk import media_token
from bot.webchat.identity import sign
from media_server.audio.codecs import ulaw_decode
from media_server.caller import TwilioCaller
from media_server.tts.piper_engine import PiperSynthesizer
from tests.conftest import ARGS, CHROMIUM
from tests.media.callers import speech
from tests.media.sip_peer import run_sipp, sipp_log, spoken, write_rtp_pcap
from tests.media.test_hold import conversation_of, greeted, on_hold, rms
from tests.procs import BotService, MediaService, free_port, instance_settings, media_for, serving
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
    yield from serving(svc)


@pytest.fixture(scope="module")
def call_media(desk_bot: BotService, home: Path) -> Iterator[MediaService]:
    yield from media_for(desk_bot, home, RECEPTIONIST_MEDIA__PORT=str(MEDIA_PORT))


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


def test_sipp_caller_is_answered_by_an_agent_in_chromium(
    call_media: MediaService, desk_bot: BotService, voice: PiperSynthesizer, tmp_path: Path
) -> None:
    """SIPp calls and presses 0; the agent accepts in the desk and takes the audio in
    Chromium, whose fake microphone plays a file (the agent speaking): the caller's speech
    reaches the page, and the agent's reaches SIPp's side in the call's RTP, on a line that
    was quiet (no music, no bot) until the agent took the audio."""
    mic = tmp_path / "agent.wav"
    agent_voice = speech(voice, "Hello, this is Bo at the front desk. How can I help?", 16000)
    with wave.open(str(mic), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.asarray(agent_voice, dtype="<i2").tobytes())
    write_rtp_pcap(
        tmp_path / "caller.pcap", spoken(voice, "I have a question about my last bill."), 0
    )
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtp.settimeout(0.2)
    received: list[tuple[float, float]] = []  # arrival, RMS of each PCMU packet
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                data = rtp.recv(2048)
                if len(data) > 12 and data[1] & 0x7F == 0:
                    pcm = ulaw_decode(data[12:]).astype(np.float64)
                    received.append((time.monotonic(), float(np.sqrt((pcm**2).mean()))))

    recorder = threading.Thread(target=record, daemon=True)
    recorder.start()
    result: list[subprocess.CompletedProcess[str]] = []
    port = str(rtp.getsockname()[1])
    sipp = threading.Thread(
        target=lambda: result.append(
            asyncio.run(run_sipp(call_media, "agent_call.xml", tmp_path, "-set", "rtpport", port))
        ),
        daemon=True,
    )
    args = [
        *ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}",
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
                sipp.start()  # the agent is ready: the call is offered as soon as it asks
                page.get_by_role("button", name="Accept").first.click(timeout=60_000)
                # "Bo has joined the call." ends the music; wait for the line to go quiet
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and loud_between(
                    received, time.monotonic() - 1.0, time.monotonic()
                ):
                    page.wait_for_timeout(100)
                taken = time.monotonic()
                page.get_by_role("button", name="Take the call (audio)").click(timeout=10_000)
                # the caller's speech plays in the page; the microphone goes to the call
                try:
                    page.wait_for_function(
                        "() => window.__agentAudio.loud > 25 && window.__agentAudio.sent > 200",
                        timeout=30_000,
                    )
                except PlaywrightTimeout:
                    counts = page.evaluate(
                        "() => [window.__agentAudio.received, window.__agentAudio.loud,"
                        " window.__agentAudio.sent]"
                    )
                    raise AssertionError(f"received, loud, sent frames: {counts}") from None
                dropped = time.monotonic()
                page.get_by_role("button", name="Hang up audio").click()
                page.get_by_role("button", name="Take the call (audio)").wait_for(timeout=5_000)
            finally:
                browser.close()
        sipp.join(120)
    finally:
        stop.set()
        recorder.join(5)
        rtp.close()
    assert result and result[0].returncode == 0, sipp_log(tmp_path, result[0])
    assert call_media.log_events("media.agent.connected")
    # quiet before the agent took the audio, the agent's voice after
    assert loud_between(received, taken - 1.0, taken) <= 5
    assert loud_between(received, taken + 0.3, dropped) >= 50


def loud_between(received: list[tuple[float, float]], t0: float, t1: float) -> int:
    """Loud (speech) packets of the call's RTP that arrived between t0 and t1."""
    return sum(1 for at, level in list(received) if t0 <= at <= t1 and level > 300)
