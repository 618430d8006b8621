"""Fixtures of the voice tests."""

from __future__ import annotations

import pytest

from media_server.tts.piper_engine import PiperSynthesizer
from tests.media.callers import caller_voice


@pytest.fixture(scope="session")
def voice() -> PiperSynthesizer:
    """The simulated callers' Piper voice (noise off: reproducible speech)."""
    return caller_voice()
