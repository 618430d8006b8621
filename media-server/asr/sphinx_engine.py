"""PocketSphinx (CMU Sphinx) behind the :mod:`media_server.asr.base` protocol.

The ``pocketsphinx`` wheel ships a US English acoustic model, language model and dictionary,
so English always works even before a Vosk English model is installed; the registry then
uses it as the announced fallback (``is_fallback=True``).

Streaming: an utterance starts with the first audio after ``finish()`` (``start_utt``), audio
is fed with ``process_raw``, partials come from ``hyp()``, ``finish()`` calls ``end_utt`` and
reads the words from ``seg()``.

Word confidence: the word's posterior probability P(word | audio) that PocketSphinx computes
by forward-backward over the utterance's word lattice (``Segment.prob``, already linear in
the Python binding), clamped to 0..1 (rounding in its log arithmetic gives values like
1.0001). In grammar mode the lattice is the grammar's, so posteriors are close to 1 even for
forced matches: they mean much less there.

Grammar mode: ``phrases`` become a JSGF grammar (one alternative per phrase, words in
order). Phrases with a word missing from the dictionary are left out (one unknown word
would make the whole grammar fail). Speech that fits no phrase gives an empty final, or is
forced onto the nearest phrase.

Channel: telephone audio resampled to 16 kHz has no energy above 4 kHz, which shifts the
cepstra far from the wideband model's initial cepstral mean; PocketSphinx's live CMN then
needs many seconds to adapt. Each stream looks at its first audio, and starts a narrowband
(telephone) stream from a measured telephone cepstral mean (see ``TELEPHONE_CMN``), a
wideband one from the model's default.

A decoder cannot share its model with another one, and each loads in ~0.3 s, so decoders
are pooled: a closed stream returns its decoder for the next call (the cepstral mean is set
again by every stream, so one call's audio does not change how the next one is decoded).

Profiles (``media.sphinx_profile``): decoder options that trade accuracy for CPU, see
:data:`PROFILES`; ``scripts/sphinx_profiles.py`` measures them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pocketsphinx
import structlog

from media_server.asr.base import Transcript, Word
from media_server.asr.phrases import grammar_phrases
from media_server.models_catalogue import ModelError

SAMPLE_RATE = 16000
ENGINE = "pocketsphinx"
PARTIAL_INTERVAL_S = 0.1

Channel = Literal["narrowband", "wideband"]
# Telephone speech resampled to 16 kHz has ~1e-8 of its power above 4.3 kHz (soxr's
# anti-aliasing), wideband speech 1e-4 or more (measured: Asterisk prompts, Piper voice).
NARROWBAND_MAX_RATIO = 1e-5
_DETECT_MAX_S = 2.0  # then wideband by default
# Loud frames only (RMS >= ~316, -40 dBFS): 16-bit rounding adds white noise of power 1/12,
# which would otherwise put quiet telephone audio above the threshold.
_MIN_POWER = 1e5
_MIN_LOUD_FRAMES = 6  # ~0.1 s of loud audio
# PocketSphinx's live cepstral mean after 40 Asterisk prompts (8 kHz telephone speech
# resampled to 16 kHz). Starting narrowband streams from it instead of the wideband
# default took the WER of first utterances from 0.95 to 0.69 on 40 other prompts.
TELEPHONE_CMN = "46.39,28.93,-29.22,37.00,-18.88,-1.54,5.77,-18.18,22.67,-13.77,-3.40,6.23,-13.41"
DEFAULT_SEARCH = "_default"

DecoderOption = bool | int | float | str
SphinxProfile = Literal["accurate", "fast"]
# PocketSphinx decoder options (``pocketsphinx.Config`` keys) per profile.
# fast: on 214 spoken held-out questions over the telephone path, 36% less CPU, intent
# accuracy 0.715 vs 0.724; on 100 Asterisk prompts 50% less CPU and half the time spent
# finishing an utterance, WER 0.746 vs 0.730 (scripts/sphinx_profiles.py; the README shows
# the capacity it buys). It is the default: that CPU is what lets 8 calls on 2 cores keep up.
PROFILES: dict[str, dict[str, DecoderOption]] = {
    "accurate": {},  # PocketSphinx's defaults
    "fast": {"wbeam": 1e-20, "maxhmmpf": 5000},
}
DEFAULT_PROFILE: SphinxProfile = "fast"  # = the default of media.sphinx_profile
_FILLERS = ("<s>", "</s>", "<sil>")
_grammar_ids = itertools.count(1)


def _log() -> Any:
    return structlog.get_logger("media.asr")


def _word_text(word: str) -> str | None:
    """``to(3)`` -> ``to``; fillers and noise (``<sil>``, ``[NOISE]``, ``++UH++``) -> None."""
    if word in _FILLERS or word.startswith(("[", "+", "<")):
        return None
    if word.endswith(")") and "(" in word:
        word = word[: word.index("(")]
    return word


def decoder_options(
    profile: SphinxProfile = DEFAULT_PROFILE, overrides: Mapping[str, DecoderOption] | None = None
) -> dict[str, DecoderOption]:
    """The decoder options of ``profile``, with ``overrides`` on top."""
    if profile not in get_args(SphinxProfile):
        raise ValueError(f"unknown PocketSphinx profile {profile!r}: {', '.join(PROFILES)}")
    return {**PROFILES[profile], **(overrides or {})}


def _new_decoder(options: Mapping[str, DecoderOption]) -> pocketsphinx.Decoder:
    try:
        # FATAL: decoding problems (no hypothesis, audio outside the grammar) are reported
        # as empty results here; PocketSphinx would also print them to stderr.
        return pocketsphinx.Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", **options)
    except KeyError as exc:  # an option this PocketSphinx does not have
        raise ValueError(f"unknown PocketSphinx decoder option: {exc}") from exc
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelError(f"PocketSphinx could not load its English model: {exc}") from exc


def high_band_ratio(pcm: bytes | bytearray) -> float | None:
    """Share of the power above 4.3 kHz in the loud frames (Hann-windowed, 32 ms) of
    ``pcm``, or None when no frame is loud enough to tell (silence, or so quiet that the
    white noise of 16-bit rounding dominates the high band)."""
    x = np.frombuffer(bytes(pcm), dtype="<i2").astype(np.float64)
    n = 512
    if len(x) < n:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[:: n // 2]
    loud = frames[np.mean(frames * frames, axis=1) >= _MIN_POWER]
    if len(loud) < _MIN_LOUD_FRAMES:
        return None
    power = (np.abs(np.fft.rfft(loud * np.hanning(n), axis=1)) ** 2).sum(axis=0)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    return float(power[freqs > 4300].sum() / power.sum())


class SphinxStream:
    """One call's decoder. Not thread-safe: one call at a time (the protocol's rule).

    ``channel`` is ``"narrowband"`` (telephone audio resampled to 16 kHz: nothing above
    4 kHz) or ``"wideband"``, decided on the stream's first audio; until then (at most
    ``_DETECT_MAX_S`` of silence) audio is held back. A narrowband stream starts from a
    telephone cepstral mean (live CMN otherwise needs many seconds to adapt, and the
    first utterances of a call are misrecognized)."""

    def __init__(
        self, owner: SphinxRecognizer, decoder: pocketsphinx.Decoder, search: str | None
    ) -> None:
        self._owner = owner
        self._decoder: pocketsphinx.Decoder | None = decoder
        self._search = search
        self._frate = int(decoder.config["frate"])
        self.channel: Channel | None = None
        self._pending = bytearray()  # audio held back until the channel is known
        self._in_utt = False
        self._utt_start_s = 0.0  # stream time at which the current utterance started
        self._fed_s = 0.0  # seconds of audio fed to this stream
        self._last_partial = ""
        self._partial_at = 0.0  # stream time of the last partial hypothesis

    def _dec(self) -> pocketsphinx.Decoder:
        if self._decoder is None:
            raise RuntimeError("the recognizer stream is closed")
        return self._decoder

    def _detect_channel(self, dec: pocketsphinx.Decoder, *, final: bool) -> bool:
        """Decide the channel from the held-back audio; False: not yet (keep holding)."""
        ratio = high_band_ratio(self._pending)
        if ratio is None and not final and len(self._pending) < _DETECT_MAX_S * SAMPLE_RATE * 2:
            return False
        narrow = ratio is not None and ratio < NARROWBAND_MAX_RATIO
        self.channel = "narrowband" if narrow else "wideband"
        dec.set_cmn(TELEPHONE_CMN if narrow else self._owner.default_cmn)
        _log().debug("media.asr.sphinx_channel", channel=self.channel, high_band_ratio=ratio)
        return True

    def _process(self, dec: pocketsphinx.Decoder, pcm: bytes) -> None:
        if not self._in_utt:
            dec.start_utt()
            self._in_utt = True
            self._utt_start_s = self._fed_s
        dec.process_raw(pcm, False, False)
        self._fed_s += len(pcm) / 2 / SAMPLE_RATE

    def accept(self, pcm: bytes) -> Transcript | None:
        dec = self._dec()
        if len(pcm) % 2:
            raise ValueError(f"PCM must be 16-bit samples (even byte count), got {len(pcm)}")
        if not pcm:
            return None
        if self.channel is None:
            self._pending += pcm
            if not self._detect_channel(dec, final=False):
                return None
            pcm, self._pending = bytes(self._pending), bytearray()
        self._process(dec, pcm)
        # hyp() walks the search back: at most once per PARTIAL_INTERVAL_S of audio
        if self._fed_s - self._partial_at < PARTIAL_INTERVAL_S:
            return None
        self._partial_at = self._fed_s
        hyp = dec.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if text == self._last_partial:
            return None
        self._last_partial = text
        return Transcript(text=text, is_final=False, engine=ENGINE, language="en")

    def finish(self) -> Transcript:
        dec = self._dec()
        self._last_partial = ""
        if self.channel is None and self._pending:
            self._detect_channel(dec, final=True)
            pcm, self._pending = bytes(self._pending), bytearray()
            self._process(dec, pcm)
        if not self._in_utt:
            return Transcript(text="", is_final=True, engine=ENGINE, language="en")
        dec.end_utt()
        self._in_utt = False
        words: list[Word] = []
        for seg in dec.seg() or ():  # None when nothing matched (e.g. outside the grammar)
            text = _word_text(seg.word)
            if text is None:
                continue
            words.append(
                Word(
                    text=text,
                    start_s=self._utt_start_s + seg.start_frame / self._frate,
                    end_s=self._utt_start_s + (seg.end_frame + 1) / self._frate,
                    confidence=min(1.0, max(0.0, float(seg.prob))),
                )
            )
        confidence = sum(w.confidence for w in words) / len(words) if words else None
        return Transcript(
            text=" ".join(w.text for w in words),
            is_final=True,
            confidence=confidence,
            words=tuple(words),
            engine=ENGINE,
            language="en",
        )

    def close(self) -> None:
        dec, self._decoder = self._decoder, None
        if dec is None:
            return
        if self._in_utt:
            dec.end_utt()
            self._in_utt = False
        self._pending = bytearray()
        self._owner._release(dec, self._search)


class SphinxRecognizer:
    """PocketSphinx US English. Construction loads one decoder (blocking, ~0.3 s).

    ``profile`` picks the decoder options (:data:`PROFILES`); ``options`` (``Config`` keys,
    e.g. ``{"ds": 2}``) override single ones, for measurements."""

    engine = ENGINE
    language = "en"

    def __init__(
        self,
        *,
        is_fallback: bool = False,
        max_idle: int = 8,
        profile: SphinxProfile = DEFAULT_PROFILE,
        options: Mapping[str, DecoderOption] | None = None,
    ) -> None:
        self.is_fallback = is_fallback
        self.profile = profile
        self.options = decoder_options(profile, options)
        self.model_path = Path(pocketsphinx.get_model_path("en-us"))
        self._max_idle = max_idle
        self._lock = threading.Lock()
        first = _new_decoder(self.options)
        self.default_cmn: str = first.get_cmn()  # the model's wideband initial cepstral mean
        self._idle: list[pocketsphinx.Decoder] = [first]

    def _acquire(self) -> pocketsphinx.Decoder:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        started = time.perf_counter()
        dec = _new_decoder(self.options)
        _log().debug(
            "media.asr.sphinx_decoder_created",
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return dec

    def _release(self, dec: pocketsphinx.Decoder, search: str | None) -> None:
        if search is not None:
            dec.activate_search(DEFAULT_SEARCH)
            dec.remove_search(search)
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(dec)

    def in_vocabulary(self, word: str) -> bool:
        dec = self._acquire()
        try:
            return dec.lookup_word(word) is not None
        finally:
            self._release(dec, None)

    def _jsgf(self, dec: pocketsphinx.Decoder, phrases: Sequence[str]) -> str | None:
        kept, unknown = grammar_phrases(
            phrases, lambda w: dec.lookup_word(w) is not None, drop="phrases"
        )
        if unknown:
            _log().info(
                "media.asr.grammar_unknown_words",
                language="en",
                model="pocketsphinx",
                count=len(unknown),
                sample=unknown[:10],
            )
        if not kept:
            _log().warning(
                "media.asr.grammar_empty",
                language="en",
                model="pocketsphinx",
                phrases=len(phrases),
                detail="no phrase has only dictionary words; recognizing without a grammar",
            )
            return None
        body = " | ".join(kept)
        return f"#JSGF V1.0;\ngrammar receptionist;\npublic <phrase> = {body} ;\n"

    def open_stream(self, phrases: Sequence[str] | None = None) -> SphinxStream:
        dec = self._acquire()
        search: str | None = None
        try:
            jsgf = self._jsgf(dec, phrases) if phrases else None
            if jsgf is not None:
                name = f"grammar{next(_grammar_ids)}"
                dec.add_jsgf_string(name, jsgf)
                search = name
                dec.activate_search(name)
        except Exception:
            self._release(dec, search)  # back to the pool, then the caller sees the error
            raise
        return SphinxStream(self, dec, search)
