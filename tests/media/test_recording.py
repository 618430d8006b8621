"""Call recording: the stereo file itself (alignment, barge-in clipping, pause, a header that
survives a crash), the retention sweep, and real calls over the Twilio stream where the bot
marks a sensitive step (a card number) and the media server is killed mid-call."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from media_server import recording
from media_server.caller import TwilioCaller
from media_server.recording import CallRecorder, RecordingStore
from media_server.tts.piper_engine import PiperSynthesizer
from tests.media.callers import speech
from tests.procs import BotService, MediaService, instance_settings, running_media
from tests.stub_rasa import StubRasa, stub_rasa

RATE = 16000
WIN = 320  # 20 ms


def frame(value: int, n: int = WIN) -> bytes:
    return np.full(n, value, dtype=np.int16).tobytes()


def read_stereo(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        data = w.readframes(w.getnframes())
    return np.frombuffer(data, dtype="<i2").reshape(-1, 2)


# -- the file --------------------------------------------------------------------------------
def test_channels_are_aligned_clipped_at_barge_in_and_silent_when_paused(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "a.wav")
    rec.bot(frame(1000))
    rec.caller(frame(500))  # both sounding at once
    rec.caller(frame(600))  # the bot silent: right is silence
    rec.bot(frame(7))
    rec.bot(frame(7))
    rec.clear_bot()  # sent, but dropped at the peer by a barge-in: never heard
    rec.caller(frame(700))
    rec.pause()
    rec.bot(frame(9))
    rec.caller(frame(800))  # a sensitive step: nothing of either side is kept
    rec.resume()
    rec.caller(frame(900))
    rec.close()
    got = read_stereo(tmp_path / "a.wav").reshape(-1, WIN, 2)[:, 0, :].tolist()
    assert got == [[500, 1000], [600, 0], [700, 0], [0, 0], [900, 0]]
    assert rec.duration_s == pytest.approx(5 * 0.02)


def test_bot_audio_is_kept_when_the_caller_audio_stalls(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "b.wav")
    for _ in range(100):  # 2 s of the bot, no caller audio at all
        rec.bot(frame(1000))
    rec.close()
    audio = read_stereo(tmp_path / "b.wav")
    assert len(audio) == 2 * RATE and (audio[:, 1] == 1000).all() and (audio[:, 0] == 0).all()


def test_a_file_cut_off_mid_call_is_a_playable_wav(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recording, "HEADER_EVERY_S", 0.0)
    rec = CallRecorder(tmp_path / "c.wav")
    for _ in range(50):
        rec.caller(frame(300))
    # the process dies here: no close(); what is on disk must read as a WAV
    assert len(read_stereo(tmp_path / "c.wav")) == 50 * WIN
    rec.close()


def test_store_names_files_and_never_overwrites(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "rec", 30)
    cid = "a" * 32
    first, second = store.open(cid), store.open(cid)
    assert (first.path.name, second.path.name) == (f"{cid}.wav", f"{cid}-2.wav")
    first.close()
    second.close()
    with pytest.raises(ValueError):
        store.open("../../etc/passwd")


def test_retention_sweep_deletes_old_recordings_only(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path, retention_days=30)
    old, new, other = tmp_path / "old.wav", tmp_path / "new.wav", tmp_path / "notes.txt"
    for f in (old, new, other):
        f.write_bytes(b"x")
    month_ago = time.time() - 31 * 86400
    for f in (old, other):
        os.utime(f, (month_ago, month_ago))
    assert RecordingStore(tmp_path, retention_days=0).sweep() == 0  # 0: kept forever
    assert store.sweep() == 1
    assert not old.exists() and new.exists() and other.exists()


# -- calls -----------------------------------------------------------------------------------
PAUSE_PROMPT = "Please key in your card number, then press the hash key."


class PaymentDialogue:
    """The bot asks for a card number in a step marked sensitive, then resumes."""

    def __init__(self) -> None:
        self.state: dict[str, str] = {}

    def __call__(self, sender: str, text: str) -> tuple[str, list[dict[str, Any]]]:
        state = self.state.get(sender, "start")
        if text and set(text) == {"*"}:
            self.state[sender] = "paid"
            return "card_entered", [
                {"text": "Thank you, your payment is done.", "custom": {"recording": "resume"}}
            ]
        if state == "start":
            self.state[sender] = "card"
            return "pay_bill", [{"text": PAUSE_PROMPT, "custom": {"recording": "pause"}}]
        if state == "card":
            return "nlu_fallback", [{"text": "Please use your keypad."}]
        return "goodbye", [{"text": "Goodbye!"}]


@pytest.fixture(scope="module")
def payment_rasa() -> Iterator[StubRasa]:
    with stub_rasa(PaymentDialogue()) as stub:
        yield stub


@pytest.fixture(scope="module")
def rec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recordings")


@pytest.fixture(scope="module")
def rec_bot(
    payment_rasa: StubRasa, rec_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BotService]:
    settings, env = instance_settings(
        tmp_path_factory.mktemp("rec-bot"),
        RECEPTIONIST_RASA__URL=payment_rasa.url,
        RECEPTIONIST_MEDIA__RECORDING_DIR=str(rec_dir),
    )
    svc = BotService(settings, env)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def media_env(bot: BotService, rec_dir: Path) -> dict[str, str]:
    return {
        "RECEPTIONIST_MEDIA__BOT_URL": bot.url,
        "RECEPTIONIST_MEDIA__NO_SPEECH_TIMEOUT_S": "30",
        "RECEPTIONIST_MEDIA__RECORDING": "true",
        "RECEPTIONIST_MEDIA__RECORDING_DIR": str(rec_dir),
    }


@pytest.fixture(scope="module")
def rec_media(
    rec_bot: BotService, rec_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MediaService]:
    yield from running_media(tmp_path_factory.mktemp("rec-media"), **media_env(rec_bot, rec_dir))


def windows_rms(x: np.ndarray) -> np.ndarray:
    n = len(x) // WIN * WIN
    w = x[:n].astype(np.float64).reshape(-1, WIN)
    out: np.ndarray = np.sqrt((w**2).mean(axis=1))
    return out


def loud_runs(
    r: np.ndarray, threshold: float = 300, gap_s: float = 0.6
) -> list[tuple[float, float]]:
    """(start, end) seconds of sound, merging gaps shorter than ``gap_s``."""
    runs: list[list[float]] = []
    for i in np.flatnonzero(r > threshold):
        t = i * WIN / RATE
        if runs and t - runs[-1][1] <= gap_s:
            runs[-1][1] = t + WIN / RATE
        else:
            runs.append([t, t + WIN / RATE])
    return [(a, b) for a, b in runs]


async def recording_events(bot: BotService, cid: str, timeout: float = 10) -> dict[str, Any]:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        status, conv = bot.api("GET", f"/conversations/{cid}")
        assert status == 200
        events = {
            e["data"]["action"]: e["data"] for e in conv["events"] if e["type"] == "voice.recording"
        }
        if "stopped" in events or time.monotonic() > deadline:
            return {"events": events, "conversation": conv}
        await asyncio.sleep(0.2)


def conversation_of(media: MediaService, call_sid: str) -> str:
    for rec in media.log_events("media.call.started"):
        if rec.get("call_id") == call_sid:
            return str(rec["conversation_id"])
    raise AssertionError(f"no call {call_sid} in the media log")


async def test_a_call_is_recorded_in_stereo_with_the_card_number_left_out(
    rec_media: MediaService,
    rec_bot: BotService,
    payment_rasa: StubRasa,
    rec_dir: Path,
    voice: PiperSynthesizer,
) -> None:
    ask = speech(voice, "I would like to pay my bill.", 8000)
    digits = speech(voice, "four one one one", 8000)
    bye = speech(voice, "Goodbye.", 8000)
    async with TwilioCaller(rec_media.ws + "/media/twilio") as caller:
        await caller.wait_speech(0.0, timeout=30)  # "This call may be recorded. Hello, …"
        greeting_end = await caller.wait_quiet(0.5)
        ask_start, ask_end = await caller.say(ask)
        await caller.wait_speech(ask_end, timeout=20)  # the card prompt (a sensitive step)
        await caller.wait_quiet(0.6)
        await caller.say(digits)  # spoken card details
        await asyncio.sleep(1.5)
        await caller.wait_quiet(0.8)
        for key in "4111#":  # keyed card details
            await caller.press(key)
            await asyncio.sleep(0.15)
        keyed = time.monotonic()
        await caller.wait_speech(keyed, timeout=20)  # "Thank you, your payment is done."
        thanks_end = await caller.wait_quiet(0.6)
        bye_start, _ = await caller.say(bye)
        await asyncio.wait_for(caller.closed.wait(), 30)  # "Goodbye!" and the bot hangs up
        cid = conversation_of(rec_media, caller.call_sid)

    found = await recording_events(rec_bot, cid)
    events, conv = found["events"], found["conversation"]
    assert set(events) == {"started", "paused", "resumed", "stopped"}, events
    audio = read_stereo(rec_dir / f"{cid}.wav")
    assert events["stopped"]["file"] == f"{cid}.wav"
    assert len(audio) / RATE == pytest.approx(events["stopped"]["duration_s"], abs=0.05)
    left, right = windows_rms(audio[:, 0]), windows_rms(audio[:, 1])

    # the sensitive step: both channels silent, for as long as the caller spoke and keyed
    paused, resumed = events["paused"]["at_s"], events["resumed"]["at_s"]
    assert resumed - paused > len(digits) / 8000 + 0.5
    quiet = audio[int(paused * RATE) + WIN : int(resumed * RATE) - WIN]
    assert not quiet.any()

    # the caller is on the left, where and as long as they spoke; the bot on the right
    caller_runs = loud_runs(left)
    assert len(caller_runs) == 2, caller_runs  # the request and the goodbye, not the card
    (c1, d1), (c3, _d3) = caller_runs
    assert d1 - c1 == pytest.approx(len(ask) / 8000, abs=0.6)
    assert d1 < paused < resumed < c3
    bot_before = [r for r in loud_runs(right) if r[1] <= c1]
    assert bot_before, "the announcement and greeting are on the right"
    # time-aligned: the gap between the greeting and the request is the one the caller left
    assert c1 - bot_before[-1][1] == pytest.approx(ask_start - greeting_end, abs=0.4)
    thanks = [r for r in loud_runs(right) if resumed <= r[0] < c3]
    assert thanks, "the bot's words after the sensitive step are recorded"
    assert c3 - thanks[-1][1] == pytest.approx(bye_start - thanks_end, abs=0.4)
    assert left[int(bot_before[0][0] * RATE / WIN) : int(bot_before[-1][1] * RATE / WIN)].max() < 50

    # no card number in clear: not in the transcript, not sent to the dialogue
    users = [t for t in conv["transcript"] if t["role"] == "user"]
    masked = [t for t in users if t["text"] == "****"]
    assert masked and masked[0]["voice"]["dtmf"] == "****"
    for t in users:
        assert not re.search(r"\d|\bone\b|\bfour\b", t["text"] or "", re.IGNORECASE), t
    assert "****" in payment_rasa.received
    assert not any(re.search(r"\d", m) for m in payment_rasa.received)
    keys = [r["key"] for r in rec_media.log_events("media.dtmf") if r["call_id"] == caller.call_sid]
    assert keys == ["*"] * 5


async def test_a_crash_mid_call_leaves_a_playable_recording(
    rec_bot: BotService, tmp_path: Path, voice: PiperSynthesizer
) -> None:
    rec_dir = tmp_path / "recordings"
    media = MediaService(*instance_settings(tmp_path / "media", **media_env(rec_bot, rec_dir)))
    media.start()
    try:
        async with TwilioCaller(media.ws + "/media/twilio") as caller:
            await caller.wait_speech(0.0, timeout=30)
            await caller.wait_quiet(0.5)
            await caller.say(speech(voice, "I would like to pay my bill.", 8000))
            await asyncio.sleep(1.5)
            started = caller.received[0].at
            media.stop(signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.wait_for(caller.closed.wait(), 10)
    finally:
        media.stop()  # already dead: nothing to do
    [f] = list(rec_dir.glob("*.wav"))
    audio = read_stereo(f)
    seconds = len(audio) / RATE
    assert killed - started - 2.0 < seconds <= killed - started + 3.0
    assert windows_rms(audio[:, 0]).max() > 300  # the caller's request made it to disk
    assert windows_rms(audio[:, 1]).max() > 300  # and the greeting
