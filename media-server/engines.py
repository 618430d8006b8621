"""The speech engines one media-server process shares between its calls: one recognizer
model per language, one Piper voice with its prompt cache, the NLU training phrases for
phrase biasing, and the call prompts."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog
import yaml

from bot.config import Settings
from media_server.asr.base import SpeechRecognizer
from media_server.asr.phrases import PhraseCorrector, load_training_phrases
from media_server.asr.registry import RecognizerRegistry
from media_server.prompts import Prompts, prompts_for
from media_server.tts.cache import PromptCache
from media_server.tts.piper_engine import PiperSynthesizer
from media_server.tts.sentences import split_sentences
from media_server.tts.service import TtsService

log = structlog.get_logger("media_server.engines")


def nlu_language(project: Path) -> str:
    """The language of the Rasa training data (``language:`` in config.yml; default en)."""
    try:
        data = yaml.safe_load((project / "config.yml").read_text())
    except (OSError, yaml.YAMLError):
        return "en"
    lang = data.get("language") if isinstance(data, dict) else None
    return str(lang or "en")


class MediaEngines:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = RecognizerRegistry(settings)
        # Recognizer calls are short and frequent (every 100 ms of speech per call); syntheses
        # are long. Separate pools keep a call's decoding from queueing behind another's
        # synthesis. Vosk and Piper release the GIL while they compute; PocketSphinx does
        # not, so its streams decode in worker processes (media.asr_processes) and these
        # threads only wait on their pipes.
        self.asr_executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="asr")
        self.tts_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tts")
        self._tts: TtsService | None = None
        self._lock = threading.Lock()
        self._nlu_language = nlu_language(settings.rasa_project)
        self._phrases: list[str] | None = None
        self._corrector: PhraseCorrector | None = None

    def load(self) -> None:
        """Blocking: load the voice and the default language's recognizer now, so the first
        call does not wait for them."""
        started = time.monotonic()
        voice = self.settings.media.tts_voice
        if voice.endswith(".onnx"):  # a path, relative to the project home
            voice = str(self.settings.path(Path(voice)))
        synth = PiperSynthesizer.load(voice)
        max_bytes = self.settings.media.tts_cache_max_mb * 1024 * 1024
        cache = PromptCache(self.settings.tts_cache_path, max_bytes) if max_bytes else None
        self._tts = TtsService(synth, cache, executor=self.tts_executor)
        if cache is not None:  # the call prompts play from the cache at once
            prompts = prompts_for(self.settings.media.default_language)
            for text in (prompts.greeting, prompts.reprompt, prompts.goodbye, prompts.unavailable):
                for sentence in split_sentences(text):
                    self._tts.render(sentence)
        self.registry.get(self.settings.media.default_language)
        if self.settings.media.phrase_bias != "off":
            self._load_phrases()
        log.info("media.engines.loaded", latency_ms=round((time.monotonic() - started) * 1000))

    def _load_phrases(self) -> list[str]:
        with self._lock:
            if self._phrases is None:
                self._phrases = load_training_phrases(self.settings.rasa_project)
                self._corrector = PhraseCorrector(
                    self._phrases, self.settings.media.phrase_bias_min_score
                )
                log.info("media.phrases.loaded", phrases=len(self._phrases))
            return self._phrases

    @property
    def tts(self) -> TtsService:
        if self._tts is None:
            raise RuntimeError("engines not loaded; call load() first")
        return self._tts

    def recognizer(self, language: str) -> SpeechRecognizer:
        return self.registry.get(language)

    def phrases(self, language: str) -> list[str] | None:
        if language.split("-")[0] != self._nlu_language:
            return None
        return self._load_phrases()

    def correct(self, language: str, text: str) -> tuple[str, float]:
        if language.split("-")[0] != self._nlu_language or not text:
            return text, 0.0
        self._load_phrases()
        assert self._corrector is not None
        return self._corrector.correct(text)

    def prompts(self, language: str) -> Prompts:
        return prompts_for(language)

    def close(self) -> None:
        self.asr_executor.shutdown(wait=False, cancel_futures=True)
        self.tts_executor.shutdown(wait=False, cancel_futures=True)
        self.registry.close()  # stops the ASR worker processes
