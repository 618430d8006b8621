"""Phrase biasing: the bot's own training examples, normalized the way recognizers spell.

- :func:`load_training_phrases` reads the user examples of the Rasa NLU data (``nlu:`` items
  with an ``intent`` and an ``examples: |`` block, or the list-of-``text`` form), turns
  entity annotations (``[tomorrow](time)``, ``[x]{"entity": "service"}``) into their plain
  text and normalizes each example for speech (see :func:`normalize_for_speech`).
- :class:`PhraseCorrector` snaps an open transcript to the closest training phrase when it is
  close enough (rapidfuzz ``fuzz.ratio``: normalized Levenshtein over the whole phrase, so a
  short transcript is never "completed" into a longer phrase by partial matching).
- :func:`grammar_phrases` keeps what a recognizer's vocabulary can say, for grammar mode.
  Vosk exposes a cheap vocabulary check (``vosk_model_find_word``); left alone, Vosk
  itself drops unknown grammar words with a Kaldi warning ("Ignoring word missing in
  vocabulary") and builds its grammar as a loop over the remaining words, so the order of
  words within a phrase is not enforced. PocketSphinx's JSGF grammar is a true phrase
  list, and one unknown word makes the whole grammar fail, so it drops whole phrases.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from rapidfuzz import fuzz, process

# [text](entity), [text](entity:value), [text]{"entity": "x", "value": "y"}
_ENTITY = re.compile(r"\[([^\]\[]*)\](?:\([^)]*\)|\{[^}]*\})")
_NOT_WORD = re.compile(r"[^\w\s']+")
_STRAY_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")
_UNDERSCORE = re.compile(r"_+")


def strip_annotations(example: str) -> str:
    """``book a [massage](service) [tomorrow]{"entity": "time"}`` -> ``book a massage tomorrow``."""
    return _ENTITY.sub(lambda m: m.group(1), example)


def normalize_for_speech(text: str) -> str:
    """Lower case, punctuation removed (hyphens and slashes become spaces), whitespace
    collapsed. Apostrophes inside words are kept (``that's``, ``i'll``): recognizer
    vocabularies (Vosk, the CMU dictionary) spell those words with them. Digits are kept as
    they are."""
    text = _NOT_WORD.sub(" ", text.lower().replace("\u2019", "'"))
    text = _UNDERSCORE.sub(" ", text)
    text = _STRAY_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def _examples(item: dict[str, Any]) -> list[str]:
    raw = item.get("examples")
    if raw is None:
        return []
    if isinstance(raw, str):
        out = []
        for line in raw.splitlines():
            line = line.strip()
            if line.startswith("- "):
                out.append(line[2:])
            elif line == "-":
                continue
            elif line:
                out.append(line)
        return out
    if isinstance(raw, list):  # the long form: - text: "…" (with metadata)
        return [
            str(e["text"]) if isinstance(e, dict) and "text" in e else str(e)
            for e in raw
            if e is not None
        ]
    raise ValueError(f"examples must be a block string or a list, got {type(raw).__name__}")


def load_training_phrases(nlu_dir: Path) -> list[str]:
    """The intent examples of every YAML file under ``nlu_dir/data/``, normalized for speech,
    deduplicated (first occurrence order). Synonym, lookup and regex items are skipped: their
    examples are entity values or patterns, not things callers say."""
    data_dir = nlu_dir / "data"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no Rasa data directory at {data_dir}")
    seen: dict[str, None] = {}
    files = sorted([*data_dir.rglob("*.yml"), *data_dir.rglob("*.yaml")])
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("nlu"), list):
            continue
        for item in doc["nlu"]:
            if not isinstance(item, dict) or "intent" not in item:
                continue
            try:
                examples = _examples(item)
            except ValueError as exc:
                raise ValueError(f"{path}, intent {item['intent']}: {exc}") from exc
            for example in examples:
                phrase = normalize_for_speech(strip_annotations(example))
                if phrase:
                    seen.setdefault(phrase, None)
    return list(seen)


class PhraseCorrector:
    """Replace an open transcript by the closest known phrase when its score (0..100,
    rapidfuzz ``fuzz.ratio`` on normalized text) is at least ``min_score``."""

    def __init__(self, phrases: Iterable[str], min_score: float) -> None:
        if not 0 <= min_score <= 100:
            raise ValueError(f"min_score must be within 0..100, got {min_score}")
        unique = {normalize_for_speech(p): None for p in phrases}
        unique.pop("", None)
        self.phrases: tuple[str, ...] = tuple(unique)
        self.min_score = float(min_score)

    def closest(self, text: str) -> tuple[str, float] | None:
        """The closest phrase and its score, or None when there are no phrases or no text."""
        query = normalize_for_speech(text)
        if not query or not self.phrases:
            return None
        match = process.extractOne(query, self.phrases, scorer=fuzz.ratio)
        if match is None:
            return None
        phrase, score, _ = match
        return phrase, float(score)

    def correct(self, text: str) -> tuple[str, float]:
        """``(closest phrase, score)`` when score >= min_score, else ``(text, score)``
        (text unchanged; score 0.0 when there was nothing to compare)."""
        best = self.closest(text)
        if best is None:
            return text, 0.0
        phrase, score = best
        return (phrase, score) if score >= self.min_score else (text, score)


def grammar_phrases(
    phrases: Sequence[str],
    in_vocabulary: Callable[[str], bool],
    *,
    drop: str = "words",
) -> tuple[list[str], list[str]]:
    """Normalize ``phrases`` and keep what the recognizer can say.

    ``drop="words"`` removes unknown words from a phrase (what Vosk would do itself, but
    explicitly and counted); ``drop="phrases"`` removes every phrase containing one (for
    sequence grammars such as JSGF). Returns ``(phrases kept, unknown words)``, both
    deduplicated in first-seen order."""
    if drop not in ("words", "phrases"):
        raise ValueError(f"drop must be 'words' or 'phrases', got {drop!r}")
    kept: dict[str, None] = {}
    unknown: dict[str, None] = {}
    known_cache: dict[str, bool] = {}
    for phrase in phrases:
        words = normalize_for_speech(phrase).split()
        ok = []
        for word in words:
            if word not in known_cache:
                known_cache[word] = in_vocabulary(word)
            if known_cache[word]:
                ok.append(word)
            else:
                unknown.setdefault(word, None)
        if drop == "phrases" and len(ok) != len(words):
            continue
        if ok:
            kept.setdefault(" ".join(ok), None)
    return list(kept), list(unknown)
