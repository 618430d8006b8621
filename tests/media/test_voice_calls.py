"""Calls over the Twilio-format media stream, end to end: Piper-synthesized English speech
streamed in real time as μ-law to the real media server, which recognizes it, asks the real
bot service (and Rasa), and speaks the answer back with Piper."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
import uuid
import wave
from collections.abc import Iterator
from typing import Any

import aiohttp
import numpy as np
import psutil
import pytest

from media_server.asr.registry import RecognizerRegistry
from media_server.audio.dtmf import dtmf_tone
from media_server.audio.resample import resample
from media_server.caller import TwilioCaller
from media_server.tts.piper_engine import PiperSynthesizer
from media_server.wer import asterisk_prompts, corpus_word_error_rate
from media_server.wer_transport import decode_via_transport
from tests.conftest import bot_for
from tests.media.callers import speech
from tests.procs import (
    BotService,
    MediaService,
    RasaStack,
    free_port,
    media_for,
    running_media,
    serving,
)


def speech_8k(voice: PiperSynthesizer, text: str) -> np.ndarray:
    return speech(voice, text, 8000)


@pytest.fixture(scope="module")
def call_bot(rasa: RasaStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    yield from serving(bot_for(rasa, tmp_path_factory.mktemp("voice-bot")))


@pytest.fixture(scope="module")
def media(call_bot: BotService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaService]:
    yield from media_for(call_bot, tmp_path_factory.mktemp("media"))


def conversation_of(media: MediaService, call_sid: str) -> str:
    for rec in media.log_events("media.call.started"):
        if rec.get("call_id") == call_sid:
            return str(rec["conversation_id"])
    raise AssertionError(f"no call {call_sid} in the media log")


def transcript(bot: BotService, cid: str) -> dict[str, Any]:
    status, conv = bot.api("GET", f"/conversations/{cid}")
    assert status == 200, conv
    return dict(conv)


def closed_eventually(bot: BotService, cid: str) -> dict[str, Any]:
    """The media server closes the conversation just after the caller hangs up."""
    deadline = time.monotonic() + 10
    while True:
        conv = transcript(bot, cid)
        if conv["status"] == "closed" or time.monotonic() > deadline:
            return conv
        time.sleep(0.1)


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


async def greeted(caller: TwilioCaller) -> None:
    await caller.wait_speech(0.0, timeout=30)
    await caller.wait_quiet(0.5)


async def test_spoken_question_gets_a_spoken_answer_and_a_transcript(
    media: MediaService, call_bot: BotService, voice: PiperSynthesizer
) -> None:
    question = speech_8k(voice, "What are your opening hours?")
    async with TwilioCaller(media.ws + "/media/twilio") as caller:
        await greeted(caller)
        _, spoken_end = await caller.say(question)
        first = await caller.wait_speech(spoken_end, timeout=30)
        last = await caller.wait_quiet(0.8)
        answer = caller.audio_between(first, last)
        sid = caller.call_sid
    assert rms(answer) > 1000  # speech, not silence
    seconds = len(answer) / 8000
    assert 2.0 < seconds < 30.0, seconds  # "We are open Monday to Friday …" takes a while

    conv = closed_eventually(call_bot, conversation_of(media, sid))
    assert conv["channel"] == "voice"
    users = [t for t in conv["transcript"] if t["role"] == "user"]
    assert len(users) == 1
    heard = users[0]
    # the English fallback recognizer (PocketSphinx) on 8 kHz telephone audio is rough, but
    # what it hears is close enough for the NLU
    assert "opening" in heard["text"], heard["text"]
    assert heard["intent"] == "opening_hours", heard
    assert heard["asr_confidence"] is not None and 0 < heard["asr_confidence"] <= 1
    assert heard["voice"]["engine"] in ("vosk", "pocketsphinx")
    assert heard["voice"]["speech_end_ms"] <= heard["voice"]["asr_final_ms"]
    bots = [t for t in conv["transcript"] if t["role"] == "bot"]
    assert any("Monday" in (t["text"] or "") for t in bots)
    timings = [e for e in conv["events"] if e["type"] == "voice.reply_audio"]
    assert timings and timings[0]["data"]["first_audio_ms"] >= timings[0]["data"]["reply_ms"]
    assert conv["status"] == "closed"  # hanging up closed the conversation


async def test_recognizer_worker_dying_mid_call_costs_one_utterance(
    media: MediaService, call_bot: BotService, voice: PiperSynthesizer
) -> None:
    """PocketSphinx decodes in worker processes: when they die (kill -9), the call asks
    the caller to say it again and goes on with a new worker."""
    assert media.proc is not None
    workers = [
        c
        for c in psutil.Process(media.proc.pid).children(recursive=True)
        if "resource_tracker" not in " ".join(c.cmdline())
    ]
    if not workers:
        pytest.skip("English decodes in the media server's threads (Vosk, or asr_processes=0)")
    question = speech_8k(voice, "What are your opening hours?")
    async with TwilioCaller(media.ws + "/media/twilio") as caller:
        await greeted(caller)
        for w in workers:
            w.kill()
        _, spoken_end = await caller.say(question)
        await caller.wait_speech(spoken_end, timeout=30)  # "Sorry, I missed that…"
        await caller.wait_quiet(0.8)
        _, spoken_end = await caller.say(question)
        await caller.wait_speech(spoken_end, timeout=30)  # the answer
        await caller.wait_quiet(0.8)
        sid = caller.call_sid
    failed = [e for e in media.log_events("media.asr.failed") if e.get("call_id") == sid]
    assert len(failed) == 1 and "died (SIGKILL)" in failed[0]["error"], failed
    conv = closed_eventually(call_bot, conversation_of(media, sid))
    users = [t for t in conv["transcript"] if t["role"] == "user"]
    assert len(users) == 1 and users[0]["intent"] == "opening_hours", users
    bots = [t["text"] or "" for t in conv["transcript"] if t["role"] == "bot"]
    assert any("Monday" in t for t in bots)


async def test_key_zero_hands_the_call_to_a_person(
    media: MediaService, call_bot: BotService
) -> None:
    async with TwilioCaller(media.ws + "/media/twilio") as caller:
        await greeted(caller)
        pressed = time.monotonic()
        await caller.press("0")
        await caller.wait_speech(pressed, timeout=30)  # "You are number 1 in the queue…"
        # (then music on hold, never quiet: tests/media/test_hold.py)
        cid = conversation_of(media, caller.call_sid)
        conv = transcript(call_bot, cid)
    assert conv["status"] in ("handoff_requested", "with_agent")
    handoffs = [e for e in conv["events"] if e["type"] == "handoff_requested"]
    assert handoffs and handoffs[0]["data"]["reason"] == "dtmf_zero"


async def test_in_band_key_press_reaches_the_bot(media: MediaService, call_bot: BotService) -> None:
    tone = dtmf_tone("5", 0.12, rate=8000, level_dbfs=-12)
    async with TwilioCaller(media.ws + "/media/twilio") as caller:
        await greeted(caller)
        await caller.say(tone)
        await caller.say(np.zeros(8000, dtype=np.int16))
        await asyncio.sleep(1.0)
        cid = conversation_of(media, caller.call_sid)
        conv = transcript(call_bot, cid)
    keyed = [t for t in conv["transcript"] if t["role"] == "user"]
    assert [t["text"] for t in keyed] == ["5"]
    assert keyed[0]["voice"]["dtmf"] == "5"


def trimmed(pcm: np.ndarray, floor: int = 100) -> np.ndarray:
    """``pcm`` without Piper's leading and trailing near-silence (below ~-50 dBFS)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > floor)
    return pcm[loud[0] : loud[-1] + 1] if loud.size else pcm[:0]


async def test_pause_keeps_the_sentence_whole_and_end_silence_is_not_decoded(
    media: MediaService, call_bot: BotService, voice: PiperSynthesizer
) -> None:
    """A pause shorter than the endpointing silence keeps one utterance (the held-back
    silence is decoded when the caller goes on), and of the silence that ends it only
    ASR_TAIL_S reaches the recognizer, so it gets ~0.3 s less audio than it used to."""
    first = trimmed(speech_8k(voice, "Where are you located"))
    second = trimmed(speech_8k(voice, "and what are your opening hours?"))
    pause = np.zeros(int(0.35 * 8000), dtype=np.int16)  # < trailing_silence_ms (500)
    question = np.concatenate([first, pause, second])
    async with aiohttp.ClientSession() as http:

        async def asr_audio_s() -> float:
            async with http.get(media.url + "/stats") as r:
                return float((await r.json())["asr_audio_s"])

        async with TwilioCaller(media.ws + "/media/twilio") as caller:
            await greeted(caller)
            before = await asr_audio_s()
            _, end = await caller.say(question)
            await caller.wait_speech(end, timeout=30)
            fed = await asr_audio_s() - before
            sid = caller.call_sid
    spoken = len(question) / 8000
    # the preroll (at most PREROLL_MS) + the speech + ASR_TAIL_S, and 20 ms frames
    assert spoken < fed <= spoken + 0.4 + 0.2 + 0.05, (fed, spoken)
    conv = closed_eventually(call_bot, conversation_of(media, sid))
    users = [t for t in conv["transcript"] if t["role"] == "user"]
    assert len(users) == 1, users  # one utterance across the pause
    assert "hours" in users[0]["text"] or "opening" in users[0]["text"], users[0]["text"]


async def test_caller_interrupting_stops_the_bot_and_a_backchannel_does_not(
    media: MediaService, call_bot: BotService, voice: PiperSynthesizer
) -> None:
    long_question = speech_8k(voice, "What services do you offer?")
    interruption = speech_8k(voice, "Sorry, where are you located?")
    backchannel = speech_8k(voice, "okay")
    async with TwilioCaller(media.ws + "/media/twilio") as caller:
        await greeted(caller)
        _, end = await caller.say(long_question)
        first = await caller.wait_speech(end, timeout=30)
        await asyncio.sleep(0.8)  # the bot is answering
        onset, _ = await caller.say(backchannel)
        await asyncio.sleep(2.0)
        # the answer went on after the backchannel
        assert caller.speech_frames_since(onset + 1.5), "the backchannel stopped the bot"
        clears_before = len(caller.events_of("clear"))
        onset, said_end = await caller.say(interruption)
        clears = [t for t, _ in caller.events_of("clear")[clears_before:]]
        assert clears, "no clear was sent to the caller's side"
        stop_latency = clears[0] - onset
        # the interrupted answer's frames stop; the next audio is the new answer
        await caller.wait_speech(said_end, timeout=30)
        await caller.wait_quiet(0.8)
        sid = caller.call_sid
    conv = transcript(call_bot, conversation_of(media, sid))
    said = [t["text"] for t in conv["transcript"] if t["role"] == "user"]
    assert len(said) == 2, said  # the backchannel was not a turn
    assert "located" in said[1] or "where" in said[1]
    barge = media.log_events("media.barge_in.paused")
    assert barge
    # the bound: speech detection (min_speech_ms) + 200 ms; generous on a loaded CI box
    assert stop_latency < 0.12 + 0.2 + 0.3, stop_latency
    assert first > 0


@pytest.mark.parametrize(
    ("frames", "code", "close"),
    [
        (["not json"], "invalid_json", 1007),
        ([b"\x00\x01"], "binary_frame", 1003),
        ([json.dumps({"event": "media", "media": {"payload": "AAAA"}})], "not_started", 1008),
        (
            [
                json.dumps(
                    {
                        "event": "start",
                        "start": {
                            "mediaFormat": {
                                "encoding": "audio/l16",
                                "sampleRate": 16000,
                                "channels": 1,
                            }
                        },
                    }
                )
            ],
            "unsupported_codec",
            1003,
        ),
        ([json.dumps({"event": "dance"})], "unknown_event", 1008),
    ],
)
async def test_malformed_streams_get_a_clear_error_and_only_they_close(
    media: MediaService, frames: list[str | bytes], code: str, close: int
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(media.ws + "/media/twilio") as ws:
            for f in frames:
                if isinstance(f, bytes):
                    await ws.send_bytes(f)
                else:
                    await ws.send_str(f)
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.TEXT
            err = json.loads(msg.data)
            assert err["event"] == "error" and err["code"] == code and err["message"]
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == close
        async with http.get(media.url + "/healthz") as r:
            assert r.status == 200


async def test_oversized_and_flooding_streams_are_closed(media: MediaService) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(media.ws + "/media/twilio") as ws:
            await ws.send_str("x" * (media.settings.media.max_frame_bytes + 10))
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1009
        async with TwilioCaller(media.ws + "/media/twilio") as caller:
            frame = json.dumps({"event": "media", "media": {"payload": "//8="}})
            for _ in range(2000):
                if caller.closed.is_set():
                    break
                await caller.send_raw(frame)
            await asyncio.wait_for(caller.closed.wait(), 10)
            errors = [e for _, e in caller.events_of("error")]
            assert errors and errors[0]["code"] == "flooding"


async def test_telephone_speech_decodes_no_worse_through_the_transport(
    media: MediaService,
) -> None:
    """Real 8 kHz telephone prompts (Asterisk's, with their transcripts): streamed as calls
    through the media server, the word error rate is no worse than decoding the same files
    directly with the same engine."""
    prompts = asterisk_prompts(5, min_words=4)
    registry = RecognizerRegistry(media.settings)
    recognizer = await asyncio.to_thread(registry.get, "en")
    direct, transported = [], []
    try:
        for path, reference in prompts:
            with wave.open(str(path), "rb") as wf:
                assert wf.getframerate() == 8000
                pcm = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
            stream = recognizer.open_stream()
            stream.accept(resample(pcm, 8000, 16000).tobytes())
            direct.append((reference, stream.finish().text))
            stream.close()
            heard = await decode_via_transport(media.ws + "/media/browser", pcm)
            transported.append((reference, heard))
    finally:
        registry.close()  # its ASR worker processes
    wer_direct = corpus_word_error_rate(direct)
    wer_transport = corpus_word_error_rate(transported)
    assert any(h for _, h in transported)
    assert wer_transport <= wer_direct + 0.05, (wer_transport, wer_direct, transported)


async def test_readiness_reports_engines(media: MediaService) -> None:
    async with aiohttp.ClientSession() as http, http.get(media.url + "/readyz") as r:
        body = await r.json()
    assert r.status == 200
    english = [a for a in body["asr"] if a["language"] == "en"]
    assert english and english[0]["loaded"]
    if english[0]["fallback"]:  # no Vosk English model on this machine: said loudly
        assert body["status"] == "degraded"
        assert any("falls back" in w for w in body["warnings"])
    assert body["tts"]["voice"]
    if english[0]["engine"] == "pocketsphinx":  # decoded in worker processes by default
        assert body["asr_workers"] and all(w["rss_mb"] > 0 for w in body["asr_workers"])


@pytest.fixture(scope="module")
def impatient_media(
    call_bot: BotService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MediaService]:
    """A media server that reprompts after 1.5 s of silence, once, then says goodbye."""
    yield from media_for(
        call_bot,
        tmp_path_factory.mktemp("impatient-media"),
        RECEPTIONIST_MEDIA__NO_SPEECH_TIMEOUT_S="1.5",
        RECEPTIONIST_MEDIA__MAX_REPROMPTS="1",
    )


async def test_silent_caller_is_reprompted_then_politely_released(
    impatient_media: MediaService, call_bot: BotService
) -> None:
    async with TwilioCaller(impatient_media.ws + "/media/twilio") as caller:
        await asyncio.wait_for(caller.closed.wait(), 60)  # the server ends the call
        sid = caller.call_sid
        # greeting, reprompt and goodbye: three separate stretches of speech
        starts, last = [], -1.0
        for r in caller.received:
            if rms(r.pcm) > 300:
                if r.at - last > 0.8:
                    starts.append(r.at)
                last = r.at
    assert len(starts) == 3, [round(t - starts[0], 2) for t in starts]
    assert caller.close_code == 1000
    conv = closed_eventually(call_bot, conversation_of(impatient_media, sid))
    assert [e["data"]["reprompts"] for e in conv["events"] if e["type"] == "voice.no_speech"] == [
        0,
        1,
    ]
    assert conv["status"] == "closed"


@pytest.fixture(scope="module")
def orphan_media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaService]:
    """A media server whose bot service is down."""
    yield from running_media(
        tmp_path_factory.mktemp("orphan-media"),
        RECEPTIONIST_MEDIA__BOT_URL=f"http://127.0.0.1:{free_port()}",
    )


async def test_bot_service_down_caller_hears_an_apology(orphan_media: MediaService) -> None:
    async with TwilioCaller(orphan_media.ws + "/media/twilio") as caller:
        await asyncio.wait_for(caller.closed.wait(), 30)
        assert caller.speech_frames_since(0.0), "the caller heard nothing"
    assert caller.close_code == 1000
    assert orphan_media.log_events("media.session.bot_down")
    async with aiohttp.ClientSession() as http, http.get(orphan_media.url + "/readyz") as r:
        body = await r.json()
    assert r.status == 503 and body["bot_service"] is False
    assert "the bot service is not reachable" in body["warnings"]


class AudioSocketCaller:
    """A protocol-level Asterisk stand-in: AudioSocket messages over TCP, 8 kHz slin in
    real time, the bot's audio recorded with arrival times."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[float, np.ndarray]] = []
        self.hangup_at: float | None = None

    async def __aenter__(self) -> AudioSocketCaller:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.uuid = uuid.uuid4()
        self.send(0x01, self.uuid.bytes)
        self._reading = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.writer.is_closing():
            self.send(0x00)
            self.writer.close()
        self._reading.cancel()

    def send(self, kind: int, payload: bytes = b"") -> None:
        self.writer.write(struct.pack(">BH", kind, len(payload)) + payload)

    async def _read(self) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                kind, length = struct.unpack(">BH", await self.reader.readexactly(3))
                payload = await self.reader.readexactly(length)
                if kind == 0x10:
                    self.received.append((time.monotonic(), np.frombuffer(payload, "<i2")))
                elif kind == 0x00:
                    self.hangup_at = time.monotonic()
                    return

    async def play(self, pcm8k: np.ndarray) -> float:
        start = time.monotonic()
        for n, i in enumerate(range(0, len(pcm8k), 160)):
            self.send(0x10, pcm8k[i : i + 160].astype("<i2").tobytes())
            await self.writer.drain()
            delay = start + (n + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        return time.monotonic()

    def speech_since(self, t: float) -> np.ndarray:
        parts = [p for at, p in self.received if at >= t and rms(p) > 300]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


async def test_asterisk_audiosocket_call_is_answered(
    media: MediaService, call_bot: BotService, voice: PiperSynthesizer
) -> None:
    port = media.settings.media.audiosocket_port
    question = speech_8k(voice, "Where are you located?")
    silence = np.zeros(8000, dtype=np.int16)
    async with AudioSocketCaller(port) as call:
        await call.play(np.tile(silence, 4))  # the greeting plays meanwhile
        assert len(call.speech_since(0.0)) > 8000, "no greeting"
        asked = await call.play(question)
        await call.play(np.tile(silence, 6))
        answer = call.speech_since(asked)
        call.send(0x03, b"0")  # and a key press, out of band
        await call.play(np.tile(silence, 3))
        cid = conversation_of(media, str(call.uuid))
    assert len(answer) > 8000 and rms(answer) > 1000
    assert all(len(p) == 160 for _, p in call.received[:-1])  # 20 ms frames
    conv = closed_eventually(call_bot, cid)
    users = [t for t in conv["transcript"] if t["role"] == "user"]
    assert users and users[0]["intent"] == "location", users
    assert any(e["type"] == "handoff_requested" for e in conv["events"])
    assert conv["status"] == "closed"


@pytest.mark.parametrize(
    "messages",
    [
        [(0x10, b"\x00" * 320)],  # audio before the UUID
        [(0x01, b"short")],  # a UUID of the wrong size
        [(0x01, uuid.uuid4().bytes), (0x42, b"")],  # an unknown message type
        [(0x01, uuid.uuid4().bytes), (0x10, b"\x00" * 321)],  # odd-length audio
        [(0x01, uuid.uuid4().bytes), (0x10, b"\x00" * 4000)],  # oversized audio
    ],
)
async def test_audiosocket_protocol_errors_close_only_that_call(
    media: MediaService, messages: list[tuple[int, bytes]]
) -> None:
    port = media.settings.media.audiosocket_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for kind, payload in messages:
        writer.write(struct.pack(">BH", kind, len(payload)) + payload)
    await writer.drain()
    # the server closes the connection (after at most a hang-up message)
    data = await asyncio.wait_for(reader.read(), 10)
    assert data in (b"", b"\x00\x00\x00") or data.endswith(b"\x00\x00\x00")
    writer.close()
    async with aiohttp.ClientSession() as http, http.get(media.url + "/healthz") as r:
        assert r.status == 200
