"""A disk cache of synthesized audio, shared by the threads and processes of one host.

One file per entry, named by the sha256 of its key (text, voice id, audio format). Each file
is a 48-byte header (magic, version, payload length, sha256 of the payload) followed by the
PCM, so a truncated or corrupted file is detected on read, removed, and treated as a miss.

Writes go to a temporary file in the same directory and are renamed into place, so a reader
sees either a whole entry or none, and concurrent writers of the same key both succeed (the
last rename wins; both wrote the same audio's format). Recency is the file's mtime, set on
every write and hit; after a write, the least recently used entries are removed until the
directory holds at most ``max_bytes``. A process scans the directory only when its estimate
(size at its last scan plus its own writes since) exceeds the cap, or at least every minute,
so with several processes writing, the directory can exceed the cap by the others' writes of
the last minute until one of them scans.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import structlog

__all__ = ["CacheKey", "PromptCache"]

log = structlog.get_logger()

_MAGIC = b"RTTS"
_VERSION = 1
_HEADER = struct.Struct("<4sB3xQ32s")  # magic, version, pad, payload length, sha256(payload)
_SUFFIX = ".pcm"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_S = 3600.0  # temporary files older than this belong to a writer that died
_RESCAN_S = 60.0  # directory scan at least this often, to see other processes' writes


class CacheKey(NamedTuple):
    text: str
    voice_id: str
    audio_format: str  # e.g. "s16le-16000"


class PromptCache:
    """Synthesized audio on disk, keyed by :class:`CacheKey`, bounded by ``max_bytes``.

    ``max_bytes <= 0`` disables storing (every ``get`` misses). Methods block on disk I/O:
    call them from a worker thread.
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one eviction scan at a time in this process
        self._last_ns = 0
        # Bytes in the directory at the last scan plus this process's writes since: the
        # directory is scanned (and trimmed) only when this exceeds the cap, or it is stale.
        self._estimate: int | None = None
        self._scanned_at = 0.0

    def path_for(self, key: CacheKey) -> Path:
        """The file of ``key`` (whether or not it exists)."""
        text, voice_id, audio_format = key
        material = "\x00".join((voice_id, audio_format, text)).encode("utf-8")
        return self.directory / (hashlib.sha256(material).hexdigest() + _SUFFIX)

    def get(self, key: CacheKey) -> bytes | None:
        """The cached PCM of ``key``, or None on a miss (a damaged entry is removed)."""
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("media.tts.cache.read_failed", path=str(path), error=repr(exc))
            return None
        pcm = _decode(data)
        if pcm is None:
            log.warning("media.tts.cache.corrupt", path=str(path), size=len(data))
            self._remove(path)
            return None
        self._touch(path)
        return pcm

    def put(self, key: CacheKey, pcm: bytes) -> bool:
        """Store ``pcm`` under ``key``; False when it was not stored (too big, disabled, I/O)."""
        if not pcm or _HEADER.size + len(pcm) > self.max_bytes:
            return False
        path = self.path_for(key)
        header = _HEADER.pack(_MAGIC, _VERSION, len(pcm), hashlib.sha256(pcm).digest())
        tmp_name: str | None = None
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=self.directory)
            with os.fdopen(fd, "wb") as tmp:
                os.fchmod(tmp.fileno(), 0o644)  # mkstemp makes 0600; other users may read
                tmp.write(header)
                tmp.write(pcm)
            self._touch(Path(tmp_name))
            os.replace(tmp_name, path)
            tmp_name = None
        except OSError as exc:
            log.warning("media.tts.cache.write_failed", path=str(path), error=repr(exc))
            return False
        finally:
            if tmp_name is not None:
                self._remove(Path(tmp_name))
        with self._lock:
            if self._estimate is not None:
                self._estimate += len(header) + len(pcm)  # over-counts a replaced entry: safe
            due = (
                self._estimate is None
                or self._estimate > self.max_bytes
                or time.monotonic() - self._scanned_at > _RESCAN_S
            )
        if due:
            self.evict()
        return True

    def size_bytes(self) -> int:
        """Bytes held by the entries now in the directory."""
        return sum(size for _, size, _ in self._entries())

    def evict(self) -> int:
        """Remove least recently used entries until at most ``max_bytes`` remain; bytes freed."""
        freed = 0
        with self._lock:
            entries = self._entries()
            total = sum(size for _, size, _ in entries)
            self._estimate, self._scanned_at = total, time.monotonic()
            if total <= self.max_bytes:
                return 0
            entries.sort(key=lambda entry: (entry[2], entry[0].name))  # oldest first
            for path, size, _ in entries:
                if total <= self.max_bytes:
                    break
                self._remove(path)
                total -= size
                freed += size
            self._estimate = total
        log.info("media.tts.cache.evicted", freed_bytes=freed, size_bytes=total)
        return freed

    def _entries(self) -> list[tuple[Path, int, int]]:
        """(path, size, mtime_ns) of every entry; removes temporary files of dead writers."""
        entries: list[tuple[Path, int, int]] = []
        stale_before = time.time_ns() - int(_STALE_TMP_S * 1e9)
        with os.scandir(self.directory) as it:
            for item in it:
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed by another process since the listing
                if item.name.startswith(_TMP_PREFIX):
                    if st.st_mtime_ns < stale_before:
                        self._remove(Path(item.path))
                    continue
                if item.name.endswith(_SUFFIX) and item.is_file(follow_symlinks=False):
                    entries.append((Path(item.path), st.st_size, st.st_mtime_ns))
        return entries

    def _touch(self, path: Path) -> None:
        """Mark ``path`` as just used (a strictly increasing mtime within this process)."""
        with self._lock:
            now = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = now
        try:
            os.utime(path, ns=(now, now))
        except FileNotFoundError:
            pass  # evicted by another process between the read and now: nothing to mark
        except OSError as exc:
            log.warning("media.tts.cache.touch_failed", path=str(path), error=repr(exc))

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass  # another thread or process removed it first: the goal is reached
        except OSError as exc:
            log.warning("media.tts.cache.remove_failed", path=str(path), error=repr(exc))


def _decode(data: bytes) -> bytes | None:
    if len(data) < _HEADER.size:
        return None
    magic, version, length, digest = _HEADER.unpack_from(data)
    pcm = data[_HEADER.size :]
    if magic != _MAGIC or version != _VERSION or length != len(pcm) or length % 2:
        return None
    if hashlib.sha256(pcm).digest() != digest:
        return None
    return pcm
