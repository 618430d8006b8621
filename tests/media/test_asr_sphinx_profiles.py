"""PocketSphinx decoder profiles (``media.sphinx_profile``): the options reach the decoder,
in this process and in the worker processes, and the fast profile still recognizes real
telephone speech (Asterisk prompts, through scripts/sphinx_profiles.py's telephone path)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import get_args

import pytest

from bot.config import MediaSettings
from media_server.asr.process_pool import AsrProcessPool, PooledRecognizer
from media_server.asr.registry import RecognizerRegistry
from media_server.asr.sphinx_engine import (
    DEFAULT_PROFILE,
    PROFILES,
    SphinxProfile,
    SphinxRecognizer,
    decoder_options,
)
from media_server.models_catalogue import ModelError
from media_server.wer import SOUNDS_DIR, corpus_word_error_rate
from tests.media.support import load_script, make_settings

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sphinx_profiles.py"
# Prompts the default profile decodes well (tests/media/test_wer.py).
PROMPTS = [
    ("cannot-complete-as-dialed", "your call cannot be completed as dialed"),
    ("conf-invalid", "that is not a valid conference number please try again"),
]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script(SCRIPT)


@pytest.fixture(scope="module")
def fast() -> SphinxRecognizer:
    return SphinxRecognizer(profile="fast")


def test_profiles_match_the_setting() -> None:
    names = set(get_args(MediaSettings.model_fields["sphinx_profile"].annotation))
    assert names == set(PROFILES) == set(get_args(SphinxProfile))
    assert MediaSettings().sphinx_profile == DEFAULT_PROFILE == "fast"
    assert PROFILES["accurate"] == {}  # PocketSphinx's own defaults
    assert PROFILES["fast"], "the fast profile changes some decoder option"
    assert decoder_options("fast", {"lw": 7.0}) == {**PROFILES["fast"], "lw": 7.0}
    with pytest.raises(ValueError, match="unknown PocketSphinx profile"):
        decoder_options("turbo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown PocketSphinx decoder option"):
        SphinxRecognizer(options={"no_such_option": 1})


def test_fast_profile_reaches_the_decoder(fast: SphinxRecognizer) -> None:
    assert fast.profile == "fast" and fast.options == PROFILES["fast"]
    stream = fast.open_stream()
    try:
        config = stream._dec().config
        for key, value in PROFILES["fast"].items():
            assert config[key] == pytest.approx(value, rel=1e-6, abs=0), key
    finally:
        stream.close()
    accurate = SphinxRecognizer(profile="accurate").open_stream()
    try:
        config = accurate._dec().config
        for key, value in PROFILES["fast"].items():
            assert config[key] != pytest.approx(value, rel=1e-6, abs=0), key  # a default
    finally:
        accurate.close()


def test_fast_profile_recognizes_telephone_prompts(
    script: ModuleType, fast: SphinxRecognizer
) -> None:
    pairs = []
    for name, reference in PROMPTS:
        pcm = script.telephone_pcm_16k(SOUNDS_DIR / f"{name}.wav")
        text, cpu_s, finish_s = script.decode(fast, pcm)
        assert 0 <= finish_s <= cpu_s
        pairs.append((reference, text))
    assert corpus_word_error_rate(pairs) <= 0.2, pairs


def test_fast_profile_in_grammar_mode(script: ModuleType, fast: SphinxRecognizer) -> None:
    phrases = [reference for _, reference in PROMPTS] + ["i want to book an appointment"]
    stream = fast.open_stream(phrases)
    try:
        pcm = script.telephone_pcm_16k(SOUNDS_DIR / f"{PROMPTS[1][0]}.wav")
        for i in range(0, len(pcm), script.BATCH_BYTES):
            stream.accept(pcm[i : i + script.BATCH_BYTES])
        assert stream.finish().text == PROMPTS[1][1]
    finally:
        stream.close()


def test_setting_reaches_the_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: ModuleType, fast: SphinxRecognizer
) -> None:
    settings = make_settings(tmp_path, monkeypatch, sphinx_profile="fast", asr_processes=1)
    registry = RecognizerRegistry(settings)
    try:
        rec = registry.get("en")
        assert isinstance(rec, PooledRecognizer)
        assert rec.pool.factory_kwargs == {"profile": "fast"}
        pcm = script.telephone_pcm_16k(SOUNDS_DIR / f"{PROMPTS[0][0]}.wav")
        stream = rec.open_stream()
        try:
            for i in range(0, len(pcm), script.BATCH_BYTES):
                stream.accept(pcm[i : i + script.BATCH_BYTES])
            pooled = stream.finish().text
        finally:
            stream.close()
        assert pooled == script.decode(fast, pcm)[0]  # decoded as in-process with "fast"
    finally:
        registry.close()
    # in the media server's own threads (asr_processes = 0)
    settings = make_settings(tmp_path, monkeypatch, sphinx_profile="fast", asr_processes=0)
    local = RecognizerRegistry(settings).get("en")
    assert isinstance(local, SphinxRecognizer) and local.options == PROFILES["fast"]


def test_worker_constructs_the_recognizer_with_the_pool_kwargs() -> None:
    pool = AsrProcessPool(1, factory_kwargs={"options": {"no_such_option": 1}})
    try:
        with pytest.raises(ModelError, match="unknown PocketSphinx decoder option"):
            pool.wait_ready()
    finally:
        pool.close()


def test_script_prints_a_table(script: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert script.main(["--limit", "1", "--only", "accurate,fast", "--repeat", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()  # the engine's log lines too
    header = next(i for i, line in enumerate(lines) if line.startswith("candidate"))
    rows = {line.split()[0]: line.split() for line in lines[header + 1 :]}
    assert list(rows) == ["accurate", "fast"]
    wer, cpu_per_audio_s = float(rows["fast"][1]), float(rows["fast"][2])
    assert wer >= 0 and cpu_per_audio_s > 0
    assert script.main(["--only", "nope"]) == 2
