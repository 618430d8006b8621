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
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog

from bot.config import MediaSettings
from media_server.asr.base import RecognizerStream, SpeechRecognizer, Transcript
from media_server.audio import SAMPLE_RATE, SAMPLE_WIDTH
from media_server.audio.dtmf import DtmfDetector
from media_server.audio.vad import SpeechDetector
from media_server.bot_client import BotClient, BotUnavailable, ConversationGone, TurnResult
from media_server.metrics import STATS
from media_server.playout import Playout
from media_server.prompts import Prompts
from media_server.tts.service import TtsService

log = structlog.get_logger("media_server.session")
T = TypeVar("T")

BACKCHANNELS = frozenset(
    {"uh", "huh", "uh-huh", "mhm", "mm", "hmm", "um", "ok", "okay", "yeah", "yes", "yep"}
    | {"right", "sure", "alright", "ah", "oh"}
)
PREROLL_MS = 400
ASR_BATCH_BYTES = SAMPLE_RATE * SAMPLE_WIDTH // 10  # feed the recognizer 100 ms at a time
INPUT_QUEUE_FRAMES = 1500  # 30 s of 20 ms frames; beyond that the call is too far behind


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


Event = Utterance | KeyPress | _NoSpeech | _Hangup | dict[str, Any]


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
            sink.send_audio, sink.clear_audio, on_segment_start=self._segment_started
        )
        self._speaking: asyncio.Task[None] | None = None
        self._stream: RecognizerStream | None = None
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
        try:
            recognizer = await asyncio.to_thread(self._engines.recognizer, self.info.language)
            phrases = (
                self._engines.phrases(self.info.language)
                if self._settings.phrase_bias == "grammar" and recognizer.engine == "vosk"
                else None
            )
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
            if self._stream is not None:
                stream, self._stream = self._stream, None
                await asyncio.to_thread(stream.close)
            if self.conversation_id and self._owns_conversation:
                with contextlib.suppress(BotUnavailable, ConversationGone):
                    await self._bot.close(self.conversation_id)
            STATS.calls_active -= 1
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
            elif isinstance(event, Utterance):
                await self._on_utterance(event)
            else:
                await self._on_conversation_event(event)

    def _silence_deadline(self) -> float:
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
        speech_start = 0.0
        interrupting = False
        confirmed = False
        last_key_at = -1.0  # stream time of the last in-band key press
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
            for ev in events:
                if ev.kind == "start":
                    speech_start = ev.at_s
                    self._last_activity = time.monotonic()
                    pending.extend(b"".join(preroll))
                    preroll.clear()
                    interrupting = self._playout.playing and self._settings.barge_in
                    confirmed = False
                    if interrupting:
                        await self._playout.pause()
                        log.info(
                            "media.barge_in.paused",
                            call_id=self.info.call_id,
                            latency_ms=round((self._stream_seconds - ev.at_s) * 1000),
                        )
            pending.extend(pcm)
            if len(pending) >= ASR_BATCH_BYTES or any(e.kind == "end" for e in events):
                data, pending = bytes(pending), bytearray()
                partial = await self._asr(self._timed_accept, stream, data)
                if partial is not None and partial.text:
                    await self._sink.send_event(
                        {"type": "transcript", "text": partial.text, "final": False}
                    )
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
                log.info("media.asr.tone_ignored", call_id=self.info.call_id, text=final.text)
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
        if self._settings.phrase_bias == "correct":
            corrected, _score = self._engines.correct(self.info.language, text)
            if corrected != text:
                heard, text = text, corrected
        await self._sink.send_event(
            {"type": "transcript", "text": text, "final": True, "heard": heard or t.text}
        )
        log.info(
            "media.asr.final",
            call_id=self.info.call_id,
            text=text,
            heard=heard,
            confidence=t.confidence,
            latency_ms=round((utt.final_s - utt.speech_end_s) * 1000),
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
        log.info("media.dtmf", call_id=self.info.call_id, key=key.key, source=key.source)
        await self._sink.send_event({"type": "dtmf", "key": key.key})
        if self.conversation_id is None:
            return
        if key.key == "0":
            await self._stop_speaking()
            try:
                queue = await self._bot.handoff(self.conversation_id, "dtmf_zero")
            except (BotUnavailable, ConversationGone) as exc:
                log.error("media.dtmf.handoff_failed", call_id=self.info.call_id, error=str(exc))
                await self._say(self._prompts.unavailable)
                return
            await self._say(self._prompts.queue(queue.position, queue.estimated_wait_s))
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
        STATS.turns += 1
        self._reprompts = 0
        self._pending_timing = timing
        self.timings.append(timing)
        await self._speak_result(result)
        if result.intent == "goodbye" and not result.handoff:
            await self._finish_speaking()
            await self._end("goodbye")

    async def _speak_result(self, result: TurnResult) -> None:
        lines = [r.text for r in result.replies if r.text]
        for r in result.replies:
            if r.options:
                lines.append(self._prompts.options(r.options))
        if result.handoff and result.queue is not None:
            lines.append(self._prompts.queue(result.queue.position, result.queue.estimated_wait_s))
        for line in lines:
            await self._sink.send_event({"type": "reply", "text": line})
        if lines:
            await self._say(" ".join(lines))

    async def _on_conversation_event(self, event: dict[str, Any]) -> None:
        """Live events of the conversation: an agent's typed message is spoken."""
        if event.get("type") == "turn":
            turn = event.get("turn") or {}
            if turn.get("role") == "agent" and turn.get("text"):
                await self._sink.send_event({"type": "reply", "text": turn["text"], "agent": True})
                await self._say(str(turn["text"]))
        elif event.get("type") == "agent_joined":
            await self._say(self._prompts.agent_joined(str(event.get("agent") or "")))

    async def _watch_conversation(self) -> None:
        assert self.conversation_id is not None
        try:
            async for event in self._bot.stream(self.conversation_id):
                if event.get("type") in ("turn", "agent_joined"):
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
                self._reprompts = 0
                return
            except (BotUnavailable, ConversationGone):
                pass
        await self._say(self._prompts.goodbye)
        await self._finish_speaking()
        await self._end("no_speech")

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

    def _segment_started(self, tag: str, at: float) -> None:
        timing = self._pending_timing
        if timing is not None and timing.first_audio_s is None:
            timing.first_audio_s = at - self._t0
            self._pending_timing = None
            if timing.reply_s is not None:
                STATS.reply_to_audio.append(
                    ((timing.first_audio_s - timing.reply_s) * 1000, bool(timing.cached))
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
