#!/usr/bin/env python
"""Does phrase biasing help? Held-out test utterances (tests/nlu/test.yml, never trained on)
are spoken by Piper, passed through the telephone path (8 kHz, G.711 μ-law) and recognized
three ways: open vocabulary, open + correction to the closest training phrase
(media.phrase_bias = "correct"), and grammar mode (recognize only training phrases,
media.phrase_bias = "grammar"). For each: word error rate against what was said, and, when
a Rasa server is given, how often Rasa still finds the right intent.

    .venv/bin/python scripts/phrase_bias_eval.py --per-intent 2
    .venv/bin/python scripts/phrase_bias_eval.py --rasa http://127.0.0.1:5005   # with make run
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import urllib.request
from pathlib import Path

import numpy as np
import yaml

from bot.config import load_settings
from media_server.asr.phrases import (
    PhraseCorrector,
    grammar_phrases,
    load_training_phrases,
    normalize_for_speech,
    strip_annotations,
)
from media_server.asr.registry import RecognizerRegistry
from media_server.audio.codecs import ulaw_decode, ulaw_encode
from media_server.audio.resample import resample
from media_server.tts.piper_engine import PiperSynthesizer
from media_server.wer import corpus_word_error_rate

ROOT = Path(__file__).resolve().parent.parent


def held_out(path: Path, per_intent: int, seed: int) -> list[tuple[str, str]]:
    data = yaml.safe_load(path.read_text())
    rng = random.Random(seed)
    out = []
    for item in data.get("nlu", []):
        if "intent" not in item:
            continue
        examples = [
            strip_annotations(line[2:].strip())
            for line in item["examples"].splitlines()
            if line.strip().startswith("- ")
        ]
        for ex in rng.sample(examples, min(per_intent, len(examples))):
            out.append((ex, str(item["intent"]).split("/")[0]))
    return out


def telephone_16k(synth: PiperSynthesizer, text: str) -> bytes:
    pcm = np.frombuffer(synth.synthesize(text), dtype=np.int16)
    narrow = ulaw_decode(ulaw_encode(resample(pcm, synth.sample_rate, 8000)))
    silence = np.zeros(4000, dtype=np.int16)
    return resample(np.concatenate([silence, narrow, silence]), 8000, 16000).tobytes()


def parse_intent(rasa: str, token: str, text: str) -> str | None:
    req = urllib.request.Request(
        f"{rasa}/model/parse?token={token}",
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        intent = json.load(r).get("intent") or {}
    name = intent.get("name")
    return str(name).split("/")[0] if name else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--per-intent", type=int, default=2, help="utterances per intent")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rasa", help="Rasa server URL, to score intents too")
    p.add_argument("--no-grammar", action="store_true", help="skip grammar mode (slow)")
    args = p.parse_args(argv)
    settings = load_settings()
    cases = held_out(ROOT / "tests" / "nlu" / "test.yml", args.per_intent, args.seed)
    synth = PiperSynthesizer.load(settings.media.tts_voice)
    recognizer = RecognizerRegistry(settings).get("en")
    phrases = load_training_phrases(settings.rasa_project)
    corrector = PhraseCorrector(phrases, settings.media.phrase_bias_min_score)
    grammar, _unknown = grammar_phrases(phrases, recognizer.in_vocabulary)  # type: ignore[attr-defined]
    print(
        f"{len(cases)} held-out utterances, engine {recognizer.engine}"
        f"{' (fallback)' if recognizer.is_fallback else ''}, {len(phrases)} training phrases"
    )
    modes: dict[str, list[tuple[str, str]]] = {"open": [], "correct": []}
    if not args.no_grammar:
        modes["grammar"] = []
    corrected = 0
    intents: dict[str, list[bool]] = {m: [] for m in modes}
    token = settings.rasa_token()
    for text, intent in cases:
        audio = telephone_16k(synth, text)
        reference = normalize_for_speech(text)
        stream = recognizer.open_stream()
        stream.accept(audio)
        heard = stream.finish().text
        stream.close()
        fixed, _score = corrector.correct(heard)
        corrected += fixed != heard
        hyps = {"open": heard, "correct": fixed}
        if "grammar" in modes:
            gstream = recognizer.open_stream(grammar)
            gstream.accept(audio)
            hyps["grammar"] = gstream.finish().text
            gstream.close()
        for mode, hyp in hyps.items():
            modes[mode].append((reference, hyp))
            if args.rasa:
                intents[mode].append(parse_intent(args.rasa, token, hyp or "") == intent)
    print(f"{'mode':<8} {'WER':>6} {'intent accuracy':>16}")
    for mode, pairs in modes.items():
        acc = f"{sum(intents[mode]) / len(intents[mode]):.3f}" if intents[mode] else "-"
        print(f"{mode:<8} {corpus_word_error_rate(pairs):6.3f} {acc:>16}")
    print(f"correction replaced {corrected} of {len(cases)} transcripts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
