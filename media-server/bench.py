"""``receptionist bench voice``: concurrent simulated calls over the WebSocket media-stream
transport (or SIP and RTP, ``--transport sip``), in real time, against a running media
server (``make run``).

Each call waits for the greeting, then asks a few questions (Piper-synthesized English,
streamed as 8 kHz μ-law at real-time pace) and measures, per turn, the time from the end of
its speech to the first frame of the bot's spoken answer. The server's ``/stats`` gives the
engines' real-time factors, CPU and memory. With several call counts (``--calls 1,4,8``)
it reports the largest count whose p95 stays within the target.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from media_server.audio.resample import resample
from media_server.caller import TwilioCaller
from media_server.sip_caller import SipCaller

QUESTIONS = (
    "What are your opening hours?",
    "Where are you located?",
    "How much does a consultation cost?",
    "Can I talk to someone in billing?",
)
TARGET_P95_MS = 800.0


@dataclass
class CallResult:
    latencies_ms: list[float]
    failed: str | None = None
    late_frames: int = 0


def synthesize_questions(voice: str) -> list[np.ndarray]:
    from media_server.tts.piper_engine import PiperSynthesizer

    synth = PiperSynthesizer.load(voice)
    out = []
    for q in QUESTIONS:
        pcm = np.frombuffer(synth.synthesize(q), dtype=np.int16)
        out.append(resample(pcm, synth.sample_rate, 8000))
    return out


async def one_call(
    connect: Callable[[], TwilioCaller | SipCaller],
    speech: list[np.ndarray],
    turns: int,
    offset: int,
    delay_s: float = 0.0,
) -> CallResult:
    lat: list[float] = []
    await asyncio.sleep(delay_s)
    try:
        async with connect() as caller:
            await caller.wait_speech(0.0, timeout=60)
            await caller.wait_quiet(0.5, timeout=60)
            for i in range(turns):
                _, end = await caller.say(speech[(offset + i) % len(speech)])
                first = await caller.wait_speech(end, timeout=30)
                lat.append((first - end) * 1000)
                await caller.wait_quiet(0.5, timeout=90)
            return CallResult(lat, late_frames=caller.stats.late_frames)
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        return CallResult(lat, failed=repr(exc))


async def _stats(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(base + "/stats") as r:
        data: dict[str, Any] = await r.json()
        return data


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


async def run_level(
    base: str,
    speech: list[np.ndarray],
    calls: int,
    turns: int,
    stagger_s: float = 3.0,
    sip: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """``calls`` concurrent calls; they arrive spread evenly over ``stagger_s`` seconds (real
    callers do not all start talking in the same 20 ms). Over the Twilio media-stream
    WebSocket, or over SIP and RTP to ``sip`` (host, port)."""
    ws = base.replace("http", "ws", 1) + "/media/twilio"

    def connect() -> TwilioCaller | SipCaller:
        return SipCaller(*sip) if sip is not None else TwilioCaller(ws)

    async with aiohttp.ClientSession() as http:
        before = await _stats(http, base)
        started = time.monotonic()
        results = await asyncio.gather(
            *(one_call(connect, speech, turns, i, stagger_s * i / calls) for i in range(calls))
        )
        wall = time.monotonic() - started
        after = await _stats(http, base)
    lat = [x for r in results for x in r.latencies_ms]
    failed = [r.failed for r in results if r.failed]

    def delta(key: str) -> float:
        return float(after[key]) - float(before[key])

    asr_audio, tts_audio = delta("asr_audio_s"), delta("tts_audio_s")
    new_replies = after["reply_to_audio_ms"][len(before["reply_to_audio_ms"]) :]
    cached = [ms for ms, c in new_replies if c]
    return {
        "calls": calls,
        "turns": len(lat),
        "failed": len(failed),
        "errors": failed[:3],
        "p50_ms": round(_pct(lat, 0.5), 1),
        "p95_ms": round(_pct(lat, 0.95), 1),
        "max_ms": round(max(lat), 1) if lat else None,
        "asr_rtf": round(delta("asr_busy_s") / asr_audio, 3) if asr_audio else None,
        "tts_rtf": round(delta("tts_busy_s") / tts_audio, 3) if tts_audio else None,
        "cpu_per_call_pct": round(100 * delta("cpu_s") / wall / calls, 1),
        "rss_mb": after["rss_mb"],
        "cached_reply_to_audio_p95_ms": round(_pct(cached, 0.95), 1) if cached else None,
        "client_late_frames": sum(r.late_frames for r in results),
        "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
    }


def report(levels: list[dict[str, Any]]) -> str:
    head = (
        f"{'calls':>5} {'turns':>5} {'fail':>4} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
        f"{'ASR RTF':>7} {'TTS RTF':>7} {'CPU/call':>8} {'RSS MB':>7} {'cached→audio p95':>16}"
    )
    lines = [head]
    for r in levels:
        lines.append(
            f"{r['calls']:>5} {r['turns']:>5} {r['failed']:>4} {r['p50_ms']:>7} {r['p95_ms']:>7} "
            f"{r['max_ms']!s:>7} {r['asr_rtf']!s:>7} {r['tts_rtf']!s:>7} "
            f"{r['cpu_per_call_pct']!s:>7}% {r['rss_mb']!s:>7} "
            f"{r['cached_reply_to_audio_p95_ms']!s:>16}"
        )
    ok = [r["calls"] for r in levels if r["failed"] == 0 and r["p95_ms"] <= TARGET_P95_MS]
    lines.append(
        f"largest call count with p95 ≤ {TARGET_P95_MS:.0f} ms: {max(ok) if ok else 'none'}"
    )
    return "\n".join(lines)


async def bench_voice(
    base: str,
    voice: str,
    counts: list[int],
    turns: int,
    stagger_s: float = 3.0,
    sip: tuple[str, int] | None = None,
) -> list[dict[str, Any]]:
    speech = await asyncio.to_thread(synthesize_questions, voice)
    levels = []
    for n in counts:
        levels.append(await run_level(base, speech, n, turns, stagger_s, sip))
        print(report(levels[-1:]).splitlines()[1], flush=True)
    return levels
