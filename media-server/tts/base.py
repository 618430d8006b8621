"""The synthesizer protocol: text in, 16-bit mono PCM at the voice's own rate out."""

from __future__ import annotations

from typing import Protocol


class SpeechSynthesizer(Protocol):
    voice_id: str  # stable id of the voice, part of the cache key
    sample_rate: int  # native rate of the voice (Piper medium voices: 22050)

    def synthesize(self, text: str) -> bytes:
        """Blocking: s16le mono PCM at ``sample_rate`` for ``text`` (one sentence or more)."""
        ...
