"""Speech detection on real speech (Asterisk's telephone prompts and espeak-ng), clean and in
noise; nothing on silence, low noise, hum or a click."""

from __future__ import annotations

import subprocess
import wave
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest

from media_server.audio.codecs import Pcm
from media_server.audio.resample import resample
from media_server.audio.vad import SpeechDetector, VadEvent

RATE = 16000
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en")
PROMPTS = (
    "vm-intro.wav",
    "agent-loginok.wav",
    "conf-getpin.wav",
    "vm-goodbye.wav",
    "please-try-again.wav",
    "pls-hold-while-try.wav",
    "extension.wav",  # "ex-" then a quiet "-ks-" before "-tension"
    "auth-thankyou.wav",
    "queue-thankyou.wav",
)
TRAILING_S = 0.7


def silence(seconds: float, rate: int = RATE) -> Pcm:
    return np.zeros(round(seconds * rate), dtype=np.int16)


def white_noise(seconds: float, level_dbfs: float, seed: int = 0, rate: int = RATE) -> Pcm:
    """Gaussian white noise whose RMS is ``level_dbfs`` relative to full scale."""
    rms = 32768.0 * float(10.0 ** (level_dbfs / 20.0))
    x = np.random.default_rng(seed).standard_normal(round(seconds * rate)) * rms
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def mix(a: Pcm, b: Pcm) -> Pcm:
    mixed: Pcm = np.clip(a.astype(np.int32) + b, -32768, 32767).astype(np.int16)
    return mixed


def read_wav(path: Path) -> tuple[int, Pcm]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2").copy()


def prompt(name: str, rate: int = RATE) -> Pcm:
    src_rate, pcm = read_wav(ASTERISK_SOUNDS / name)
    return resample(pcm, src_rate, rate)


def speech_bounds(pcm: Pcm, rate: int = RATE) -> tuple[float, float]:
    """First and last 10 ms of ``pcm`` within 30 dB of its loudest (and above -50 dBFS)."""
    block = rate // 100
    n = len(pcm) // block
    rms = np.sqrt(np.mean(pcm[: n * block].astype(np.float64).reshape(n, block) ** 2, axis=1))
    db = 20 * np.log10(rms / 32768 + 1e-12)
    active = np.flatnonzero(db > max(db.max() - 30, -50))
    return active[0] * 0.01, (active[-1] + 1) * 0.01


def run(pcm: Pcm, detector: SpeechDetector | None = None) -> list[tuple[VadEvent, float]]:
    """Events from feeding ``pcm`` in 20 ms chunks, each with the stream time it came at."""
    detector = detector or SpeechDetector()
    step = detector.sample_rate // 50
    out = []
    for start in range(0, len(pcm), step):
        chunk = pcm[start : start + step]
        out += [(e, (start + len(chunk)) / detector.sample_rate) for e in detector.feed(chunk)]
    return out


def assert_one_utterance(pcm: Pcm, onset: float, offset: float, rate: int = RATE) -> None:
    events = run(pcm, SpeechDetector(rate))
    assert [e.kind for e, _ in events] == ["start", "end"], events
    (start, started_at), (end, ended_at) = events
    assert abs(start.at_s - onset) <= 0.1
    assert started_at - start.at_s <= 0.2  # confirmed after min_speech_ms, not much later
    assert abs(end.at_s - offset) <= 0.25
    assert ended_at <= offset + TRAILING_S + 0.1


@pytest.fixture(scope="module")
def espeak_speech(tmp_path_factory: pytest.TempPathFactory) -> list[Pcm]:
    """Two sentences from each of a few espeak-ng voices, at 16 kHz."""
    out = []
    folder = tmp_path_factory.mktemp("espeak")
    for i, voice in enumerate(["en", "en-us+f3", "en+m3"]):
        for j, text in enumerate(
            ["Hello, I would like to book an appointment.", "Is Tuesday at nine possible?"]
        ):
            path = folder / f"s{i}{j}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
            rate, pcm = read_wav(path)
            out.append(resample(pcm, rate, RATE))
    return out


@pytest.mark.parametrize("name", PROMPTS)
def test_telephone_prompt_is_one_utterance(name: str) -> None:
    speech = prompt(name)
    onset, offset = speech_bounds(speech)
    padded = np.concatenate([silence(1.0), speech, silence(1.5)])
    assert_one_utterance(padded, 1.0 + onset, 1.0 + offset)
    noisy = mix(padded, white_noise(len(padded) / RATE, -45.0))
    assert_one_utterance(noisy, 1.0 + onset, 1.0 + offset)


def test_telephone_prompt_at_8khz() -> None:
    rate, speech = read_wav(ASTERISK_SOUNDS / "vm-intro.wav")
    onset, offset = speech_bounds(speech, rate)
    padded = np.concatenate([silence(0.8, rate), speech, silence(1.5, rate)])
    assert_one_utterance(padded, 0.8 + onset, 0.8 + offset, rate)


def test_espeak_speech_clean_and_in_noise(espeak_speech: list[Pcm]) -> None:
    for i, speech in enumerate(espeak_speech):
        onset, offset = speech_bounds(speech)
        padded = np.concatenate([silence(0.5), speech, silence(1.0)])
        assert_one_utterance(padded, 0.5 + onset, 0.5 + offset)
        noisy = mix(padded, white_noise(len(padded) / RATE, -45.0, seed=i))
        assert_one_utterance(noisy, 0.5 + onset, 0.5 + offset)


def test_gap_of_one_and_a_half_seconds_splits_two_utterances(espeak_speech: list[Pcm]) -> None:
    first, second = espeak_speech[0], espeak_speech[1]
    on1, off1 = speech_bounds(first)
    on2, off2 = speech_bounds(second)
    gap = 1.5 - (len(first) / RATE - off1) - on2  # 1.5 s from the end of one to the other
    pcm = np.concatenate([silence(0.5), first, silence(gap), second, silence(1.0)])
    events = [e for e, _ in run(pcm)]
    assert [e.kind for e in events] == ["start", "end", "start", "end"]
    second_onset = 0.5 + len(first) / RATE + gap + on2
    assert events[0].at_s == pytest.approx(0.5 + on1, abs=0.1)
    assert events[1].at_s == pytest.approx(0.5 + off1, abs=0.25)
    assert events[2].at_s == pytest.approx(second_onset, abs=0.1)
    assert events[3].at_s == pytest.approx(second_onset - on2 + off2, abs=0.25)


def test_pause_shorter_than_trailing_silence_keeps_one_utterance(
    espeak_speech: list[Pcm],
) -> None:
    pcm = np.concatenate([silence(0.3), espeak_speech[2], silence(0.4), espeak_speech[3]])
    events = run(np.concatenate([pcm, silence(1.0)]))
    assert [e.kind for e, _ in events] == ["start", "end"]


@pytest.mark.parametrize("rate", [8000, 16000])
def test_silence_low_noise_and_hum_are_not_speech(rate: int) -> None:
    assert run(silence(5.0, rate), SpeechDetector(rate)) == []
    assert run(white_noise(5.0, -50.0, rate=rate), SpeechDetector(rate)) == []
    assert run(white_noise(5.0, -45.0, seed=3, rate=rate), SpeechDetector(rate)) == []
    t = np.arange(5 * rate) / rate
    for mains in (50.0, 60.0):
        # A buzzy hum: the mains frequency and 19 harmonics, -20 dBFS in all.
        hum = sum(10 ** (-3 * k / 20) * np.sin(2 * np.pi * mains * k * t + k) for k in range(1, 21))
        hum = hum / np.sqrt(np.mean(hum**2)) * 32768 * 0.1
        assert run(np.rint(hum).astype(np.int16), SpeechDetector(rate)) == [], mains
    # Ringback tone (440 + 480 Hz, beating at 40 Hz).
    ring = 0.1 * 32767 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t))
    assert run(np.rint(ring).astype(np.int16), SpeechDetector(rate)) == []


def test_speech_over_hum_is_found() -> None:
    speech = prompt("vm-goodbye.wav")
    onset, offset = speech_bounds(speech)
    padded = np.concatenate([silence(1.0), speech, silence(1.5)])
    t = np.arange(len(padded)) / RATE
    hum = np.rint(0.05 * 32767 * np.sin(2 * np.pi * 50 * t)).astype(np.int16)
    assert_one_utterance(mix(padded, hum), 1.0 + onset, 1.0 + offset)


def test_a_click_is_not_speech() -> None:
    click = np.rint(20000 * np.random.default_rng(1).standard_normal(160)).astype(np.int16)
    pcm = np.concatenate([silence(1.0), click, silence(1.0)])
    assert run(pcm) == []
    assert run(mix(pcm, white_noise(len(pcm) / RATE, -50.0))) == []
    clicks = np.concatenate([np.concatenate([click, silence(0.3)]) for _ in range(5)])
    assert run(np.concatenate([silence(0.5), clicks])) == []


def test_sudden_steady_noise_ends_once_the_floor_adapts() -> None:
    """The known limit of an energy detector: a noise that starts abruptly reads as speech,
    but only until the noise floor catches up with it."""
    pcm = np.concatenate([silence(2.0), white_noise(5.0, -30.0)])
    events = [e for e, _ in run(pcm)]
    assert [e.kind for e in events] == ["start", "end"]
    assert events[0].at_s == pytest.approx(2.0, abs=0.05)
    assert events[1].at_s <= 2.0 + 1.5 + 0.05


def test_in_speech_and_reset() -> None:
    speech = np.concatenate([silence(0.5), prompt("vm-goodbye.wav")])
    detector = SpeechDetector()
    assert not detector.in_speech
    events = detector.feed(speech)
    assert [e.kind for e in events] == ["start"]
    assert detector.in_speech
    detector.reset()
    assert not detector.in_speech
    # The clock starts again at zero.
    again = detector.feed(speech)
    assert [e.kind for e in again] == ["start"] and again[0].at_s == events[0].at_s
    assert [e.kind for e in detector.feed(silence(1.0))] == ["end"]
    assert not detector.in_speech


def test_chunking_and_bytes_do_not_change_the_events() -> None:
    speech = np.concatenate([silence(0.7), prompt("conf-getpin.wav"), silence(1.0)])
    whole = SpeechDetector().feed(speech)
    assert [e.kind for e in whole] == ["start", "end"]
    detector = SpeechDetector()
    pieces: list[VadEvent] = []
    for start in range(0, len(speech), 117):
        pieces += detector.feed(speech[start : start + 117].tobytes())
    assert pieces == whole


def test_event_is_a_frozen_value() -> None:
    event = VadEvent("start", 1.25)
    assert event == VadEvent("start", 1.25)
    with pytest.raises(FrozenInstanceError):
        event.at_s = 2.0  # type: ignore[misc]


def test_bad_input() -> None:
    detector = SpeechDetector()
    assert detector.feed(np.zeros(0, dtype=np.int16)) == []
    assert detector.feed(b"") == []
    assert detector.feed(silence(0.005)) == []  # less than a frame is kept for later
    with pytest.raises(ValueError, match="int16"):
        detector.feed(np.zeros(320, dtype=np.float64))
    with pytest.raises(ValueError, match="even number of bytes"):
        detector.feed(b"\x00" * 3)
    with pytest.raises(ValueError, match="whole number of samples"):
        SpeechDetector(sample_rate=22050, frame_ms=30)
    with pytest.raises(ValueError, match="8000"):
        SpeechDetector(sample_rate=4000)
    with pytest.raises(ValueError, match="trailing_silence_ms"):
        SpeechDetector(trailing_silence_ms=-1)
