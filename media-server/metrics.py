"""Process-wide counters of the media server, served at ``/stats`` (read by
``receptionist bench voice``: engine real-time factors and reply latencies) and, with the
latency histograms below, at ``/metrics`` in Prometheus' text format.

The session and the TTS service record at the points where they already measure (and log)
a turn's timings; nothing here keeps time of its own.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass
class MediaStats:
    asr_audio_s: float = 0.0  # audio fed to recognizers
    asr_busy_s: float = 0.0  # wall time spent inside recognizer calls
    tts_audio_s: float = 0.0  # speech synthesized (cache misses)
    tts_busy_s: float = 0.0  # wall time spent synthesizing
    tts_cache_hits: int = 0
    tts_cache_misses: int = 0
    calls_started: int = 0
    calls_active: int = 0
    turns: int = 0
    barge_ins: int = 0
    asr_failures: int = 0  # recognizer errors mid-call (e.g. a worker process died)
    # (ms from the bot's reply being known to its first audio frame, cached?)
    reply_to_audio: deque[tuple[float, bool]] = field(default_factory=lambda: deque(maxlen=2000))
    started_at: float = field(default_factory=time.time)

    def snapshot(self) -> dict[str, Any]:
        proc = psutil.Process(os.getpid())
        cpu = proc.cpu_times()
        # the ASR worker processes (media.asr_processes) count as the media server's
        cpu_s = cpu.user + cpu.system + cpu.children_user + cpu.children_system
        rss = proc.memory_info().rss
        workers_rss = 0
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child_cpu = child.cpu_times()
                cpu_s += child_cpu.user + child_cpu.system
                workers_rss += child.memory_info().rss
        return {
            "asr_audio_s": round(self.asr_audio_s, 3),
            "asr_busy_s": round(self.asr_busy_s, 3),
            "asr_rtf": round(self.asr_busy_s / self.asr_audio_s, 4) if self.asr_audio_s else None,
            "tts_audio_s": round(self.tts_audio_s, 3),
            "tts_busy_s": round(self.tts_busy_s, 3),
            "tts_rtf": round(self.tts_busy_s / self.tts_audio_s, 4) if self.tts_audio_s else None,
            "tts_cache_hits": self.tts_cache_hits,
            "tts_cache_misses": self.tts_cache_misses,
            "calls_started": self.calls_started,
            "calls_active": self.calls_active,
            "turns": self.turns,
            "barge_ins": self.barge_ins,
            "reply_to_audio_ms": [[round(ms, 1), cached] for ms, cached in self.reply_to_audio],
            "asr_failures": self.asr_failures,
            "cpu_s": round(cpu_s, 3),  # with the worker processes
            "rss_mb": round((rss + workers_rss) / 2**20, 1),  # with the worker processes
            "workers_rss_mb": round(workers_rss / 2**20, 1),
            "threads": proc.num_threads(),
        }


STATS = MediaStats()


class StatsCollector(Collector):
    """The counters of :data:`STATS`, read when ``/metrics`` is scraped."""

    def __init__(self, stats: MediaStats) -> None:
        self._stats = stats

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        st = self._stats
        counters = [
            ("asr_audio_seconds", "Audio fed to the speech recognizers", st.asr_audio_s),
            ("asr_busy_seconds", "Time spent inside recognizer calls", st.asr_busy_s),
            ("tts_audio_seconds", "Speech synthesized (cache misses)", st.tts_audio_s),
            ("tts_busy_seconds", "Time spent synthesizing (cache misses)", st.tts_busy_s),
            (
                "tts_cache_hits",
                "Reply sentences whose audio came from the cache",
                st.tts_cache_hits,
            ),
            ("tts_cache_misses", "Reply sentences synthesized", st.tts_cache_misses),
            ("barge_ins", "Caller interruptions that stopped the bot's speech", st.barge_ins),
            ("turns", "Caller turns answered by the bot service", st.turns),
            ("asr_failures", "Recognizer failures during calls", st.asr_failures),
        ]
        for name, doc, value in counters:
            c = CounterMetricFamily(f"receptionist_media_{name}", doc)
            c.add_metric([], float(value))
            yield c
        rtf = GaugeMetricFamily(
            "receptionist_media_real_time_factor",
            "Engine busy time per second of audio since start (below 1: faster than real "
            "time); rate(busy)/rate(audio) of the counters gives it over a window",
            labels=["engine"],
        )
        for engine, busy, audio in (
            ("asr", st.asr_busy_s, st.asr_audio_s),
            ("tts", st.tts_busy_s, st.tts_audio_s),
        ):
            if audio > 0:
                rtf.add_metric([engine], busy / audio)
        yield rtf


LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0)

REGISTRY = CollectorRegistry()
"""The media server's own registry (not prometheus_client's global one)."""
REGISTRY.register(StatsCollector(STATS))
ProcessCollector(registry=REGISTRY)

CALLS = Counter(
    "receptionist_media_calls", "Calls started, by transport", ["transport"], registry=REGISTRY
)
CALLS_ACTIVE = Gauge(
    "receptionist_media_calls_active",
    "Calls in progress, by transport",
    ["transport"],
    registry=REGISTRY,
)
ASR_LATENCY = Histogram(
    "receptionist_media_asr_latency_seconds",
    "End of the caller's speech to the final transcript, by recognizer engine",
    ["engine"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
TTS_FIRST_AUDIO = Histogram(
    "receptionist_media_tts_first_audio_seconds",
    "Start of speaking a reply to the audio of its first sentence (cached: from the cache)",
    ["cached"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BOT_ROUND_TRIP = Histogram(
    "receptionist_media_bot_round_trip_seconds",
    "Final transcript (or key press) to the bot service's answer",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
REPLY_LATENCY = Histogram(
    "receptionist_media_reply_latency_seconds",
    "End of the caller's speech (or key press) to the first audio of the reply",
    ["cached"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
DTMF_DIGITS = Counter(
    "receptionist_media_dtmf_digits",
    "Key presses by source (inband: tones in the audio; transport: out-of-band events)",
    ["source"],
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The registry in Prometheus' text format 0.0.4 (:data:`CONTENT_TYPE`)."""
    return generate_latest(REGISTRY)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
