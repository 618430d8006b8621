"""Vosk (Kaldi) speech recognition behind the :mod:`media_server.asr.base` protocol.

One ``vosk.Model`` per model directory is loaded once per process and shared by every call
(Vosk models are reference counted and safe to use from many recognizers in parallel); each
stream owns one ``KaldiRecognizer`` at 16 kHz with word details on.

Utterances: Vosk runs its own endpointer, so ``AcceptWaveform`` may return True in the
middle of what the voice session considers one utterance (a pause longer than the model's
``endpoint.rule2.min-trailing-silence``). The text Vosk finalizes there is kept and the
next :meth:`VoskStream.finish` returns everything since the previous ``finish()`` as one
transcript; partials likewise show the text already finalized plus the current hypothesis.

Word times are seconds since the stream was opened (Vosk counts them over the whole
recognizer lifetime). Vosk's tokens in brackets (``[unk]`` in grammar mode, noise markers)
are not words anyone said: they are dropped from text and words.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
import vosk

from media_server.asr.base import Transcript, Word
from media_server.asr.phrases import grammar_phrases
from media_server.models_catalogue import ModelError, vosk_model_problems

SAMPLE_RATE = 16000
ENGINE = "vosk"

# Kaldi's own messages: -1 keeps warnings and errors, hides the LOG lines of model loading.
vosk.SetLogLevel(-1)

_models: dict[Path, vosk.Model] = {}
_models_lock = threading.Lock()


def _log() -> Any:
    return structlog.get_logger("media.asr")


def load_vosk_model(path: Path) -> vosk.Model:
    """The shared model for ``path``, loaded on first use (thread-safe, once)."""
    key = path.resolve()
    model = _models.get(key)
    if model is not None:
        return model
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            return model
        problems = vosk_model_problems(key)
        if problems:
            raise ModelError(f"{key} is not a Vosk model: {'; '.join(problems)}")
        started = time.perf_counter()
        try:
            model = vosk.Model(str(key))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise ModelError(
                f"Vosk could not load the model in {key} ({exc}); the files are incomplete "
                "or not a Vosk model: pull it again"
            ) from exc
        _models[key] = model
        _log().debug(
            "media.asr.vosk_model_loaded",
            path=str(key),
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return model


def _is_token(word: str) -> bool:
    return word.startswith("[") and word.endswith("]")


def _clean(text: str) -> str:
    return " ".join(w for w in text.split() if not _is_token(w))


class VoskStream:
    """One call's recognizer. Not thread-safe: one call at a time (the protocol's rule)."""

    def __init__(
        self, model: vosk.Model, language: str, grammar: Sequence[str] | None = None
    ) -> None:
        self.language = language
        self.grammar = tuple(grammar) if grammar else None
        if self.grammar:
            rec = vosk.KaldiRecognizer(
                model, SAMPLE_RATE, json.dumps(list(self.grammar), ensure_ascii=False)
            )
        else:
            rec = vosk.KaldiRecognizer(model, SAMPLE_RATE)
        rec.SetWords(True)
        self._rec: vosk.KaldiRecognizer | None = rec
        self._segments: list[dict[str, Any]] = []  # finalized by Vosk's endpointer
        self._last_partial = ""
        self.endpoints = 0  # how many times Vosk ended a segment on its own (observability)

    def _recognizer(self) -> vosk.KaldiRecognizer:
        if self._rec is None:
            raise RuntimeError("the recognizer stream is closed")
        return self._rec

    def _committed_text(self) -> str:
        return " ".join(t for s in self._segments if (t := _clean(s.get("text", ""))))

    def accept(self, pcm: bytes) -> Transcript | None:
        rec = self._recognizer()
        if len(pcm) % 2:
            raise ValueError(f"PCM must be 16-bit samples (even byte count), got {len(pcm)}")
        if not pcm:
            return None
        if rec.AcceptWaveform(pcm):
            result = json.loads(rec.Result())
            self.endpoints += 1
            if _clean(result.get("text", "")):
                self._segments.append(result)
            current = ""
        else:
            current = _clean(json.loads(rec.PartialResult()).get("partial", ""))
        text = " ".join(t for t in (self._committed_text(), current) if t)
        if text == self._last_partial:
            return None
        self._last_partial = text
        return Transcript(text=text, is_final=False, engine=ENGINE, language=self.language)

    def finish(self) -> Transcript:
        rec = self._recognizer()
        segments = [*self._segments, json.loads(rec.FinalResult())]
        self._segments = []
        self._last_partial = ""
        words: list[Word] = []
        for seg in segments:
            for w in seg.get("result", []):
                if _is_token(w["word"]):
                    continue
                words.append(
                    Word(
                        text=w["word"],
                        start_s=float(w["start"]),
                        end_s=float(w["end"]),
                        confidence=min(1.0, max(0.0, float(w.get("conf", 1.0)))),
                    )
                )
        text = " ".join(t for s in segments if (t := _clean(s.get("text", ""))))
        confidence = sum(w.confidence for w in words) / len(words) if words else None
        return Transcript(
            text=text,
            is_final=True,
            confidence=confidence,
            words=tuple(words),
            engine=ENGINE,
            language=self.language,
        )

    def close(self) -> None:
        self._rec = None  # KaldiRecognizer frees its native state when collected
        self._segments = []


class VoskRecognizer:
    """A loaded Vosk model for one language. Construction loads the model (blocking)."""

    engine = ENGINE

    def __init__(self, model_path: Path, language: str, *, model_name: str = "") -> None:
        self.language = language
        self.is_fallback = False
        self.model_path = model_path.resolve()
        self.model_name = model_name or self.model_path.name
        self._model = load_vosk_model(self.model_path)
        self._grammars: dict[tuple[str, ...], tuple[str, ...] | None] = {}
        self._grammar_lock = threading.Lock()

    def in_vocabulary(self, word: str) -> bool:
        return bool(self._model.vosk_model_find_word(word) >= 0)

    def grammar(self, phrases: Sequence[str]) -> tuple[str, ...] | None:
        """The Vosk grammar for ``phrases``: in-vocabulary words only, plus ``[unk]`` when the
        model has it (so out-of-grammar speech is not forced onto a phrase). None when no
        phrase has a known word (then the stream runs open). Cached per phrase list."""
        key = tuple(phrases)
        with self._grammar_lock:
            if key in self._grammars:
                return self._grammars[key]
        kept, unknown = grammar_phrases(key, self.in_vocabulary, drop="words")
        if unknown:
            _log().info(
                "media.asr.grammar_unknown_words",
                language=self.language,
                model=self.model_name,
                count=len(unknown),
                sample=unknown[:10],
            )
        grammar: tuple[str, ...] | None = None
        if kept:
            grammar = (*kept, "[unk]") if self.in_vocabulary("[unk]") else tuple(kept)
        else:
            _log().warning(
                "media.asr.grammar_empty",
                language=self.language,
                model=self.model_name,
                phrases=len(key),
                detail="no phrase has a word the model knows; recognizing without a grammar",
            )
        with self._grammar_lock:
            if len(self._grammars) > 32:
                self._grammars.clear()
            self._grammars[key] = grammar
        return grammar

    def open_stream(self, phrases: Sequence[str] | None = None) -> VoskStream:
        grammar = self.grammar(phrases) if phrases else None
        return VoskStream(self._model, self.language, grammar)
