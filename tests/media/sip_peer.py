"""The test side of a SIP call, shared by the SIPp tests: G.711 pcaps for SIPp to play, a
socket recording the bot's RTP, running SIPp against the media server, and reading back
what the media server and the bot recorded."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import socket
import struct
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from media_server.audio.codecs import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from media_server.tts.piper_engine import PiperSynthesizer
from tests.media.callers import speech
from tests.procs import BotService, MediaService

SCENARIOS = Path(__file__).parent / "sipp"
SIPP = shutil.which("sipp")


# --- what SIPp plays --------------------------------------------------------------------


def write_rtp_pcap(path: Path, pcm8k: np.ndarray, payload_type: int = 0) -> None:
    """G.711 RTP packets (20 ms) in a pcap file (Ethernet/IPv4/UDP), as SIPp's
    ``play_pcap_audio`` reads them; SIPp rewrites the addresses and ports."""
    encode = ulaw_encode if payload_type == 0 else alaw_encode
    payload = encode(pcm8k)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    ssrc, seq0, ts0 = 0x5EED1234, 1000, 4000
    for i in range(0, len(payload) - 159, 160):
        n = i // 160
        rtp = struct.pack(">BBHII", 0x80, payload_type, seq0 + n, ts0 + i, ssrc)
        rtp += payload[i : i + 160]
        udp = struct.pack(">HHHH", 40000, 40002, 8 + len(rtp), 0) + rtp
        ip = struct.pack(
            ">BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            n & 0xFFFF,
            0,
            64,
            17,
            0,
            bytes([127, 0, 0, 1]),
            bytes([127, 0, 0, 1]),
        )
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        usec = n * 20_000
        out.append(
            struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame))
        )
        out.append(frame)
    path.write_bytes(b"".join(out))


def spoken(voice: PiperSynthesizer, text: str) -> np.ndarray:
    pcm = speech(voice, text, 8000)
    silence = np.zeros(8000 * 2 // 5, dtype=np.int16)
    return np.concatenate([silence, pcm, silence]).astype(np.int16)


# --- the test's side of the media -------------------------------------------------------


class RtpRecorder(asyncio.DatagramProtocol):
    """Records the RTP the bot sends, per SSRC (one per call)."""

    def __init__(self) -> None:
        self.packets: dict[int, list[tuple[float, int, int, int, bytes]]] = defaultdict(list)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2 or 200 <= data[1] <= 204:
            return
        _, b1, seq, ts, ssrc = struct.unpack_from(">BBHII", data)
        self.packets[ssrc].append((time.monotonic(), b1 & 0x7F, seq, ts, data[12:]))

    def audio(self, ssrc: int) -> np.ndarray:
        parts = []
        for _, pt, _, _, payload in self.packets[ssrc]:
            parts.append(ulaw_decode(payload) if pt == 0 else alaw_decode(payload))
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)


@contextlib.asynccontextmanager
async def rtp_recorder() -> Any:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(RtpRecorder, local_addr=("127.0.0.1", 0))
    try:
        yield proto, int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()


def speech_seconds(pcm: np.ndarray) -> float:
    """How much of it is loud (speech), in seconds, by 20 ms frames."""
    frames = pcm[: len(pcm) // 160 * 160].reshape(-1, 160).astype(np.float64)
    return float((np.sqrt((frames**2).mean(axis=1)) > 500).sum() * 0.02)


async def run_sipp(
    media: MediaService,
    scenario: str,
    workdir: Path,
    *args: str,
    limit_s: float = 90,
    local_ip: str = "127.0.0.1",
) -> subprocess.CompletedProcess[str]:
    """One SIPp run (UAC) against the media server, in ``workdir`` (its pcaps and logs)."""
    if SIPP is None:
        raise RuntimeError("SIPp missing: `make test` installs the Debian package sip-tester")
    port = media.settings.media.sip_port
    cmd = [
        str(SIPP),
        f"127.0.0.1:{port}",
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        local_ip,
        "-p",
        "0",
        "-mp",
        str(_free_even_port()),
        "-m",
        "1",
        "-nostdin",
        "-trace_err",
        "-trace_msg",
        "-timeout",
        f"{int(limit_s)}s",
        "-timeout_error",
        *args,
    ]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cmd, cwd=workdir, capture_output=True, text=True, timeout=limit_s + 30
        )

    return await asyncio.to_thread(run)


def _free_even_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port % 2 == 0 and port < 65000:
            return port


def sipp_log(workdir: Path, proc: subprocess.CompletedProcess[str]) -> str:
    logs = "".join(p.read_text(errors="replace")[-6000:] for p in workdir.glob("*_errors.log"))
    msgs = "".join(p.read_text(errors="replace")[-6000:] for p in workdir.glob("*_messages.log"))
    return f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n{logs}\n{msgs}"


def conversations_of(media: MediaService) -> dict[str, str]:
    return {
        str(r["call_id"]): str(r["conversation_id"])
        for r in media.log_events("media.call.started")
        if r.get("transport") == "sip"
    }


def conversation(bot: BotService, cid: str, closed: bool = True) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        status, conv = bot.api("GET", f"/conversations/{cid}")
        assert status == 200, conv
        if not closed or conv["status"] == "closed" or time.monotonic() > deadline:
            return dict(conv)
        time.sleep(0.2)


def check_bot_rtp(rec: RtpRecorder, ssrc: int, payload_type: int) -> np.ndarray:
    packets = rec.packets[ssrc]
    assert {p[1] for p in packets} == {payload_type}
    seqs = [p[2] for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs)), "seq gaps"
    assert all(len(p[4]) == 160 for p in packets)  # 20 ms packets
    steps = [(b[3] - a[3]) % 2**32 for a, b in itertools.pairwise(packets)]
    # 160 samples per packet; a stall of the server's loop longer than its catch-up limit
    # is skipped, not burst: the timestamp then jumps by whole frames (legal RTP, a gap)
    assert all(s >= 160 and s % 160 == 0 for s in steps), set(steps)
    assert sum(s == 160 for s in steps) >= 0.98 * len(steps), set(steps)
    # paced in real time: as many packets as 20 ms periods, give or take
    span = packets[-1][0] - packets[0][0]
    assert abs(span - (len(packets) - 1) * 0.02) < 0.5 + 0.05 * span, (span, len(packets))
    return rec.audio(ssrc)


def call_ended(media: MediaService, call_id: str) -> dict[str, Any]:
    """The media server's ``media.sip.call_ended`` record of a call, once logged (after the
    session has wound down)."""
    deadline = time.monotonic() + 15
    while True:
        ended = [e for e in media.log_events("media.sip.call_ended") if e["call_id"] == call_id]
        if ended:
            return dict(ended[0])
        assert time.monotonic() < deadline, "the call never ended"
        time.sleep(0.2)
