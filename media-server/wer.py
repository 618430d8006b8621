"""Word error rate, and real telephone test speech: the Asterisk core prompts.

WER = (substitutions + deletions + insertions) / words in the reference, after
normalization: lower case, punctuation removed (apostrophes inside words kept, hyphens
split words), whitespace collapsed. Numbers stay as they appear: a reference ``press 1``
against a recognized ``press one`` is a substitution, as the recognizer's output would
reach the bot that way.

:func:`asterisk_prompts` pairs the 8 kHz prompts of Debian's ``asterisk-core-sounds-en-wav``
with their transcripts from ``core-sounds-en.txt.gz`` (``asterisk-core-sounds-en``), one
``name: text`` line per prompt; names may have a directory (``digits/1``). Bracketed notes
(``[ascending tones]``, ``at [@]``) and ellipses are removed; prompts left without words
(tones, beeps) and prompts whose file is missing are skipped.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from pathlib import Path

from rapidfuzz.distance import Levenshtein

SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")

_NOT_WORD = re.compile(r"[^\w\s']+")
_STRAY_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")
_BRACKETED = re.compile(r"\[[^\]]*\]")


def normalize(text: str) -> list[str]:
    """The words WER is computed over."""
    text = text.lower().replace("\u2019", "'")
    text = _NOT_WORD.sub(" ", text).replace("_", " ")
    text = _STRAY_APOSTROPHE.sub(" ", text)
    return text.split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """``(edit distance in words, words in the reference)``."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    return Levenshtein.distance(ref, hyp), len(ref)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of one pair. An empty reference gives 0.0 for an empty hypothesis, else 1.0
    (the rate is otherwise undefined)."""
    errors, n = word_errors(reference, hypothesis)
    if n == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / n


def corpus_word_error_rate(pairs: Iterable[tuple[str, str]]) -> float:
    """Total errors over total reference words of ``(reference, hypothesis)`` pairs."""
    errors = words = 0
    for reference, hypothesis in pairs:
        e, n = word_errors(reference, hypothesis)
        errors += e
        words += n
    if words == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / words


def _spoken_text(text: str) -> str:
    text = _BRACKETED.sub(" ", text).replace("...", " ").replace("…", " ")
    return " ".join(text.split())


def asterisk_prompts(
    limit: int | None = None,
    *,
    min_words: int = 1,
    sounds_dir: Path = SOUNDS_DIR,
    transcripts: Path = TRANSCRIPTS,
) -> list[tuple[Path, str]]:
    """``(wav path, transcript)`` of the Asterisk English prompts, in the transcript file's
    order; at most ``limit``, only those with at least ``min_words`` words."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    try:
        with gzip.open(transcripts, "rt", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{transcripts} not found: install the Debian package asterisk-core-sounds-en "
            "(and asterisk-core-sounds-en-wav for the audio)"
        ) from exc
    out: list[tuple[Path, str]] = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith(";") or ":" not in line:
            continue
        name, text = line.split(":", 1)
        name = name.strip()
        if not name or ".." in Path(name).parts:
            continue
        spoken = _spoken_text(text)
        if len(normalize(spoken)) < max(1, min_words):
            continue
        wav = sounds_dir / f"{name}.wav"
        if not wav.is_file():
            continue
        out.append((wav, spoken))
        if limit is not None and len(out) >= limit:
            break
    return out
