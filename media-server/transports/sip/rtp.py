"""RTP (RFC 3550) for one call: G.711 audio both ways, RFC 4733 key presses in, RTCP.

- :class:`JitterBuffer` orders packets by (extended) sequence number, waits an adaptive
  playout delay (from the interarrival jitter, 40-200 ms) and gives one 20 ms frame per
  tick: lost packets are concealed by repeating the last frame with a fading gain, gaps in
  the stream (silence suppression, a peer that only sends while it talks) become silence.
- :class:`DtmfReceiver` turns telephone-event packets into one key per event (the event's
  RTP timestamp identifies it; the repeated end packets are ignored).
- :class:`RtpSession` owns the port pair: a 20 ms clock feeds the caller's audio (16 kHz)
  to the voice session and sends one RTP packet of the bot's audio (or silence) per tick,
  and an RTCP sender report every few seconds. RTCP from the peer is read and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import structlog

from media_server.audio.codecs import (
    Pcm,
    alaw_decode,
    alaw_encode,
    pcm_from_bytes,
    pcm_to_bytes,
    ulaw_decode,
    ulaw_encode,
)
from media_server.audio.resample import StreamResampler
from media_server.transports.sip.sdp import Negotiated

log = structlog.get_logger("media_server.sip.rtp")

RATE = 8000
FRAME = 160  # samples per 20 ms at 8 kHz
TICK_S = 0.02
HEADER = struct.Struct(">BBHII")
DTMF_EVENTS = "0123456789*#ABCD"
SILENCE = {"PCMU": b"\xff" * FRAME, "PCMA": b"\xd5" * FRAME}
DECODERS = {0: ulaw_decode, 8: alaw_decode}
CN_PT = 13
MAX_OUT_FRAMES = 25  # 500 ms of the bot's audio may wait here; beyond is dropped
RTCP_INTERVAL_S = 5.0
MAX_CATCH_UP_S = 1.0  # a stalled clock sends what fell due up to this much, then skips


class RtpError(ValueError):
    """Not an RTP packet."""


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket:
    if len(data) < HEADER.size:
        raise RtpError("too short")
    b0, b1, seq, ts, ssrc = HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtpError("not RTP version 2")
    offset = HEADER.size + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # header extension
        if len(data) < offset + 4:
            raise RtpError("truncated extension")
        (words,) = struct.unpack_from(">H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data)
    if b0 & 0x20:  # padding
        pad = data[-1]
        if pad == 0 or pad > end - offset:
            raise RtpError("bad padding")
        end -= pad
    if offset > end:
        raise RtpError("truncated")
    return RtpPacket(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, data[offset:end])


def build_rtp(pt: int, marker: bool, seq: int, ts: int, ssrc: int, payload: bytes) -> bytes:
    return HEADER.pack(0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + (
        payload
    )


def is_rtcp(data: bytes) -> bool:
    """RTCP multiplexed on the RTP port (RFC 5761): packet types 200-204 in byte 1."""
    return len(data) >= 8 and data[0] >> 6 == 2 and 200 <= data[1] <= 204


# --- the jitter buffer ------------------------------------------------------------------


@dataclass
class JitterStats:
    received: int = 0
    lost: int = 0  # concealed
    late: int = 0  # arrived after their turn
    duplicates: int = 0
    resets: int = 0
    underruns: int = 0


class JitterBuffer:
    """Packets in, 20 ms frames of 8 kHz PCM out at the caller's pace."""

    def __init__(self, min_ms: int = 40, max_ms: int = 200, capacity: int = 64) -> None:
        self.min_ms, self.max_ms, self.capacity = min_ms, max_ms, capacity
        self.stats = JitterStats()
        self._packets: dict[int, Pcm] = {}
        self._next = 0
        self._primed = False
        self._started = False  # something was played since the last reset
        self._highest: int | None = None
        self._pending = np.zeros(0, dtype=np.int16)
        self._last = np.zeros(FRAME, dtype=np.int16)
        self._concealed = 0
        self.jitter = 0.0  # RFC 3550 interarrival jitter, in samples
        self._transit: float | None = None
        self.target_ms = min_ms

    def _extend(self, seq: int) -> int:
        """The 16-bit sequence number extended with wrap-around cycles (RFC 3550 A.1)."""
        highest = self._highest
        if highest is None:
            return seq
        ext = (highest & ~0xFFFF) | seq
        # the candidate closest to the highest seen
        return min((ext - 65536, ext, ext + 65536), key=lambda e: abs(e - highest))

    def reset(self) -> None:
        self._packets.clear()
        self._highest = None
        self._primed = False
        self._started = False
        self._transit = None
        self.stats.resets += 1

    def push(self, seq: int, timestamp: int, pcm: Pcm, arrival_s: float) -> None:
        ext = self._extend(seq)
        if self._highest is not None and abs(ext - self._highest) > 1000:
            self.reset()  # the stream restarted (a new source, or a big jump)
            ext = seq
        transit = arrival_s * RATE - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < RATE:  # a talkspurt gap is not jitter
                self.jitter += (d - self.jitter) / 16
        self._transit = transit
        self.stats.received += 1
        if self._started and ext < self._next:
            self.stats.late += 1
            return
        if ext in self._packets:
            self.stats.duplicates += 1
            return
        self._packets[ext] = pcm
        if self._highest is None or ext > self._highest:
            self._highest = ext
        while len(self._packets) > self.capacity:
            oldest = min(self._packets)
            del self._packets[oldest]
            self._next = max(self._next, oldest + 1)

    def _buffered_ms(self) -> float:
        return sum(len(p) for p in self._packets.values()) / (RATE / 1000)

    def pop_frame(self) -> Pcm:
        """The next 20 ms: audio, concealment, or silence."""
        if not self._primed:
            if not self._packets:
                return np.zeros(FRAME, dtype=np.int16)
            self.target_ms = int(
                min(self.max_ms, max(self.min_ms, 20 + 3 * self.jitter / (RATE / 1000)))
            )
            if self._buffered_ms() < self.target_ms:
                return np.zeros(FRAME, dtype=np.int16)
            self._primed = self._started = True
            self._next = min(self._packets)
        elif self._buffered_ms() > self.target_ms + 120 and len(self._packets) > 2:
            # too far behind the caller (a burst, or clock drift): skip a packet
            oldest = min(self._packets)
            del self._packets[oldest]
            self._next = max(self._next, oldest + 1)
        parts = [self._pending]
        have = len(self._pending)
        while have < FRAME:
            pcm = self._packets.pop(self._next, None)
            if pcm is not None:
                self._concealed = 0
            elif self._packets:
                pcm = self._conceal()
                self.stats.lost += 1
            else:
                self.stats.underruns += 1
                self._primed = False
                pcm = self._conceal() if self._concealed < 2 else np.zeros(FRAME, np.int16)
                parts.append(pcm)
                self._pending = np.zeros(0, dtype=np.int16)
                out = np.concatenate(parts)[:FRAME]
                return out if len(out) == FRAME else np.pad(out, (0, FRAME - len(out)))
            self._next += 1
            parts.append(pcm)
            have += len(pcm)
        joined = np.concatenate(parts)
        frame, self._pending = joined[:FRAME], joined[FRAME:]
        if self._concealed == 0:
            self._last = frame
        return frame

    def _conceal(self) -> Pcm:
        """Packet loss concealment: the last frame again, fading out over ~100 ms."""
        self._concealed += 1
        gain = 0.7**self._concealed if self._concealed <= 5 else 0.0
        return (self._last.astype(np.float32) * gain).astype(np.int16)


class DtmfReceiver:
    """RFC 4733 telephone events: one key per event."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}  # ssrc -> timestamp of the last event

    def feed(self, ssrc: int, timestamp: int, payload: bytes) -> str | None:
        if len(payload) < 4:
            return None
        event = payload[0]
        if event >= len(DTMF_EVENTS) or self._seen.get(ssrc) == timestamp:
            return None
        self._seen[ssrc] = timestamp
        return DTMF_EVENTS[event]


# --- the session ------------------------------------------------------------------------


@dataclass
class RtpCounters:
    sent: int = 0
    received: int = 0
    rejected: int = 0  # not RTP, wrong source, unknown payload type
    dtmf: int = 0
    rtcp_in: int = 0
    rtcp_out: int = 0
    out_dropped: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, handler: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.handler = handler

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.handler(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("media.sip.rtp.socket_error", error=repr(exc))


class PortPool:
    """Even RTP ports of a range (RTCP on the odd one above); one pair per call."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low + (low % 2), high
        self.used: set[int] = set()

    def candidates(self) -> list[int]:
        ports = [p for p in range(self.low, self.high, 2) if p not in self.used]
        random.shuffle(ports)
        return ports[:64]


class RtpSession:
    def __init__(
        self,
        pool: PortPool,
        port: int,
        rtp: asyncio.DatagramTransport,
        rtcp: asyncio.DatagramTransport,
        rtp_ep: _Endpoint,
        rtcp_ep: _Endpoint,
    ) -> None:
        self.pool, self.port = pool, port
        self._rtp, self._rtcp = rtp, rtcp
        rtp_ep.handler = self._on_rtp
        rtcp_ep.handler = self._on_rtcp
        self.counters = RtpCounters()
        self.jitter = JitterBuffer()
        self.dtmf = DtmfReceiver()
        self.neg: Negotiated | None = None
        self.allowed_ips: set[str] = set()
        self.on_audio: Callable[[bytes], None] | None = None
        self.on_dtmf: Callable[[str], None] | None = None
        self._ssrc_in: int | None = None
        self._ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._out = bytearray()
        self._talking = False
        self._down = StreamResampler(16000, 8000)
        self._up = StreamResampler(8000, 16000)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.last_packet_s = time.monotonic()
        self._octets_sent = 0
        self._last_sr = (0, 0.0)  # middle 32 bits of the peer's last SR NTP time, received at

    @classmethod
    async def open(cls, host: str, pool: PortPool) -> RtpSession:
        loop = asyncio.get_running_loop()
        for port in pool.candidates():
            rtp_ep, rtcp_ep = _Endpoint(_ignore), _Endpoint(_ignore)
            try:
                rtp, _ = await loop.create_datagram_endpoint(
                    functools.partial(_same, rtp_ep), local_addr=(host, port), family=_family(host)
                )
            except OSError:
                continue
            try:
                rtcp, _ = await loop.create_datagram_endpoint(
                    functools.partial(_same, rtcp_ep),
                    local_addr=(host, port + 1),
                    family=_family(host),
                )
            except OSError:
                rtp.close()
                continue
            pool.used.add(port)
            return cls(pool, port, rtp, rtcp, rtp_ep, rtcp_ep)
        raise OSError("no free RTP port pair in the configured range")

    def configure(self, neg: Negotiated, peer_ip: str) -> None:
        """(Re)apply the negotiated stream; a re-INVITE may move it or put it on hold."""
        self.neg = neg
        self.allowed_ips = {neg.remote_ip, peer_ip} - {"0.0.0.0", "::"}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._clock(), name=f"rtp-{self.port}")

    # -- in --------------------------------------------------------------------------------
    def _on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[0] not in self.allowed_ips or self.neg is None:
            self.counters.rejected += 1
            return
        if is_rtcp(data):
            self._on_rtcp(data, addr)
            return
        try:
            pkt = parse_rtp(data)
        except RtpError:
            self.counters.rejected += 1
            return
        now = time.monotonic()
        self.last_packet_s = now
        if pkt.ssrc != self._ssrc_in:
            if self._ssrc_in is not None:
                self.jitter.reset()
            self._ssrc_in = pkt.ssrc
        if pkt.payload_type == self.neg.event_pt:
            key = self.dtmf.feed(pkt.ssrc, pkt.timestamp, pkt.payload)
            # the event stands in for audio: silence in its place
            self.jitter.push(pkt.seq, pkt.timestamp, np.zeros(FRAME, np.int16), now)
            if key is not None:
                self.counters.dtmf += 1
                log.info("media.sip.dtmf", key=key, port=self.port)
                if self.on_dtmf is not None:
                    self.on_dtmf(key)
        elif pkt.payload_type in DECODERS:
            if len(pkt.payload) > 1600:
                self.counters.rejected += 1
                return
            self.jitter.push(pkt.seq, pkt.timestamp, DECODERS[pkt.payload_type](pkt.payload), now)
        elif pkt.payload_type == CN_PT:
            self.jitter.push(pkt.seq, pkt.timestamp, np.zeros(FRAME, np.int16), now)
        else:
            self.counters.rejected += 1
            return
        self.counters.received += 1

    def _on_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[0] not in self.allowed_ips:
            return
        self.counters.rtcp_in += 1
        if len(data) >= 20 and data[1] == 200:  # a sender report: remember it for our DLSR
            ntp_mid = struct.unpack_from(">I", data, 10)[0]
            self._last_sr = (ntp_mid, time.monotonic())

    # -- out -------------------------------------------------------------------------------
    def send_audio(self, pcm16k: bytes) -> None:
        if self.neg is None or self._closed:
            return
        pcm8k = self._down.process(pcm_from_bytes(pcm16k))
        encode = ulaw_encode if self.neg.codec == "PCMU" else alaw_encode
        self._out += encode(pcm8k)
        excess = len(self._out) - MAX_OUT_FRAMES * FRAME
        if excess > 0:
            del self._out[:excess]
            self.counters.out_dropped += 1

    def clear_audio(self) -> None:
        self._out.clear()

    async def _clock(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        ticks = 0
        next_rtcp = start + 1.0
        while not self._closed:
            ticks += 1
            due = start + ticks * TICK_S
            delay = due - loop.time()
            # always yield, even when late: after a stall of the loop (another call's
            # recognizer holding the GIL) the caller's packets wait in the socket, and each
            # catch-up tick must let the loop read one before it takes a frame, or the
            # jitter buffer would conceal them and then drop them as late
            await asyncio.sleep(max(0.0, delay))
            if delay < -MAX_CATCH_UP_S:
                # the loop stalled for long: skip that time (the RTP clock moves on, the
                # peer hears a gap) rather than burst it
                skipped = int(-delay / TICK_S)
                ticks += skipped
                self._ts = (self._ts + skipped * FRAME) & 0xFFFFFFFF
            # shorter stalls are caught up: the frames due meanwhile go out at once
            self._tick_in()
            self._tick_out()
            if loop.time() >= next_rtcp:
                next_rtcp = loop.time() + RTCP_INTERVAL_S
                self._send_rtcp()

    def _tick_in(self) -> None:
        frame = self.jitter.pop_frame()
        if self.on_audio is not None:
            self.on_audio(pcm_to_bytes(self._up.process(frame)))

    def _tick_out(self) -> None:
        neg = self.neg
        if neg is None:
            return
        if len(self._out) >= FRAME:
            payload = bytes(self._out[:FRAME])
            del self._out[:FRAME]
            marker = not self._talking
            self._talking = True
        else:
            payload, marker = SILENCE[neg.codec], False
            self._talking = False
        self._ts = (self._ts + FRAME) & 0xFFFFFFFF
        if neg.on_hold or neg.remote_port == 0:
            return  # the caller put us on hold: the clock runs, nothing is sent
        self._seq = (self._seq + 1) & 0xFFFF
        pkt = build_rtp(neg.payload_type, marker, self._seq, self._ts, self._ssrc, payload)
        with contextlib.suppress(OSError):
            self._rtp.sendto(pkt, (neg.remote_ip, neg.remote_port))
            self.counters.sent += 1
            self._octets_sent += len(payload)

    def _send_rtcp(self) -> None:
        """A compound sender report with one reception report block, and our CNAME."""
        neg = self.neg
        if neg is None or neg.on_hold:
            return
        now = time.time() + 2208988800  # NTP epoch
        ntp_hi, ntp_lo = int(now), int((now % 1) * 2**32)
        blocks = b""
        if self._ssrc_in is not None and self.jitter._highest is not None:
            st = self.jitter.stats
            lost = min(st.lost, 0x7FFFFF)
            lsr, at = self._last_sr
            dlsr = int((time.monotonic() - at) * 65536) if lsr else 0
            blocks = struct.pack(
                ">IIIIII",
                self._ssrc_in,
                lost,  # fraction lost 0, cumulative lost
                self.jitter._highest & 0xFFFFFFFF,
                int(self.jitter.jitter),
                lsr,
                dlsr & 0xFFFFFFFF,
            )
        count = 1 if blocks else 0
        sr = struct.pack(
            ">BBHIIIIII",
            0x80 | count,
            200,
            (28 + len(blocks)) // 4 - 1,
            self._ssrc,
            ntp_hi & 0xFFFFFFFF,
            ntp_lo,
            self._ts,
            self.counters.sent & 0xFFFFFFFF,
            self._octets_sent & 0xFFFFFFFF,
        )
        cname = b"receptionist"
        item = bytes([1, len(cname)]) + cname + b"\x00"
        item += b"\x00" * (-len(item) % 4)
        sdes = struct.pack(">BBHI", 0x81, 202, (8 + len(item)) // 4 - 1, self._ssrc) + item
        with contextlib.suppress(OSError):
            self._rtcp.sendto(sr + blocks + sdes, (neg.remote_ip, neg.remote_rtcp_port))
            self.counters.rtcp_out += 1

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._rtp.close()
        self._rtcp.close()
        self.pool.used.discard(self.port)


def _same(ep: _Endpoint) -> _Endpoint:
    return ep


def _ignore(data: bytes, addr: tuple[str, int]) -> None:
    del data, addr


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
