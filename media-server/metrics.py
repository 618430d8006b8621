"""Process-wide counters of the media server, served at ``/stats`` and read by
``receptionist bench voice``: engine real-time factors and reply latencies."""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass
class MediaStats:
    asr_audio_s: float = 0.0  # audio fed to recognizers
    asr_busy_s: float = 0.0  # wall time spent inside recognizer calls
    tts_audio_s: float = 0.0  # speech synthesized (cache misses)
    tts_busy_s: float = 0.0  # wall time spent synthesizing
    tts_cache_hits: int = 0
    calls_started: int = 0
    calls_active: int = 0
    turns: int = 0
    barge_ins: int = 0
    # (ms from the bot's reply being known to its first audio frame, cached?)
    reply_to_audio: deque[tuple[float, bool]] = field(default_factory=lambda: deque(maxlen=2000))
    started_at: float = field(default_factory=time.time)

    def snapshot(self) -> dict[str, Any]:
        proc = psutil.Process(os.getpid())
        cpu = proc.cpu_times()
        return {
            "asr_audio_s": round(self.asr_audio_s, 3),
            "asr_busy_s": round(self.asr_busy_s, 3),
            "asr_rtf": round(self.asr_busy_s / self.asr_audio_s, 4) if self.asr_audio_s else None,
            "tts_audio_s": round(self.tts_audio_s, 3),
            "tts_busy_s": round(self.tts_busy_s, 3),
            "tts_rtf": round(self.tts_busy_s / self.tts_audio_s, 4) if self.tts_audio_s else None,
            "tts_cache_hits": self.tts_cache_hits,
            "calls_started": self.calls_started,
            "calls_active": self.calls_active,
            "turns": self.turns,
            "barge_ins": self.barge_ins,
            "reply_to_audio_ms": [[round(ms, 1), cached] for ms, cached in self.reply_to_audio],
            "cpu_s": round(cpu.user + cpu.system, 3),
            "rss_mb": round(proc.memory_info().rss / 2**20, 1),
            "threads": proc.num_threads(),
        }


STATS = MediaStats()
