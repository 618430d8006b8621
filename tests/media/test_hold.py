"""Waiting for a person on the phone: the queue prompt, music on hold with position updates,
a callback on a key press, and the music stopping the moment an agent joins. Real media
server and bot service over real sockets; Rasa is a scripted stand-in (no dialogue here)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog

from media_server.audio import SAMPLE_RATE
from media_server.caller import TwilioCaller
from media_server.hold import MohLibrary, MohPlayer, comfort_tone, load_wav
from media_server.prompts import ENGLISH
from tests.procs import BotService, MediaService, instance_settings, media_for, serving
from tests.stub_rasa import StubRasa, stub_rasa
from tests.test_desk import Desk, add_user

HOLD_UPDATE_S = 4.0
MOH_DIR = Path("/usr/share/asterisk/moh")


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


# -- music on hold, without a call ---------------------------------------------------------
def test_the_debian_hold_music_is_installed() -> None:
    assert MOH_DIR.is_dir(), "asterisk-moh-opsound-wav missing: scripts/setup.sh installs it"


async def test_moh_library_plays_the_installed_music_resampled_and_looped() -> None:
    lib = MohLibrary(MOH_DIR)
    assert len(lib.tracks()) >= 1
    player = MohPlayer(lib)
    chunk = np.frombuffer(await player.next_chunk(2.0), dtype=np.int16)
    assert len(chunk) == 2 * SAMPLE_RATE
    assert rms(chunk) > 300  # music, not silence


async def test_moh_single_file_loops_and_8bit_stereo_is_converted(tmp_path: Path) -> None:
    f = tmp_path / "tiny.wav"
    t = np.arange(4000) / 8000
    left = (127 + 100 * np.sin(2 * np.pi * 440 * t)).astype(np.uint8)
    with wave.open(str(f), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(np.column_stack([left, left]).tobytes())
    pcm = load_wav(f)
    assert len(pcm) == 2 * 8000  # 0.5 s at 16 kHz
    player = MohPlayer(MohLibrary(f))
    looped = np.frombuffer(await player.next_chunk(1.3), dtype=np.int16)
    assert len(looped) == int(1.3 * SAMPLE_RATE) and rms(looped[-8000:]) > 1000


async def test_missing_or_broken_music_is_logged_and_a_comfort_tone_plays(tmp_path: Path) -> None:
    bad = tmp_path / "music"
    bad.mkdir()
    (bad / "broken.wav").write_bytes(b"RIFF nonsense")
    with structlog.testing.capture_logs() as logs:
        missing = MohPlayer(MohLibrary(tmp_path / "nowhere"))
        broken = MohPlayer(MohLibrary(bad))
        a = await missing.next_chunk(4.0)
        b = await broken.next_chunk(4.0)
    events = {e["event"] for e in logs}
    assert {"media.hold.moh_missing", "media.hold.moh_unreadable"} <= events
    tone = comfort_tone()
    assert a == b == tone  # one tone cycle: never dead air, never an exception
    assert rms(np.frombuffer(tone, dtype=np.int16)) > 50


# -- calls -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rasa_stub() -> Iterator[StubRasa]:
    with stub_rasa() as stub:
        yield stub


@pytest.fixture(scope="module")
def hold_bot(rasa_stub: StubRasa, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    settings, env = instance_settings(
        tmp_path_factory.mktemp("hold-bot"),
        RECEPTIONIST_RASA__URL=rasa_stub.url,
        RECEPTIONIST_HANDOFF__ROUTER_INTERVAL_S="0.3",
        RECEPTIONIST_HANDOFF__WRAP_UP_S="0",
    )
    svc = BotService(settings, env)
    add_user(svc, "ana", "agent", "general:2", "Ana")
    yield from serving(svc)


@pytest.fixture(scope="module")
def hold_media(
    hold_bot: BotService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MediaService]:
    yield from media_for(
        hold_bot,
        tmp_path_factory.mktemp("hold-media"),
        RECEPTIONIST_MEDIA__HOLD_UPDATE_S=str(HOLD_UPDATE_S),
    )


def call_log(media: MediaService, event: str, call_sid: str) -> list[dict[str, Any]]:
    return [r for r in media.log_events(event) if r.get("call_id") == call_sid]


async def logged(media: MediaService, event: str, call_sid: str, timeout: float = 20) -> float:  # noqa: ASYNC109
    """Until the media server logs ``event`` for the call; the monotonic time it was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if call_log(media, event, call_sid):
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no {event} for {call_sid} within {timeout}s")


def conversation_of(media: MediaService, call_sid: str) -> str:
    return str(call_log(media, "media.call.started", call_sid)[0]["conversation_id"])


def callback_ticket(bot: BotService, cid: str) -> str | None:
    """The ticket's callback number, once the callback is booked. An as-soon-as-possible
    callback goes back to the queue (as a callback task) on the router's next round."""
    with sqlite3.connect(bot.settings.data_path / "receptionist.db") as db:
        row = db.execute(
            "SELECT status, callback_number FROM tickets WHERE conversation_id = ?", (cid,)
        ).fetchone()
    assert row is not None, f"no ticket for {cid}"
    assert row[0] in ("callback_scheduled", "queued"), row
    return row[1] if row[1] is None else str(row[1])


async def greeted(caller: TwilioCaller) -> None:
    await caller.wait_speech(0.0, timeout=30)
    await caller.wait_quiet(0.5)


async def on_hold(media: MediaService, caller: TwilioCaller) -> float:
    """Press 0 (no agent is available), hear the queue prompt; when the music starts."""
    pressed = time.monotonic()
    await caller.press("0")
    await caller.wait_speech(pressed, timeout=20)  # "You are number 1 in the queue…"
    return await logged(media, "media.hold.started", caller.call_sid)


def music_between(caller: TwilioCaller, t0: float, t1: float) -> np.ndarray:
    audio = caller.audio_between(t0, t1)
    assert len(audio) > 0.8 * 8000 * (t1 - t0), "audio stopped flowing"
    return audio


async def test_music_stops_when_the_agent_joins_and_the_agent_is_heard(
    hold_media: MediaService, hold_bot: BotService
) -> None:
    ana = await Desk(hold_bot.url).login("ana")
    try:
        await ana.connect()
        async with TwilioCaller(hold_media.ws + "/media/twilio") as caller:
            await greeted(caller)
            await on_hold(hold_media, caller)
            cid = conversation_of(hold_media, caller.call_sid)
            await ana.available()
            offer = await ana.offer_for(cid)
            await ana.call("POST", f"/desk/api/tickets/{offer['ticket']['id']}/accept")
            accepted = time.monotonic()
            stopped = await logged(hold_media, "media.hold.stopped", caller.call_sid, 5)
            assert stopped - accepted < 1.0  # at once
            assert call_log(hold_media, "media.hold.stopped", caller.call_sid)[0]["reason"] in (
                "agent_joined",
                "assigned",
            )
            # "Ana has joined the call.", then nothing: the music does not come back
            await caller.wait_quiet(0.8, timeout=15)
            sent = time.monotonic()
            await ana.call(
                "POST",
                f"/desk/api/tickets/{offer['ticket']['id']}/messages",
                {"text": "Hello, this is Ana. How can I help?"},
            )
            first = await caller.wait_speech(sent, timeout=15)
            last = await caller.wait_quiet(0.6, timeout=20)
            assert last - first > 1.0  # the agent's words, spoken, and no music after them
    finally:
        await ana.call("POST", "/desk/api/presence", {"presence": "offline"})
        await ana.close()


async def test_queue_prompt_music_updates_and_callback_on_the_caller_number(
    hold_media: MediaService, hold_bot: BotService
) -> None:
    async with TwilioCaller(hold_media.ws + "/media/twilio", {"from": "+15550001111"}) as caller:
        await greeted(caller)
        held = await on_hold(hold_media, caller)
        await asyncio.sleep(2.0)
        music = music_between(caller, held + 0.3, held + 2.0)
        frames = music[: len(music) // 160 * 160].reshape(-1, 160)
        loud = np.mean([rms(f) > 150 for f in frames])
        assert rms(music) > 300 and loud > 0.8, (rms(music), loud)  # music, not speech pauses
        update = await logged(hold_media, "media.hold.update", caller.call_sid, HOLD_UPDATE_S + 4)
        assert HOLD_UPDATE_S - 1.5 < update - held < HOLD_UPDATE_S + 2.0
        await asyncio.sleep(1.0)
        await caller.press("1")
        await logged(hold_media, "media.hold.callback_booked", caller.call_sid, 10)
        await asyncio.wait_for(caller.closed.wait(), 20)  # confirmed by voice, then hung up
        cid = conversation_of(hold_media, caller.call_sid)
    assert callback_ticket(hold_bot, cid) == "+15550001111"
    status, conv = hold_bot.api("GET", f"/conversations/{cid}")
    assert status == 200
    requested = [e for e in conv["events"] if e["type"] == "callback_requested"]
    assert requested and requested[0]["data"]["number"] == "+15550001111"
    assert [r["reason"] for r in call_log(hold_media, "media.hold.stopped", caller.call_sid)] == [
        "callback"
    ]


async def test_without_caller_id_the_number_is_keyed(
    hold_media: MediaService, hold_bot: BotService
) -> None:
    async with TwilioCaller(hold_media.ws + "/media/twilio") as caller:
        await greeted(caller)
        await on_hold(hold_media, caller)
        await asyncio.sleep(0.5)
        await caller.press("1")
        asked = time.monotonic()
        await asyncio.sleep(0.3)
        await caller.wait_speech(asked, timeout=10)  # "Please key in the number…"
        for key in "5550123#":  # the 0 is part of the number, not a request for a person
            await caller.press(key)
            await asyncio.sleep(0.1)
        await logged(hold_media, "media.hold.callback_booked", caller.call_sid, 10)
        await asyncio.wait_for(caller.closed.wait(), 20)
        cid = conversation_of(hold_media, caller.call_sid)
    assert callback_ticket(hold_bot, cid) == "5550123"
    keys = [r["key"] for r in call_log(hold_media, "media.dtmf", caller.call_sid)]
    assert keys[:2] == ["0", "1"] and set(keys[2:]) == {"*"}  # the number stays out of logs


def test_prompts_offer_and_confirm_a_callback() -> None:
    assert ENGLISH.offer_callback("1") == "If you'd rather we call you back, press 1."
    assert ENGLISH.offer_callback("#").endswith("press hash.")
    assert "5 5 5 0 1 2 3" in ENGLISH.callback_booked("555-0123")
