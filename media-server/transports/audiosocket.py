"""Asterisk AudioSocket: calls handed over by the dialplan's ``AudioSocket()`` application.

A TCP stream of messages, each ``type (1 byte) | length (2 bytes, big-endian) | payload``:
``0x01`` the call's UUID (16 bytes, first), ``0x10`` audio (signed linear 16-bit
little-endian, 8 kHz mono, normally 20 ms = 320 bytes), ``0x03`` a DTMF digit (one ASCII
byte), ``0x00`` hang-up, ``0xff`` an error (one code byte). We send ``0x10`` audio back and
``0x00`` to end the call. Anything else closes that connection only.

Transfer out (``media.audiosocket_transfer``): AudioSocket cannot redirect a call, so the
bot's target is noted under the call's UUID and the call handed back to the dialplan
(``0x00``), which fetches the target over HTTP and dials it (README, "Asterisk").
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from bot.config import Settings
from media_server.audio.codecs import pcm_from_bytes, pcm_to_bytes
from media_server.audio.resample import StreamResampler
from media_server.session import CallInfo, VoiceSession
from media_server.transports.common import FloodGuard, SessionFactory, StreamError, end_call

log = structlog.get_logger("media_server.audiosocket")

HANGUP, UUID, DTMF, AUDIO, ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF
HEADER = struct.Struct(">BH")
FRAME_BYTES = 320  # 20 ms of 8 kHz slin
MAX_AUDIO_BYTES = 3200  # 200 ms of 8 kHz slin; Asterisk sends 320
DTMF_KEYS = frozenset("0123456789*#ABCD")


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


@dataclass(frozen=True)
class TransferNote:
    target: str
    conversation_id: str | None
    at: float


class TransferNotes:
    """Where the bot sent AudioSocket calls it transferred out, by call UUID, for the
    dialplan to read once ``AudioSocket()`` returns (``GET /media/audiosocket/{uuid}/
    transfer``); kept ``keep_s``. AudioSocket has no signalling of its own to transfer."""

    def __init__(self, keep_s: float = 600.0) -> None:
        self._keep_s = keep_s
        self._notes: dict[str, TransferNote] = {}

    def put(self, call_uuid: str, target: str, conversation_id: str | None) -> None:
        self._prune()
        self._notes[call_uuid] = TransferNote(target, conversation_id, time.monotonic())

    def get(self, call_uuid: str) -> TransferNote | None:
        self._prune()
        return self._notes.get(call_uuid)

    def _prune(self) -> None:
        old = time.monotonic() - self._keep_s
        for key in [k for k, n in self._notes.items() if n.at < old]:
            del self._notes[key]


class AudioSocketStream:
    """The AudioSink of one AudioSocket connection."""

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        transfers: TransferNotes | None = None,
    ) -> None:
        self._writer = writer
        self._out = StreamResampler(16000, 8000)
        self._pending = bytearray()
        self.closed = False
        self.call_uuid: str | None = None
        self._transfers = transfers

    def can_transfer(self) -> bool:
        return self._transfers is not None and self.call_uuid is not None

    async def transfer(self, target: str, headers: dict[str, str]) -> tuple[bool, str | None]:
        """Leave the target for the dialplan (it reads it once we hang up)."""
        if self._transfers is None or self.call_uuid is None:
            return False, "AudioSocket transfers are off (media.audiosocket_transfer)"
        cid = headers.get("X-Receptionist-Conversation-Id")
        self._transfers.put(self.call_uuid, target, cid)
        log.info("media.audiosocket.transfer", call_id=self.call_uuid, target=target)
        return True, None

    async def send_audio(self, pcm: bytes) -> None:
        if self.closed:
            return
        self._pending += pcm_to_bytes(self._out.process(pcm_from_bytes(pcm)))
        # whole 20 ms frames, as Asterisk sends and expects them
        while len(self._pending) >= FRAME_BYTES:
            self._writer.write(frame(AUDIO, bytes(self._pending[:FRAME_BYTES])))
            del self._pending[:FRAME_BYTES]
        await self._writer.drain()

    async def clear_audio(self) -> None:
        """Nothing to clear: Asterisk plays what arrives, and we keep only ~60 ms ahead."""

    async def send_event(self, event: dict[str, Any]) -> None:
        """AudioSocket carries audio only."""

    async def hang_up(self, reason: str) -> None:
        log.info("media.audiosocket.hangup", reason=reason)
        if not self.closed:
            self.closed = True
            with contextlib.suppress(ConnectionError):
                self._writer.write(frame(HANGUP))
                await self._writer.drain()
            self._writer.close()


async def _read(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    try:
        kind, length = HEADER.unpack(await reader.readexactly(HEADER.size))
        if kind == AUDIO and length > MAX_AUDIO_BYTES:
            raise StreamError("oversized", f"audio message of {length} bytes")
        return kind, await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None  # the peer closed the connection


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    settings: Settings,
    make_session: SessionFactory,
    transfers: TransferNotes | None = None,
) -> None:
    peer = writer.get_extra_info("peername")
    sink = AudioSocketStream(writer, transfers)
    session: VoiceSession | None = None
    task: asyncio.Task[None] | None = None
    guard = FloodGuard(settings.media.max_frames_per_s)
    resampler = StreamResampler(8000, 16000)
    try:
        while (msg := await _read(reader)) is not None:
            guard.check()
            kind, payload = msg
            if session is None:
                if kind != UUID or len(payload) != 16:
                    raise StreamError("not_started", "the first message must be the call UUID")
                call = str(uuid.UUID(bytes=payload))
                sink.call_uuid = call
                info = CallInfo(
                    transport="audiosocket",
                    call_id=call,
                    language=settings.media.default_language,
                    metadata={"audiosocket_uuid": call},
                )
                session = await make_session(info, sink)
                task = asyncio.create_task(session.run())
                continue
            if kind == AUDIO:
                if len(payload) % 2:
                    raise StreamError("invalid_audio", "audio is 16-bit samples (even length)")
                session.feed_audio(pcm_to_bytes(resampler.process(pcm_from_bytes(payload))))
            elif kind == DTMF:
                key = payload.decode("ascii", "replace")
                if key not in DTMF_KEYS:
                    raise StreamError("invalid_dtmf", f"unknown DTMF digit {key!r:.10}")
                session.feed_dtmf(key)
            elif kind == HANGUP:
                break
            elif kind == ERROR:
                log.warning("media.audiosocket.peer_error", code=payload.hex(), peer=peer)
                break
            elif kind == UUID:
                raise StreamError("duplicate_uuid", "the call UUID was already sent")
            else:
                raise StreamError("unknown_type", f"unknown message type 0x{kind:02x}")
            if task is not None and task.done():
                break  # the bot ended the call
    except StreamError as err:
        log.warning(
            "media.stream.error",
            transport="audiosocket",
            code=err.code,
            message=err.message,
            peer=peer,
        )
    except (ConnectionError, OSError) as exc:
        log.info("media.audiosocket.connection_lost", error=repr(exc), peer=peer)
    finally:
        await end_call(session, task)
        sink.closed = True
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
