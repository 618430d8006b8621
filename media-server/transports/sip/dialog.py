"""One SIP call (an INVITE dialog, RFC 3261 section 12-15) and its voice session.

States: ``ringing`` (100 and 180 sent, waiting ``sip_ring_ms``), ``answered`` (200 sent and
retransmitted until the ACK), ``confirmed``, ``ended``. The caller may CANCEL while it rings
(487), hang up with BYE, put the call on hold and back with a re-INVITE or UPDATE, refresh
a session timer (RFC 4028), or send key presses as RFC 4733 events or SIP INFO. The bot
hangs up through :meth:`SipCall.hang_up` (the session's AudioSink): a BYE is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog

from media_server.session import CallInfo, VoiceSession
from media_server.transports.common import end_call
from media_server.transports.sip import sdp
from media_server.transports.sip.message import (
    SipMessage,
    SipParseError,
    parse_name_addr,
    parse_uri,
    response,
)
from media_server.transports.sip.rtp import RtpSession

if TYPE_CHECKING:
    from media_server.transports.sip.uas import SipServer, Source

log = structlog.get_logger("media_server.sip.call")

T1, T2 = 0.5, 4.0
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY"
SUPPORTED = "timer"
MIN_SE = 90
DTMF_KEYS = frozenset("0123456789*#ABCD")


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(10)


class SipCall:
    def __init__(
        self,
        server: SipServer,
        invite: SipMessage,
        source: Source,
        rtp: RtpSession,
        neg: sdp.Negotiated | None,
        session_expires: int | None,
    ) -> None:
        self.server = server
        self.invite = invite
        self.source = source
        self.rtp = rtp
        self.neg = neg
        self.call_id = invite.call_id
        self.remote_tag = invite.from_tag or ""
        self.local_tag = new_tag()
        self.state = "ringing"
        self.local_ip = server.local_ip(source)
        self.sdp_session = str(secrets.randbelow(2**31))
        self.sdp_version = 0
        self.local_cseq = secrets.randbelow(10_000) + 1
        self.remote_cseq = invite.cseq[0]
        self.session_expires = session_expires
        self.refreshed_at = time.monotonic()
        self.started_at = time.monotonic()
        self.session: VoiceSession | None = None
        self.task: asyncio.Task[None] | None = None
        self.ended_reason: str | None = None
        self._retransmit: asyncio.Task[None] | None = None
        self._ringer: asyncio.Task[None] | None = None
        self._awaiting_ack: SipMessage | None = None  # the INVITE whose 200 waits for its ACK
        self._offered = False  # our 200 carried the offer; the answer comes in the ACK
        self._refer: asyncio.Future[tuple[bool, str | None]] | None = None  # transfer under way
        self.caller = _caller_number(invite)

    # -- the INVITE ------------------------------------------------------------------------
    def ring(self, ring_ms: int) -> None:
        self.server.respond(self.invite, self.source, self._response(self.invite, 180))
        self._ringer = asyncio.create_task(self._answer_after(ring_ms / 1000))

    async def _answer_after(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        if self.state == "ringing":
            await self.answer()

    async def answer(self) -> None:
        self.state = "answered"
        ok = self._response(self.invite, 200, body=self._sdp_body(), sdp=True)
        self._send_2xx(self.invite, ok)
        info = CallInfo(
            transport="sip",
            call_id=self.call_id,
            language=self.server.settings.media.default_language,
            caller=self.caller,
            metadata={
                "sip_call_id": self.call_id,
                "sip_to": _user(self.invite.uri),
                "sip_from": self.invite.get("From") or "",
            },
        )
        try:
            self.session = await self.server.make_session(info, self)
        except Exception as exc:  # noqa: BLE001 - logged; the call is hung up, nothing else fails
            log.error("media.sip.session_failed", call_id=self.call_id, error=repr(exc))
            self.hang_up_soon("session_failed")
            return
        self.rtp.on_audio = self.session.feed_audio
        self.rtp.on_dtmf = self.session.feed_dtmf
        self.rtp.start()
        self.task = asyncio.create_task(self.session.run(), name=f"sip-call-{self.call_id[:12]}")
        self.task.add_done_callback(self._session_done)
        log.info(
            "media.sip.answered",
            call_id=self.call_id,
            peer=self.source.addr[0],
            codec=self.neg.codec if self.neg else "offered",
            rtp_port=self.rtp.port,
            transport=self.source.transport,
        )

    def _session_done(self, task: asyncio.Task[None]) -> None:
        if self.state != "ended" and not task.cancelled():
            self.hang_up_soon("session_ended")

    def _sdp_body(self) -> bytes:
        self.sdp_version += 1
        if self.neg is None:
            self._offered = True
            return sdp.offer_body(self.local_ip, self.rtp.port, self.sdp_session, self.sdp_version)
        return sdp.answer_body(
            self.neg, self.local_ip, self.rtp.port, self.sdp_session, self.sdp_version
        )

    def _response(
        self, req: SipMessage, status: int, *, body: bytes = b"", sdp: bool = False
    ) -> SipMessage:
        headers: list[tuple[str, str]] = []
        if 100 < status < 300 and req.method in ("INVITE", "UPDATE"):
            headers.append(("Contact", self.server.contact(self.source)))
        if status == 200 and req.method in ("INVITE", "UPDATE"):
            headers += [("Allow", ALLOW), ("Supported", SUPPORTED)]
            if self.session_expires:
                headers.append(("Session-Expires", f"{self.session_expires};refresher=uac"))
                if "timer" in _options(req, "Supported"):
                    headers.append(("Require", "timer"))
        if sdp:
            headers.append(("Content-Type", "application/sdp"))
        return response(req, status, to_tag=self.local_tag, body=body, headers=headers)

    def _send_2xx(self, req: SipMessage, ok: SipMessage) -> None:
        """Send a 2xx to an INVITE and, over UDP, retransmit it until the ACK (RFC 3261
        13.3.1.4): T1, 2*T1, ... up to T2 apart, for 64*T1; no ACK ends the call."""
        self._awaiting_ack = req
        self.server.respond(req, self.source, ok)
        if self._retransmit is not None:
            self._retransmit.cancel()
        self._retransmit = asyncio.create_task(self._retransmit_2xx(ok.to_bytes()))

    async def _retransmit_2xx(self, data: bytes) -> None:
        interval, waited = T1, 0.0
        while waited < 64 * T1:
            await asyncio.sleep(interval)
            waited += interval
            if self._awaiting_ack is None:
                return
            if self.source.transport == "UDP":
                self.source.send(data)
            interval = min(interval * 2, T2)
        if self._awaiting_ack is not None and self.state != "ended":
            log.warning("media.sip.no_ack", call_id=self.call_id)
            self._awaiting_ack = None
            self.hang_up_soon("no_ack")

    def on_ack(self, ack: SipMessage) -> None:
        if self._awaiting_ack is None or ack.cseq[0] != self._awaiting_ack.cseq[0]:
            return
        self._awaiting_ack = None
        if self._retransmit is not None:
            self._retransmit.cancel()
        if self.state == "answered":
            self.state = "confirmed"
        if self._offered:
            self._offered = False
            try:
                neg = sdp.negotiate(sdp.parse(ack.body))
            except sdp.SdpError as exc:
                log.warning("media.sip.bad_answer", call_id=self.call_id, error=str(exc))
                self.hang_up_soon("bad_sdp_answer")
                return
            self._apply(neg)

    def _apply(self, neg: sdp.Negotiated) -> None:
        held = self.neg is not None and self.neg.on_hold
        self.neg = neg
        self.rtp.configure(neg, self.source.addr[0])
        if neg.on_hold != held:
            log.info("media.sip.hold" if neg.on_hold else "media.sip.resume", call_id=self.call_id)

    def on_cancel(self) -> bool:
        """CANCEL of the ringing INVITE: True if it was still ringing (then 487)."""
        if self.state != "ringing":
            return False
        self.server.respond(self.invite, self.source, self._response(self.invite, 487))
        self._finish("cancelled")
        return True

    # -- requests within the dialog --------------------------------------------------------
    def on_request(self, req: SipMessage) -> None:
        number = req.cseq[0]
        if req.method != "ACK" and number <= self.remote_cseq and req.method != "CANCEL":
            self.server.respond(req, self.source, self._response(req, 500))  # out of order
            return
        self.remote_cseq = max(self.remote_cseq, number)
        if req.method == "BYE":
            self.server.respond(req, self.source, self._response(req, 200))
            log.info("media.sip.caller_hangup", call_id=self.call_id)
            self._finish("caller_hangup")
        elif req.method in ("INVITE", "UPDATE"):
            self._on_offer(req)
        elif req.method == "INFO":
            self._on_info(req)
        elif req.method == "OPTIONS":
            self.server.respond(req, self.source, self.server.options_response(req))
        elif req.method == "NOTIFY":
            self._on_notify(req)
        else:
            self.server.respond(req, self.source, response(req, 405, headers=[("Allow", ALLOW)]))

    def _on_offer(self, req: SipMessage) -> None:
        """re-INVITE or UPDATE: hold/resume/move the stream, refresh the session timer."""
        if self.state == "ended":
            self.server.respond(req, self.source, self._response(req, 481))
            return
        if req.method == "INVITE" and self._awaiting_ack is not None:
            self.server.respond(
                req, self.source, response(req, 491, headers=[("Retry-After", "1")])
            )
            return
        expires = self.server.session_expires(req)
        if isinstance(expires, SipMessage):
            self.server.respond(req, self.source, expires)
            return
        if req.body:
            ctype = (req.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/sdp":
                self.server.respond(
                    req, self.source, response(req, 415, headers=[("Accept", "application/sdp")])
                )
                return
            try:
                neg = sdp.negotiate(sdp.parse(req.body))
            except sdp.SdpError as exc:
                self.server.respond(
                    req, self.source, response(req, exc.status, headers=_warning(exc))
                )
                return
            self._apply(neg)
            self.neg = neg
        if expires is not None:
            self.session_expires = expires
        self.refreshed_at = time.monotonic()
        if req.method == "INVITE":
            ok = self._response(req, 200, body=self._sdp_body(), sdp=True)
            self._send_2xx(req, ok)
        else:  # UPDATE: an answer only if it carried an offer
            body = self._sdp_body() if req.body and self.neg is not None else b""
            self.server.respond(
                req, self.source, self._response(req, 200, body=body, sdp=bool(body))
            )

    def _on_info(self, req: SipMessage) -> None:
        ctype = (req.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype in ("application/dtmf-relay", "application/dtmf"):
            text = req.body.decode("utf-8", "replace")
            key = text.strip()
            for line in text.splitlines():
                name, _, value = line.partition("=")
                if name.strip().lower() == "signal":
                    key = value.strip()
            key = {"10": "*", "11": "#"}.get(key, key)
            if key in DTMF_KEYS and self.session is not None:
                log.info("media.sip.dtmf", key=key, call_id=self.call_id, via="info")
                self.session.feed_dtmf(key)
            self.server.respond(req, self.source, self._response(req, 200))
        elif not req.body:
            self.server.respond(req, self.source, self._response(req, 200))
        else:
            self.server.respond(
                req,
                self.source,
                response(req, 415, headers=[("Accept", "application/dtmf-relay")]),
            )

    # -- transfer out (RFC 3515 REFER, RFC 5589 call transfer) -----------------------------
    def can_transfer(self) -> bool:
        return True

    async def transfer(self, target: str, headers: dict[str, str]) -> tuple[bool, str | None]:
        """Ask the caller's side to call ``target`` instead (blind transfer): REFER, then
        wait for the NOTIFY that says how the new call went. ``headers`` go on the REFER and
        into the Refer-To URI, so the new INVITE carries them (the conversation id, for a
        downstream system to fetch the transcript). ``(True, None)`` once the target
        answered; ``(False, why)`` otherwise, the call still ours. The caller of this hangs
        up on success (RFC 5589: the transferor sends the BYE)."""
        if self.state != "confirmed":
            return False, f"the call is {self.state}"
        if self._refer is not None:
            return False, "a transfer is already under way"
        done: asyncio.Future[tuple[bool, str | None]] = asyncio.get_running_loop().create_future()
        self._refer = done

        def answered(resp: SipMessage | None) -> None:
            if done.done():
                return
            if resp is None:
                done.set_result((False, "no answer to the REFER"))
            elif resp.status >= 300:
                done.set_result((False, f"REFER answered {resp.status} {resp.reason}".strip()))
            # a 2xx: the outcome comes in NOTIFYs

        refer = self._request("REFER")
        refer.add("Refer-To", f"<{_with_uri_headers(target, headers)}>")
        refer.add("Referred-By", f"<{self._local_uri()}>")
        for name, value in headers.items():
            refer.add(name, value)
        refer.add("Contact", self.server.contact(self.source))
        refer.add("User-Agent", "receptionist")
        timeout = self.server.settings.media.sip_transfer_timeout_s
        log.info("media.sip.refer_sent", call_id=self.call_id, target=target)
        self.server.send_request(refer, self.source, self._bye_destination(), on_final=answered)
        try:
            ok, why = await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            ok, why = False, f"no final NOTIFY within {timeout:g} s"
        finally:
            self._refer = None
            self.server.forget_request(refer.top_via.branch)
        log.info("media.sip.transfer", call_id=self.call_id, target=target, ok=ok, detail=why)
        return ok, why

    def _on_notify(self, req: SipMessage) -> None:
        """Progress of our REFER: a message/sipfrag body with the new call's status line."""
        event = (req.get("Event") or "").split(";")[0].strip().lower()
        if event != "refer":
            self.server.respond(req, self.source, self._response(req, 489))  # Bad Event
            return
        self.server.respond(req, self.source, self._response(req, 200))
        status = _sipfrag_status(req.body)
        state = (req.get("Subscription-State") or "").split(";")[0].strip().lower()
        done = self._refer
        if done is None or done.done():
            return
        if status is not None and status >= 200:
            ok = status < 300
            done.set_result((ok, None if ok else f"the transfer target answered {status}"))
        elif state == "terminated":
            done.set_result((False, "the transfer ended without a final status"))

    # -- watchdog, from the server's housekeeping ------------------------------------------
    def check_timers(self, now: float) -> None:
        if self.state != "confirmed":
            return
        if self.session_expires:
            grace = min(32.0, self.session_expires / 3)
            if now - self.refreshed_at > self.session_expires - grace:
                log.info("media.sip.session_expired", call_id=self.call_id)
                self.hang_up_soon("session_expired")
                return
        neg = self.neg
        timeout = self.server.settings.media.rtp_timeout_s
        if neg is not None and not neg.on_hold and now - self.rtp.last_packet_s > timeout:
            log.info("media.sip.rtp_timeout", call_id=self.call_id)
            self.hang_up_soon("rtp_timeout")

    # -- AudioSink (the voice session's side) ----------------------------------------------
    async def send_audio(self, pcm: bytes) -> None:
        self.rtp.send_audio(pcm)

    async def clear_audio(self) -> None:
        self.rtp.clear_audio()

    async def send_event(self, event: dict[str, Any]) -> None:
        """SIP carries no text events."""

    async def hang_up(self, reason: str) -> None:
        """The bot ends the call: BYE."""
        self.hang_up_soon(reason)

    def hang_up_soon(self, reason: str) -> None:
        if self.state == "ended":
            return
        if self.state == "ringing":
            self.server.respond(self.invite, self.source, self._response(self.invite, 480))
        else:
            self._send_bye(reason)
        self._finish(reason)

    def _request(self, method: str) -> SipMessage:
        """A new request of ours within the dialog (we are the INVITE's UAS)."""
        self.local_cseq += 1
        req = SipMessage(method=method, uri=self._remote_target())
        sent_by = self.server.via_host(self.source)
        req.add("Via", f"SIP/2.0/{self.source.transport} {sent_by};branch={new_branch()};rport")
        req.add("Max-Forwards", "70")
        to_addr = parse_name_addr(self.invite.get("To") or "")
        req.add("From", to_addr.with_tag(self.local_tag))
        req.add("To", self.invite.get("From") or "")
        req.add("Call-ID", self.call_id)
        req.add("CSeq", f"{self.local_cseq} {method}")
        for route in self.invite.get_all("Record-Route"):
            req.add("Route", route)
        return req

    def _local_uri(self) -> str:
        with contextlib.suppress(SipParseError):
            return parse_name_addr(self.invite.get("To") or "").uri
        return self.invite.uri

    def _send_bye(self, reason: str) -> None:
        bye = self._request("BYE")
        bye.add("Reason", f'SIP;cause=200;text="{reason}"')
        bye.add("User-Agent", "receptionist")
        self.server.send_request(bye, self.source, self._bye_destination())
        log.info("media.sip.bye_sent", call_id=self.call_id, reason=reason)

    def _remote_target(self) -> str:
        contact = self.invite.get("Contact")
        if contact:
            with contextlib.suppress(SipParseError):
                return parse_name_addr(contact).uri
        return parse_name_addr(self.invite.get("From") or "").uri

    def _bye_destination(self) -> tuple[str, int]:
        """The first loose route, else the remote target when it names an IP address;
        otherwise where the INVITE came from."""
        routes = self.invite.get_all("Record-Route")
        target = routes[0] if routes else self._remote_target()
        with contextlib.suppress(SipParseError):
            uri = parse_uri(parse_name_addr(target).uri)
            if _is_ip(uri.host):
                return uri.host, uri.port or 5060
        return self.source.addr

    # -- the end ---------------------------------------------------------------------------
    def _finish(self, reason: str) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self.ended_reason = reason
        self._awaiting_ack = None
        for t in (self._retransmit, self._ringer):
            if t is not None and t is not asyncio.current_task():
                t.cancel()
        self.server.forget(self)
        self.server.spawn(self._close())

    async def _close(self) -> None:
        try:
            await end_call(self.session, self.task)
        finally:
            await self.rtp.close()
            c = self.rtp.counters
            st = self.rtp.jitter.stats
            log.info(
                "media.sip.call_ended",
                call_id=self.call_id,
                reason=self.ended_reason,
                duration_s=round(time.monotonic() - self.started_at, 2),
                rtp_sent=c.sent,
                rtp_received=c.received,
                rtp_rejected=c.rejected,
                rtp_lost=st.lost,
                rtp_late=st.late,
                dtmf=c.dtmf,
                rtcp_in=c.rtcp_in,
                rtcp_out=c.rtcp_out,
            )


def _with_uri_headers(target: str, headers: dict[str, str]) -> str:
    """``target`` with ``headers`` as URI headers (RFC 3261 19.1.1: ``?name=value&…``),
    escaped; tel: URIs cannot carry them."""
    if not headers or not target.lower().startswith(("sip:", "sips:")):
        return target
    joined = "&".join(f"{quote(k, safe='-')}={quote(v, safe='')}" for k, v in headers.items())
    return f"{target}{'&' if '?' in target else '?'}{joined}"


def _sipfrag_status(body: bytes) -> int | None:
    """The status code of a message/sipfrag body's first line (``SIP/2.0 200 OK``)."""
    first = body.decode("utf-8", "replace").strip().split("\n", 1)[0].split()
    if len(first) >= 2 and first[0].upper() == "SIP/2.0" and first[1].isdigit():
        return int(first[1])
    return None


def _options(req: SipMessage, name: str) -> set[str]:
    return {v.strip().lower() for v in req.get_all(name)}


def _warning(exc: sdp.SdpError) -> list[tuple[str, str]]:
    return [("Warning", f'305 receptionist "{str(exc)[:80]}"')]


def _user(uri: str) -> str:
    with contextlib.suppress(SipParseError):
        return parse_uri(uri).user or ""
    return ""


def _caller_number(invite: SipMessage) -> str | None:
    with contextlib.suppress(SipParseError):
        user = parse_uri(parse_name_addr(invite.get("From") or "").uri).user
        if user and user.lstrip("+").isdigit():
            return user
    return None


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
