"""Music on hold while a call waits in the queue for a person.

:class:`MohLibrary` is the configured music: one WAV file or a directory of them (Debian's
``asterisk-moh-opsound-wav`` installs some in ``/usr/share/asterisk/moh``), decoded to the
internal 16 kHz mono in a worker thread when first needed and shared by every call. A
missing or unreadable source is logged once and replaced by a soft comfort tone: a caller on
hold never hears dead air, and a bad file never fails a call.

:class:`HoldLoop` plays it for one call: it keeps about a second of music queued in the
call's :class:`~media_server.playout.Playout` (so an interruption drops little), and every
``update_s`` clears the music and lets the session speak the queue position before the
music continues where it stopped.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import structlog

from media_server.audio import SAMPLE_RATE, SAMPLE_WIDTH
from media_server.audio.resample import resample
from media_server.playout import Playout

log = structlog.get_logger("media_server.hold")

CHUNK_S = 0.5  # music is queued in pieces of this length
AHEAD_S = 1.0  # and at most this much ahead of what the caller hears
TONE_HZ = 425.0  # the European "please wait" tone frequency, played softly
TONE_DBFS = -30.0
TONE_ON_S = 0.4
TONE_CYCLE_S = 4.0


class MohError(Exception):
    """A music file that cannot be played (not a PCM WAV, unreadable)."""


def load_wav(path: Path) -> bytes:
    """A PCM WAV file (8- or 16-bit, any rate, mono or more channels) as 16 kHz mono s16le."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise MohError(f"{path}: {exc}") from exc
    if width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif width == 1:  # unsigned 8-bit
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    else:
        raise MohError(f"{path}: {width * 8}-bit samples; use 8- or 16-bit PCM")
    if channels > 1:
        usable = len(samples) - len(samples) % channels
        samples = samples[:usable].reshape(-1, channels).mean(axis=1).astype(np.int32)
    mono = np.clip(samples, -32768, 32767).astype(np.int16)
    if mono.size == 0:
        raise MohError(f"{path}: no audio")
    return resample(mono, rate, SAMPLE_RATE).tobytes()


def comfort_tone() -> bytes:
    """One cycle of the fallback: a short soft tone, then quiet."""
    n_on = int(TONE_ON_S * SAMPLE_RATE)
    t = np.arange(n_on) / SAMPLE_RATE
    amplitude = 32767 * 10 ** (TONE_DBFS / 20)
    ramp = np.minimum(1.0, np.minimum(t, TONE_ON_S - t) / 0.02)  # no clicks
    tone = (amplitude * ramp * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
    quiet = np.zeros(int((TONE_CYCLE_S - TONE_ON_S) * SAMPLE_RATE), dtype=np.int16)
    return np.concatenate([tone, quiet]).tobytes()


class MohLibrary:
    """The hold music of one media server: shared by its calls, decoded on first use, the
    last two tracks kept in memory (a track is about 32 kB per second)."""

    def __init__(self, path: Path, keep_tracks: int = 2) -> None:
        self.path = path
        self._keep = max(1, keep_tracks)
        self._tracks: list[Path] | None = None
        self._decoded: OrderedDict[Path, bytes] = OrderedDict()
        self._bad: set[Path] = set()
        self._lock = asyncio.Lock()
        self._tone = comfort_tone()

    def tracks(self) -> list[Path]:
        if self._tracks is None:
            self._tracks = self._discover()
        return self._tracks

    def _discover(self) -> list[Path]:
        p = self.path
        if p.is_file():
            return [p]
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() == ".wav" and f.is_file())
            if found:
                return found
            log.warning("media.hold.moh_missing", path=str(p), detail="no .wav files in it")
        else:
            log.warning(
                "media.hold.moh_missing",
                path=str(p),
                detail="no such file or directory; playing a comfort tone (install "
                "asterisk-moh-opsound-wav or set media.moh_path)",
            )
        return []

    async def track(self, index: int) -> bytes:
        """Track ``index`` (modulo the number of tracks) as 16 kHz PCM; the comfort tone when
        there is no playable music."""
        async with self._lock:
            tracks = [t for t in self.tracks() if t not in self._bad]
            while tracks:
                path = tracks[index % len(tracks)]
                cached = self._decoded.get(path)
                if cached is not None:
                    self._decoded.move_to_end(path)
                    return cached
                try:
                    pcm = await asyncio.to_thread(load_wav, path)
                except MohError as exc:
                    log.error("media.hold.moh_unreadable", path=str(path), error=str(exc))
                    self._bad.add(path)
                    tracks.remove(path)
                    continue
                self._decoded[path] = pcm
                while len(self._decoded) > self._keep:
                    self._decoded.popitem(last=False)
                return pcm
            return self._tone


class MohPlayer:
    """One call's place in the hold music: it continues where it stopped after an update."""

    def __init__(self, library: MohLibrary) -> None:
        self._library = library
        self._track = 0
        self._offset = 0

    async def next_chunk(self, seconds: float = CHUNK_S) -> bytes:
        want = int(seconds * SAMPLE_RATE) * SAMPLE_WIDTH
        out = bytearray()
        while len(out) < want:
            pcm = await self._library.track(self._track)
            piece = pcm[self._offset : self._offset + want - len(out)]
            out.extend(piece)
            self._offset += len(piece)
            if self._offset >= len(pcm):
                self._track += 1
                self._offset = 0
        return bytes(out)


class HoldLoop:
    """Music for one waiting caller, interrupted every ``update_s`` by ``announce`` (which
    speaks the queue position and returns once it has been heard). Cancel the task running
    :meth:`run` to stop; the caller of that then clears the playout."""

    def __init__(
        self,
        player: MohPlayer,
        playout: Playout,
        announce: Callable[[], Awaitable[None]],
        update_s: float,
        call_id: str,
    ) -> None:
        self._player = player
        self._playout = playout
        self._announce = announce
        self._update_s = update_s
        self._call_id = call_id
        self.updates = 0

    async def run(self) -> None:
        next_update = time.monotonic() + self._update_s
        while True:
            now = time.monotonic()
            if now >= next_update:
                await self._playout.clear()
                self.updates += 1
                log.info("media.hold.update", call_id=self._call_id, updates=self.updates)
                await self._announce()
                next_update = time.monotonic() + self._update_s
                continue
            if self._playout.queued_s < AHEAD_S - CHUNK_S:
                self._playout.enqueue(await self._player.next_chunk(), "hold")
                continue
            await asyncio.sleep(min(CHUNK_S / 2, max(0.0, next_update - now)))
