"""SDP offer/answer (RFC 3264, RFC 4566) for one audio stream: G.711 μ-law (PCMU, payload
type 0) or A-law (PCMA, 8), and RFC 4733 telephone events at 8 kHz.

:func:`parse` reads a session description (bounded, strict enough to refuse nonsense);
:func:`answer` picks the first offered codec we support, keeps the offerer's payload type
for telephone-event, mirrors the direction (``sendonly`` offer - hold - gets ``recvonly``)
and raises :class:`SdpError` (488) when nothing fits. :func:`offer` is ours, for an INVITE
without SDP (the answer then comes in the ACK).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

MAX_SDP_BYTES = 8192
MAX_LINES = 200
CODECS = {"PCMU": 0, "PCMA": 8}
STATIC = {0: "PCMU", 8: "PCMA"}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly"}
MIRROR["inactive"] = "inactive"


class SdpError(ValueError):
    """The description is malformed (400) or offers nothing we can do (488)."""

    def __init__(self, message: str, status: int = 488) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[int]
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    direction: str | None = None
    connection: str | None = None
    ptime: int | None = None
    rtcp_port: int | None = None


@dataclass
class SessionDescription:
    origin_session: str = "0"
    origin_version: int = 0
    connection: str | None = None
    direction: str = "sendrecv"
    media: list[MediaDescription] = field(default_factory=list)


@dataclass(frozen=True)
class Negotiated:
    """What both sides agreed on for the audio stream."""

    codec: str  # "PCMU" or "PCMA"
    payload_type: int
    event_pt: int | None  # telephone-event payload type, if the peer can send/receive them
    remote_ip: str
    remote_port: int
    remote_rtcp_port: int
    direction: str  # our direction, from our point of view
    ptime: int = 20

    @property
    def on_hold(self) -> bool:
        """The peer does not want to hear us (it put the call on hold)."""
        return self.direction in ("recvonly", "inactive") or self.remote_ip in ("0.0.0.0", "::")


def parse(body: bytes) -> SessionDescription:
    if len(body) > MAX_SDP_BYTES:
        raise SdpError("session description too large", 400)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("session description is not UTF-8", 400) from exc
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or len(lines) > MAX_LINES or not lines[0].startswith("v=0"):
        raise SdpError("not a session description (v=0 first)", 400)
    sd = SessionDescription()
    current: MediaDescription | None = None
    for line in lines:
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad SDP line {line[:30]!r}", 400)
        kind, value = line[0], line[2:].strip()
        if kind == "o":
            parts = value.split()
            if len(parts) != 6 or not parts[2].isdigit():
                raise SdpError("bad o= line", 400)
            sd.origin_session, sd.origin_version = parts[1], int(parts[2][:18])
        elif kind == "c":
            addr = _connection(value)
            if current is None:
                sd.connection = addr
            else:
                current.connection = addr
        elif kind == "m":
            current = _media(value)
            if len(sd.media) >= 16:
                raise SdpError("too many media streams", 400)
            sd.media.append(current)
        elif kind == "a":
            _attribute(value, sd, current)
    return sd


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError("bad c= line", 400)
    addr = parts[2].split("/", 1)[0]
    try:
        ipaddress.ip_address(addr)
    except ValueError as exc:
        raise SdpError("c= must hold an IP address", 400) from exc
    return addr


def _media(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
        raise SdpError("bad m= line", 400)
    port = int(parts[1].split("/")[0])
    if port > 65535:
        raise SdpError("bad m= port", 400)
    formats = []
    for fmt in parts[3:40]:
        if fmt.isdigit() and int(fmt) < 128:
            formats.append(int(fmt))
    return MediaDescription(parts[0], port, parts[2], formats)


_RTPMAP = re.compile(r"(\d{1,3})\s+([A-Za-z0-9\-_.]+)/(\d{1,6})(?:/\d+)?")


def _attribute(value: str, sd: SessionDescription, m: MediaDescription | None) -> None:
    name, _, arg = value.partition(":")
    if name in DIRECTIONS:
        if m is None:
            sd.direction = name
        else:
            m.direction = name
    elif m is None:
        return
    elif name == "rtpmap":
        match = _RTPMAP.fullmatch(arg.strip())
        if match is None:
            raise SdpError("bad rtpmap", 400)
        m.rtpmap[int(match.group(1))] = (match.group(2), int(match.group(3)))
    elif name == "fmtp":
        pt, _, params = arg.partition(" ")
        if pt.isdigit():
            m.fmtp[int(pt)] = params.strip()
    elif name == "ptime" and arg.strip().isdigit():
        m.ptime = int(arg.strip()[:4])
    elif name == "rtcp":
        port = arg.split()[0] if arg.split() else ""
        if port.isdigit() and 0 < int(port) < 65536:
            m.rtcp_port = int(port)


def _name(m: MediaDescription, pt: int) -> tuple[str, int]:
    if pt in m.rtpmap:
        enc, rate = m.rtpmap[pt]
        return enc.upper(), rate
    return STATIC.get(pt, ""), 8000


def negotiate(sd: SessionDescription, preferred: tuple[str, ...] = ("PCMU", "PCMA")) -> Negotiated:
    """The agreement for the first usable audio stream of an offer or an answer."""
    audio = [m for m in sd.media if m.media == "audio" and m.port != 0]
    if not audio:
        raise SdpError("no audio stream offered")
    for m in audio:
        if m.proto.upper() not in ("RTP/AVP", "RTP/AVPF"):
            continue  # SRTP (RTP/SAVP) and others are not supported
        codec_pt: tuple[str, int] | None = None
        for pt in m.formats:
            name, rate = _name(m, pt)
            if name in preferred and rate == 8000:
                codec_pt = (name, pt)
                break
        if codec_pt is None:
            continue
        event_pt = next(
            (pt for pt in m.formats if _name(m, pt) == ("TELEPHONE-EVENT", 8000)),
            None,
        )
        ip = m.connection or sd.connection
        if ip is None:
            raise SdpError("no connection address", 400)
        direction = MIRROR[m.direction or sd.direction]
        return Negotiated(
            codec=codec_pt[0],
            payload_type=codec_pt[1],
            event_pt=event_pt,
            remote_ip=ip,
            remote_port=m.port,
            remote_rtcp_port=m.rtcp_port or m.port + 1,
            direction=direction,
            ptime=m.ptime if m.ptime in (10, 20, 30, 40, 60) else 20,
        )
    raise SdpError("no common codec (PCMU or PCMA over RTP/AVP)")


def _origin(session_id: str, version: int, ip: str) -> str:
    family = "IP6" if ":" in ip else "IP4"
    return f"o=receptionist {session_id} {version} IN {family} {ip}"


def answer_body(
    neg: Negotiated, local_ip: str, local_port: int, session_id: str, version: int
) -> bytes:
    family = "IP6" if ":" in local_ip else "IP4"
    fmts = [neg.payload_type] + ([neg.event_pt] if neg.event_pt is not None else [])
    lines = [
        "v=0",
        _origin(session_id, version, local_ip),
        "s=receptionist",
        f"c=IN {family} {local_ip}",
        "t=0 0",
        f"m=audio {local_port} RTP/AVP {' '.join(map(str, fmts))}",
        f"a=rtpmap:{neg.payload_type} {neg.codec}/8000",
    ]
    if neg.event_pt is not None:
        lines += [
            f"a=rtpmap:{neg.event_pt} telephone-event/8000",
            f"a=fmtp:{neg.event_pt} 0-16",
        ]
    lines += ["a=ptime:20", f"a={neg.direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()


def offer_body(local_ip: str, local_port: int, session_id: str, version: int) -> bytes:
    family = "IP6" if ":" in local_ip else "IP4"
    lines = [
        "v=0",
        _origin(session_id, version, local_ip),
        "s=receptionist",
        f"c=IN {family} {local_ip}",
        "t=0 0",
        f"m=audio {local_port} RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()
