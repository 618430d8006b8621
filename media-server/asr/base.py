"""The recognizer protocol every ASR engine implements.

A :class:`SpeechRecognizer` holds the (large, shared) model of one language and opens one
:class:`RecognizerStream` per call. Stream methods block (they run the decoder) and are
called from a worker thread by the voice session, one call at a time per stream, so the
event loop never blocks. Audio is always 16 kHz mono s16le.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float
    end_s: float
    confidence: float  # 0..1


@dataclass(frozen=True)
class Transcript:
    """A recognition result. Partials carry only ``text``; finals carry words too."""

    text: str
    is_final: bool
    confidence: float | None = None  # mean word confidence of a final, 0..1
    words: tuple[Word, ...] = field(default_factory=tuple)
    engine: str = ""
    language: str = ""
    corrected_from: str | None = None  # set when phrase biasing replaced the open text


class RecognizerError(RuntimeError):
    """The recognizer itself failed (not the audio): e.g. the worker process decoding the
    stream died. The stream is unusable; a new one may work."""


class RecognizerStream(Protocol):
    def accept(self, pcm: bytes) -> Transcript | None:
        """Feed audio; returns a partial transcript when the hypothesis changed, else None."""
        ...

    def finish(self) -> Transcript:
        """End the current utterance: the final transcript (text may be empty).
        The stream is then ready for the next utterance."""
        ...

    def close(self) -> None: ...


class SpeechRecognizer(Protocol):
    engine: str  # "vosk" or "pocketsphinx"
    language: str  # e.g. "en", "ko"
    is_fallback: bool  # True when this is a stand-in (PocketSphinx for English)

    def open_stream(self, phrases: Sequence[str] | None = None) -> RecognizerStream:
        """A recognizer for one call. ``phrases``: constrain recognition to these phrases
        (grammar mode) when the engine supports it."""
        ...
