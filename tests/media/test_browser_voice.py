"""Voice from the browser: the webchat widget's microphone button streams to the media
server and plays the bot's spoken answer; the voice turns join the webchat conversation.
A protocol-level client checks the transport's errors; real Chromium (fake microphone fed
with Piper speech) checks the widget."""

from __future__ import annotations

import asyncio
import json
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from playwright.sync_api import sync_playwright

from media_server.tts.piper_engine import PiperSynthesizer
from tests.conftest import ARGS, CHROMIUM, bot_for
from tests.media.callers import speech
from tests.procs import BotService, MediaService, RasaStack, free_port, running_media, serving

MEDIA_PORT = free_port()


def speech_16k(voice: PiperSynthesizer, text: str) -> np.ndarray:
    return speech(voice, text, 16000)


@pytest.fixture(scope="module")
def web_bot(rasa: RasaStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    # the demo page points the widget's microphone at this module's media server
    svc = bot_for(
        rasa, tmp_path_factory.mktemp("web-bot"), RECEPTIONIST_MEDIA__PORT=str(MEDIA_PORT)
    )
    yield from serving(svc)


@pytest.fixture(scope="module")
def media(web_bot: BotService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaService]:
    yield from running_media(
        tmp_path_factory.mktemp("web-media"),
        RECEPTIONIST_MEDIA__PORT=str(MEDIA_PORT),
        RECEPTIONIST_MEDIA__BOT_URL=web_bot.url,
        RECEPTIONIST_SERVER__PORT=str(web_bot.settings.server.port),
    )


async def _stream(ws: aiohttp.ClientWebSocketResponse, pcm: np.ndarray) -> None:
    """Send 16 kHz PCM in 20 ms frames at real-time pace."""
    start = time.monotonic()
    for i in range(0, len(pcm), 320):
        await ws.send_bytes(pcm[i : i + 320].tobytes())
        delay = start + (i // 320 + 1) * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def test_browser_voice_joins_the_webchat_conversation(
    media: MediaService, web_bot: BotService, voice: PiperSynthesizer
) -> None:
    cid = web_bot.new_conversation(channel="webchat")
    question = speech_16k(voice, "Where are you located?")
    silence = np.zeros(16000 * 2, dtype=np.int16)
    events: list[dict[str, Any]] = []
    audio = bytearray()
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(media.ws + "/media/browser", headers={"Origin": web_bot.url}) as ws,
    ):
        await ws.send_json(
            {"type": "start", "version": 1, "sample_rate": 16000, "conversation_id": cid}
        )

        async def read() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    audio.extend(msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    events.append(json.loads(msg.data))

        reader = asyncio.create_task(read())
        await _stream(ws, np.concatenate([silence[:8000], question, silence]))
        deadline = time.monotonic() + 30
        while not any(e.get("type") == "reply" for e in events) and time.monotonic() < deadline:
            await _stream(ws, silence[:1600])
        await _stream(ws, silence)  # the answer plays
        await ws.send_json({"type": "stop"})
        await asyncio.wait_for(reader, 10)

    kinds = [e["type"] for e in events]
    assert kinds[0] == "call" and events[0]["conversation_id"] == cid
    assert "transcript" in kinds and "reply" in kinds
    finals = [e["text"] for e in events if e["type"] == "transcript" and e["final"]]
    assert finals and ("located" in finals[0] or "where" in finals[0]), finals
    pcm = np.frombuffer(bytes(audio), dtype=np.int16)
    assert len(pcm) > 16000  # more than a second of speech came back
    assert float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > 500

    status, conv = web_bot.api("GET", f"/conversations/{cid}")
    assert status == 200
    assert conv["channel"] == "webchat"  # the webchat conversation, now with voice turns
    users = [t for t in conv["transcript"] if t["role"] == "user"]
    assert users and users[0]["voice"]["engine"] in ("vosk", "pocketsphinx")
    assert users[0]["intent"] == "location", users[0]
    assert conv["status"] != "closed"  # joining a chat by voice does not end the chat


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (["{oops"], "invalid_json"),
        ([json.dumps({"type": "hello"})], "not_started"),
        ([json.dumps({"type": "start", "version": 7})], "unsupported_version"),
        ([json.dumps({"type": "start", "sample_rate": 12345})], "unsupported_rate"),
        ([json.dumps({"type": "start", "encoding": "opus"})], "unsupported_codec"),
        ([json.dumps({"type": "start", "conversation_id": "../etc"})], "invalid_conversation"),
        ([b"\x00\x00"], "not_started"),
        ([json.dumps({"type": "start"}), b"\x00\x00\x00"], "invalid_audio"),
        ([json.dumps({"type": "start"}), json.dumps({"type": "sing"})], "unknown_type"),
    ],
)
async def test_bad_browser_frames_get_a_clear_error(
    media: MediaService, frames: list[str | bytes], code: str
) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(media.ws + "/media/browser") as ws:
        for f in frames:
            if isinstance(f, bytes):
                await ws.send_bytes(f)
            else:
                await ws.send_str(f)
        errors = []
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if data.get("type") == "error":
                errors.append(data)
        assert errors and errors[0]["code"] == code, errors
        assert ws.closed


async def test_foreign_origin_is_refused(media: MediaService) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(
                media.ws + "/media/browser", headers={"Origin": "https://evil.example"}
            )
    assert err.value.status == 403


def _wav(path: Path, pcm: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype(np.int16).tobytes())
    return path


def test_widget_microphone_talks_to_the_receptionist(
    media: MediaService, web_bot: BotService, voice: PiperSynthesizer, tmp_path: Path
) -> None:
    question = speech_16k(voice, "What are your opening hours?")
    gap = np.zeros(16000 * 4, dtype=np.int16)
    # Chromium loops the file as its microphone: the question, then a long pause
    mic = _wav(tmp_path / "mic.wav", np.concatenate([gap[:16000], question, gap, gap]), 16000)
    args = [
        *ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            ctx = browser.new_context(permissions=["microphone"])
            page = ctx.new_page()
            page.goto(web_bot.url + "/")
            page.get_by_role("button", name="Chat with us").click()
            mic_button = page.get_by_role("button", name="Talk to the assistant")
            mic_button.wait_for(timeout=10_000)
            page.wait_for_function(
                "() => Object.keys(localStorage).some(k => k.startsWith('receptionist:') "
                "&& JSON.parse(localStorage[k]).cid)",
                timeout=15_000,
            )
            mic_button.click()
            page.get_by_role("button", name="Stop talking").wait_for(timeout=10_000)
            log = page.get_by_role("log")
            log.get_by_text("opening", exact=False).first.wait_for(timeout=45_000)
            log.get_by_text("Monday", exact=False).first.wait_for(timeout=30_000)
            page.wait_for_function(
                "() => window.__receptionistVoice.bytesIn > 32000", timeout=30_000
            )
            sent = page.evaluate("() => window.__receptionistVoice.bytesOut")
            page.get_by_role("button", name="Stop talking").click()
            page.get_by_role("button", name="Talk to the assistant").wait_for(timeout=10_000)
        finally:
            browser.close()
    assert sent > 16000 * 2  # the microphone streamed at least a second of audio
