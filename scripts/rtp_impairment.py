#!/usr/bin/env python
"""How much RTP jitter and packet loss the SIP path tolerates before speech recognition
degrades: real 8 kHz telephone speech (the Asterisk English prompts), μ-law packets of
20 ms, random network delay and loss, through the SIP transport's own jitter buffer and
loss concealment (media_server.transports.sip.rtp.JitterBuffer, driven by a 20 ms clock as
the call would be), then the configured recognizer. Prints corpus WER per condition.

    .venv/bin/python scripts/rtp_impairment.py --limit 20 --loss 0,2,5,10,20 --jitter 0,30,60,120

Loss is independent per packet (``--burst`` makes each loss take out 3 packets in a row).
Jitter is each packet's extra delay, uniform between 0 and the given milliseconds, so
packets arrive out of order once it exceeds 20 ms.
"""

from __future__ import annotations

import argparse
import random
import sys
import wave
from pathlib import Path

import numpy as np
import soxr

from bot.config import load_settings
from media_server.asr.registry import RecognizerRegistry
from media_server.audio.codecs import pcm_to_bytes, ulaw_decode, ulaw_encode
from media_server.transports.sip.rtp import FRAME, JitterBuffer
from media_server.wer import asterisk_prompts, corpus_word_error_rate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr_wer import decode_pcm

RATE = 8000
TICK_S = FRAME / RATE


def read_8k(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wf:
        rate = wf.getframerate()
        samples = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
    if rate != RATE:
        samples = np.asarray(soxr.resample(samples, rate, RATE), dtype="<i2")
    return samples


def through_network(
    pcm: np.ndarray, loss: float, jitter_ms: float, burst: int, rnd: random.Random
) -> np.ndarray:
    """The audio as the jitter buffer releases it after the simulated network."""
    padded = np.concatenate([pcm, np.zeros(RATE // 2, dtype=np.int16)])  # let it drain
    n = len(padded) // FRAME
    payloads = [ulaw_encode(padded[i * FRAME : (i + 1) * FRAME]) for i in range(n)]
    arrivals: list[tuple[float, int]] = []
    skip = 0
    for i in range(n):
        if skip:
            skip -= 1
            continue
        if rnd.random() < loss:
            skip = burst - 1
            continue
        arrivals.append((i * TICK_S + rnd.uniform(0, jitter_ms / 1000), i))
    arrivals.sort()
    jb = JitterBuffer()
    out = []
    k = 0
    ticks = n + int(0.5 / TICK_S)
    for t in range(ticks):
        now = t * TICK_S
        while k < len(arrivals) and arrivals[k][0] <= now:
            _, seq = arrivals[k]
            jb.push(seq & 0xFFFF, seq * FRAME, ulaw_decode(payloads[seq]), arrivals[k][0])
            k += 1
        out.append(jb.pop_frame())
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--min-words", type=int, default=3)
    p.add_argument("--loss", default="0,2,5,10,20", help="loss percentages")
    p.add_argument("--jitter", default="0,30,60,120", help="maximum extra delay, ms")
    p.add_argument("--burst", type=int, default=1, help="packets lost per loss event")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    recognizer = RecognizerRegistry(load_settings()).get("en")
    prompts = [
        (read_8k(path), ref) for path, ref in asterisk_prompts(args.limit, min_words=args.min_words)
    ]
    print(f"engine {recognizer.engine}, {len(prompts)} prompts, burst {args.burst}")
    losses = [float(x) for x in args.loss.split(",")]
    jitters = [float(x) for x in args.jitter.split(",")]
    print("loss %  " + "".join(f"jitter {j:>4.0f} ms  " for j in jitters))
    for loss in losses:
        row = []
        for jitter in jitters:
            rnd = random.Random(args.seed)
            pairs = []
            for pcm, ref in prompts:
                heard = through_network(pcm, loss / 100, jitter, max(1, args.burst), rnd)
                pcm16 = np.asarray(soxr.resample(heard, RATE, 16000), dtype="<i2")
                pairs.append((ref, decode_pcm(recognizer, pcm_to_bytes(pcm16))))
            row.append(f"WER {corpus_word_error_rate(pairs):5.3f}      ")
        print(f"{loss:6.1f}  " + "".join(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
