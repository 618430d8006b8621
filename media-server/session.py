"""One call: audio in, turns to the bot, the bot's answers spoken back.

A :class:`VoiceSession` sees only 16 kHz PCM and key presses from its transport, and gives
the transport 16 kHz PCM frames through an :class:`AudioSink`. It detects speech (endpointing
and barge-in), streams speech to the recognizer in a worker thread, posts each final
transcript to the bot service as a user turn (with ASR confidence and timings), and speaks
the replies with the TTS service. It makes no dialogue decision of its own: the bot decides
what to say; the session only decides *when* the caller has finished speaking.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar, runtime_checkable

import structlog

from bot.config import MediaSettings
from media_server.asr.base import RecognizerError, RecognizerStream, SpeechRecognizer, Transcript
from media_server.audio import SAMPLE_RATE, SAMPLE_WIDTH
from media_server.audio.dtmf import DtmfDetector
from media_server.audio.vad import SpeechDetector
from media_server.bot_client import (
    BotClient,
    BotUnavailable,
    ConversationGone,
    QueueStatus,
    TurnResult,
)
from media_server.hold import HoldLoop, MohLibrary, MohPlayer
from media_server.metrics import (
    ASR_LATENCY,
    BOT_ROUND_TRIP,
    CALLS,
    CALLS_ACTIVE,
    DTMF_DIGITS,
    REPLY_LATENCY,
    STATS,
)
from media_server.models_catalogue import ModelError
from media_server.playout import Playout
from media_server.prompts import Prompts
from media_server.recording import CallRecorder, RecordingStore
from media_server.tts.service import TtsService

log = structlog.get_logger("media_server.session")
T = TypeVar("T")

BACKCHANNELS = frozenset(
    {"uh", "huh", "uh-huh", "mhm", "mm", "hmm", "um", "ok", "okay", "yeah", "yes", "yep"}
    | {"right", "sure", "alright", "ah", "oh"}
)
PREROLL_MS = 400
ASR_BATCH_BYTES = SAMPLE_RATE * SAMPLE_WIDTH // 10  # feed the recognizer 100 ms at a time
# Silence after the last voiced frame that the recognizer still gets; the rest of the
# endpointing silence is held back and decoded only if the caller speaks again (a pause,
# not the end): it is CPU the decoders need most when every caller stops at once.
ASR_TAIL_S = 0.2
INPUT_QUEUE_FRAMES = 1500  # 30 s of 20 ms frames; beyond that the call is too far behind
AGENT_MAX_QUEUED_S = 0.5  # the agent's voice queued for the caller beyond this is dropped
DIGIT_TIMEOUT_S = 5.0  # keys being collected end after this long without another key
CALLBACK_NUMBER_TIMEOUT_S = 20.0  # to start keying a callback number
MAX_COLLECTED_KEYS = 32
_PHONE = re.compile(r"^\+?[0-9 ()\-]{3,40}$")
_SPOKEN_NUMBER = re.compile(
    r"\d|\b(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|"
    r"fifty|sixty|seventy|eighty|ninety|hundred|thousand|double|triple)\b",
    re.IGNORECASE,
)


def mask_numbers(text: str) -> str:
    """``text`` with every digit and spoken number word replaced by ``*`` (what was said
    during a sensitive step, e.g. card details, is never kept in clear)."""
    return _SPOKEN_NUMBER.sub("*", text)


def callback_number(caller: str | None) -> str | None:
    """The caller id when it is a phone number a callback can use."""
    if caller and _PHONE.match(caller) and sum(c.isdigit() for c in caller) >= 3:
        return caller
    return None


class AudioSink(Protocol):
    """What a transport offers the session."""

    async def send_audio(self, pcm: bytes) -> None:
        """One 20 ms frame of 16 kHz PCM towards the caller."""
        ...

    async def clear_audio(self) -> None:
        """Drop the audio buffered at the caller's side (barge-in)."""
        ...

    async def send_event(self, event: dict[str, Any]) -> None:
        """Text events for transports that show them (the browser); others ignore them."""
        ...

    async def hang_up(self, reason: str) -> None: ...


@runtime_checkable
class TransferSink(Protocol):
    """A transport that can hand the call to another destination (SIP REFER)."""

    def can_transfer(self) -> bool: ...

    async def transfer(self, target: str, headers: dict[str, str]) -> tuple[bool, str | None]:
        """``(True, None)`` once the call left for ``target``; ``(False, why)`` if not."""
        ...


class AgentAudioSink(Protocol):
    """An agent taking the call's audio in the desk (never blocks the session)."""

    def caller_audio(self, pcm: bytes) -> None:
        """16 kHz PCM from the caller, as it arrives."""
        ...

    def caption(self, text: str, final: bool) -> None: ...

    def call_ended(self, reason: str) -> None: ...


@dataclass(frozen=True)
class CallInfo:
    transport: str  # "twilio", "browser", "sip", "audiosocket"
    call_id: str
    language: str
    caller: str | None = None
    conversation_id: str | None = None  # join an existing conversation (webchat voice)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Utterance:
    transcript: Transcript
    speech_start_s: float  # session clock
    speech_end_s: float
    final_s: float


@dataclass(frozen=True)
class KeyPress:
    key: str
    source: str  # "inband" or "transport"


class _NoSpeech:
    pass


class _Hangup:
    pass


@dataclass(frozen=True)
class _AsrLost:
    recovered: bool  # a new recognizer stream is listening


@dataclass(frozen=True)
class _KeysTimeout:
    generation: int


@dataclass
class _KeyCollection:
    """Keys being collected: a callback number, or sensitive input (never kept in clear)."""

    purpose: str  # "callback" or "sensitive"
    generation: int
    keys: list[str] = field(default_factory=list)


Event = Utterance | KeyPress | _NoSpeech | _Hangup | _KeysTimeout | _AsrLost | dict[str, Any]


@dataclass
class TurnTiming:
    """Per-turn figures, kept for the benchmark and logged."""

    speech_end_s: float
    asr_final_s: float
    reply_s: float | None = None
    first_audio_s: float | None = None
    cached: bool | None = None


class Engines(Protocol):
    @property
    def asr_executor(self) -> Executor: ...

    def recognizer(self, language: str) -> SpeechRecognizer: ...
    def phrases(self, language: str) -> list[str] | None: ...
    def correct(self, language: str, text: str) -> tuple[str, float]: ...
    @property
    def tts(self) -> TtsService: ...
    def prompts(self, language: str) -> Prompts: ...


class VoiceSession:
    def __init__(
        self,
        info: CallInfo,
        engines: Engines,
        bot: BotClient,
        settings: MediaSettings,
        sink: AudioSink,
        *,
        recordings: RecordingStore | None = None,
        moh: MohLibrary | None = None,
    ) -> None:
        self.info = info
        self._engines = engines
        self._bot = bot
        self._settings = settings
        self._sink = sink
        self._prompts = engines.prompts(info.language)
        self._t0 = time.monotonic()
        self._audio: asyncio.Queue[bytes | None] = asyncio.Queue(INPUT_QUEUE_FRAMES)
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._dtmf = DtmfDetector(SAMPLE_RATE)
        self._vad = SpeechDetector(
            SAMPLE_RATE,
            min_speech_ms=settings.min_speech_ms,
            trailing_silence_ms=settings.trailing_silence_ms,
        )
        self._playout = Playout(
            self._send_out, self._clear_out, on_segment_start=self._segment_started
        )
        self._recordings = recordings if settings.recording else None
        self._recorder: CallRecorder | None = None
        self._sensitive = False  # a sensitive step: recording paused, keys and numbers masked
        self._moh = MohPlayer(moh) if moh is not None else None
        self._hold_task: asyncio.Task[None] | None = None
        self._transfer_tried = False
        self._queue_status: QueueStatus | None = None  # set once handed off
        self._with_agent = False
        self._agent: AgentAudioSink | None = None  # an agent taking the audio in the desk
        self.agent_frames_dropped = 0
        self._keys: _KeyCollection | None = None
        self._keys_generation = 0
        self._keys_timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._speaking: asyncio.Task[None] | None = None
        self._stream: RecognizerStream | None = None
        self._asr_phrases: list[str] | None = None  # grammar phrases of the stream
        self._stream_seconds = 0.0  # audio received, in seconds (the stream clock)
        self._last_activity = time.monotonic()
        self._reprompts = 0
        self._hungup = False
        self._ending = False
        self.conversation_id: str | None = info.conversation_id
        self._owns_conversation = info.conversation_id is None
        self.timings: list[TurnTiming] = []
        self._pending_timing: TurnTiming | None = None
        self.frames_in = 0
        self.frames_dropped = 0
        self.barge_ins = 0

    @property
    def ended(self) -> bool:
        return self._hungup

    # -- transport side ------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self._t0

    def feed_audio(self, pcm: bytes) -> None:
        """16 kHz s16le from the caller. Never blocks; if the call falls 30 s behind, audio
        is dropped and counted (the caller is not heard rather than the server stalling)."""
        self.frames_in += 1
        if self._recorder is not None:
            self._recorder.caller(pcm)
        if self._agent is not None:
            self._agent.caller_audio(pcm)
        try:
            self._audio.put_nowait(pcm)
        except asyncio.QueueFull:
            self.frames_dropped += 1
            if self.frames_dropped in (1, 100, 1000):
                log.warning(
                    "media.session.input_dropped",
                    call_id=self.info.call_id,
                    dropped=self.frames_dropped,
                )

    def feed_dtmf(self, key: str) -> None:
        """An out-of-band key press (RFC 4733 event, Twilio dtmf message)."""
        self._events.put_nowait(KeyPress(key, "transport"))

    def hang_up(self) -> None:
        """The caller hung up (or the transport closed)."""
        if not self._hungup:
            self._hungup = True
            self._events.put_nowait(_Hangup())
            with contextlib.suppress(asyncio.QueueFull):
                self._audio.put_nowait(None)

    # -- the call ------------------------------------------------------------------------
    async def run(self) -> None:
        tasks: list[asyncio.Task[Any]] = []
        started = time.monotonic()
        STATS.calls_started += 1
        STATS.calls_active += 1
        CALLS.labels(self.info.transport).inc()
        CALLS_ACTIVE.labels(self.info.transport).inc()
        try:
            recognizer = await asyncio.to_thread(self._engines.recognizer, self.info.language)
            phrases = (
                self._engines.phrases(self.info.language)
                if self._settings.phrase_bias == "grammar" and recognizer.engine == "vosk"
                else None
            )
            self._asr_phrases = phrases
            self._stream = await asyncio.to_thread(recognizer.open_stream, phrases)
            self._recognizer = recognizer
            tasks.append(asyncio.create_task(self._playout.run(), name="playout"))
            if self.conversation_id is None:
                try:
                    self.conversation_id = await self._bot.start(
                        {
                            "transport": self.info.transport,
                            "call_id": self.info.call_id,
                            "language": self.info.language,
                            **self.info.metadata,
                        },
                        phone=self.info.caller,
                    )
                except BotUnavailable as exc:
                    log.error("media.session.bot_down", call_id=self.info.call_id, error=str(exc))
                    await self._say(self._prompts.unavailable)
                    await self._finish_speaking()
                    await self._end("bot_unavailable")
                    return
            log.info(
                "media.call.started",
                call_id=self.info.call_id,
                conversation_id=self.conversation_id,
                transport=self.info.transport,
                language=self.info.language,
                engine=recognizer.engine,
            )
            await self._sink.send_event(
                {
                    "type": "call",
                    "conversation_id": self.conversation_id,
                    "asr_engine": recognizer.engine,
                    "asr_fallback": recognizer.is_fallback,
                }
            )
            tasks.append(asyncio.create_task(self._listen(), name="listen"))
            tasks.append(asyncio.create_task(self._watch_conversation(), name="watch"))
            await self._start_recording()
            if self._owns_conversation:
                await self._say(self._prompts.greeting)
            await self._control_loop()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if self._speaking is not None:
                self._speaking.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._speaking
            if self._hold_task is not None:
                self._hold_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._hold_task
            if self._keys_timer is not None:
                self._keys_timer.cancel()
            if self._agent is not None:
                self._agent.call_ended("hangup")
                self._agent = None
            await self._stop_recording()
            if self._stream is not None:
                stream, self._stream = self._stream, None
                await asyncio.to_thread(stream.close)
            if self.conversation_id and self._owns_conversation:
                with contextlib.suppress(BotUnavailable, ConversationGone):
                    await self._bot.close(self.conversation_id)
            STATS.calls_active -= 1
            CALLS_ACTIVE.labels(self.info.transport).dec()
            log.info(
                "media.call.ended",
                call_id=self.info.call_id,
                conversation_id=self.conversation_id,
                duration_s=round(time.monotonic() - started, 2),
                frames_in=self.frames_in,
                frames_dropped=self.frames_dropped,
                barge_ins=self.barge_ins,
            )

    async def _control_loop(self) -> None:
        max_call = self._settings.max_call_s
        while not self._ending:
            timeout = self._silence_deadline()
            if self.now() > max_call:
                await self._say(self._prompts.goodbye)
                await self._finish_speaking()
                await self._end("max_call_duration")
                return
            try:
                event = await asyncio.wait_for(self._events.get(), timeout)
            except TimeoutError:
                event = _NoSpeech()
            if isinstance(event, _Hangup):
                return
            if isinstance(event, _NoSpeech):
                if self._playout.playing or self._vad.in_speech or self._silence_deadline() > 0.05:
                    continue  # the silence has not lasted long enough yet
                await self._no_speech()
            elif isinstance(event, KeyPress):
                await self._on_key(event)
            elif isinstance(event, _KeysTimeout):
                if self._keys is not None and self._keys.generation == event.generation:
                    await self._keys_done()
            elif isinstance(event, Utterance):
                await self._on_utterance(event)
            elif isinstance(event, _AsrLost):
                if not event.recovered:
                    await self._say(self._prompts.unavailable)
                    await self._finish_speaking()
                    await self._end("asr_failed")
                    return
                await self._say(self._prompts.asr_lost)
            else:
                await self._on_conversation_event(event)

    def _silence_deadline(self) -> float:
        if self._queue_status is not None or self._keys is not None:
            return 1.0  # waiting for (or with) a person, or keying: no reprompts
        if self._playout.playing or self._vad.in_speech:
            return 0.5
        # silence counts from the end of the bot's speech or the caller's, whichever is later
        idle_for = time.monotonic() - max(self._last_activity, self._playout.finished_at)
        return max(0.05, self._settings.no_speech_timeout_s - idle_for)

    async def _end(self, reason: str) -> None:
        self._ending = True
        if not self._hungup:
            self._hungup = True
            await self._sink.hang_up(reason)

    # -- listening -------------------------------------------------------------------------
    async def _listen(self) -> None:
        preroll: deque[bytes] = deque(maxlen=PREROLL_MS // 20)
        pending = bytearray()
        held = bytearray()  # silence within an utterance beyond ASR_TAIL_S
        speech_start = 0.0
        interrupting = False
        confirmed = False
        last_key_at = -1.0  # stream time of the last in-band key press
        lost = False
        assert self._stream is not None
        stream = self._stream
        while True:
            pcm = await self._audio.get()
            if pcm is None:
                return
            self._stream_seconds += len(pcm) / (SAMPLE_RATE * SAMPLE_WIDTH)
            for key in self._dtmf.feed(pcm):
                last_key_at = self._stream_seconds
                self._events.put_nowait(KeyPress(key, "inband"))
            was_in_speech = self._vad.in_speech
            events = self._vad.feed(pcm)
            if not was_in_speech and not self._vad.in_speech and not events:
                preroll.append(pcm)
                continue
            if lost:  # the recognizer failed during this utterance: skip the rest of it
                lost = self._vad.in_speech
                if not lost:
                    self._events.put_nowait(_AsrLost(recovered=True))  # "say it again"
                preroll.append(pcm)
                continue
            for ev in events:
                if ev.kind == "start":
                    speech_start = ev.at_s
                    self._last_activity = time.monotonic()
                    pending.extend(b"".join(preroll))
                    preroll.clear()
                    interrupting = (
                        self._playout.playing and self._settings.barge_in and self._agent is None
                    )
                    confirmed = False
                    if interrupting:
                        await self._playout.pause()
                        log.info(
                            "media.barge_in.paused",
                            call_id=self.info.call_id,
                            latency_ms=round((self._stream_seconds - ev.at_s) * 1000),
                        )
            try:
                ended = any(e.kind == "end" for e in events)
                if ended:
                    held.clear()  # the silence that ended the utterance is not decoded
                elif (
                    self._vad.in_speech
                    and self._stream_seconds - self._vad.voiced_until_s > ASR_TAIL_S
                ):
                    held.extend(pcm)
                else:
                    pending.extend(held)  # a pause: the caller goes on
                    held.clear()
                    pending.extend(pcm)
                if len(pending) >= ASR_BATCH_BYTES or ended:
                    data, pending = bytes(pending), bytearray()
                    partial = await self._asr(self._timed_accept, stream, data)
                    if partial is not None and partial.text and not self._sensitive:
                        await self._sink.send_event(
                            {"type": "transcript", "text": partial.text, "final": False}
                        )
                        if self._agent is not None:
                            self._agent.caption(partial.text, False)
                        if (
                            interrupting
                            and not confirmed
                            and self._is_interruption(
                                partial.text, self._vad.voiced_until_s - speech_start
                            )
                        ):
                            confirmed = await self._confirm_barge_in(f"words: {partial.text}")
                if (
                    interrupting
                    and not confirmed
                    and self._vad.in_speech
                    and (self._vad.voiced_until_s - speech_start)
                    >= self._settings.barge_in_min_ms / 1000
                ):
                    confirmed = await self._confirm_barge_in("duration")
                end = next((e for e in events if e.kind == "end"), None)
                if end is None:
                    continue
                final = await self._asr(self._timed_finish, stream)
                self._last_activity = time.monotonic()
                utt = Utterance(
                    final,
                    self._session_time(speech_start),
                    self._session_time(end.at_s),
                    self.now(),
                )
                if last_key_at >= speech_start - 0.2:
                    # a key tone, not speech: the key press is its own event
                    log.info(
                        "media.asr.tone_ignored",
                        call_id=self.info.call_id,
                        text=mask_numbers(final.text) if self._sensitive else final.text,
                    )
                    if interrupting and not confirmed:
                        self._playout.resume()
                    interrupting = False
                    continue
                if interrupting and not confirmed:
                    if self._is_interruption(final.text, end.at_s - speech_start):
                        confirmed = await self._confirm_barge_in(f"final: {final.text}")
                    else:
                        log.info(
                            "media.barge_in.backchannel", call_id=self.info.call_id, text=final.text
                        )
                        self._playout.resume()
                        interrupting = False
                        continue
                interrupting = False
                if final.text.strip():
                    self._events.put_nowait(utt)
            except RecognizerError as exc:
                new_stream = await self._asr_failed(exc)
                if new_stream is None:
                    return
                stream = new_stream
                if interrupting and not confirmed:
                    self._playout.resume()
                interrupting = False
                pending = bytearray()
                held.clear()
                lost = self._vad.in_speech
                if not lost:
                    self._events.put_nowait(_AsrLost(recovered=True))

    async def _asr_failed(self, exc: RecognizerError) -> RecognizerStream | None:
        """The recognizer failed mid-call (e.g. the worker process decoding the call died):
        what the caller is saying is lost. Open a new stream (the caller is asked to say it
        again once the lost utterance ends); when that fails too, apologise and end the
        call. Returns the new stream or None."""
        log.error("media.asr.failed", call_id=self.info.call_id, error=str(exc))
        STATS.asr_failures += 1
        old, self._stream = self._stream, None
        if old is not None:
            await asyncio.to_thread(old.close)
        try:
            assert self._recognizer is not None
            stream = await asyncio.to_thread(self._recognizer.open_stream, self._asr_phrases)
        except (RecognizerError, ModelError) as reopen:
            log.error("media.asr.unavailable", call_id=self.info.call_id, error=str(reopen))
            self._events.put_nowait(_AsrLost(recovered=False))
            return None
        self._stream = stream
        return stream

    async def _asr(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a recognizer call on the engines' ASR threads: never behind a long synthesis
        in a shared pool, so a call's speech is decoded as it arrives."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._engines.asr_executor, fn, *args)

    @staticmethod
    def _timed_accept(stream: RecognizerStream, data: bytes) -> Transcript | None:
        t = time.perf_counter()
        try:
            return stream.accept(data)
        finally:
            STATS.asr_busy_s += time.perf_counter() - t
            STATS.asr_audio_s += len(data) / (SAMPLE_RATE * SAMPLE_WIDTH)

    @staticmethod
    def _timed_finish(stream: RecognizerStream) -> Transcript:
        t = time.perf_counter()
        try:
            return stream.finish()
        finally:
            STATS.asr_busy_s += time.perf_counter() - t

    def _session_time(self, stream_s: float) -> float:
        """Session-clock time of a point of the input stream (the stream runs in real time,
        so it lags the clock by what is still queued)."""
        return self.now() - (self._stream_seconds - stream_s)

    def _is_interruption(self, text: str, speech_s: float) -> bool:
        words = [w for w in text.lower().split() if w not in BACKCHANNELS]
        return (
            len(words) >= self._settings.barge_in_min_words
            or speech_s * 1000 >= self._settings.barge_in_min_ms
        )

    async def _confirm_barge_in(self, reason: str) -> bool:
        self.barge_ins += 1
        STATS.barge_ins += 1
        if self._speaking is not None:
            self._speaking.cancel()
        dropped = await self._playout.clear()
        log.info("media.barge_in", call_id=self.info.call_id, frames_dropped=dropped, reason=reason)
        await self._sink.send_event({"type": "clear"})
        return True

    # -- turns -------------------------------------------------------------------------------
    async def _on_utterance(self, utt: Utterance) -> None:
        t = utt.transcript
        text = t.text.strip()
        heard = None
        if self._sensitive:  # card details and the like: never kept in clear
            text = mask_numbers(text)
            t = replace(t, text=text, words=())
        elif self._settings.phrase_bias == "correct":
            corrected, _score = self._engines.correct(self.info.language, text)
            if corrected != text:
                heard, text = text, corrected
        await self._sink.send_event(
            {"type": "transcript", "text": text, "final": True, "heard": heard or t.text}
        )
        if self._agent is not None:
            self._agent.caption(text, True)
        latency_s = utt.final_s - utt.speech_end_s
        ASR_LATENCY.labels(self._recognizer.engine).observe(max(0.0, latency_s))
        log.info(
            "media.asr.final",
            call_id=self.info.call_id,
            text=text,
            heard=heard,
            confidence=t.confidence,
            latency_ms=round(latency_s * 1000),
        )
        voice = {
            "engine": self._recognizer.engine,
            "language": self.info.language,
            "speech_start_ms": round(max(0.0, utt.speech_start_s) * 1000, 1),
            "speech_end_ms": round(max(0.0, utt.speech_end_s) * 1000, 1),
            "asr_final_ms": round(utt.final_s * 1000, 1),
        }
        if heard is not None:
            voice["heard"] = heard
        await self._turn(text, t.confidence, voice, TurnTiming(utt.speech_end_s, utt.final_s))

    async def _on_key(self, key: KeyPress) -> None:
        self._last_activity = time.monotonic()
        collecting = self._sensitive or self._keys is not None
        shown = "*" if collecting else key.key  # keyed details stay out of logs
        log.info("media.dtmf", call_id=self.info.call_id, key=shown, source=key.source)
        DTMF_DIGITS.labels(key.source).inc()
        await self._sink.send_event({"type": "dtmf", "key": shown})
        if self.conversation_id is None:
            return
        if collecting:
            await self._collect_key(key.key)
            return
        if key.key == self._settings.callback_key and self._waiting_for_person():
            await self._callback_requested()
            return
        if key.key == "0":
            if self._queue_status is not None:
                log.info("media.dtmf.already_handed_off", call_id=self.info.call_id)
                return
            await self._stop_speaking()
            try:
                queue = await self._bot.handoff(self.conversation_id, "dtmf_zero")
            except (BotUnavailable, ConversationGone) as exc:
                log.error("media.dtmf.handoff_failed", call_id=self.info.call_id, error=str(exc))
                await self._say(self._prompts.unavailable)
                return
            if self._transfer_target(queue):
                await self._say(self._prompts.transferring)
            else:
                await self._say(self._prompts.queue(queue.position, queue.estimated_wait_s))
            await self._enter_hold(queue)
            return
        now = self.now()
        voice = {
            "engine": "dtmf",
            "language": self.info.language,
            "dtmf": key.key,
            "asr_final_ms": round(now * 1000, 1),
        }
        await self._turn(key.key, None, voice, TurnTiming(now, now))

    async def _turn(
        self, text: str, confidence: float | None, voice: dict[str, Any], timing: TurnTiming
    ) -> None:
        assert self.conversation_id is not None
        if self._agent is None:  # the agent's voice is not cut by the caller's words
            await self._stop_speaking()
        try:
            result = await self._bot.say(
                self.conversation_id,
                text,
                client_message_id=uuid.uuid4().hex,
                asr_confidence=confidence,
                voice=voice,
            )
        except ConversationGone:
            await self._end("conversation_closed")
            return
        except BotUnavailable as exc:
            log.error("media.turn.bot_down", call_id=self.info.call_id, error=str(exc))
            await self._say(self._prompts.unavailable)
            return
        timing.reply_s = self.now()
        BOT_ROUND_TRIP.observe(max(0.0, timing.reply_s - timing.asr_final_s))
        STATS.turns += 1
        self._reprompts = 0
        self._pending_timing = timing
        self.timings.append(timing)
        if result.recording is not None:
            self._mark_sensitive(result.recording == "pause")
        await self._speak_result(result)
        if result.handoff and result.queue is not None:
            await self._enter_hold(result.queue)
        if result.intent == "goodbye" and not result.handoff:
            await self._finish_speaking()
            await self._end("goodbye")

    async def _speak_result(self, result: TurnResult) -> None:
        lines = [r.text for r in result.replies if r.text]
        for r in result.replies:
            if r.options:
                lines.append(self._prompts.options(r.options))
        if result.handoff and result.queue is not None:
            if self._transfer_target(result.queue):
                lines.append(self._prompts.transferring)
            else:
                lines.append(
                    self._prompts.queue(result.queue.position, result.queue.estimated_wait_s)
                )
        for line in lines:
            await self._sink.send_event({"type": "reply", "text": line})
        if lines:
            await self._say(" ".join(lines))

    async def _on_conversation_event(self, event: dict[str, Any]) -> None:
        """Live events of the conversation: an agent's typed message is spoken; queue updates
        feed the hold announcements; an agent joining ends the hold music at once."""
        if event.get("type") == "turn":
            turn = event.get("turn") or {}
            if turn.get("role") == "agent" and turn.get("text"):
                await self._agent_present("agent_message")
                await self._sink.send_event({"type": "reply", "text": turn["text"], "agent": True})
                await self._say(str(turn["text"]))
        elif event.get("type") == "agent_audio":
            await self._agent_present("agent_audio")
        elif event.get("type") == "agent_joined":
            await self._agent_present("agent_joined")
            await self._say(self._prompts.agent_joined(str(event.get("agent") or "")))
        elif event.get("type") == "queue" and self._queue_status is not None:
            self._queue_status = QueueStatus(
                position=event.get("position"),
                estimated_wait_s=event.get("estimated_wait_s"),
                callback_offered=bool(event.get("callback_offered")),
                status=event.get("status"),
            )
            if event.get("status") == "assigned":
                await self._agent_present("assigned")

    async def _watch_conversation(self) -> None:
        assert self.conversation_id is not None
        try:
            async for event in self._bot.stream(self.conversation_id):
                if event.get("type") in ("turn", "agent_joined", "queue"):
                    self._events.put_nowait(event)
        except Exception as exc:  # noqa: BLE001 - the call goes on without live agent events
            log.warning("media.session.stream_lost", call_id=self.info.call_id, error=repr(exc))

    async def _no_speech(self) -> None:
        log.info("media.no_speech", call_id=self.info.call_id, reprompts=self._reprompts)
        self._last_activity = time.monotonic()
        if self.conversation_id:
            with contextlib.suppress(BotUnavailable, ConversationGone):
                await self._bot.event(
                    self.conversation_id, "voice.no_speech", {"reprompts": self._reprompts}
                )
        if self._reprompts < self._settings.max_reprompts:
            self._reprompts += 1
            await self._say(self._prompts.reprompt)
            return
        if self._settings.no_speech_action == "handoff" and self.conversation_id:
            try:
                queue = await self._bot.handoff(self.conversation_id, "user_request", "no_speech")
                await self._say(self._prompts.queue(queue.position, queue.estimated_wait_s))
                await self._enter_hold(queue)
                self._reprompts = 0
                return
            except (BotUnavailable, ConversationGone):
                pass
        await self._say(self._prompts.goodbye)
        await self._finish_speaking()
        await self._end("no_speech")

    # -- an agent taking the call's audio in the desk ---------------------------------------
    def attach_agent(self, agent: AgentAudioSink) -> None:
        """The agent hears the caller from now on (a second attachment replaces the first);
        the hold music stops."""
        if self._hungup:
            agent.call_ended("hangup")
            return
        previous, self._agent = self._agent, agent
        if previous is not None:
            previous.call_ended("replaced")
        log.info("media.agent.attached", call_id=self.info.call_id)
        self._events.put_nowait({"type": "agent_audio"})

    def detach_agent(self, agent: AgentAudioSink) -> None:
        """The agent's audio went away; the call goes on (typed messages are still spoken)."""
        if self._agent is agent:
            self._agent = None
            log.info(
                "media.agent.detached",
                call_id=self.info.call_id,
                frames_dropped=self.agent_frames_dropped,
            )

    def play_agent_audio(self, agent: AgentAudioSink, pcm: bytes) -> bool:
        """The agent's voice (16 kHz s16le) towards the caller, paced by the playout. When
        the caller's side is behind, the frame is dropped and counted (False)."""
        if self._agent is not agent or self._hungup:
            return False
        if self._playout.queued_s > AGENT_MAX_QUEUED_S:
            self.agent_frames_dropped += 1
            return False
        self._playout.enqueue(pcm, "agent")
        return True

    # -- waiting for a person: hold music, updates, callback --------------------------------
    def _waiting_for_person(self) -> bool:
        q = self._queue_status
        return q is not None and q.waiting and not self._with_agent

    async def _enter_hold(self, queue: QueueStatus) -> None:
        """Handed off (the queue prompt is being said): offer a callback, then music with
        updates until a person joins."""
        if self._with_agent:
            return
        self._queue_status = queue
        if not queue.waiting or self._hold_task is not None:
            return
        target = self._transfer_target(queue)
        if target is not None:
            if await self._transfer_out(target):
                return
            await self._say(self._prompts.transfer_failed)
        await self._say(self._prompts.offer_callback(self._settings.callback_key))
        self._start_hold()

    def _transfer_target(self, queue: QueueStatus) -> str | None:
        """Where the bot routes this waiting call, if this transport can send it there
        (SIP; AudioSocket when enabled; others wait in the queue) and no transfer was tried
        yet."""
        sink = self._sink
        if (
            queue.transfer_to
            and not self._transfer_tried
            and isinstance(sink, TransferSink)
            and sink.can_transfer()
        ):
            return queue.transfer_to
        return None

    async def _transfer_out(self, target: str) -> bool:
        """Transfer the call (the announcement first); report the outcome to the bot. On
        success the call is ours no more: hang up. On failure the caller stays queued."""
        assert isinstance(self._sink, TransferSink) and self.conversation_id is not None
        self._transfer_tried = True
        await self._finish_speaking()
        try:
            ok, why = await self._sink.transfer(
                target, {"X-Receptionist-Conversation-Id": self.conversation_id}
            )
        except Exception as exc:  # noqa: BLE001 - a transport failure is a failed transfer
            ok, why = False, repr(exc)
        try:
            await self._bot.transferred(self.conversation_id, target, ok, why)
        except (BotUnavailable, ConversationGone) as exc:
            log.error("media.transfer.report_failed", call_id=self.info.call_id, error=str(exc))
        if ok:
            await self._end("transferred")
        else:
            log.warning("media.transfer.failed", call_id=self.info.call_id, detail=why)
        return ok

    def _start_hold(self) -> None:
        if self._hold_task is None and self._moh is not None and self._waiting_for_person():
            self._hold_task = asyncio.create_task(self._hold(), name="hold")

    async def _hold(self) -> None:
        assert self._moh is not None
        await self._heard()  # the queue prompt first
        log.info("media.hold.started", call_id=self.info.call_id)
        await HoldLoop(
            self._moh,
            self._playout,
            self._hold_update,
            self._settings.hold_update_s,
            self.info.call_id,
        ).run()

    async def _hold_update(self) -> None:
        q = self._queue_status
        update = self._prompts.queue(q.position, q.estimated_wait_s) if q else ""
        await self._say(f"{update} {self._prompts.offer_callback(self._settings.callback_key)}")
        await self._heard()

    async def _stop_hold(self, reason: str) -> None:
        task, self._hold_task = self._hold_task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._stop_speaking()
        log.info("media.hold.stopped", call_id=self.info.call_id, reason=reason)

    async def _agent_present(self, reason: str) -> None:
        self._with_agent = True
        if self._keys is not None and self._keys.purpose == "callback":
            self._cancel_keys()
        await self._stop_hold(reason)

    async def _callback_requested(self) -> None:
        await self._stop_hold("callback")
        number = callback_number(self.info.caller)
        if number is not None:
            await self._book_callback(number)
            return
        # no usable caller id (AudioSocket, withheld numbers): the caller keys it
        self._start_keys("callback", CALLBACK_NUMBER_TIMEOUT_S)
        await self._say(self._prompts.callback_ask_number)

    async def _book_callback(self, number: str) -> None:
        assert self.conversation_id is not None
        try:
            await self._bot.request_callback(self.conversation_id, number)
        except ConversationGone as exc:  # no longer waiting: a person took the call meanwhile
            log.info("media.hold.callback_refused", call_id=self.info.call_id, error=str(exc))
            return
        except BotUnavailable as exc:
            log.error("media.hold.callback_failed", call_id=self.info.call_id, error=str(exc))
            await self._say(self._prompts.callback_failed)
            self._start_hold()
            return
        log.info("media.hold.callback_booked", call_id=self.info.call_id, digits=len(number))
        if self._queue_status is not None:
            self._queue_status = replace(self._queue_status, status="callback_scheduled")
        await self._say(self._prompts.callback_booked(number))
        await self._finish_speaking()
        await self._end("callback_requested")

    # -- collected keys (callback number, sensitive input) ---------------------------------
    def _start_keys(self, purpose: str, timeout_s: float) -> None:
        self._keys_generation += 1
        self._keys = _KeyCollection(purpose, self._keys_generation)
        self._arm_keys_timer(timeout_s)

    def _arm_keys_timer(self, timeout_s: float) -> None:
        if self._keys_timer is not None:
            self._keys_timer.cancel()
        assert self._keys is not None
        self._keys_timer = asyncio.get_running_loop().call_later(
            timeout_s, self._events.put_nowait, _KeysTimeout(self._keys.generation)
        )

    def _cancel_keys(self) -> _KeyCollection | None:
        keys, self._keys = self._keys, None
        if self._keys_timer is not None:
            self._keys_timer.cancel()
            self._keys_timer = None
        return keys

    async def _collect_key(self, key: str) -> None:
        if self._keys is None:
            self._start_keys("sensitive", DIGIT_TIMEOUT_S)
        assert self._keys is not None
        if key == "#":
            await self._keys_done()
            return
        self._keys.keys.append(key)
        if len(self._keys.keys) >= MAX_COLLECTED_KEYS:
            await self._keys_done()
        else:
            self._arm_keys_timer(DIGIT_TIMEOUT_S)

    async def _keys_done(self) -> None:
        keys = self._cancel_keys()
        if keys is None:
            return
        if keys.purpose == "callback":
            number = "".join(k for k in keys.keys if k.isdigit())
            if len(number) < 3:
                await self._say(self._prompts.callback_bad_number)
                self._start_hold()
                return
            await self._book_callback(number)
            return
        if not keys.keys:
            return
        # sensitive input reaches the bot masked: it knows how many keys, never which
        masked = "*" * len(keys.keys)
        now = self.now()
        voice = {
            "engine": "dtmf",
            "language": self.info.language,
            "dtmf": masked,
            "asr_final_ms": round(now * 1000, 1),
        }
        await self._turn(masked, None, voice, TurnTiming(now, now))

    # -- recording -------------------------------------------------------------------------
    async def _send_out(self, pcm: bytes) -> None:
        if self._recorder is not None:
            self._recorder.bot(pcm)
        await self._sink.send_audio(pcm)

    async def _clear_out(self) -> None:
        if self._recorder is not None:
            self._recorder.clear_bot()
        await self._sink.clear_audio()

    async def _start_recording(self) -> None:
        if self._recordings is None or self.conversation_id is None:
            return
        try:
            self._recorder = await asyncio.to_thread(self._recordings.open, self.conversation_id)
        except (OSError, ValueError) as exc:
            log.error("media.recording.failed", call_id=self.info.call_id, error=str(exc))
            return
        log.info(
            "media.recording.started",
            call_id=self.info.call_id,
            conversation_id=self.conversation_id,
            file=self._recorder.path.name,
        )
        self._report_recording("started")
        if self._settings.recording_announcement.strip():
            await self._say(self._settings.recording_announcement.strip())

    def _mark_sensitive(self, sensitive: bool) -> None:
        """The bot marked a sensitive step (a reply with ``{"recording": "pause"}``) or its
        end: while it lasts the recording is silent and keys and numbers are masked."""
        if sensitive == self._sensitive:
            return
        self._sensitive = sensitive
        if not sensitive and self._keys is not None and self._keys.purpose == "sensitive":
            self._cancel_keys()
        log.info("media.sensitive", call_id=self.info.call_id, on=sensitive)
        if self._recorder is not None:
            if sensitive:
                self._recorder.pause()
            else:
                self._recorder.resume()
            self._report_recording("paused" if sensitive else "resumed")

    def _report_recording(self, action: str) -> None:
        recorder = self._recorder
        if recorder is None or self.conversation_id is None:
            return
        data = {"action": action, "file": recorder.path.name, "at_s": round(recorder.duration_s, 3)}
        task = asyncio.create_task(self._bot.event(self.conversation_id, "voice.recording", data))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)

    async def _stop_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return
        try:
            recorder.close()
        except OSError as exc:
            log.error("media.recording.close_failed", call_id=self.info.call_id, error=str(exc))
        log.info(
            "media.recording.stopped",
            call_id=self.info.call_id,
            file=recorder.path.name,
            duration_s=round(recorder.duration_s, 2),
        )
        if self._background:
            await asyncio.wait(set(self._background), timeout=2)
        if self.conversation_id is not None:
            with contextlib.suppress(BotUnavailable, ConversationGone):
                await self._bot.event(
                    self.conversation_id,
                    "voice.recording",
                    {
                        "action": "stopped",
                        "file": recorder.path.name,
                        "duration_s": round(recorder.duration_s, 3),
                    },
                )

    # -- speaking ----------------------------------------------------------------------------
    async def _say(self, text: str) -> None:
        """Start speaking ``text`` (after whatever is being said); returns at once."""
        previous = self._speaking

        async def speak() -> None:
            if previous is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await previous
            async for seg in self._engines.tts.speak(text):
                if seg.cached:
                    STATS.tts_cache_hits += 1
                else:
                    STATS.tts_cache_misses += 1
                    STATS.tts_busy_s += seg.synth_ms / 1000
                    STATS.tts_audio_s += len(seg.pcm) / (SAMPLE_RATE * SAMPLE_WIDTH)
                if self._pending_timing is not None and self._pending_timing.cached is None:
                    self._pending_timing.cached = seg.cached
                self._playout.enqueue(seg.pcm, "reply")
            self._last_activity = time.monotonic()

        self._speaking = asyncio.create_task(speak())

    async def _stop_speaking(self) -> None:
        if self._speaking is not None and not self._speaking.done():
            self._speaking.cancel()
        if self._playout.playing:
            await self._playout.clear()

    async def _finish_speaking(self) -> None:
        if self._speaking is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaking
        await self._playout.wait_idle()

    async def _heard(self) -> None:
        """Like :meth:`_finish_speaking`, for background tasks: cancelling the task that
        waits neither swallows its cancellation nor cancels the speech."""
        speaking = self._speaking
        if speaking is not None and not speaking.done():
            await asyncio.wait({speaking})
        await self._playout.wait_idle()

    def _segment_started(self, tag: str, at: float) -> None:
        if tag == "agent":
            return  # the agent's live voice is not a reply of the bot
        timing = self._pending_timing
        if timing is not None and timing.first_audio_s is None:
            timing.first_audio_s = at - self._t0
            self._pending_timing = None
            if timing.reply_s is not None:
                STATS.reply_to_audio.append(
                    ((timing.first_audio_s - timing.reply_s) * 1000, bool(timing.cached))
                )
            REPLY_LATENCY.labels(str(bool(timing.cached)).lower()).observe(
                max(0.0, timing.first_audio_s - timing.speech_end_s)
            )
            log.info(
                "media.turn.timing",
                call_id=self.info.call_id,
                endpoint_to_final_ms=round((timing.asr_final_s - timing.speech_end_s) * 1000),
                reply_ms=round(((timing.reply_s or 0) - timing.asr_final_s) * 1000),
                latency_ms=round((timing.first_audio_s - timing.speech_end_s) * 1000),
                cached=timing.cached,
            )
            if self.conversation_id:
                task = asyncio.create_task(self._report_timing(timing))
                task.add_done_callback(_log_failure)

    async def _report_timing(self, timing: TurnTiming) -> None:
        assert self.conversation_id is not None
        await self._bot.event(
            self.conversation_id,
            "voice.reply_audio",
            {
                "speech_end_ms": round(timing.speech_end_s * 1000, 1),
                "asr_final_ms": round(timing.asr_final_s * 1000, 1),
                "reply_ms": round((timing.reply_s or 0) * 1000, 1),
                "first_audio_ms": round((timing.first_audio_s or 0) * 1000, 1),
                "cached": timing.cached,
            },
        )


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("media.session.report_failed", error=repr(task.exception()))
