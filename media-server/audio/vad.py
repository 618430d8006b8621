"""Speech detection for endpointing and barge-in: an energy detector with an adaptive floor.

Each frame (20 ms by default) gets the level of the 250-3800 Hz band, where telephone
speech lives and mains hum, its low harmonics and DC do not. The level is measured over a
Hann window of two frames (the frame and the one before it): a single 20 ms frame holds
barely one period of a 50-60 Hz buzz, and its measured level would swing by 15 dB from
frame to frame with the buzz's phase.

The noise floor is the lowest frame level of the last ``noise_window_s`` seconds (a running
minimum, so it follows steady noise within that window and does not creep up during long
speech); a frame is speech when it is ``threshold_db`` above that floor and above the
absolute ``min_level_dbfs``.

Levels are in dB relative to full scale: ``20 * log10(rms / 32768)`` of the band.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from media_server.audio.codecs import PcmLike, as_pcm

_BAND_HZ = (250.0, 3800.0)
_MIN_RATE = 8000  # the band must fit below the Nyquist frequency
_SILENT_DB = -120.0  # level reported for digital silence


@dataclass(frozen=True)
class VadEvent:
    """A change between silence and speech at ``at_s`` seconds of stream time.

    For ``"start"``, ``at_s`` is when the speech began (its first speech frame), not when
    it was confirmed; for ``"end"``, it is the end of the last speech frame.
    """

    kind: Literal["start", "end"]
    at_s: float


class SpeechDetector:
    """Finds where speech starts and ends in a stream of mono int16 audio.

    ``"start"`` is reported once speech has lasted ``min_speech_ms`` (dips shorter than
    ``max_dip_ms`` do not interrupt it; a click or a cough-length noise never reaches it),
    ``"end"`` once ``trailing_silence_ms`` of silence follow speech. The floor is learned
    from the audio itself, so a steady noise or hum of any level is not speech, but a noise
    that appears suddenly reads as speech until the floor catches up (at most
    ``noise_window_s`` later).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        frame_ms: int = 20,
        min_speech_ms: int = 120,
        trailing_silence_ms: int = 700,
        *,
        threshold_db: float = 9.0,
        min_level_dbfs: float = -45.0,
        noise_window_s: float = 1.5,
        max_dip_ms: int = 100,
    ) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
            raise ValueError(f"sample_rate must be an integer, got {sample_rate!r}")
        if sample_rate < _MIN_RATE:
            raise ValueError(f"sample_rate must be at least {_MIN_RATE} Hz, got {sample_rate}")
        frame = sample_rate * frame_ms / 1000
        if frame_ms <= 0 or frame != int(frame):
            raise ValueError(f"frame_ms={frame_ms} is not a whole number of samples")
        for name, value in (
            ("min_speech_ms", min_speech_ms),
            ("trailing_silence_ms", trailing_silence_ms),
            ("max_dip_ms", max_dip_ms),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if noise_window_s <= 0:
            raise ValueError(f"noise_window_s must be > 0, got {noise_window_s}")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.threshold_db = threshold_db
        self.min_level_dbfs = min_level_dbfs
        self._frame = int(frame)
        self._frame_s = frame_ms / 1000
        self._min_speech = max(1, math.ceil(min_speech_ms / frame_ms))
        self._trailing = max(1, math.ceil(trailing_silence_ms / frame_ms))
        self._max_dip = max_dip_ms // frame_ms
        self._floor_frames = max(1, round(noise_window_s * 1000 / frame_ms))

        span = 2 * self._frame
        window = np.hanning(span + 1)[:-1]  # periodic Hann: little leakage from hum
        freqs = np.fft.rfftfreq(span, 1 / sample_rate)
        self._band = (freqs >= _BAND_HZ[0]) & (freqs <= _BAND_HZ[1])
        self._window = window
        # Mean square of the band from one-sided spectrum bins of the windowed frame.
        self._scale = 2.0 / (span * float(np.sum(window**2)) * 32768.0**2)
        self.reset()

    def reset(self) -> None:
        """Start over as a new stream: clock at zero, no noise floor, not in speech."""
        self._pending = np.zeros(0, dtype=np.int16)
        self._previous = np.zeros(self._frame, dtype=np.int16)  # the frame before the next
        self._index = 0  # frames analysed so far
        self._levels: deque[float] = deque(maxlen=self._floor_frames)
        self._in_speech = False
        self._onset: int | None = None  # first frame of speech not yet confirmed
        self._voiced = 0  # speech frames since the onset
        self._dip = 0  # non-speech frames in a row
        self._last_voiced = 0  # last speech frame while in speech

    @property
    def in_speech(self) -> bool:
        """Whether a ``"start"`` has been reported and its ``"end"`` not yet."""
        return self._in_speech

    @property
    def voiced_until_s(self) -> float:
        """Stream time at which the current (or last) speech was last heard: while in
        speech, ``voiced_until_s - start.at_s`` is how long the speaker has actually talked
        (trailing silence excluded)."""
        return (self._last_voiced + 1) * self._frame_s

    def feed(self, pcm: PcmLike) -> list[VadEvent]:
        """The events that became certain within this chunk of int16 samples."""
        samples = as_pcm(pcm)
        if samples.size == 0:
            return []
        buf = np.concatenate([self._pending, samples])
        n = buf.size // self._frame
        self._pending = buf[n * self._frame :].copy()
        if n == 0:
            return []
        frames = np.concatenate([self._previous, buf[: n * self._frame]])
        self._previous = frames[-self._frame :].copy()
        windows = sliding_window_view(frames, 2 * self._frame)[:: self._frame]
        events: list[VadEvent] = []
        for level in self._levels_db(windows):
            event = self._step(level)
            if event is not None:
                events.append(event)
        return events

    def _levels_db(self, windows: npt.NDArray[np.int16]) -> list[float]:
        """Band level of each two-frame window, in dB re full scale."""
        spectrum = np.fft.rfft(windows.astype(np.float64) * self._window, axis=1)
        power = np.sum(np.abs(spectrum[:, self._band]) ** 2, axis=1) * self._scale
        with np.errstate(divide="ignore"):
            levels = 10.0 * np.log10(power)
        return [float(v) for v in np.maximum(levels, _SILENT_DB)]

    def _step(self, level: float) -> VadEvent | None:
        """Advance by one frame of the given level; the event it completes, if any."""
        i = self._index
        self._index += 1
        floor = min(self._levels) if self._levels else -math.inf
        self._levels.append(level)
        speech = level >= max(self.min_level_dbfs, floor + self.threshold_db)

        if self._in_speech:
            if speech:
                self._last_voiced, self._dip = i, 0
                return None
            self._dip += 1
            if self._dip >= self._trailing:
                self._in_speech, self._onset, self._dip = False, None, 0
                return VadEvent("end", (self._last_voiced + 1) * self._frame_s)
            return None

        if speech:
            if self._onset is None:
                self._onset, self._voiced = i, 0
            self._voiced += 1
            self._dip = 0
            if self._voiced >= self._min_speech:
                self._in_speech, self._last_voiced = True, i
                return VadEvent("start", self._onset * self._frame_s)
        elif self._onset is not None:
            self._dip += 1
            if self._dip > self._max_dip:
                self._onset, self._dip = None, 0
        return None
