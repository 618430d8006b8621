"""In-band DTMF (touch-tone) detection with Goertzel filters, and a DTMF tone generator.

A key press is the sum of one "row" tone (697, 770, 852 or 941 Hz) and one "column" tone
(1209, 1336, 1477 or 1633 Hz). :class:`DtmfDetector` looks at short overlapping windows
(13 ms, one every 2 ms) and measures the energy at the eight DTMF frequencies with the
Goertzel single-frequency DFT. A window holds a key when

* the strongest row tone and the strongest column tone are each loud enough,
* together they carry nearly all the window's energy (speech, music and noise spread
  their energy; a key is two pure tones),
* their levels differ by no more than the allowed twist,
* each is clearly stronger than the other tones of its group, and
* each is within 2.5 % of its nominal frequency (ITU-T Q.24: tones off by up to 1.5 % must
  count, tones off by 3.5 % must not). A 13 ms window cannot resolve that by itself, so
  the frequency is measured from how far the tone's phase turns between windows 6 ms
  apart, averaged over the tone.

The dominance test is what rejects speech: a voiced sound may have harmonics near a row and
a column frequency, but it also has others (the second harmonics, the formants), while a
key press is nothing but its two tones. (A separate second-harmonic test does not work
with windows this short: a row tone's second harmonic, 1394-1882 Hz, lies within a few DFT
bins of the column tones and picks up their leakage.) The frequency test also keeps out
many musical chords: several notes lie 2-4 % off DTMF frequencies.

A key counts once the same key has held for about 40 ms, hitting nearly every window; it
is reported once however long it is held, and the same key is reported again only after a
gap of about 20 ms or more in the tone.
"""

from __future__ import annotations

import cmath
import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from media_server.audio.codecs import Pcm, PcmLike, as_pcm

ROW_FREQS = (697.0, 770.0, 852.0, 941.0)
"""The low-group ("row") DTMF frequencies in Hz."""
COL_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)
"""The high-group ("column") DTMF frequencies in Hz."""
KEYS = ("123A", "456B", "789C", "*0#D")
"""``KEYS[row][col]`` is the key whose tones are ``ROW_FREQS[row]`` and ``COL_FREQS[col]``."""

_TONES: dict[str, tuple[float, float]] = {
    key: (ROW_FREQS[r], COL_FREQS[c]) for r, keys in enumerate(KEYS) for c, key in enumerate(keys)
}

_WINDOW_S = 0.013  # about 1/73 Hz: neighbouring row tones fall near each other's first null
_HOP_S = 0.002
_MIN_HIT_SHARE = 0.8  # of the windows a tone spans
_MAX_DROPOUT_S = 0.020  # gaps in a tone's hits this short are bridged, not a new press
_PHASE_LAG_S = 0.006  # frequency measured over this; it aliases beyond 1 / (2 * 6 ms) Hz
_MIN_RATE = 8000  # telephone rate; the tones need a Nyquist frequency well above 1633 Hz


def dtmf_tone(key: str, duration_s: float, rate: int = 16000, level_dbfs: float = -10.0) -> Pcm:
    """int16 samples of the DTMF tone pair for ``key`` (one of ``0-9 * # A-D``).

    ``level_dbfs`` is the level of each of the two tones (a full-scale sine is 0 dBFS);
    samples that would exceed full scale are clipped.
    """
    if not isinstance(key, str) or key.upper() not in _TONES:
        raise ValueError(f"not a DTMF key: {key!r} (expected one of 0-9 * # A-D)")
    if not duration_s >= 0:
        raise ValueError(f"duration_s must be >= 0, got {duration_s!r}")
    _check_rate(rate)
    low, high = _TONES[key.upper()]
    t = np.arange(round(duration_s * rate), dtype=np.float64) / rate
    amplitude = 32767.0 * 10.0 ** (level_dbfs / 20.0)
    x = amplitude * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
    tone: Pcm = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    return tone


def goertzel_power(x: npt.NDArray[np.floating], freq: float, rate: int) -> float:
    """``|X(freq)|**2`` of ``x`` by the Goertzel recurrence (the textbook form).

    The detector computes the same quantity for all its frequencies and windows at once as
    a matrix product, which numpy does much faster than this per-sample loop.
    """
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    samples: list[float] = np.asarray(x, dtype=np.float64).tolist()
    for sample in samples:
        s1, s2 = sample + coeff * s1 - s2, s1
    # Power at the exact (possibly non-integer-bin) frequency: |s1 - e^{-jw} s2|^2.
    return float(s1 * s1 + s2 * s2 - coeff * s1 * s2)


def _check_rate(rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < _MIN_RATE:
        raise ValueError(f"sample rate must be an integer >= {_MIN_RATE} Hz, got {rate!r}")


def _power_ratio(db: float) -> float:
    return math.pow(10.0, db / 10.0)


class _Hit(NamedTuple):
    """A window that holds a key: the key, its row and column, and how the two tones'
    filter outputs turned since ``_lag`` windows earlier (see ``DtmfDetector._classify``)."""

    key: str
    row: int
    col: int
    row_spin: complex
    col_spin: complex


class DtmfDetector:
    """Finds DTMF key presses in a stream of mono int16 audio at ``sample_rate``.

    Thresholds (defaults suit telephone audio, including audio that went through G.711):

    * ``min_level_dbfs`` -- each tone's level at least this (full-scale sine = 0 dBFS);
    * ``min_duration_s`` -- a tone must last this long to count;
    * ``max_twist_db`` -- the two tones' levels may differ by at most this;
    * ``min_dominance`` -- share of the window's energy the two tones must carry;
    * ``min_peak_ratio_db`` -- each tone must beat the other tones of its group by this;
    * ``max_freq_error`` -- largest relative deviation of a tone from its nominal frequency.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        *,
        min_level_dbfs: float = -36.0,
        min_duration_s: float = 0.040,
        max_twist_db: float = 8.0,
        min_dominance: float = 0.7,
        min_peak_ratio_db: float = 8.0,
        max_freq_error: float = 0.025,
    ) -> None:
        _check_rate(sample_rate)
        self.sample_rate = sample_rate
        self._window = round(_WINDOW_S * sample_rate)
        self._hop = round(_HOP_S * sample_rate)
        # Windows that the tone covers only in part fail the dominance test, so a tone of
        # D seconds gives a run of about (D - 10 ms) / hop + 1 hit windows. Require the run
        # of a tone 4 ms shorter than min_duration_s: at any alignment and level that
        # accepts tones of min_duration_s and rejects those 10 ms shorter.
        self._min_span = max(1, round((min_duration_s - 0.014) / _HOP_S) + 1)
        self._max_gap = max(1, round(_MAX_DROPOUT_S / _HOP_S))
        self._min_power = _power_ratio(min_level_dbfs) / 2.0  # mean power of such a sine
        self._max_twist = _power_ratio(max_twist_db)
        self._min_dominance = min_dominance
        self._peak_ratio = _power_ratio(min_peak_ratio_db)
        self._max_freq_error = max_freq_error

        freqs = np.array(ROW_FREQS + COL_FREQS, dtype=np.float64)
        n = np.arange(self._window, dtype=np.float64)
        phase = 2 * np.pi * np.outer(n, freqs) / sample_rate
        # Real and imaginary parts side by side: a real matrix product is several times
        # faster than a complex one.
        self._basis = np.hstack([np.cos(phase), -np.sin(phase)])
        # A tone's frequency is measured from how far its filter's output turns over `_lag`
        # windows; a tone exactly at the filter's frequency turns it by `_turn`.
        self._lag = max(1, round(_PHASE_LAG_S / _HOP_S))
        lag_samples = self._lag * self._hop
        self._turn = np.exp(-2j * np.pi * freqs * lag_samples / sample_rate)
        self._turn_to_error: list[float] = (
            sample_rate / (2 * np.pi * lag_samples) / freqs
        ).tolist()
        self.reset()

    def reset(self) -> None:
        """Forget buffered audio and any tone in progress."""
        self._buf = np.zeros(0, dtype=np.float64)
        self._recent_dft = np.zeros((0, 8), dtype=np.complex128)
        self._index = 0  # number of windows analysed so far
        self._key: str | None = None  # key of the tone in progress
        self._first = 0  # its first and last hit windows
        self._last = 0
        self._hits = 0  # hit windows from first to last
        self._row = self._col = 0  # its tones
        self._row_spin = 0j  # sums of its hits' spins
        self._col_spin = 0j
        self._reported = False

    def feed(self, pcm: PcmLike) -> list[str]:
        """The keys whose press became certain within this chunk of int16 samples."""
        samples = as_pcm(pcm)
        if samples.size == 0:
            return []
        self._buf = np.concatenate([self._buf, samples.astype(np.float64) / 32768.0])
        if self._buf.size < self._window:
            return []
        n = (self._buf.size - self._window) // self._hop + 1
        frames = sliding_window_view(self._buf, self._window)[:: self._hop][:n]
        hits = self._classify(frames)
        self._buf = self._buf[n * self._hop :].copy()
        out: list[str] = []
        for hit in hits:
            pressed = self._track(hit)
            if pressed is not None:
                out.append(pressed)
        return out

    def _classify(self, frames: npt.NDArray[np.float64]) -> list[_Hit | None]:
        """For each window, the key it holds (with its tones' spins), or None."""
        w = self._window
        frames = np.ascontiguousarray(frames)
        # The Goertzel outputs, for all windows and tones at once.
        parts = frames @ self._basis
        dft = parts[:, :8] + 1j * parts[:, 8:]
        power = (2.0 / w) * (parts[:, :8] ** 2 + parts[:, 8:] ** 2)  # energy-equivalent
        energy = np.einsum("ij,ij->i", frames, frames) - frames.sum(axis=1) ** 2 / w  # AC only
        rows, cols = power[:, 0:4], power[:, 4:8]
        r = rows.argmax(axis=1)
        c = cols.argmax(axis=1)
        idx = np.arange(frames.shape[0])
        row_p = rows[idx, r]
        col_p = cols[idx, c]
        row_others = np.sort(rows, axis=1)[:, -2]
        col_others = np.sort(cols, axis=1)[:, -2]
        ok = (
            (np.minimum(row_p, col_p) >= self._min_power * w)
            & (row_p + col_p >= self._min_dominance * energy)
            & (row_p <= self._max_twist * col_p)
            & (col_p <= self._max_twist * row_p)
            & (row_p >= self._peak_ratio * row_others)
            & (col_p >= self._peak_ratio * col_others)
        )
        # Each filter output's turn since `_lag` windows earlier, less the turn of a tone
        # exactly on frequency: its angle is the frequency error, its size the power. (At
        # the very start of the stream, with no earlier window, it is zero: no evidence.)
        history = np.vstack([self._recent_dft, dft])
        self._recent_dft = history[-self._lag :].copy()
        earlier = history[: -self._lag][-len(dft) :]
        missing = np.zeros((len(dft) - len(earlier), dft.shape[1]), dtype=np.complex128)
        spin = dft * np.conj(np.vstack([missing, earlier])) * self._turn
        return [
            _Hit(KEYS[ri][ci], ri, ci, complex(spin[i, ri]), complex(spin[i, 4 + ci]))
            if ok[i]
            else None
            for i, (ri, ci) in enumerate(zip(r.tolist(), c.tolist(), strict=True))
        ]

    def _track(self, hit: _Hit | None) -> str | None:
        """Advance the press state by one window; the key if its press just counted."""
        i = self._index
        self._index += 1
        if hit is not None and hit.key == self._key:
            self._last = i
            self._hits += 1
            self._row_spin += hit.row_spin
            self._col_spin += hit.col_spin
        elif self._key is not None and i - self._last <= self._max_gap:
            return None  # a short dropout (or a stray window) inside a tone
        elif hit is None:
            self._key = None
            return None
        else:
            self._key, self._first, self._last, self._hits = hit.key, i, i, 1
            self._row_spin, self._col_spin = hit.row_spin, hit.col_spin
            self._row, self._col = hit.row, hit.col
            self._reported = False
        if self._reported or self._last - self._first + 1 < self._min_span:
            return None
        # A key press hits (nearly) every window it spans; a sound that only flickers past
        # the tests does not.
        if self._hits < _MIN_HIT_SHARE * (self._last - self._first + 1):
            return None
        # Both tones on frequency, as measured over the whole tone so far.
        row_error = abs(cmath.phase(self._row_spin)) * self._turn_to_error[self._row]
        col_error = abs(cmath.phase(self._col_spin)) * self._turn_to_error[4 + self._col]
        if max(row_error, col_error) > self._max_freq_error:
            return None
        self._reported = True
        return self._key
