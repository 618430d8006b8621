"""A simulated telephone caller over SIP and RTP (UDP), for ``receptionist bench voice
--transport sip``: the same interface as :class:`media_server.caller.TwilioCaller`.

It sends an INVITE offering PCMU, acknowledges the 200, streams 8 kHz μ-law RTP in real time
(20 ms packets: speech when it has some, silence otherwise, like a phone), records the bot's
RTP with arrival times, answers the bot's BYE, and hangs up with its own BYE.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import re
import secrets
import struct
import time
from typing import Any

import numpy as np

from media_server.audio.codecs import ulaw_decode, ulaw_encode
from media_server.caller import (
    FRAME,
    SPEECH_RMS,
    CallerStats,
    Received,
    SpeechQueue,
    cancel_all,
)

T1 = 0.5


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_data: Any) -> None:
        self.on_data = on_data

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.on_data(data, addr)


class SipCaller:
    """One call to ``sip:reception@host:port`` from ``local_ip``."""

    def __init__(self, host: str, port: int, local_ip: str = "127.0.0.1") -> None:
        self.host, self.port, self.local_ip = host, port, local_ip
        self.received: list[Received] = []
        self.speech_at: list[float] = []  # arrival times of the bot's loud (speech) frames
        self.stats = CallerStats()
        self.closed = asyncio.Event()
        self.call_id = secrets.token_hex(12) + "@bench"
        self._tag = secrets.token_hex(6)
        self._to_tag = ""
        self._target = f"sip:reception@{host}:{port}"
        self._cseq = 1
        self._speech = SpeechQueue(self.stats)
        self._responses: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self._sip: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._sip_port = self._rtp_port = 0
        self._remote_rtp: tuple[str, int] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- signalling ------------------------------------------------------------------------
    async def __aenter__(self) -> SipCaller:
        loop = asyncio.get_running_loop()
        self._sip, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self._on_sip), local_addr=(self.local_ip, 0)
        )
        self._rtp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self._on_rtp), local_addr=(self.local_ip, 0)
        )
        self._sip_port = int(self._sip.get_extra_info("sockname")[1])
        self._rtp_port = int(self._rtp.get_extra_info("sockname")[1])
        sdp = (
            f"v=0\r\no=bench 1 1 IN IP4 {self.local_ip}\r\ns=-\r\nc=IN IP4 {self.local_ip}\r\n"
            f"t=0 0\r\nm=audio {self._rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        )
        status, msg = await self._transaction("INVITE", self._target, sdp, "application/sdp")
        if status != 200:
            raise ConnectionError(f"INVITE answered {status}")
        self._to_tag = _header_param(msg, "To", "tag")
        contact = re.search(r"^Contact:\s*<([^>]+)>", msg, re.M | re.I)
        if contact:
            self._target = contact.group(1)
        c_line = re.search(r"^c=IN IP4 (\S+)", msg, re.M)
        m_line = re.search(r"^m=audio (\d+)", msg, re.M)
        if not c_line or not m_line:
            raise ConnectionError("the 200 has no usable SDP answer")
        self._remote_rtp = (c_line.group(1), int(m_line.group(1)))
        self._send_sip(self._request("ACK", self._target, cseq=self._cseq))
        self._tasks = [asyncio.create_task(self._sender())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hang_up()

    async def hang_up(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        if not self.closed.is_set() and self._to_tag:
            self._cseq += 1
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(self._transaction("BYE", self._target), 5)
        for tr in (self._sip, self._rtp):
            if tr is not None:
                tr.close()
        self.closed.set()

    def _request(
        self, method: str, uri: str, body: str = "", ctype: str = "", cseq: int | None = None
    ) -> str:
        to = f"<sip:reception@{self.host}:{self.port}>" + (
            f";tag={self._to_tag}" if self._to_tag else ""
        )
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local_ip}:{self._sip_port};branch=z9hG4bK"
            f"{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:bench@{self.local_ip}:{self._sip_port}>;tag={self._tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq if cseq is not None else self._cseq} {method}",
            f"Contact: <sip:bench@{self.local_ip}:{self._sip_port}>",
        ]
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    async def _transaction(
        self, method: str, uri: str, body: str = "", ctype: str = ""
    ) -> tuple[int, str]:
        """Send (retransmitting over UDP) until a final response; returns it."""
        data = self._request(method, uri, body, ctype)
        interval = T1
        deadline = time.monotonic() + 32
        self._send_sip(data)
        while time.monotonic() < deadline:
            try:
                status, msg = await asyncio.wait_for(self._responses.get(), interval)
            except TimeoutError:
                self._send_sip(data)
                interval = min(interval * 2, 4.0)
                continue
            if status >= 200 and f" {method}" in _header(msg, "CSeq"):
                return status, msg
            if 100 < status < 200:
                interval = 4.0  # ringing: the answer may take a while
        raise TimeoutError(f"no final answer to {method}")

    def _send_sip(self, text: str) -> None:
        if self._sip is not None:
            self._sip.sendto(text.encode(), (self.host, self.port))

    def _on_sip(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        text = data.decode("utf-8", "replace")
        first = text.split("\r\n", 1)[0]
        if first.startswith("SIP/2.0 "):
            parts = first.split()
            if len(parts) > 1 and parts[1].isdigit():
                self._responses.put_nowait((int(parts[1]), text))
            return
        method = first.split(" ", 1)[0]
        if method == "ACK":
            return
        # a request of the bot's (BYE): answer 200 with its own headers
        head = [f"{h}: {_header(text, h)}" for h in ("Via", "From", "To", "Call-ID", "CSeq")]
        reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(head) + "\r\nContent-Length: 0\r\n\r\n"
        if self._sip is not None:
            self._sip.sendto(reply.encode(), addr)
        if method == "BYE":
            self.closed.set()

    # -- media -----------------------------------------------------------------------------
    def _on_rtp(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2 or 200 <= data[1] <= 204:
            return
        if data[1] & 0x7F == 0:
            got = Received(time.monotonic(), ulaw_decode(data[12:]))
            self.received.append(got)
            if _rms(got.pcm) > SPEECH_RMS:
                self.speech_at.append(got.at)  # decided once, on arrival

    async def _sender(self) -> None:
        assert self._rtp is not None and self._remote_rtp is not None
        ssrc = secrets.randbits(32)
        seq, ts = secrets.randbits(16), secrets.randbits(32)
        async for frame in self._speech.frames(lambda: not self.closed.is_set()):
            header = struct.pack(">BBHII", 0x80, 0, seq & 0xFFFF, ts % 2**32, ssrc)
            self._rtp.sendto(header + ulaw_encode(frame), self._remote_rtp)
            seq, ts = seq + 1, ts + FRAME

    async def say(self, pcm8k: np.ndarray) -> tuple[float, float]:
        """Speak; returns when the last frame was sent, with its start and end times."""
        return await self._speech.say(pcm8k)

    def _first_speech_since(self, t: float) -> float | None:
        i = bisect.bisect_left(self.speech_at, t)
        return self.speech_at[i] if i < len(self.speech_at) else None

    async def wait_speech(self, since: float, timeout: float = 30.0) -> float:  # noqa: ASYNC109
        """Until the bot's speech arrives after ``since``; returns its arrival time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            first = self._first_speech_since(since)
            if first is not None:
                return first
            if self.closed.is_set():
                break
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no bot speech within {timeout}s")

    async def wait_quiet(self, quiet_s: float = 0.6, timeout: float = 60.0) -> float:  # noqa: ASYNC109
        """Until no speech has arrived for ``quiet_s`` (RTP silence keeps flowing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._first_speech_since(time.monotonic() - quiet_s) is None:
                return time.monotonic() - quiet_s
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the bot kept talking for {timeout}s")


def _header(msg: str, name: str) -> str:
    m = re.search(rf"^{name}:\s*(.*?)\r?$", msg, re.M | re.I)
    return m.group(1) if m else ""


def _header_param(msg: str, name: str, param: str) -> str:
    m = re.search(rf";\s*{param}=([^;>\s]+)", _header(msg, name))
    return m.group(1) if m else ""


def _rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0
