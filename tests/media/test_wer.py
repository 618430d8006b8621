"""Word error rate, the Asterisk telephone prompts, and the direct decoding of
scripts/asr_wer.py on one of them."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import pytest

from media_server.asr.sphinx_engine import SphinxRecognizer
from media_server.wer import (
    SOUNDS_DIR,
    asterisk_prompts,
    corpus_word_error_rate,
    normalize,
    word_error_rate,
    word_errors,
)
from tests.media.support import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "asr_wer.py"


def test_word_error_rate() -> None:
    assert word_error_rate("book a massage", "book a massage") == 0.0
    assert word_error_rate("book a massage for friday", "book a massage for monday") == 0.2
    assert word_error_rate("book a massage", "book massage") == pytest.approx(1 / 3)  # deletion
    assert word_error_rate("book a massage", "please book a massage now") == pytest.approx(2 / 3)
    assert word_error_rate("a b", "c d e f") == 2.0  # insertions count: WER can exceed 1
    assert word_errors("a b c", "a x c") == (1, 3)


def test_normalization() -> None:
    assert word_error_rate("Hello, World!", "hello world") == 0.0
    assert normalize("It's a follow-up… OK?") == ["it's", "a", "follow", "up", "ok"]
    assert word_error_rate("press 1 to mute", "press one to mute") == 0.25  # numbers as is
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("", "noise") == 1.0


def test_corpus_wer_weights_by_reference_length() -> None:
    pairs = [("one two three four", "one two three four"), ("five", "six")]
    assert corpus_word_error_rate(pairs) == pytest.approx(1 / 5)
    assert corpus_word_error_rate([]) == 0.0


def test_asterisk_prompts_have_audio_and_spoken_transcripts() -> None:
    prompts = asterisk_prompts()
    assert len(prompts) > 400
    by_name = {str(p.relative_to(SOUNDS_DIR)): text for p, text in prompts}
    assert by_name["auth-thankyou.wav"] == "Thank you."
    assert by_name["digits/7.wav"] == "seven"
    assert by_name["letters/at.wav"] == "at"  # "[@]" note removed
    assert "beep.wav" not in by_name and "ascending-2tone.wav" not in by_name  # tones
    assert not any("[" in t or "..." in t for t in by_name.values())
    path, _ = prompts[0]
    with wave.open(str(path), "rb") as wf:
        assert (wf.getframerate(), wf.getnchannels(), wf.getsampwidth()) == (8000, 1, 2)
    few = asterisk_prompts(5, min_words=4)
    assert len(few) == 5 and all(len(normalize(t)) >= 4 for _, t in few)
    with pytest.raises(FileNotFoundError, match="asterisk-core-sounds-en"):
        asterisk_prompts(transcripts=Path("/nonexistent.txt.gz"))


def test_script_decodes_telephone_prompts_directly() -> None:
    script = load_script(SCRIPT)
    assert "direct" in script.MODES
    path = SOUNDS_DIR / "cannot-complete-as-dialed.wav"  # "Your call cannot be completed…"
    pcm = script.read_wav_16k(path)
    assert len(pcm) == pytest.approx(script.audio_seconds(path) * 16000 * 2, abs=64)
    sphinx = SphinxRecognizer()
    pairs = []
    for name, reference in [
        ("cannot-complete-as-dialed", "your call cannot be completed as dialed"),
        ("conf-invalid", "that is not a valid conference number please try again"),
        ("conf-nonextended", "the conference cannot be extended"),
    ]:
        pairs.append((reference, script.decode_direct(sphinx, SOUNDS_DIR / f"{name}.wav")))
    # PocketSphinx's wideband model on 8 kHz telephone speech: rough, but not garbage
    assert corpus_word_error_rate(pairs) <= 0.2, pairs
    stream = sphinx.open_stream()
    try:
        stream.accept(pcm)
        assert stream.channel == "narrowband"  # telephone audio recognized as such
    finally:
        stream.close()


def test_script_runs_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in list(os.environ):
        if key.startswith("RECEPTIONIST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RECEPTIONIST_HOME", str(tmp_path))
    monkeypatch.setenv("RECEPTIONIST_MEDIA__MODEL_DIR", str(tmp_path / "none"))
    assert load_script(SCRIPT).main(["--limit", "2", "--min-words", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "engine pocketsphinx (FALLBACK)" in out
    assert "corpus WER" in out and "real-time factor" in out
