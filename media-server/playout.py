"""Real-time pacing of the bot's audio towards a transport.

The voice session queues 16 kHz PCM segments; :class:`Playout` cuts them into 20 ms frames
and hands them to the transport at the rate they are played, keeping only a small lead
(``lead_ms``) in the peer's buffer. Because so little is in flight, a barge-in can stop the
bot at once: :meth:`clear` drops everything queued and asks the transport to drop its
buffer too, :meth:`pause` holds playback so it can :meth:`resume` where the caller heard it
stop (for backchannels such as "uh-huh").
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from media_server.audio import SAMPLE_RATE, SAMPLE_WIDTH

log = structlog.get_logger("media_server.playout")

FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * SAMPLE_WIDTH * FRAME_MS // 1000


@dataclass(eq=False)
class _Segment:
    pcm: bytes
    tag: str
    offset: int = 0
    started: bool = False


class Playout:
    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        clear_peer: Callable[[], Awaitable[None]],
        *,
        lead_ms: int = 60,
        on_segment_start: Callable[[str, float], None] | None = None,
    ) -> None:
        self._send = send
        self._clear_peer = clear_peer
        self._lead_frames = max(1, lead_ms // FRAME_MS)
        self._on_start = on_segment_start
        self._queue: deque[_Segment] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._paused = False
        self._sent_recent: deque[tuple[_Segment, int]] = deque(maxlen=self._lead_frames)
        self._clock_start = 0.0
        self._frames_since_start = 0
        self._busy_until = 0.0  # when the last sent frame finishes playing at the peer
        self.frames_sent = 0
        self.frames_dropped = 0

    # -- queueing ------------------------------------------------------------------------
    def enqueue(self, pcm: bytes, tag: str = "") -> None:
        if pcm:
            self._queue.append(_Segment(pcm, tag))
            self._idle.clear()
            self._wake.set()

    @property
    def playing(self) -> bool:
        """Audio is queued, or still sounding at the peer."""
        return bool(self._queue) or time.monotonic() < self._busy_until

    @property
    def finished_at(self) -> float:
        """``time.monotonic()`` at which the audio sent so far finishes playing."""
        return self._busy_until

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def queued_s(self) -> float:
        """Seconds of audio queued here and not yet sent."""
        return sum(len(s.pcm) - s.offset for s in self._queue) / (SAMPLE_RATE * SAMPLE_WIDTH)

    async def wait_idle(self) -> None:
        """Until everything queued has been played (or cleared)."""
        while True:
            await self._idle.wait()
            remaining = self._busy_until - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)
            if self._idle.is_set() and not self._queue:
                return

    async def clear(self) -> int:
        """Drop all queued audio here and at the peer; returns the frames dropped."""
        dropped = sum((len(s.pcm) - s.offset) // FRAME_BYTES for s in self._queue)
        self._queue.clear()
        self._sent_recent.clear()
        self._paused = False
        self._busy_until = 0.0
        self.frames_dropped += dropped
        self._idle.set()
        await self._clear_peer()
        return dropped

    async def pause(self) -> None:
        """Stop sending; the audio still in the peer's buffer is dropped and re-queued, so
        :meth:`resume` continues from what the caller actually heard."""
        if self._paused:
            return
        self._paused = True
        for seg, offset in reversed(self._sent_recent):
            if all(s is not seg for s in self._queue):
                self._queue.appendleft(seg)
            seg.offset = min(seg.offset, offset)
        self._sent_recent.clear()
        self._busy_until = 0.0
        await self._clear_peer()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._clock_start = 0.0
            self._wake.set()

    # -- the pacing loop -----------------------------------------------------------------
    async def run(self) -> None:
        frame_s = FRAME_MS / 1000
        while True:
            if self._paused or not self._queue:
                if not self._queue:
                    self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            if self._clock_start == 0.0 or now > self._busy_until + frame_s:
                # (re)start the clock: the peer's buffer ran dry
                self._clock_start = now
                self._frames_since_start = 0
            due = self._clock_start + (self._frames_since_start - self._lead_frames) * frame_s
            if due > now:
                await asyncio.sleep(due - now)
                if self._paused or not self._queue:
                    continue
            seg = self._queue[0]
            frame = seg.pcm[seg.offset : seg.offset + FRAME_BYTES]
            if len(frame) < FRAME_BYTES:
                frame = frame + b"\x00" * (FRAME_BYTES - len(frame))
            if not seg.started:
                seg.started = True
                if self._on_start is not None:
                    self._on_start(seg.tag, time.monotonic())
            self._sent_recent.append((seg, seg.offset))
            seg.offset += FRAME_BYTES
            if seg.offset >= len(seg.pcm):
                self._queue.popleft()
            await self._send(frame)
            self.frames_sent += 1
            self._frames_since_start += 1
            self._busy_until = self._clock_start + self._frames_since_start * frame_s
