"""Which recognizer serves which language, loaded lazily once and shared by every call.

For a language (primary subtag: ``en-US`` -> ``en``) the first of these wins:

1. ``media.asr[lang]`` in the configuration: a catalogue name, a model directory, or
   ``"pocketsphinx"``;
2. the selection written by ``receptionist models use`` (``<data_dir>/asr-models.toml``);
3. the first installed catalogue model for the language, Vosk models first;
4. English only: PocketSphinx (its model ships inside the wheel), announced loudly with a
   ``media.asr.fallback`` warning and ``is_fallback=True``.

An explicit choice (1 or 2) that cannot be used (not installed, not a model, fails to load)
is an error, except for English, where the call still gets PocketSphinx as the announced
fallback and the reason names the broken choice. A language with no model at all raises
:class:`UnknownLanguageError`.

PocketSphinx holds the GIL while it decodes, so by default (``media.asr_processes``) its
streams decode in worker processes (:mod:`media_server.asr.process_pool`); ``close()``
stops them. Vosk releases the GIL and decodes in the caller's threads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from media_server.asr.base import SpeechRecognizer
from media_server.asr.process_pool import (
    SPHINX_FACTORY,
    AsrProcessPool,
    PooledRecognizer,
    processes_for,
)
from media_server.models_catalogue import (
    CatalogueEntry,
    ModelError,
    find_entry,
    installed_path,
    load_catalogue,
    normalize_language,
    read_selection,
    selection_path,
    vosk_model_problems,
)

if TYPE_CHECKING:
    from bot.config import Settings

FALLBACK_LANGUAGE = "en"
POCKETSPHINX = "pocketsphinx"

Source = Literal["config", "selection", "installed", "fallback"]


class UnknownLanguageError(ModelError):
    """No speech model is configured, selected or installed for the language."""


def _log() -> Any:
    return structlog.get_logger("media.asr")


@dataclass(frozen=True)
class Choice:
    """Where a language's recognizer comes from (resolved, not loaded)."""

    language: str
    engine: str  # "vosk" or "pocketsphinx"
    model: str  # catalogue name, directory name, or "pocketsphinx"
    path: Path | None
    source: Source
    fallback: bool = False
    reason: str | None = None  # why the fallback is used


class RecognizerRegistry:
    """``get(language)`` (blocking: run it in a thread) returns the shared recognizer."""

    def __init__(self, settings: Settings, *, catalogue_path: Path | None = None) -> None:
        self.settings = settings
        self.catalogue_path = catalogue_path
        self._catalogue: dict[str, CatalogueEntry] | None = None
        self._loaded: dict[str, SpeechRecognizer] = {}
        self._choices: dict[str, Choice] = {}
        self._pool: AsrProcessPool | None = None
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    # -- resolution ---------------------------------------------------------------------
    @property
    def catalogue(self) -> dict[str, CatalogueEntry]:
        if self._catalogue is None:
            self._catalogue = load_catalogue(self.catalogue_path)
        return self._catalogue

    def _explicit(self, lang: str, value: str, source: Source, where: str) -> Choice:
        """Resolve a configured/selected value; raises ModelError naming ``where``."""
        value = value.strip()
        if value.lower() == POCKETSPHINX:
            if lang != FALLBACK_LANGUAGE:
                raise ModelError(f"{where} = {value!r}: PocketSphinx only has an English model")
            return Choice(lang, POCKETSPHINX, POCKETSPHINX, None, source)
        entry = find_entry(self.catalogue, value)
        if entry is not None:
            if entry.kind != "asr":
                raise ModelError(f"{where} = {value!r}: {entry.name} is not a speech recognizer")
            if entry.language != lang:
                raise ModelError(
                    f"{where} = {value!r}: {entry.name} is a model for {entry.language!r}, "
                    f"not {lang!r}"
                )
            if entry.engine == POCKETSPHINX:
                return Choice(lang, POCKETSPHINX, POCKETSPHINX, None, source)
            path = installed_path(entry, self.settings)
            if path is None:
                raise ModelError(
                    f"{where} = {value!r}: the model is not installed; run "
                    f"`receptionist models pull {entry.name}`"
                )
            return Choice(lang, entry.engine, entry.name, path, source)
        path = self.settings.path(Path(value).expanduser())
        problems = vosk_model_problems(path)
        if problems:
            names = ", ".join(e.name for e in self.catalogue.values() if e.language == lang)
            raise ModelError(
                f"{where} = {value!r}: not a catalogue model ({names or 'none for ' + lang}) "
                f"and not a Vosk model directory: {'; '.join(problems)}"
            )
        return Choice(lang, "vosk", path.name, path, source)

    def resolve(self, language: str) -> Choice:
        """Which model ``language`` gets, without loading it. Raises ModelError (including
        UnknownLanguageError) when there is none."""
        lang = normalize_language(language)
        problem: str | None = None
        configured = self.settings.media.asr.get(lang)
        if configured is None:  # also accept a key written as en-US in the config
            configured = next(
                (v for k, v in self.settings.media.asr.items() if normalize_language(k) == lang),
                None,
            )
        explicit = False
        try:
            if configured is not None:
                explicit = True
                return self._explicit(lang, configured, "config", f"media.asr.{lang}")
            selected = read_selection(self.settings).get(lang)
            if selected is not None:
                explicit = True
                where = f"{selection_path(self.settings)} [asr] {lang}"
                return self._explicit(lang, selected, "selection", where)
        except ModelError as exc:
            if lang != FALLBACK_LANGUAGE:
                raise
            explicit = True
            problem = str(exc)
        if not explicit:
            for engine in ("vosk", *sorted({e.engine for e in self.catalogue.values()})):
                if engine == POCKETSPHINX:
                    continue
                for entry in self.catalogue.values():
                    if entry.kind != "asr" or entry.language != lang or entry.engine != engine:
                        continue
                    path = installed_path(entry, self.settings)
                    if path is not None:
                        return Choice(lang, entry.engine, entry.name, path, "installed")
        if lang == FALLBACK_LANGUAGE:
            reason = problem or (
                "no English Vosk model is installed; install one with "
                "`receptionist models pull vosk-en-us-small`"
            )
            return Choice(lang, POCKETSPHINX, POCKETSPHINX, None, "fallback", True, reason)
        known = sorted({e.language for e in self.catalogue.values() if e.kind == "asr"})
        raise UnknownLanguageError(
            f"no speech model for language {lang!r}: set media.asr.{lang} to a Vosk model "
            f"directory, or pull one (catalogue languages: {', '.join(known)}; "
            "`receptionist models list`)"
        )

    # -- loading ------------------------------------------------------------------------
    def _lock_for(self, lang: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(lang, threading.Lock())

    def _load(self, choice: Choice) -> SpeechRecognizer:
        if choice.engine == POCKETSPHINX:
            processes = processes_for(self.settings.media.asr_processes, POCKETSPHINX)
            if processes:
                return self._pooled(processes, choice)
            from media_server.asr.sphinx_engine import SphinxRecognizer

            return SphinxRecognizer(
                is_fallback=choice.fallback, profile=self.settings.media.sphinx_profile
            )
        if choice.engine == "vosk":
            from media_server.asr.vosk_engine import VoskRecognizer

            if choice.path is None:
                raise ModelError(f"no model directory for {choice.model}")
            return VoskRecognizer(choice.path, choice.language, model_name=choice.model)
        raise ModelError(f"speech engine {choice.engine!r} ({choice.model}) is not supported")

    def _pooled(self, processes: int, choice: Choice) -> PooledRecognizer:
        """PocketSphinx holds the GIL while decoding: its streams decode in worker
        processes (``media.asr_processes``), one pool for the registry."""
        if self._pool is None:
            self._pool = AsrProcessPool(
                processes,
                factory=SPHINX_FACTORY,
                factory_kwargs={"profile": self.settings.media.sphinx_profile},
            )
        try:
            self._pool.wait_ready()
        except ModelError:
            self.close()
            raise
        _log().info(
            "media.asr.process_pool",
            engine=choice.engine,
            profile=self.settings.media.sphinx_profile,
            workers=self._pool.size,
            rss_mb=self._pool.memory(),
        )
        return PooledRecognizer(
            self._pool, engine=POCKETSPHINX, language="en", is_fallback=choice.fallback
        )

    def workers(self) -> list[dict[str, Any]]:
        """The recognizer worker processes (pid, resident memory); empty when recognizers
        decode in this process."""
        pool = self._pool
        if pool is None:
            return []
        return [{"pid": pid, "rss_mb": rss} for pid, rss in pool.memory().items()]

    def close(self) -> None:
        """Stop the recognizers' worker processes, if any (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def get(self, language: str) -> SpeechRecognizer:
        """The recognizer for ``language``, loaded on first use and shared afterwards."""
        lang = normalize_language(language)
        rec = self._loaded.get(lang)
        if rec is not None:
            return rec
        with self._lock_for(lang):
            rec = self._loaded.get(lang)
            if rec is not None:
                return rec
            choice = self.resolve(lang)
            started = time.perf_counter()
            try:
                rec = self._load(choice)
            except ModelError as exc:
                if lang != FALLBACK_LANGUAGE or choice.engine == POCKETSPHINX:
                    raise
                choice = Choice(
                    lang,
                    POCKETSPHINX,
                    POCKETSPHINX,
                    None,
                    "fallback",
                    True,
                    f"{choice.model} ({choice.source}) failed to load: {exc}",
                )
                rec = self._load(choice)
            if choice.fallback:
                _log().warning(
                    "media.asr.fallback",
                    language=lang,
                    engine=choice.engine,
                    reason=choice.reason,
                    detail="English calls use PocketSphinx, which is much less accurate than Vosk",
                )
            _log().info(
                "media.asr.loaded",
                language=lang,
                engine=choice.engine,
                model=choice.model,
                path=str(choice.path) if choice.path else None,
                source=choice.source,
                fallback=choice.fallback,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            self._choices[lang] = choice
            self._loaded[lang] = rec
            return rec

    # -- reporting ----------------------------------------------------------------------
    def languages(self) -> list[str]:
        """Languages worth reporting: configured, selected, with an installed catalogue
        model, loaded, and the default language."""
        langs = {normalize_language(k) for k in self.settings.media.asr}
        # A broken selection file is not hidden: resolve() raises it (or names it as the
        # fallback reason) for every language, the default one included, in status().
        with contextlib.suppress(ModelError):
            langs |= set(read_selection(self.settings))
        for entry in self.catalogue.values():
            if entry.kind == "asr" and installed_path(entry, self.settings) is not None:
                langs.add(entry.language)
        langs |= set(self._loaded)
        langs.add(normalize_language(self.settings.media.default_language))
        return sorted(langs)

    def status(self) -> list[dict[str, Any]]:
        """One row per language for ``receptionist doctor`` and ``/readyz``: language, engine,
        model, path, fallback, loaded, source, reason, error."""
        rows: list[dict[str, Any]] = []
        for lang in self.languages():
            choice = self._choices.get(lang)
            error: str | None = None
            if choice is None:
                try:
                    choice = self.resolve(lang)
                except ModelError as exc:
                    error = str(exc)
            if choice is None:
                rows.append(
                    {
                        "language": lang,
                        "engine": None,
                        "model": None,
                        "path": None,
                        "fallback": False,
                        "loaded": False,
                        "source": None,
                        "reason": None,
                        "error": error,
                    }
                )
                continue
            path = choice.path
            if choice.engine == POCKETSPHINX and path is None:
                entry = find_entry(self.catalogue, "pocketsphinx-en-us")
                path = installed_path(entry, self.settings) if entry else None
            rows.append(
                {
                    "language": lang,
                    "engine": choice.engine,
                    "model": choice.model,
                    "path": str(path) if path else None,
                    "fallback": choice.fallback,
                    "loaded": lang in self._loaded,
                    "source": choice.source,
                    "reason": choice.reason,
                    "error": None,
                }
            )
        return rows
