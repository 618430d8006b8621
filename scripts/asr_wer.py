#!/usr/bin/env python
"""Word error rate and real-time factor of the configured speech recognizer on real 8 kHz
telephone speech: the Asterisk English prompts (Debian asterisk-core-sounds-en-wav).

    .venv/bin/python scripts/asr_wer.py --limit 40 --min-words 3

Modes (``--mode``):
  direct     decode each file straight through the recognizer (8 kHz -> 16 kHz with soxr)
  transport  stream each file, in real time, as a call to a running media server
             (``--url ws://127.0.0.1:8082/media/browser``; `make run` starts one): 8 kHz
             through a G.711 μ-law round trip, the server's endpointing, resampling and
             recognizer. Compare with ``direct`` on the same prompts.

A mode is a function ``(recognizer, path) -> transcript`` in ``MODES``; a mode that sends
the audio through a network transport registers itself there with the same signature.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr

from bot.config import ConfigError, load_settings
from media_server.asr.base import SpeechRecognizer
from media_server.asr.registry import RecognizerRegistry
from media_server.models_catalogue import ModelError
from media_server.wer import asterisk_prompts, corpus_word_error_rate, normalize, word_errors

RATE = 16000
CHUNK_MS = 20  # what a transport delivers per frame


def read_wav_16k(path: Path) -> bytes:
    """Mono 16-bit PCM of a WAV file, resampled to 16 kHz (soxr, anti-aliased)."""
    with wave.open(str(path), "rb") as wf:
        if wf.getnchannels() != 1 or wf.getsampwidth() != 2:
            raise ValueError(
                f"{path}: expected mono 16-bit PCM, got {wf.getnchannels()} channel(s) of "
                f"{8 * wf.getsampwidth()} bits"
            )
        rate = wf.getframerate()
        samples = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
    if rate != RATE:
        samples = soxr.resample(samples, rate, RATE)
    return np.asarray(samples, dtype="<i2").tobytes()


def decode_pcm(recognizer: SpeechRecognizer, pcm: bytes, chunk_ms: int = CHUNK_MS) -> str:
    """Stream 16 kHz PCM through a fresh stream in transport-sized chunks; the final text."""
    stream = recognizer.open_stream()
    try:
        step = RATE * 2 * chunk_ms // 1000
        for i in range(0, len(pcm), step):
            stream.accept(pcm[i : i + step])
        return stream.finish().text
    finally:
        stream.close()


def decode_direct(recognizer: SpeechRecognizer, path: Path) -> str:
    """Decode a WAV file straight through the recognizer (no transport)."""
    return decode_pcm(recognizer, read_wav_16k(path))


TRANSPORT_URL = "ws://127.0.0.1:8082/media/browser"


def decode_transport(recognizer: SpeechRecognizer, path: Path, url: str = TRANSPORT_URL) -> str:
    """Stream the file as a call to the media server at ``url``."""
    import asyncio

    from media_server.wer_transport import decode_via_transport

    with wave.open(str(path), "rb") as wf:
        rate = wf.getframerate()
        samples = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
    if rate != 8000:
        samples = np.asarray(soxr.resample(samples, rate, 8000), dtype="<i2")
    return asyncio.run(decode_via_transport(url, samples, language=recognizer.language))


Decoder = Callable[[SpeechRecognizer, Path], str]
MODES: dict[str, Decoder] = {"direct": decode_direct, "transport": decode_transport}


def audio_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wf:
        return wf.getnframes() / wf.getframerate()


def _plain(text: str) -> bool:
    """No digits or symbols: the transcript is spelled as spoken."""
    return all(w.replace("'", "").isalpha() for w in normalize(text)) and not any(
        c in text for c in "*#@$%&+=/"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--limit", type=int, default=40, help="number of prompts (default 40)")
    p.add_argument("--min-words", type=int, default=3, help="skip shorter prompts (default 3)")
    p.add_argument("--language", default="en")
    p.add_argument("--mode", choices=sorted(MODES), default="direct")
    p.add_argument("--config", type=Path, help="config file (default: receptionist.toml)")
    p.add_argument("--url", default=TRANSPORT_URL, help="media server for --mode transport")
    p.add_argument("--quiet", action="store_true", help="only the summary")
    args = p.parse_args(argv)
    try:
        settings = load_settings(args.config)
        registry = RecognizerRegistry(settings)
        started = time.perf_counter()
        recognizer = registry.get(args.language)
        load_s = time.perf_counter() - started
    except (ConfigError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    prompts = asterisk_prompts(args.limit, min_words=args.min_words)
    if not prompts:
        print("error: no prompts found", file=sys.stderr)
        return 1
    decode = MODES[args.mode]
    if args.mode == "transport":
        decode = functools.partial(decode_transport, url=args.url)
    fallback = " (FALLBACK)" if recognizer.is_fallback else ""
    print(
        f"engine {recognizer.engine}{fallback}, language {recognizer.language}, "
        f"mode {args.mode}, loaded in {load_s:.2f} s, {len(prompts)} prompts"
    )
    pairs: list[tuple[str, str]] = []
    plain_pairs: list[tuple[str, str]] = []
    total_audio = total_decode = 0.0
    for path, reference in prompts:
        t0 = time.perf_counter()
        hypothesis = decode(recognizer, path)
        spent = time.perf_counter() - t0
        seconds = audio_seconds(path)
        total_audio += seconds
        total_decode += spent
        pairs.append((reference, hypothesis))
        if _plain(reference):
            plain_pairs.append((reference, hypothesis))
        errors, n = word_errors(reference, hypothesis)
        if not args.quiet:
            name = path.relative_to(path.parents[1]) if path.parent.name != "en" else path.name
            print(f"{errors / max(n, 1):6.2f}  rtf {spent / seconds:5.3f}  {name}")
            print(f"        ref: {' '.join(normalize(reference))}")
            print(f"        hyp: {hypothesis}")
    words = sum(len(normalize(r)) for r, _ in pairs)
    print(
        f"corpus WER {corpus_word_error_rate(pairs):.3f} over {len(pairs)} prompts, {words} words"
    )
    if plain_pairs and len(plain_pairs) != len(pairs):
        print(
            f"corpus WER {corpus_word_error_rate(plain_pairs):.3f} over the {len(plain_pairs)} "
            "prompts without digits or symbols in the transcript"
        )
    if args.mode == "transport":
        print(
            f"{total_decode:.1f} s wall time for {total_audio:.1f} s of audio (real-time "
            "streaming, each call's greeting and endpointing included)"
        )
    else:
        print(
            f"real-time factor {total_decode / total_audio:.3f} "
            f"({total_decode:.1f} s decoding for {total_audio:.1f} s of audio, one thread)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
