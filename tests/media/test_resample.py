"""Resampling keeps tones' frequency and level, removes what the new rate cannot carry, and
streams in chunks as it converts in one go."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from media_server.audio.codecs import Pcm
from media_server.audio.resample import StreamResampler, resample


def sine(freq: float, rate: int, seconds: float = 1.0, level: float = 0.5) -> Pcm:
    t = np.arange(round(seconds * rate)) / rate
    return np.rint(32767 * level * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def rms_db(pcm: npt.NDArray[np.generic], trim: int = 0) -> float:
    x = pcm[trim : len(pcm) - trim].astype(np.float64)
    return float(10 * np.log10(max(float(np.mean(x**2)), 1e-12)))


def peak_hz(pcm: Pcm, rate: int) -> float:
    """Frequency of the strongest spectral peak, interpolated between bins."""
    x = pcm.astype(np.float64) * np.hanning(len(pcm))
    mag = np.abs(np.fft.rfft(x))
    k = int(np.argmax(mag))
    a, b, c = np.log(mag[k - 1 : k + 2])
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return float((k + offset) * rate / len(pcm))


def stream(pcm: Pcm, src: int, dst: int, chunk_s: float = 0.02) -> tuple[Pcm, list[int]]:
    """``pcm`` through a StreamResampler in chunks; also the size of each output."""
    resampler = StreamResampler(src, dst)
    step = round(chunk_s * src)
    parts = [resampler.process(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    parts.append(resampler.flush())
    return np.concatenate(parts), [len(p) for p in parts]


@pytest.mark.parametrize(
    ("src", "dst", "freq"),
    [(8000, 16000, 1000.0), (16000, 8000, 1000.0), (22050, 16000, 440.0), (22050, 8000, 440.0)],
)
def test_tone_keeps_frequency_and_level(src: int, dst: int, freq: float) -> None:
    pcm = sine(freq, src)
    out = resample(pcm, src, dst)
    assert out.dtype == np.int16
    assert len(out) == round(len(pcm) * dst / src)
    assert peak_hz(out, dst) == pytest.approx(freq, abs=2.0)
    assert rms_db(out, trim=dst // 50) == pytest.approx(rms_db(pcm, trim=src // 50), abs=0.5)


def test_downsampling_removes_tones_above_the_new_nyquist() -> None:
    tone = sine(6000, 16000)
    out = resample(tone, 16000, 8000)
    # 6 kHz would alias to 2 kHz at 8 kHz; it must be filtered out instead.
    assert rms_db(out, trim=160) <= rms_db(tone) - 40
    both = (sine(6000, 16000, level=0.3).astype(np.int32) + sine(1000, 16000, level=0.3)).astype(
        np.int16
    )
    out = resample(both, 16000, 8000)
    assert peak_hz(out, 8000) == pytest.approx(1000, abs=2.0)
    assert rms_db(out, trim=160) == pytest.approx(rms_db(sine(1000, 16000, level=0.3)), abs=0.5)


def test_output_is_clipped_not_wrapped() -> None:
    square = np.tile(np.array([32767] * 20 + [-32768] * 20, dtype=np.int16), 100)
    out = resample(square, 8000, 16000)  # band-limiting overshoots a full-scale square
    assert out.max() == 32767 and out.min() == -32768
    # Wraparound would put large values of the wrong sign next to the peaks.
    assert np.all(np.abs(np.diff(out.astype(np.int32))) < 40000)


def test_equal_rates_are_identity() -> None:
    pcm = sine(440, 16000, 0.1)
    assert np.array_equal(resample(pcm, 16000, 16000), pcm)
    resampler = StreamResampler(8000, 8000)
    assert np.array_equal(resampler.process(pcm), pcm)
    assert resampler.flush().size == 0


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 8000), (22050, 16000)])
def test_streaming_matches_one_shot(src: int, dst: int) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(2 * src) / src
    freqs = np.linspace(200, 3400, 9)  # the telephone band
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in freqs)
    pcm = np.rint(32767 * 0.5 * x / np.max(np.abs(x))).astype(np.int16)
    one_shot = resample(pcm, src, dst).astype(np.float64)
    streamed_pcm, sizes = stream(pcm, src, dst)
    streamed = streamed_pcm.astype(np.float64)
    assert len(streamed) == len(one_shot) == 2 * dst
    # After the first two chunks every 20 ms chunk gives 20 ms back (no bursts).
    per_chunk = dst // 50
    assert all(abs(n - per_chunk) <= 1 for n in sizes[2:-2])
    # The same tones at the same levels. The stream lags by a fraction of a millisecond
    # (its filter is not linear-phase: the lag grows a little towards the band edge, where
    # a tone's phase no longer tells the lag unambiguously, so check it on the lower ones).
    core = slice(dst // 5, 2 * dst - dst // 5)
    tt = np.arange(2 * dst)[core] / dst
    for f in freqs:
        ref = np.sum(one_shot[core] * np.exp(-2j * np.pi * f * tt))
        got = np.sum(streamed[core] * np.exp(-2j * np.pi * f * tt))
        assert 20 * np.log10(abs(got) / abs(ref)) == pytest.approx(0, abs=0.05), f
        if f <= 1400:
            phase = (np.angle(ref / got) + np.pi) % (2 * np.pi) - np.pi
            assert -0.01 <= phase / (2 * np.pi * f) * 1000 <= 0.3, f  # ms
    assert rms_db(streamed[core]) == pytest.approx(rms_db(one_shot[core]), abs=0.05)


def test_stream_is_continuous_across_chunks() -> None:
    """A tone resampled in odd-sized chunks has no clicks at the chunk boundaries."""
    pcm = sine(1000, 8000, 1.0, level=0.5)
    resampler = StreamResampler(8000, 16000)
    sizes = [37, 160, 1, 333, 80] * 20
    parts, start = [], 0
    for size in sizes:
        parts.append(resampler.process(pcm[start : start + size]))
        start += size
    parts.append(resampler.process(pcm[start:]))
    parts.append(resampler.flush())
    out = np.concatenate(parts).astype(np.float64)
    assert len(out) == 16000
    # Residual after removing the 1 kHz sine fitted over the steady part: no glitches.
    steady = out[800:-800]
    t = np.arange(800, 16000 - 800) / 16000
    basis = np.stack([np.sin(2 * np.pi * 1000 * t), np.cos(2 * np.pi * 1000 * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, steady, rcond=None)
    assert np.max(np.abs(steady - basis @ coef)) < 30  # of a 16384 amplitude


def test_flush_readies_the_resampler_for_a_new_stream() -> None:
    pcm = sine(700, 16000, 0.5)
    first, _ = stream(pcm, 16000, 8000)
    resampler = StreamResampler(16000, 8000)
    resampler.process(pcm[:1234])
    resampler.flush()
    again = np.concatenate(
        [resampler.process(pcm[i : i + 320]) for i in range(0, len(pcm), 320)] + [resampler.flush()]
    )
    assert np.array_equal(first, again)


def test_bytes_empty_and_bad_input() -> None:
    pcm = sine(500, 8000, 0.05)
    assert np.array_equal(resample(pcm.tobytes(), 8000, 16000), resample(pcm, 8000, 16000))
    assert resample(np.zeros(0, dtype=np.int16), 8000, 16000).size == 0
    resampler = StreamResampler(8000, 16000)
    assert resampler.process(b"").size == 0
    assert resampler.flush().dtype == np.int16
    with pytest.raises(ValueError, match="int16"):
        resample(np.zeros(10, dtype=np.float64), 8000, 16000)
    with pytest.raises(ValueError, match="even number of bytes"):
        resampler.process(b"\x01")
    with pytest.raises(ValueError, match="src_rate"):
        resample(pcm, 0, 16000)
    with pytest.raises(ValueError, match="dst_rate"):
        StreamResampler(8000, -1)
