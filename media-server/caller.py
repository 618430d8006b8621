"""A simulated telephone caller speaking the Twilio media-stream format.

It streams 8 kHz μ-law in real time (20 ms frames: speech when it has some, silence
otherwise, like a phone line), sends key presses, and records the bot's audio with arrival
times. Used by ``receptionist bench voice``, ``scripts/asr_wer.py`` and the tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from media_server.audio.codecs import ulaw_decode, ulaw_encode

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
SPEECH_RMS = 300.0  # received frames louder than this are speech (not comfort silence)


@dataclass
class Received:
    at: float  # time.monotonic() of arrival
    pcm: np.ndarray  # int16 at 8 kHz


@dataclass
class CallerStats:
    frames_sent: int = 0
    late_frames: int = 0  # the sender could not keep real time (overloaded client)


class SpeechQueue:
    """What a simulated caller says: 20 ms frames at real-time pace, the speech queued by
    :meth:`say` when there is some, silence otherwise (like a phone line)."""

    def __init__(self, stats: CallerStats) -> None:
        self.stats = stats
        self._pending = np.zeros(0, dtype=np.int16)
        self._sent_all = asyncio.Event()

    async def frames(self, running: Callable[[], bool]) -> AsyncIterator[np.ndarray]:
        start = time.monotonic()
        n = 0
        silence = np.zeros(FRAME, dtype=np.int16)
        while running():
            delay = start + n * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.1:
                self.stats.late_frames += 1
            if len(self._pending):
                frame, self._pending = self._pending[:FRAME], self._pending[FRAME:]
                if len(frame) < FRAME:
                    frame = np.concatenate([frame, silence[: FRAME - len(frame)]])
                if not len(self._pending):
                    self._sent_all.set()
            else:
                frame = silence
            yield frame
            self.stats.frames_sent += 1
            n += 1

    async def say(self, pcm8k: np.ndarray) -> tuple[float, float]:
        """Speak (queue after what is being said); returns when the last frame was sent,
        with the monotonic times the speech started and ended being sent."""
        if len(self._pending):
            await self._sent_all.wait()
        self._sent_all.clear()
        self._pending = np.asarray(pcm8k, dtype=np.int16).copy()
        started = time.monotonic()
        await self._sent_all.wait()
        return started, time.monotonic()


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t


@dataclass
class TwilioCaller:
    url: str
    params: dict[str, str] = field(default_factory=dict)
    encoding: str = "audio/x-mulaw"
    call_sid: str = field(default_factory=lambda: "CA" + uuid.uuid4().hex)
    received: list[Received] = field(default_factory=list)
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    stats: CallerStats = field(default_factory=CallerStats)
    close_code: int | None = None

    def __post_init__(self) -> None:
        self._speech = SpeechQueue(self.stats)
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = asyncio.Event()

    async def __aenter__(self) -> TwilioCaller:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url, max_msg_size=0)
        sid = "MZ" + uuid.uuid4().hex
        await self._ws.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._ws.send_json(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": sid,
                "start": {
                    "streamSid": sid,
                    "accountSid": "AC" + "0" * 32,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": self.params,
                    "mediaFormat": {"encoding": self.encoding, "sampleRate": 8000, "channels": 1},
                },
            }
        )
        self._tasks = [asyncio.create_task(self._sender()), asyncio.create_task(self._reader())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hang_up()

    async def hang_up(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._ws.send_json({"event": "stop", "stop": {"callSid": self.call_sid}})
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        self.closed.set()

    # -- sending -------------------------------------------------------------------------
    async def _sender(self) -> None:
        ws = self._ws
        assert ws is not None
        async for frame in self._speech.frames(lambda: not ws.closed):
            payload = base64.b64encode(ulaw_encode(frame)).decode()
            try:
                await ws.send_json(
                    {"event": "media", "media": {"track": "inbound", "payload": payload}}
                )
            except (ConnectionError, RuntimeError):
                return

    async def say(self, pcm8k: np.ndarray) -> tuple[float, float]:
        """Speak (queue after what is being said); returns when the last frame was sent,
        with the monotonic times the speech started and ended being sent."""
        return await self._speech.say(pcm8k)

    async def press(self, digit: str) -> None:
        assert self._ws is not None
        await self._ws.send_json(
            {"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": digit}}
        )

    async def send_raw(self, message: str | bytes) -> None:
        assert self._ws is not None
        if isinstance(message, bytes):
            await self._ws.send_bytes(message)
        else:
            await self._ws.send_str(message)

    # -- receiving -----------------------------------------------------------------------
    async def _reader(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            now = time.monotonic()
            if data.get("event") == "media":
                raw = base64.b64decode(data["media"]["payload"])
                self.received.append(Received(now, ulaw_decode(raw)))
            else:
                self.events.append((now, data))
        self.close_code = self._ws.close_code
        self.closed.set()

    def speech_frames_since(self, t: float) -> list[Received]:
        return [r for r in self.received if r.at >= t and _rms(r.pcm) > SPEECH_RMS]

    async def wait_speech(self, since: float, timeout: float = 30.0) -> float:  # noqa: ASYNC109
        """Until the bot's speech arrives after ``since``; returns its arrival time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = self.speech_frames_since(since)
            if frames:
                return frames[0].at
            if self.closed.is_set():
                break
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no bot speech within {timeout}s")

    async def wait_quiet(self, quiet_s: float = 0.6, timeout: float = 60.0) -> float:  # noqa: ASYNC109
        """Until no audio has arrived for ``quiet_s``; returns the last arrival time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.received[-1].at if self.received else 0.0
            if time.monotonic() - last >= quiet_s:
                return last
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the bot kept talking for {timeout}s")

    def audio_between(self, t0: float, t1: float) -> np.ndarray:
        parts = [r.pcm for r in self.received if t0 <= r.at <= t1]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def events_of(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, e) for t, e in self.events if e.get("event") == kind]


def _rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0
