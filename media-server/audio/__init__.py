"""Audio at the edges: G.711 codecs, resampling, DTMF detection, speech detection.

Inside the media server every sample is 16 kHz mono signed 16-bit little-endian
(:data:`SAMPLE_RATE`); conversions happen only where a transport meets the pipeline.
"""

SAMPLE_RATE = 16_000
"""The one internal sample rate (Hz)."""
SAMPLE_WIDTH = 2
"""Bytes per internal sample (signed 16-bit little-endian, mono)."""


def duration_s(pcm: bytes, rate: int = SAMPLE_RATE) -> float:
    """Seconds of 16-bit mono audio in ``pcm`` at ``rate``."""
    return len(pcm) / (SAMPLE_WIDTH * rate)
