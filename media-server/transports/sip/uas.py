"""The SIP user agent server: UDP (and TCP) on one port, transactions, access control.

Every datagram or stream message goes through :func:`message.parse`; what does not parse is
answered 400 when it can be (else dropped) and logged, rate-limited. Requests:

- retransmissions get the transaction's last response again (server transactions are kept
  32 s); final non-2xx responses to INVITE are retransmitted until the ACK;
- out of dialog: OPTIONS (keepalive) -> 200; INVITE -> access control (allowed network,
  else digest challenge 401, else 403), 420 for unknown required extensions, 415 for a body
  that is not SDP, 488 when no codec fits, 422 for a too short session timer, 486 when
  full, else a :class:`~media_server.transports.sip.dialog.SipCall`; other known methods
  405, unknown methods 501;
- in a dialog: ACK, BYE, re-INVITE, UPDATE, INFO, OPTIONS go to the call; CANCEL to the
  ringing INVITE; unknown dialogs 481.

Responses to our own requests (BYE) end their client transaction; others are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import structlog

from bot.config import Settings
from bot.webchat.ratelimit import BucketsByKey
from media_server.transports.common import SessionFactory
from media_server.transports.sip import sdp
from media_server.transports.sip.auth import AccessControl, Verdict
from media_server.transports.sip.dialog import ALLOW, MIN_SE, SUPPORTED, T1, T2, SipCall
from media_server.transports.sip.message import (
    SipMessage,
    SipParseError,
    parse,
    response,
    stream_frame,
)
from media_server.transports.sip.rtp import PortPool, RtpSession

log = structlog.get_logger("media_server.sip")

KNOWN_METHODS = frozenset(
    {"REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PUBLISH", "PRACK"}
)
TX_KEEP_S = 32.0
_CONTENT_LENGTH = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[^\r\n]*\r?\n")
MAX_TCP_CONNECTIONS = 256
TCP_IDLE_S = 300.0


@dataclass
class Source:
    """Where a message came from, and how to answer it."""

    transport: str  # "UDP" or "TCP"
    addr: tuple[str, int]
    local: tuple[str, int]
    send: Callable[[bytes], None]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: SipServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        transport = self.transport
        if transport is None:
            return
        peer = (str(addr[0]), int(addr[1]))
        local = transport.get_extra_info("sockname")

        def send(payload: bytes) -> None:
            with contextlib.suppress(OSError):
                transport.sendto(payload, peer)

        self.server.handle(data, Source("UDP", peer, (str(local[0]), int(local[1])), send))

    def error_received(self, exc: Exception) -> None:
        log.debug("media.sip.udp_error", error=repr(exc))


class SipServer:
    def __init__(self, settings: Settings, make_session: SessionFactory) -> None:
        self.settings = settings
        self.make_session = make_session
        media = settings.media
        self.acl = AccessControl(
            media.sip_allowed_networks,
            {u: p.get_secret_value() for u, p in media.sip_users.items()},
            media.sip_realm,
        )
        self.pool = PortPool(media.rtp_port_min, media.rtp_port_max)
        self.calls: dict[tuple[str, str], SipCall] = {}  # (Call-ID, caller's tag)
        self._tx: dict[tuple[str, str, str], tuple[bytes | None, float]] = {}
        self._ack_waits: dict[str, asyncio.Task[None]] = {}  # INVITE branch -> retransmitter
        self._client_tx: dict[str, asyncio.Task[None]] = {}
        self._on_final: dict[str, Callable[[SipMessage | None], None]] = {}  # branch -> waiter
        self._log_budget = BucketsByKey(60.0, 20.0)
        self._flood = BucketsByKey(6000.0, 300.0)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_count = 0
        self._housekeeping: asyncio.Task[None] | None = None
        self._route_cache: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = media.sip_port

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        media = self.settings.media
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(media.host, media.sip_port)
        )
        self._udp = udp
        self.port = int(udp.get_extra_info("sockname")[1])
        if media.sip_tcp:
            self._tcp = await asyncio.start_server(self._serve_tcp, media.host, self.port)
        self._housekeeping = asyncio.create_task(self._housekeep(), name="sip-housekeeping")
        log.info(
            "media.sip.listening",
            url=f"sip:{_host_for_url(media.host)}:{self.port}",
            tcp=media.sip_tcp,
            rtp_ports=f"{media.rtp_port_min}-{media.rtp_port_max}",
        )

    async def close(self) -> None:
        for call in list(self.calls.values()):
            call.hang_up_soon("shutdown")
        await asyncio.sleep(0.05)  # let the BYEs leave
        for task in [self._housekeeping, *self._ack_waits.values(), *self._client_tx.values()]:
            if task is not None:
                task.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for key in [k for k, (_, at) in self._tx.items() if now - at > TX_KEEP_S]:
                del self._tx[key]
            for call in list(self.calls.values()):
                call.check_timers(now)

    # -- TCP -------------------------------------------------------------------------------
    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_info = writer.get_extra_info("peername")
        local_info = writer.get_extra_info("sockname")
        peer = (str(peer_info[0]), int(peer_info[1]))
        if self._tcp_count >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._tcp_count += 1

        def send(payload: bytes) -> None:
            if not writer.is_closing():
                writer.write(payload)

        source = Source("TCP", peer, (str(local_info[0]), int(local_info[1])), send)
        buffer = bytearray()
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(8192), TCP_IDLE_S)
                if not chunk:
                    break
                buffer += chunk
                while True:
                    length = stream_frame(buffer)
                    if length is None:
                        break
                    data = bytes(buffer[:length])
                    del buffer[:length]
                    if data.strip():
                        self.handle(data, source)
        except SipParseError as exc:
            self._log_bad(peer[0], "media.sip.malformed", error=str(exc), transport="TCP")
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self._tcp_count -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    # -- dispatch --------------------------------------------------------------------------
    def handle(self, data: bytes, source: Source) -> None:
        """One message from the network. Never raises for anything a peer can send."""
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive
        if not self._flood.take(source.addr[0]):
            self._log_bad(source.addr[0], "media.sip.flooding")
            return
        try:
            msg = parse(data, stream=source.transport == "TCP")
        except SipParseError as exc:
            self._log_bad(source.addr[0], "media.sip.malformed", error=str(exc))
            if exc.status is not None:
                self._answer_broken(data, source, exc)
            return
        try:
            if msg.is_request:
                self._on_request(msg, source)
            else:
                self._on_response(msg)
        except SipParseError as exc:  # a header value the dispatcher needed was malformed
            self._log_bad(source.addr[0], "media.sip.malformed", error=str(exc))
            if msg.is_request and msg.method != "ACK":
                self._send(source, response(msg, 400, str(exc)[:60]))

    def _answer_broken(self, data: bytes, source: Source, exc: SipParseError) -> None:
        """A 400/513 for a request whose headers were readable but wrong."""
        try:
            head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            head = _CONTENT_LENGTH.sub(b"", head)  # the body is not needed for a 400
            msg = parse(head, check=False)
            msg.top_via  # noqa: B018 - a response needs somewhere to go
        except SipParseError:
            return
        if msg.is_request and msg.method != "ACK" and msg.get("Call-ID"):
            self._send(source, response(msg, exc.status or 400, str(exc)[:60]))

    def _on_request(self, req: SipMessage, source: Source) -> None:
        via = req.top_via
        self._stamp_via(req, source)
        key = _tx_key(req)
        if req.method == "ACK":
            self._on_ack(req, via.branch)
            return
        if key in self._tx:
            last, _ = self._tx[key]
            if last is not None:
                source.send(last)  # a retransmission: the same answer again
            return
        self._tx[key] = (None, time.monotonic())
        if req.method == "CANCEL":
            self._on_cancel(req, source, via.branch)
            return
        call = self.calls.get((req.call_id, req.from_tag or ""))
        if req.to_tag:
            if call is None or call.local_tag != req.to_tag:
                self.respond(req, source, response(req, 481))
                return
            if source.addr[0] != call.source.addr[0] and not self.acl.network_allowed(
                source.addr[0]
            ):
                self._forbid(req, source, "in-dialog request from another address")
                return
            call.on_request(req)
            return
        if call is not None and req.method == "INVITE":
            self.respond(req, source, response(req, 482))  # a second INVITE, same dialog
            return
        if req.method not in ("INVITE", "OPTIONS"):
            if req.method in KNOWN_METHODS or req.method in ("BYE", "UPDATE", "INFO"):
                status = 481 if req.method in ("BYE", "UPDATE", "INFO") else 405
                self.respond(req, source, response(req, status, headers=[("Allow", ALLOW)]))
            else:
                self.respond(req, source, response(req, 501, headers=[("Allow", ALLOW)]))
            return
        if not self._authorized(req, source):
            return
        if req.method == "OPTIONS":
            self.respond(req, source, self.options_response(req))
            return
        self._on_invite(req, source)

    def _authorized(self, req: SipMessage, source: Source) -> bool:
        verdict, detail = self.acl.check(source.addr[0], req.method, req.get("Authorization"))
        if verdict is Verdict.ALLOWED:
            return True
        if verdict is Verdict.FORBIDDEN:
            self._forbid(req, source, detail)
            return False
        challenge = self.acl.challenge(stale=verdict is Verdict.STALE)
        self.respond(req, source, response(req, 401, headers=[("WWW-Authenticate", challenge)]))
        return False

    def _forbid(self, req: SipMessage, source: Source, reason: str) -> None:
        self._log_bad(
            source.addr[0],
            "media.sip.forbidden",
            method=req.method,
            reason=reason,
            from_=req.get("From"),
        )
        self.respond(req, source, response(req, 403))

    def _on_invite(self, req: SipMessage, source: Source) -> None:
        self.respond(req, source, response(req, 100))
        unknown = {o.strip().lower() for o in req.get_all("Require")} - {"timer"}
        if unknown:
            self.respond(
                req, source, response(req, 420, headers=[("Unsupported", ", ".join(unknown))])
            )
            return
        if len(self.calls) >= self.settings.media.sip_max_calls:
            self.respond(req, source, response(req, 486))
            return
        expires = self.session_expires(req)
        if isinstance(expires, SipMessage):
            self.respond(req, source, expires)
            return
        neg: sdp.Negotiated | None = None
        if req.body:
            ctype = (req.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/sdp" or req.get("Content-Encoding"):
                self.respond(
                    req, source, response(req, 415, headers=[("Accept", "application/sdp")])
                )
                return
            try:
                neg = sdp.negotiate(sdp.parse(req.body))
            except sdp.SdpError as exc:
                warning = f'305 receptionist "{str(exc)[:80]}"'
                self.respond(req, source, response(req, exc.status, headers=[("Warning", warning)]))
                return
        # claim the dialog now: retransmissions and a quick CANCEL find it while the RTP
        # ports are opened
        self.spawn(self._start_call(req, source, neg, expires))

    async def _start_call(
        self,
        req: SipMessage,
        source: Source,
        neg: sdp.Negotiated | None,
        expires: int | None,
    ) -> None:
        host = self.settings.media.host
        try:
            rtp = await RtpSession.open(host, self.pool)
        except OSError as exc:
            log.error("media.sip.no_rtp_port", error=str(exc))
            self.respond(req, source, response(req, 503, headers=[("Retry-After", "5")]))
            return
        call = SipCall(self, req, source, rtp, neg, expires)
        key = (call.call_id, call.remote_tag)
        if key in self.calls:  # a retransmitted INVITE raced the first one
            await rtp.close()
            return
        if neg is not None:
            rtp.configure(neg, source.addr[0])
        self.calls[key] = call
        log.info(
            "media.sip.invite",
            call_id=call.call_id,
            peer=source.addr[0],
            caller=call.caller,
            transport=source.transport,
        )
        call.ring(self.settings.media.sip_ring_ms)

    def session_expires(self, req: SipMessage) -> int | SipMessage | None:
        """RFC 4028: the interval to use, None without a timer, or a 422 to send."""
        value = req.get("Session-Expires")
        if value is None:
            return None
        number = value.split(";", 1)[0].strip()
        if not number.isdigit() or len(number) > 9:
            return response(req, 400, "Bad Session-Expires")
        if int(number) < MIN_SE:
            return response(req, 422, headers=[("Min-SE", str(MIN_SE))])
        return int(number)

    def _on_ack(self, ack: SipMessage, branch: str) -> None:
        waiter = self._ack_waits.pop(branch, None)
        if waiter is not None:  # the ACK of a non-2xx final response
            waiter.cancel()
            return
        call = self.calls.get((ack.call_id, ack.from_tag or ""))
        if call is not None and call.local_tag == ack.to_tag:
            call.on_ack(ack)

    def _on_cancel(self, req: SipMessage, source: Source, branch: str) -> None:
        for call in self.calls.values():
            invite_via = call.invite.top_via
            if (
                call.call_id == req.call_id
                and invite_via.branch == branch
                and call.invite.cseq[0] == req.cseq[0]
            ):
                self.respond(req, source, response(req, 200, to_tag=call.local_tag))
                if call.on_cancel():
                    log.info("media.sip.cancelled", call_id=call.call_id)
                return
        self.respond(req, source, response(req, 481))

    def _on_response(self, msg: SipMessage) -> None:
        branch = msg.top_via.branch
        if msg.status >= 200:
            task = self._client_tx.pop(branch, None)
            if task is not None:
                task.cancel()
            waiter = self._on_final.pop(branch, None)
            if waiter is not None:
                waiter(msg)

    # -- sending ---------------------------------------------------------------------------
    def respond(self, req: SipMessage, source: Source, msg: SipMessage) -> None:
        """Send a response and remember it for retransmissions of the request."""
        data = msg.to_bytes()
        self._tx[_tx_key(req)] = (data, time.monotonic())
        source.send(data)
        if (
            req.method == "INVITE"
            and msg.status >= 300
            and source.transport == "UDP"
            and req.top_via.branch
        ):
            branch = req.top_via.branch
            old = self._ack_waits.pop(branch, None)
            if old is not None:
                old.cancel()
            self._ack_waits[branch] = asyncio.create_task(self._until_ack(branch, data, source))

    async def _until_ack(self, branch: str, data: bytes, source: Source) -> None:
        interval, waited = T1, 0.0
        try:
            while waited < 64 * T1:
                await asyncio.sleep(interval)
                waited += interval
                source.send(data)
                interval = min(interval * 2, T2)
        finally:
            if self._ack_waits.get(branch) is asyncio.current_task():
                del self._ack_waits[branch]

    def _send(self, source: Source, msg: SipMessage) -> None:
        source.send(msg.to_bytes())

    def send_request(
        self,
        req: SipMessage,
        source: Source,
        dest: tuple[str, int],
        on_final: Callable[[SipMessage | None], None] | None = None,
    ) -> None:
        """A request of ours in a dialog (BYE, REFER), retransmitted over UDP until answered.
        ``on_final`` gets the final response, or None when none came (timeout, 64*T1)."""
        data = req.to_bytes()
        branch = req.top_via.branch
        if on_final is not None:
            self._on_final[branch] = on_final
        if source.transport == "TCP":
            source.send(data)
            return
        udp = self._udp
        if udp is None:
            return

        def send() -> None:
            with contextlib.suppress(OSError):
                udp.sendto(data, dest)

        send()
        self._client_tx[branch] = asyncio.create_task(self._retransmit_request(branch, send))

    async def _retransmit_request(self, branch: str, send: Callable[[], None]) -> None:
        interval, waited = T1, 0.0
        try:
            while waited < 64 * T1:
                await asyncio.sleep(interval)
                waited += interval
                send()
                interval = min(interval * 2, T2)
        finally:
            if self._client_tx.get(branch) is asyncio.current_task():
                del self._client_tx[branch]
                waiter = self._on_final.pop(branch, None)
                if waiter is not None:
                    waiter(None)

    def forget_request(self, branch: str) -> None:
        """Stop waiting for the answer to one of our requests (its caller gave up)."""
        self._on_final.pop(branch, None)
        task = self._client_tx.pop(branch, None)
        if task is not None:
            task.cancel()

    def options_response(self, req: SipMessage) -> SipMessage:
        return response(
            req,
            200,
            headers=[
                ("Allow", ALLOW),
                ("Accept", "application/sdp"),
                ("Supported", SUPPORTED),
            ],
        )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A background task kept referenced until it is done."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, call: SipCall) -> None:
        key = (call.call_id, call.remote_tag)
        if self.calls.get(key) is call:
            del self.calls[key]

    # -- addresses -------------------------------------------------------------------------
    def local_ip(self, source: Source) -> str:
        """The address the peer reaches us at: configured, else the one it called."""
        public = self.settings.media.sip_public_host
        if public:
            return public
        ip = source.local[0]
        if ip in ("0.0.0.0", "::"):
            ip = self._route_cache.get(source.addr[0]) or self._route_to(source.addr[0])
        return ip

    def _route_to(self, peer: str) -> str:
        family = socket.AF_INET6 if ":" in peer else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((peer, 9))
                ip = str(s.getsockname()[0])
        except OSError:
            ip = "127.0.0.1"
        self._route_cache[peer] = ip
        return ip

    def via_host(self, source: Source) -> str:
        return f"{_host_for_url(self.local_ip(source))}:{self.port}"

    def contact(self, source: Source) -> str:
        transport = ";transport=tcp" if source.transport == "TCP" else ""
        return f"<sip:receptionist@{self.via_host(source)}{transport}>"

    def _stamp_via(self, req: SipMessage, source: Source) -> None:
        """RFC 3261 18.2.1 and RFC 3581: note the real source in the top Via."""
        for i, (name, value) in enumerate(req.headers):
            if name != "Via":
                continue
            first, sep, rest = value.partition(",")
            via = req.top_via
            extra = ""
            if via.host != source.addr[0]:
                extra += f";received={source.addr[0]}"
            if "rport" in via.params and not via.params["rport"]:
                first = first.replace(";rport", "", 1)
                extra += f";rport={source.addr[1]}"
            req.headers[i] = (name, first + extra + sep + rest)
            return

    def _log_bad(self, ip: str, event: str, **fields: object) -> None:
        if self._log_budget.take(ip):
            log.warning(event, peer=ip, **fields)


def _tx_key(req: SipMessage) -> tuple[str, str, str]:
    via = req.top_via
    return (via.branch or req.call_id + str(req.cseq[0]), via.sent_by, req.method)


def _host_for_url(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host
