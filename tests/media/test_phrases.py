"""Training phrases for speech: Rasa NLU examples as plain normalized text, the corrector
that snaps open transcripts to them, and the grammar builder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from media_server.asr.phrases import (
    PhraseCorrector,
    grammar_phrases,
    load_training_phrases,
    normalize_for_speech,
    strip_annotations,
)

NLU_DIR = Path(__file__).resolve().parents[2] / "nlu-data"


def test_project_nlu_data_becomes_plain_phrases() -> None:
    phrases = load_training_phrases(NLU_DIR)
    assert len(phrases) > 100
    assert len(phrases) == len(set(phrases))
    # an annotated example: "- i want to book a [massage](service)"
    assert "i want to book a massage" in phrases
    assert "book a sports massage tomorrow at 3" in phrases  # two annotations, digits kept
    assert "hello" in phrases
    for p in phrases:
        assert p == p.lower() and p == p.strip() and "  " not in p
        assert not re.search(r"[\[\](){}\",.?!:;]", p), p
    # synonym and lookup values are entity values, not things said as a whole
    assert "invoices" not in phrases


def test_annotations_formats_and_normalization(tmp_path: Path) -> None:
    data = tmp_path / "data" / "nlu"
    data.mkdir(parents=True)
    (data / "a.yml").write_text(
        """version: "3.1"
nlu:
  - intent: book
    examples: |
      - Book a [Sports Massage](service) for [tomorrow at 3](time)!
      - Book a [massage]{"entity": "service", "value": "massage"} please…
      - I'd like a follow-up, please.
      - book a sports massage for tomorrow at 3
  - intent: ask
    examples:
      - text: "What's on [Friday](time)?"
        metadata: {sentiment: neutral}
  - synonym: billing
    examples: |
      - invoices
  - regex: email
    examples: |
      - [^\\s@]+@[^\\s@]+
"""
    )
    (tmp_path / "data" / "stories.yml").write_text(
        'version: "3.1"\nstories:\n  - story: s\n    steps:\n      - intent: book\n'
    )
    phrases = load_training_phrases(tmp_path)
    assert phrases == [
        "book a sports massage for tomorrow at 3",
        "book a massage please",
        "i'd like a follow up please",
        "what's on friday",
    ]


def test_missing_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data"):
        load_training_phrases(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bad.yml").write_text("nlu: [\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_training_phrases(tmp_path)


def test_helpers() -> None:
    assert strip_annotations('at [3pm](time) or [4]{"entity": "time"}') == "at 3pm or 4"
    spoken = normalize_for_speech("  That's it -- 'quoted' O\u2019Brien ")
    assert spoken == "that's it quoted o'brien"
    assert normalize_for_speech("...") == ""


def test_corrector_snaps_close_transcripts_only() -> None:
    phrases = load_training_phrases(NLU_DIR)
    corrector = PhraseCorrector(phrases, min_score=85)
    text, score = corrector.correct("i wanna book a massage")
    assert text == "i want to book a massage" and 85 <= score < 100
    assert corrector.correct("What are your opening hours?") == (
        "what are your opening hours",
        100.0,
    )
    far = "the quick brown fox jumps over the lazy dog"
    text, score = corrector.correct(far)
    assert text == far and score < 85  # unchanged, with the best score it had
    assert corrector.correct("") == ("", 0.0)
    strict = PhraseCorrector(phrases, min_score=100)
    assert strict.correct("i wanna book a massage")[0] == "i wanna book a massage"
    with pytest.raises(ValueError):
        PhraseCorrector(phrases, min_score=101)


def test_grammar_phrases_keep_only_known_words() -> None:
    vocab = {"book", "a", "massage", "yes", "no", "please"}
    phrases = ["Book a massage, please!", "book a pilates class", "yes", "xyzzy", "YES"]
    kept, unknown = grammar_phrases(phrases, vocab.__contains__)
    assert kept == ["book a massage please", "book a", "yes"]
    assert unknown == ["pilates", "class", "xyzzy"]
    kept, _ = grammar_phrases(phrases, vocab.__contains__, drop="phrases")
    assert kept == ["book a massage please", "yes"]
    with pytest.raises(ValueError):
        grammar_phrases(phrases, vocab.__contains__, drop="nothing")
