"""DTMF detection: every key at both rates, telephone levels, timing rules, G.711, and no
false digits from noise, a chirp or real speech (espeak-ng and Asterisk's prompts)."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from media_server.audio.codecs import Pcm, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from media_server.audio.dtmf import (
    COL_FREQS,
    KEYS,
    ROW_FREQS,
    DtmfDetector,
    dtmf_tone,
    goertzel_power,
)
from media_server.audio.resample import resample

ALL_KEYS = "123A456B789C*0#D"
RATES = (8000, 16000)
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en")


def silence(seconds: float, rate: int) -> Pcm:
    return np.zeros(round(seconds * rate), dtype=np.int16)


def white_noise(seconds: float, rate: int, level_dbfs: float, seed: int = 0) -> Pcm:
    """Gaussian white noise whose RMS is ``level_dbfs`` relative to full scale."""
    rms = 32768.0 * float(10.0 ** (level_dbfs / 20.0))
    x = np.random.default_rng(seed).standard_normal(round(seconds * rate)) * rms
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def sequence(keys: str, rate: int, tone_s: float = 0.05, gap_s: float = 0.05) -> Pcm:
    parts = [silence(0.1, rate)]
    for key in keys:
        parts += [dtmf_tone(key, tone_s, rate, -12.0), silence(gap_s, rate)]
    parts.append(silence(0.1, rate))
    return np.concatenate(parts)


def detect(pcm: Pcm, rate: int, chunk_s: float = 0.02) -> list[str]:
    """Feed ``pcm`` in chunks, as a transport would."""
    detector = DtmfDetector(rate)
    step = round(chunk_s * rate)
    found: list[str] = []
    for start in range(0, len(pcm), step):
        found += detector.feed(pcm[start : start + step])
    return found


def read_wav(path: Path) -> tuple[int, Pcm]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2").copy()


def ulaw_round_trip(pcm: Pcm) -> Pcm:
    return ulaw_decode(ulaw_encode(pcm))


def tone_pair(
    low: float,
    high: float,
    seconds: float = 0.1,
    rate: int = 8000,
    low_dbfs: float = -12.0,
    high_dbfs: float = -12.0,
) -> Pcm:
    """Two pure tones at the given frequencies and levels, padded with 50 ms of silence."""
    t = np.arange(round(seconds * rate)) / rate
    x = 32767 * 10 ** (low_dbfs / 20) * np.sin(2 * np.pi * low * t)
    x += 32767 * 10 ** (high_dbfs / 20) * np.sin(2 * np.pi * high * t)
    return np.concatenate([silence(0.05, rate), np.rint(x).astype(np.int16), silence(0.05, rate)])


@pytest.fixture(scope="module")
def espeak_speech(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, Pcm]]:
    """Sentences (with spoken digits) from a few espeak-ng voices, at 22050 Hz."""
    out = []
    text = (
        "Hello, thank you for calling. I would like to book a table for four at half past "
        "nine. My number is zero one two three, four five six, seven eight nine."
    )
    for i, voice in enumerate(["en", "en-us+f3", "en+m3"]):
        path = tmp_path_factory.mktemp("espeak") / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
        out.append(read_wav(path))
    return out


@pytest.mark.parametrize("rate", RATES)
def test_every_key_is_detected_once(rate: int) -> None:
    for key in ALL_KEYS:
        pcm = np.concatenate([silence(0.05, rate), dtmf_tone(key, 0.08, rate), silence(0.05, rate)])
        assert detect(pcm, rate) == [key], key


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("level", [-6.0, -10.0, -16.0, -20.0, -26.0])
def test_telephone_levels_are_detected(rate: int, level: float) -> None:
    pcm = np.concatenate(
        [silence(0.05, rate), dtmf_tone("7", 0.06, rate, level), silence(0.05, rate)]
    )
    assert detect(pcm, rate) == ["7"]
    assert detect(ulaw_round_trip(pcm), rate) == ["7"]


def test_too_quiet_tones_are_ignored() -> None:
    assert detect(dtmf_tone("7", 0.2, 8000, -45.0), 8000) == []


@pytest.mark.parametrize("rate", RATES)
def test_sequence_with_short_tones_and_gaps(rate: int) -> None:
    keys = "0123456789*#"
    pcm = sequence(keys, rate)
    assert detect(pcm, rate) == list(keys)
    assert detect(ulaw_round_trip(pcm), rate) == list(keys)
    assert detect(alaw_decode(alaw_encode(pcm)), rate) == list(keys)


def test_repeated_key_after_a_gap_counts_twice() -> None:
    pcm = sequence("55", 8000, tone_s=0.06, gap_s=0.05)
    assert detect(pcm, 8000) == ["5", "5"]


@pytest.mark.parametrize("rate", RATES)
def test_duration_threshold_at_any_alignment(rate: int) -> None:
    """40 ms tones count and 30 ms tones do not, wherever they fall in the analysis grid."""
    for offset in range(0, round(0.004 * rate), max(1, rate // 4000)):
        lead = silence(0.05, rate)[: round(0.05 * rate) - offset]
        for duration, expected in ((0.030, []), (0.040, ["9"])):
            pcm = np.concatenate([lead, dtmf_tone("9", duration, rate, -15.0), silence(0.1, rate)])
            assert detect(pcm, rate) == expected, (offset, duration)
            assert detect(ulaw_round_trip(pcm), rate) == expected, (offset, duration)


@pytest.mark.parametrize("rate", RATES)
def test_held_key_is_one_digit(rate: int) -> None:
    pcm = np.concatenate([silence(0.1, rate), dtmf_tone("#", 1.0, rate), silence(0.1, rate)])
    assert detect(pcm, rate) == ["#"]
    noisy = pcm + white_noise(len(pcm) / rate, rate, -40.0)
    assert detect(noisy.astype(np.int16), rate) == ["#"]


def test_tone_in_moderate_noise_is_detected() -> None:
    tone = dtmf_tone("3", 0.08, 8000, -20.0)
    pcm = tone.astype(np.int32) + white_noise(0.08, 8000, -38.0)
    padded = np.concatenate([silence(0.05, 8000), pcm.astype(np.int16), silence(0.05, 8000)])
    assert detect(padded, 8000) == ["3"]


def test_twist_within_limits_is_accepted_and_beyond_rejected() -> None:
    low, high = ROW_FREQS[0], COL_FREQS[0]  # key "1"
    assert detect(tone_pair(low, high, low_dbfs=-10.0, high_dbfs=-15.0), 8000) == ["1"]
    assert detect(tone_pair(low, high, low_dbfs=-15.0, high_dbfs=-10.0), 8000) == ["1"]
    assert detect(tone_pair(low, high, low_dbfs=-10.0, high_dbfs=-22.0), 8000) == []
    assert detect(tone_pair(low, high, low_dbfs=-22.0, high_dbfs=-10.0), 8000) == []
    assert detect(tone_pair(low, high, low_dbfs=-10.0, high_dbfs=-90.0), 8000) == []


@pytest.mark.parametrize("rate", RATES)
def test_chunk_size_does_not_matter(rate: int) -> None:
    pcm = sequence("147*", rate)
    expected = list("147*")
    assert detect(pcm, rate, chunk_s=0.001) == expected
    assert detect(pcm, rate, chunk_s=0.0173) == expected
    assert DtmfDetector(rate).feed(pcm) == expected
    assert DtmfDetector(rate).feed(pcm.astype("<i2").tobytes()) == expected


@pytest.mark.parametrize("rate", RATES)
def test_white_noise_gives_no_digits(rate: int) -> None:
    for i, level in enumerate((-50.0, -35.0, -20.0, -10.0, -3.0)):
        pcm = white_noise(2.0, rate, level, seed=i)
        assert detect(pcm, rate) == [], level
        assert detect(ulaw_round_trip(pcm), rate) == [], level


@pytest.mark.parametrize("rate", RATES)
def test_chirp_gives_no_digits(rate: int) -> None:
    t = np.arange(3 * rate) / rate
    f0, f1 = 300.0, 3400.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1]))
    pcm = np.rint(32767 * 0.3 * np.sin(phase)).astype(np.int16)
    assert detect(pcm, rate) == []
    assert detect(pcm[::-1].copy(), rate) == []


@pytest.mark.parametrize("rate", RATES)
def test_espeak_speech_gives_no_digits(rate: int, espeak_speech: list[tuple[int, Pcm]]) -> None:
    for src_rate, pcm in espeak_speech:
        speech = resample(pcm, src_rate, rate)
        assert detect(speech, rate) == []
        assert detect(ulaw_round_trip(speech), rate) == []


def test_asterisk_prompts_give_no_digits() -> None:
    """Every English prompt (8 kHz telephone recordings, about 20 minutes in all).

    The beep and two-tone prompts (beep.wav, beeperr.wav, ascending-2tone.wav, ...) are
    single tones or tone sequences, not DTMF pairs, so they stay in: none may give a digit.
    """
    paths = sorted(ASTERISK_SOUNDS.glob("*.wav"))
    assert len(paths) > 100, "asterisk-core-sounds-en-wav is not installed"
    false_digits = {}
    for path in paths:
        rate, pcm = read_wav(path)
        assert rate == 8000, path
        found = DtmfDetector(rate).feed(pcm)
        if found:
            false_digits[path.name] = found
    assert false_digits == {}


def test_asterisk_prompts_resampled_give_no_digits() -> None:
    for name in ("vm-intro.wav", "basic-pbx-ivr-main.wav", "conf-adminmenu.wav"):
        rate, pcm = read_wav(ASTERISK_SOUNDS / name)
        assert DtmfDetector(16000).feed(resample(pcm, rate, 16000)) == [], name


def test_digit_is_found_between_speech() -> None:
    rate, prompt = read_wav(ASTERISK_SOUNDS / "vm-intro.wav")
    pcm = np.concatenate([prompt, dtmf_tone("8", 0.07, rate, -15.0), prompt])
    assert DtmfDetector(rate).feed(pcm) == ["8"]


def test_goertzel_matches_the_dft() -> None:
    x = white_noise(0.013, 8000, -10.0).astype(np.float64)
    for freq in (697.0, 1633.0, 2000.0):
        n = np.arange(len(x))
        expected = abs(np.sum(x * np.exp(-2j * np.pi * freq * n / 8000))) ** 2
        assert goertzel_power(x, freq, 8000) == pytest.approx(expected, rel=1e-9)


def test_reset_forgets_a_tone_in_progress() -> None:
    tone = dtmf_tone("2", 0.06, 8000)
    detector = DtmfDetector(8000)
    assert detector.feed(tone[:240]) == []
    detector.reset()
    assert detector.feed(tone[240:]) == []  # 30 ms
    assert detector.feed(silence(0.05, 8000)) == []
    assert detector.feed(tone) == ["2"]


def test_bad_input() -> None:
    detector = DtmfDetector(8000)
    assert detector.feed(np.zeros(0, dtype=np.int16)) == []
    assert detector.feed(b"") == []
    with pytest.raises(ValueError, match="int16"):
        detector.feed(np.zeros(160, dtype=np.float32))
    with pytest.raises(ValueError, match="even number of bytes"):
        detector.feed(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="sample rate"):
        DtmfDetector(4000)
    with pytest.raises(ValueError, match="DTMF key"):
        dtmf_tone("E", 0.1)
    with pytest.raises(ValueError, match="duration"):
        dtmf_tone("1", -1.0)
    assert dtmf_tone("1", 0.0).size == 0
    assert dtmf_tone("a", 0.01).dtype == np.int16


@pytest.mark.parametrize("rate", RATES)
def test_frequency_tolerance(rate: int) -> None:
    """ITU-T Q.24: tones 1.5 % off their nominal frequency count, 3.5 % off do not."""
    for r, row in enumerate(ROW_FREQS):
        for c, col in enumerate(COL_FREQS):
            key = KEYS[r][c]
            for dev in (-0.015, 0.015):
                off = tone_pair(row * (1 + dev), col * (1 - dev), 0.06, rate)
                assert detect(off, rate) == [key]
            for dev in (-0.035, 0.035):
                assert detect(tone_pair(row * (1 + dev), col, 0.06, rate), rate) == []
                assert detect(tone_pair(row, col * (1 + dev), 0.06, rate), rate) == []


def test_chords_just_off_dtmf_frequencies_give_no_digits() -> None:
    # A#5 (-0.9 % from 941 Hz) with D6 or D#6 (2.8 % and 2.9 % from 1209 Hz), held.
    assert detect(tone_pair(932.3, 1174.7, 0.5), 8000) == []
    assert detect(tone_pair(932.3, 1244.5, 0.5), 8000) == []


@pytest.mark.parametrize("rate", RATES)
def test_music_gives_no_digits(rate: int) -> None:
    """Random chords of one to three notes (A3 to G#6) with a string-like timbre."""
    rng = np.random.default_rng(7)
    notes = 440 * 2 ** (np.arange(-12, 24) / 12)
    t = np.arange(round(0.25 * rate)) / rate
    envelope = np.minimum(1, t / 0.01) * np.exp(-2 * t)
    chords = []
    for _ in range(80):
        chord = np.zeros_like(t)
        for f in rng.choice(notes, rng.integers(1, 4), replace=False):
            for k, a in enumerate((1.0, 0.5, 0.33, 0.25), start=1):
                if k * f < rate / 2:
                    chord += a * np.sin(2 * np.pi * k * f * t)
        chords.append(envelope * chord)
    music = np.concatenate(chords)
    pcm = np.rint(music / np.max(np.abs(music)) * 0.5 * 32767).astype(np.int16)
    assert detect(pcm, rate) == []
    assert detect(ulaw_round_trip(pcm), rate) == []
