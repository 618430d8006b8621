"""Speaking a bot reply: sentence by sentence, pipelined, cached, off the event loop.

:meth:`TtsService.speak` splits the reply into sentences and yields one
:class:`SpeechSegment` per sentence, in order, as 16 kHz s16le. Sentences are synthesized one
at a time in a worker thread, running ahead of the consumer by at most ``lookahead``
sentences: the first segment is yielded as soon as it is ready, while the next ones are being
synthesized as it plays. One synthesis at a time per reply keeps the CPU for the first
sentence (and for the other calls) instead of racing all sentences on two cores.

Stop early (barge-in) by leaving the loop inside ``contextlib.aclosing(service.speak(...))``
or by cancelling the consuming task: the pending work is cancelled at once. A sentence whose
synthesis already runs in a worker thread cannot be interrupted; it finishes in the
background (its audio still lands in the cache) and nothing waits for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import soxr  # type: ignore[import-untyped,unused-ignore]
import structlog

from media_server.audio import SAMPLE_RATE, duration_s
from media_server.metrics import TTS_FIRST_AUDIO
from media_server.tts.base import SpeechSynthesizer
from media_server.tts.cache import CacheKey, PromptCache
from media_server.tts.sentences import speakable, split_sentences

__all__ = ["AUDIO_FORMAT", "SpeechSegment", "TtsService"]

log = structlog.get_logger()

AUDIO_FORMAT = f"s16le-{SAMPLE_RATE}"
"""Format of the audio the service yields and caches (part of the cache key)."""
DEFAULT_LOOKAHEAD = 2

_T = TypeVar("_T")
_A = TypeVar("_A")


@dataclass(frozen=True)
class SpeechSegment:
    text: str
    """The sentence as written in the reply (what a transcript shows)."""
    pcm: bytes
    """16 kHz mono s16le audio of the sentence."""
    cached: bool
    """True when the audio came from the prompt cache."""
    synth_ms: float
    """Time to produce ``pcm``: synthesis and resampling, or the cache read on a hit."""


class TtsService:
    """Turns bot replies into audio segments with a :class:`SpeechSynthesizer`.

    ``executor`` runs the blocking work (default: the event loop's default executor);
    ``normalize`` applies :func:`speakable` to each sentence before synthesis.
    """

    def __init__(
        self,
        synth: SpeechSynthesizer,
        cache: PromptCache | None = None,
        *,
        lookahead: int = DEFAULT_LOOKAHEAD,
        executor: Executor | None = None,
        normalize: bool = True,
    ) -> None:
        if lookahead < 1:
            raise ValueError(f"lookahead must be >= 1, got {lookahead}")
        self.synth = synth
        self.cache = cache
        self.lookahead = lookahead
        self.normalize = normalize
        self._executor = executor

    async def speak(self, text: str) -> AsyncGenerator[SpeechSegment, None]:
        """One segment per sentence of ``text``, in order; nothing for blank text.

        A synthesis error is raised from the iteration at the segment that failed.
        """
        sentences = split_sentences(text)
        if not sentences:
            return
        slots = asyncio.Semaphore(self.lookahead)
        ready: asyncio.Queue[SpeechSegment | Exception] = asyncio.Queue()
        producer = asyncio.create_task(
            self._produce(sentences, slots, ready), name="media.tts.speak"
        )
        try:
            for index in range(len(sentences)):
                waited = time.perf_counter()
                item = await ready.get()
                if isinstance(item, Exception):
                    raise item
                slots.release()
                latency_s = time.perf_counter() - waited
                if index == 0:
                    TTS_FIRST_AUDIO.labels(str(item.cached).lower()).observe(latency_s)
                log.info(
                    "media.tts.segment",
                    index=index,
                    count=len(sentences),
                    cached=item.cached,
                    latency_ms=round(latency_s * 1000, 1),
                    synth_ms=round(item.synth_ms, 1),
                    audio_ms=round(duration_s(item.pcm) * 1000),
                    chars=len(item.text),
                )
                yield item
        finally:
            if not producer.done():
                producer.cancel()
            # Collects the producer's outcome: no "exception was never retrieved" warnings.
            [outcome] = await asyncio.gather(producer, return_exceptions=True)
            if isinstance(outcome, Exception):  # a bug in the producer itself, not synthesis
                log.error("media.tts.producer_failed", exc_info=outcome)

    async def warm(self, texts: Iterable[str]) -> int:
        """Synthesize the sentences of ``texts`` into the cache; how many were not cached yet.

        Sentences are synthesized one at a time, so warming beside live calls takes one core.
        """
        if self.cache is None:
            log.info("media.tts.warm.skipped", reason="no cache")
            return 0
        sentences = list(dict.fromkeys(s for text in texts for s in split_sentences(text)))
        started = time.perf_counter()
        synthesized = 0
        for sentence in sentences:
            segment = await self._in_thread(self.render, sentence)
            synthesized += not segment.cached
        log.info(
            "media.tts.warm",
            sentences=len(sentences),
            synthesized=synthesized,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return synthesized

    def render(self, sentence: str) -> SpeechSegment:
        """Blocking: the audio of one sentence, from the cache or synthesized (and cached)."""
        spoken = speakable(sentence) if self.normalize else sentence
        key = CacheKey(spoken, self.synth.voice_id, AUDIO_FORMAT)
        started = time.perf_counter()
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return SpeechSegment(sentence, hit, True, _ms_since(started))
        pcm = to_internal_rate(self.synth.synthesize(spoken), self.synth.sample_rate)
        synth_ms = _ms_since(started)
        if self.cache is not None and pcm:
            self.cache.put(key, pcm)
        return SpeechSegment(sentence, pcm, False, synth_ms)

    async def _produce(
        self,
        sentences: list[str],
        slots: asyncio.Semaphore,
        ready: asyncio.Queue[SpeechSegment | Exception],
    ) -> None:
        for index, sentence in enumerate(sentences):
            await slots.acquire()  # released when the consumer takes a segment
            try:
                segment = await self._in_thread(self.render, sentence)
            except Exception as exc:
                log.warning(
                    "media.tts.synthesis_failed", index=index, chars=len(sentence), exc_info=exc
                )
                ready.put_nowait(exc)
                return
            ready.put_nowait(segment)

    async def _in_thread(self, fn: Callable[[_A], _T], arg: _A) -> _T:
        """``fn(arg)`` in the executor, with the caller's contextvars (bound log fields)."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, functools.partial(context.run, fn, arg))


def to_internal_rate(pcm: bytes, rate: int) -> bytes:
    """s16le mono ``pcm`` at ``rate`` resampled to :data:`SAMPLE_RATE` (soxr, HQ)."""
    if rate == SAMPLE_RATE or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    resampled = soxr.resample(samples, rate, SAMPLE_RATE)
    return np.asarray(resampled, dtype="<i2").tobytes()


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
