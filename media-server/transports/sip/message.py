"""SIP messages (RFC 3261 section 7): a strict, bounded parser and the serializer.

:func:`parse` turns bytes into a :class:`SipMessage` or raises :class:`SipParseError`, and
nothing else, whatever the bytes: sizes, header counts and line lengths are limited, the
text must be UTF-8, the start line and the headers every request needs must be well formed.
Header names are stored in their canonical form (compact forms such as ``v``, ``i``, ``l``
expanded), values as sent. The helpers below parse the few header values the user agent
reads: Via, name-addr (From/To/Contact), CSeq, SIP URIs and parameter lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_MESSAGE_BYTES = 65_535  # the largest UDP datagram
MAX_HEADERS = 100
MAX_LINE = 4096
MAX_BODY = 16_384
SIP_VERSION = "SIP/2.0"

COMPACT = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "x": "Session-Expires",
    "o": "Event",
    "r": "Refer-To",
    "u": "Allow-Events",
}
_CANONICAL = {
    n.lower(): n
    for n in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Length",
        "Content-Type",
        "Max-Forwards",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Record-Route",
        "Route",
        "User-Agent",
        "Server",
        "Accept",
        "Authorization",
        "WWW-Authenticate",
        "Proxy-Authorization",
        "Proxy-Authenticate",
        "Session-Expires",
        "Min-SE",
        "Warning",
        "Reason",
        "Expires",
        "Subject",
        "Content-Encoding",
        "Event",
        "Allow-Events",
        "Refer-To",
        "Retry-After",
        "Content-Disposition",
    )
}
# headers whose value may be a comma-separated list (joined on one line or repeated)
_LIST_HEADERS = frozenset({"Via", "Record-Route", "Route", "Contact", "Allow", "Supported"})
_LIST_HEADERS |= frozenset({"Require", "Proxy-Require", "Unsupported", "Accept"})

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_STATUS = re.compile(r"[1-6][0-9][0-9]")
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")

REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    405: "Method Not Allowed",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    420: "Bad Extension",
    422: "Session Interval Too Small",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    513: "Message Too Large",
}


class SipParseError(ValueError):
    """The bytes are not a SIP message we accept; ``status`` is the response to send when
    the message got far enough to be answered (None: drop it)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class SipMessage:
    """A request (``method`` and ``uri`` set) or a response (``status`` set)."""

    method: str = ""
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def get(self, name: str) -> str | None:
        name = canonical(name)
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split (for list headers)."""
        name = canonical(name)
        values = [v for n, v in self.headers if n == name]
        if name in _LIST_HEADERS:
            return [part for v in values for part in split_list(v)]
        return values

    def set(self, name: str, value: str) -> None:
        name = canonical(name)
        self.headers = [(n, v) for n, v in self.headers if n != name]
        self.headers.append((name, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical(name), value))

    def remove(self, name: str) -> None:
        name = canonical(name)
        self.headers = [(n, v) for n, v in self.headers if n != name]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.get("CSeq") or "")

    @property
    def top_via(self) -> Via:
        vias = self.get_all("Via")
        if not vias:
            raise SipParseError("no Via header")
        return parse_via(vias[0])

    @property
    def from_tag(self) -> str | None:
        return parse_name_addr(self.get("From") or "").params.get("tag")

    @property
    def to_tag(self) -> str | None:
        return parse_name_addr(self.get("To") or "").params.get("tag")

    def to_bytes(self) -> bytes:
        if self.is_request:
            start = f"{self.method} {self.uri} {SIP_VERSION}"
        else:
            start = f"{SIP_VERSION} {self.status} {self.reason or REASONS.get(self.status, '')}"
        lines = [start]
        lines += [f"{n}: {v}" for n, v in self.headers if n != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def canonical(name: str) -> str:
    low = name.strip().lower()
    if low in COMPACT:
        return COMPACT[low]
    return _CANONICAL.get(low) or "-".join(p.capitalize() for p in low.split("-"))


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and <...>."""
    parts: list[str] = []
    buf: list[str] = []
    quoted = angle = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            angle = True
        elif not quoted and ch == ">":
            angle = False
        elif ch == "," and not quoted and not angle:
            parts.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


def parse(data: bytes, *, stream: bool = False, check: bool = True) -> SipMessage:
    """One SIP message. ``stream``: it came over TCP, where Content-Length is required.
    ``check``: the headers a user agent needs must be there and well formed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SipParseError("not bytes")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("message too large", 513)
    end = data.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end = data.find(b"\n\n")
        sep = 2
    if end < 0:
        raise SipParseError("no end of headers")
    try:
        head = data[:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("headers are not UTF-8") from exc
    rest = data[end + sep :]
    lines = head.replace("\r\n", "\n").split("\n")
    while lines and not lines[0]:
        lines.pop(0)  # keep-alive CRLFs before a message are allowed
    if not lines:
        raise SipParseError("empty message")
    if any(len(line) > MAX_LINE for line in lines):
        raise SipParseError("line too long")
    if any("\x00" in line for line in lines):
        raise SipParseError("NUL in headers")
    msg = _start_line(lines[0])
    unfolded: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not unfolded:
                raise SipParseError("continuation line before any header")
            unfolded[-1] += " " + line.strip()
        else:
            unfolded.append(line)
        if len(unfolded) > MAX_HEADERS:
            raise SipParseError("too many headers")
    for line in unfolded:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _TOKEN.fullmatch(name):
            raise SipParseError(f"malformed header line {line[:40]!r}")
        msg.headers.append((canonical(name), value.strip()))
    length_values = [v for n, v in msg.headers if n == "Content-Length"]
    if length_values:
        if len(set(length_values)) > 1 or not length_values[0].isdigit():
            raise SipParseError("bad Content-Length", 400)
        length = int(length_values[0])
        if length > MAX_BODY:
            raise SipParseError("body too large", 513)
        if len(rest) < length:
            raise SipParseError("body shorter than Content-Length", 400)
        msg.body = rest[:length]
    elif stream:
        raise SipParseError("Content-Length is required on stream transports", 400)
    else:
        if len(rest) > MAX_BODY:
            raise SipParseError("body too large", 513)
        msg.body = rest
    if check:
        _check(msg)
    return msg


def _start_line(line: str) -> SipMessage:
    parts = line.split(" ")
    if len(parts) >= 3 and parts[0].upper() == SIP_VERSION:
        if not _STATUS.fullmatch(parts[1]):
            raise SipParseError("bad status code")
        return SipMessage(status=int(parts[1]), reason=" ".join(parts[2:]))
    if len(parts) != 3:
        raise SipParseError("bad start line")
    method, uri, version = parts
    if version.upper() != SIP_VERSION:
        raise SipParseError(f"unsupported version {version[:20]!r}", 505)
    if not _TOKEN.fullmatch(method) or not uri or ":" not in uri:
        raise SipParseError("bad request line")
    return SipMessage(method=method, uri=uri)


def _check(msg: SipMessage) -> None:
    """The headers a user agent needs to answer, and that they are well formed."""
    for name in _REQUIRED:
        if msg.get(name) is None:
            raise SipParseError(f"missing {name}", 400)
    try:
        number, method = parse_cseq(msg.get("CSeq") or "")
        msg.top_via  # noqa: B018 - parses it
        parse_name_addr(msg.get("From") or "")
        parse_name_addr(msg.get("To") or "")
    except SipParseError as exc:
        raise SipParseError(str(exc), 400) from exc
    if not msg.call_id or len(msg.call_id) > 256 or " " in msg.call_id:
        raise SipParseError("bad Call-ID", 400)
    if msg.is_request and method != msg.method:
        raise SipParseError("CSeq method does not match the request", 400)
    mf = msg.get("Max-Forwards")
    if mf is not None and not (mf.isdigit() and len(mf) <= 3):
        raise SipParseError("bad Max-Forwards", 400)
    del number


def stream_frame(buffer: bytes | bytearray) -> int | None:
    """Length of the first complete message in a TCP stream buffer, None if incomplete.
    Raises SipParseError when the buffer cannot hold a valid message."""
    start = 0
    while buffer[start : start + 2] == b"\r\n":
        start += 2  # keep-alives
    end = buffer.find(b"\r\n\r\n", start)
    if end < 0:
        if len(buffer) - start > MAX_MESSAGE_BYTES:
            raise SipParseError("headers too large")
        return None
    head = bytes(buffer[start:end])
    match = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([0-9]{1,6})[ \t]*$", head)
    if match is None:
        raise SipParseError("Content-Length is required on stream transports")
    total = end + 4 + int(match.group(1))
    if total - start > MAX_MESSAGE_BYTES:
        raise SipParseError("message too large")
    return total if len(buffer) >= total else None


# --- header values ------------------------------------------------------------------------


def parse_params(text: str) -> dict[str, str]:
    """``;a=1;b`` -> {"a": "1", "b": ""} (names lower-cased)."""
    params: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        name = name.strip().lower()
        if not _TOKEN.fullmatch(name):
            raise SipParseError(f"bad parameter {part[:30]!r}")
        params[name] = value.strip().strip('"')
    if len(params) > 32:
        raise SipParseError("too many parameters")
    return params


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10:
        raise SipParseError("bad CSeq")
    number = int(parts[0])
    if number >= 2**31 or not _TOKEN.fullmatch(parts[1]):
        raise SipParseError("bad CSeq")
    return number, parts[1]


@dataclass(frozen=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str]

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")

    @property
    def sent_by(self) -> str:
        return f"{self.host}:{self.port or 5060}"


_VIA = re.compile(r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+([^;\s]+)\s*(;.*)?", re.S | re.I)


def parse_via(value: str) -> Via:
    m = _VIA.fullmatch(value.strip())
    if m is None:
        raise SipParseError("bad Via")
    host, port = split_host_port(m.group(2))
    return Via(m.group(1).upper(), host, port, parse_params(m.group(3) or ""))


def split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host:
            raise SipParseError("bad IPv6 reference")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise SipParseError("bad host")
    else:
        host, _, port_text = text.partition(":")
    if not host or not re.fullmatch(r"[A-Za-z0-9.\-_:]+", host):
        raise SipParseError("bad host")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SipParseError("bad port")
    return host, int(port_text)


@dataclass(frozen=True)
class SipUri:
    scheme: str
    user: str | None
    host: str
    port: int | None
    params: dict[str, str]

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.scheme}:{self.user + '@' if self.user else ''}{host}"
        if self.port:
            text += f":{self.port}"
        return text + "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())


def parse_uri(text: str) -> SipUri:
    scheme, colon, rest = text.strip().partition(":")
    if not colon or scheme.lower() not in ("sip", "sips", "tel"):
        raise SipParseError("unsupported URI scheme")
    if scheme.lower() == "tel":
        number, _, params = rest.partition(";")
        return SipUri("tel", number, "", None, parse_params(params))
    rest = rest.split("?", 1)[0]  # headers in a URI are ignored
    user: str | None = None
    if "@" in rest:
        user, _, rest = rest.rpartition("@")
        user = user.split(":", 1)[0]  # a password in the URI is ignored
    hostport, _, params = rest.partition(";")
    host, port = split_host_port(hostport)
    return SipUri(scheme.lower(), user or None, host, port, parse_params(params))


@dataclass(frozen=True)
class NameAddr:
    display: str
    uri: str
    params: dict[str, str]

    def with_tag(self, tag: str) -> str:
        return f"{self.display + ' ' if self.display else ''}<{self.uri}>;" + ";".join(
            f"{k}={v}" if v else k for k, v in {**self.params, "tag": tag}.items()
        )


def parse_name_addr(value: str) -> NameAddr:
    value = value.strip()
    if "<" in value:
        display, _, rest = value.partition("<")
        uri, bracket, params = rest.partition(">")
        if not bracket:
            raise SipParseError("unclosed <")
    else:  # addr-spec: parameters after the URI belong to the header
        display = ""
        uri, _, params = value.partition(";")
        params = ";" + params if params else ""
    uri = uri.strip()
    if not uri or ":" not in uri or " " in uri:
        raise SipParseError("bad URI in name-addr")
    return NameAddr(display.strip(), uri, parse_params(params))


def response(
    req: SipMessage,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> SipMessage:
    """A response to ``req`` (RFC 3261 8.2.6): Via, From, To (tagged), Call-ID and CSeq
    copied."""
    msg = SipMessage(status=status, reason=reason or REASONS.get(status, "Unknown"))
    for name, value in req.headers:
        if name in ("Via", "From", "Call-ID", "CSeq"):
            msg.headers.append((name, value))
        elif name == "To":
            if to_tag and status > 100:
                try:
                    addr = parse_name_addr(value)
                except SipParseError:
                    addr = None
                if addr is not None and "tag" not in addr.params:
                    value = addr.with_tag(to_tag)
            msg.headers.append((name, value))
        elif name == "Record-Route" and 100 < status < 300:
            msg.headers.append((name, value))
    msg.headers.append(("Server", "receptionist"))
    msg.headers += headers or []
    msg.body = body
    return msg
