"""Call recording: a stereo WAV per call, streamed to disk as the call goes.

The left channel is the caller, the right one the bot or agent, time-aligned on the
caller's audio clock: each piece of caller audio is written with the same length of what
the call sent towards the caller meanwhile (silence when nothing was sent). What was sent
but dropped at a barge-in before the caller heard it is dropped here too.

The header is rewritten about every second, so a process that dies mid-call leaves a
playable file with everything up to the last second. While paused (a sensitive step such as
card details), both channels are written as silence: the length of the call stays right and
nothing said or keyed is kept.

:class:`RecordingStore` names the files (``<conversation_id>.wav`` under the recordings
directory, which the bot service serves to the desk) and deletes them after the retention
period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import struct
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np
import structlog

from media_server.audio import SAMPLE_RATE, SAMPLE_WIDTH

log = structlog.get_logger("media_server.recording")

CHANNELS = 2
HEADER_BYTES = 44
HEADER_EVERY_S = 1.0
MAX_BOT_LAG_S = 0.5  # bot audio not matched by caller audio for this long is written anyway
SWEEP_INTERVAL_S = 3600.0
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def wav_header(data_bytes: int, rate: int = SAMPLE_RATE, channels: int = CHANNELS) -> bytes:
    """A 44-byte PCM WAV header for ``data_bytes`` of 16-bit samples."""
    block = channels * SAMPLE_WIDTH
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 8 * SAMPLE_WIDTH)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class CallRecorder:
    """One call's recording. Not thread-safe: fed from the call's event loop (buffered
    writes of a few kilobytes a second; the header update is a seek and 8 bytes)."""

    def __init__(self, path: Path, rate: int = SAMPLE_RATE) -> None:
        self.path = path
        self.rate = rate
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        self._fh: BinaryIO = os.fdopen(fd, "wb")
        self._fh.write(wav_header(0, rate))
        self._fh.flush()
        self._bot = bytearray()  # sent towards the caller, not yet matched by caller audio
        self._data_bytes = 0
        self._header_at = time.monotonic()
        self._paused = False
        self.closed = False

    # -- feeding ---------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def duration_s(self) -> float:
        return self._data_bytes / (CHANNELS * SAMPLE_WIDTH * self.rate)

    def caller(self, pcm: bytes) -> None:
        """Caller audio (16-bit mono at the recording rate), as it arrives."""
        if self.closed or not pcm:
            return
        n = len(pcm) // SAMPLE_WIDTH * SAMPLE_WIDTH
        bot = bytes(self._bot[:n])
        del self._bot[:n]
        self._write(pcm[:n], bot)

    def bot(self, pcm: bytes) -> None:
        """Audio sent towards the caller (a playout frame)."""
        if self.closed or not pcm:
            return
        self._bot.extend(pcm)
        lag = int(MAX_BOT_LAG_S * self.rate) * SAMPLE_WIDTH
        if len(self._bot) > 2 * lag:  # the caller's audio stalled: keep the bot's anyway
            surplus = len(self._bot) - lag
            bot = bytes(self._bot[:surplus])
            del self._bot[:surplus]
            self._write(b"", bot)

    def clear_bot(self) -> None:
        """The peer dropped what it had not played yet (barge-in): so does the recording."""
        self._bot.clear()

    def pause(self) -> None:
        self._paused = True
        self._bot.clear()

    def resume(self) -> None:
        self._paused = False

    def _write(self, left: bytes, right: bytes) -> None:
        n = max(len(left), len(right)) // SAMPLE_WIDTH
        if n == 0:
            return
        frames = np.zeros((n, CHANNELS), dtype="<i2")
        if not self._paused:
            if left:
                frames[: len(left) // SAMPLE_WIDTH, 0] = np.frombuffer(left, dtype="<i2")
            if right:
                frames[: len(right) // SAMPLE_WIDTH, 1] = np.frombuffer(right, dtype="<i2")
        self._fh.write(frames.tobytes())
        self._data_bytes += n * CHANNELS * SAMPLE_WIDTH
        now = time.monotonic()
        if now - self._header_at >= HEADER_EVERY_S:
            self._header_at = now
            self._update_header()

    def _update_header(self) -> None:
        """Make the file on disk a complete WAV of what was written so far."""
        self._fh.flush()
        end = self._fh.tell()
        self._fh.seek(4)
        self._fh.write(struct.pack("<I", 36 + self._data_bytes))
        self._fh.seek(40)
        self._fh.write(struct.pack("<I", self._data_bytes))
        self._fh.seek(end)
        self._fh.flush()

    def close(self) -> None:
        if self.closed:
            return
        if self._bot:
            bot = bytes(self._bot)
            self._bot.clear()
            self._write(b"", bot)
        self.closed = True
        try:
            self._update_header()
        finally:
            self._fh.close()


class RecordingStore:
    """The recordings directory: one file per call, deleted after ``retention_days``."""

    def __init__(self, directory: Path, retention_days: float, rate: int = SAMPLE_RATE) -> None:
        self.directory = directory
        self.retention_days = retention_days
        self.rate = rate

    def path_for(self, conversation_id: str) -> Path:
        if not _SAFE_NAME.match(conversation_id):
            raise ValueError(f"not a conversation id: {conversation_id!r:.60}")
        return self.directory / f"{conversation_id}.wav"

    def open(self, conversation_id: str) -> CallRecorder:
        """A new recording for the conversation: ``<id>.wav``, or ``<id>-2.wav``… when the
        conversation already has one (a second call leg)."""
        first = self.path_for(conversation_id)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        for n in range(1, 100):
            path = first if n == 1 else first.with_name(f"{conversation_id}-{n}.wav")
            try:
                return CallRecorder(path, self.rate)
            except FileExistsError:
                continue
        raise FileExistsError(f"too many recordings for conversation {conversation_id}")

    def sweep(self, now: float | None = None) -> int:
        """Delete recordings older than the retention period; returns how many."""
        if self.retention_days <= 0 or not self.directory.is_dir():
            return 0
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400
        deleted = 0
        for f in self.directory.glob("*.wav"):
            try:
                if f.stat().st_mtime >= cutoff:
                    continue
                f.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.error("media.recording.delete_failed", file=f.name, error=str(exc))
                continue
            deleted += 1
            log.info("media.recording.deleted", file=f.name, reason="retention")
        return deleted

    async def run_sweeper(self, interval_s: float = SWEEP_INTERVAL_S) -> None:
        """Background task of the media server: sweep now, then every ``interval_s``."""
        while True:
            try:
                deleted = await asyncio.to_thread(self.sweep)
                if deleted:
                    log.info("media.recording.swept", deleted=deleted)
            except OSError as exc:
                log.error("media.recording.sweep_failed", error=str(exc))
            await asyncio.sleep(interval_s)


async def stop_sweeper(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
