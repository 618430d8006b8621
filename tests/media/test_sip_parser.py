"""The SIP transport's pure parts on bytes: the message parser (and a fuzz test of thousands
of mutated messages), SDP offer/answer, digest authentication, RTP, the jitter buffer and
RFC 4733 events."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import numpy as np
import pytest

from media_server.transports.sip import sdp
from media_server.transports.sip.auth import AccessControl, Verdict, digest_response
from media_server.transports.sip.message import (
    SipParseError,
    parse,
    parse_name_addr,
    parse_uri,
    response,
    stream_frame,
)
from media_server.transports.sip.rtp import (
    FRAME,
    DtmfReceiver,
    JitterBuffer,
    RtpError,
    build_rtp,
    is_rtcp,
    parse_rtp,
)

OFFER = (
    "v=0\r\no=caller 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)
INVITE = (
    "INVITE sip:reception@192.0.2.1:5070 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy\r\n"
    "Max-Forwards: 70\r\n"
    'f: "Alice, at home" <sip:+15550100@example.com>;tag=1928301774\r\n'
    "To: <sip:reception@192.0.2.1>\r\n"
    "i: a84b4c76e66710@pc33.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@192.0.2.10:5060>\r\n"
    "Content-Type: application/sdp\r\n"
    f"l: {len(OFFER)}\r\n\r\n{OFFER}"
).encode()


# --- the message parser -----------------------------------------------------------------


def test_parses_a_request_with_compact_headers_and_a_body() -> None:
    msg = parse(INVITE)
    assert msg.method == "INVITE" and msg.uri == "sip:reception@192.0.2.1:5070"
    assert msg.call_id == "a84b4c76e66710@pc33.example.com"
    assert msg.cseq == (314159, "INVITE")
    assert msg.from_tag == "1928301774" and msg.to_tag is None
    via = msg.top_via
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP",
        "192.0.2.10",
        5060,
        "z9hG4bK776asdhds",
    )
    assert len(msg.get_all("Via")) == 2
    assert msg.body == OFFER.encode()
    assert parse_name_addr(msg.get("From") or "").display == '"Alice, at home"'


def test_response_copies_the_transaction_headers_and_tags_to() -> None:
    req = parse(INVITE)
    resp = response(req, 180, to_tag="abc")
    again = parse(resp.to_bytes())
    assert again.status == 180 and again.reason == "Ringing"
    assert again.get_all("Via") == req.get_all("Via")
    assert again.to_tag == "abc" and again.from_tag == "1928301774"
    assert again.cseq == (314159, "INVITE") and again.call_id == req.call_id
    assert response(req, 100, to_tag="abc").to_bytes().count(b"tag=abc") == 0


def test_folded_lines_and_comma_lists() -> None:
    msg = parse(
        b"OPTIONS sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1,\r\n SIP/2.0/TCP b:5061\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
        b"Supported: timer, 100rel\r\nContent-Length: 0\r\n\r\n"
    )
    assert [v.split()[0] for v in msg.get_all("Via")] == ["SIP/2.0/UDP", "SIP/2.0/TCP"]
    assert msg.get_all("Supported") == ["timer", "100rel"]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", None),
        (b"hello\r\n\r\n", None),
        (INVITE.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"), 505),
        (INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: x INVITE"), 400),
        (INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), 400),
        (INVITE.replace(b"i: a84b4c76e66710@pc33.example.com\r\n", b""), 400),
        (INVITE.replace(b"l: ", b"l: 9"), 400),  # longer than the body
        (INVITE.replace(b"Via: SIP/2.0/UDP 192", b"Via: HTTP/1.1 192"), 400),
        (INVITE + b"\x00" * 70000, 513),
        (INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: many"), 400),
        (INVITE.replace(b"To: <sip", b"To: <http"), None),  # URIs are read later
        (b"INVITE sip:x SIP/2.0\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", None),
        ("INVITE sip:x SIP/2.0\r\nVia: \xff\r\n\r\n".encode("latin-1"), None),
    ],
)
def test_malformed_messages_raise_only_the_parse_error(data: bytes, status: int | None) -> None:
    try:
        parse(data)
    except SipParseError as exc:
        assert exc.status == status
    else:
        assert status is None


def test_tcp_framing_needs_content_length() -> None:
    two = INVITE + INVITE
    first = stream_frame(two)
    assert first == len(INVITE)
    assert stream_frame(INVITE[:100]) is None
    with pytest.raises(SipParseError):
        stream_frame(b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n\r\n")
    with pytest.raises(SipParseError):
        parse(INVITE.replace(b"l: ", b"X-L: "), stream=True)


def test_uris() -> None:
    uri = parse_uri("sip:+15550100@[2001:db8::1]:5070;transport=tcp")
    assert (uri.user, uri.host, uri.port, uri.params) == (
        "+15550100",
        "2001:db8::1",
        5070,
        {"transport": "tcp"},
    )
    assert str(uri) == "sip:+15550100@[2001:db8::1]:5070;transport=tcp"
    for bad in ("http://x", "sip:", "sip:a@b:99999", "sip:a@[::1"):
        with pytest.raises(SipParseError):
            parse_uri(bad)


def _mutations(seed: int, count: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    corpus = [
        INVITE,
        response(parse(INVITE), 200, to_tag="x", body=b"v=0\r\n").to_bytes(),
        b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
    ]
    tokens = [b"\r\n", b":", b";", b"<", b">", b"@", b"[", b"]", b" ", b"\x00", b"\xff", b"SIP/2.0"]
    tokens += [b"Content-Length: 99999", b"\r\n\r\n", b"%", b'"', b",", b"=", b"999999999999"]
    out = []
    for _ in range(count):
        data = bytearray(corpus[int(rng.integers(0, len(corpus)))])
        for _ in range(int(rng.integers(1, 8))):
            pos = int(rng.integers(0, len(data) + 1))
            op = int(rng.integers(0, 5))
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = int(rng.integers(0, 256))
            elif op == 1:
                del data[pos : pos + int(rng.integers(1, 40))]
            elif op == 2:
                data[pos:pos] = tokens[int(rng.integers(0, len(tokens)))]
            elif op == 3:
                noise = rng.integers(0, 256, int(rng.integers(1, 30))).astype(np.uint8)
                data[pos:pos] = noise.tobytes()
            else:  # duplicate a slice
                end = pos + int(rng.integers(1, 60))
                data[pos:pos] = data[pos:end]
        out.append(bytes(data))
    return out


def test_fuzz_thousands_of_mutated_messages_only_ever_raise_the_parse_error() -> None:
    parsed = rejected = 0
    for data in _mutations(1234, 5000):
        try:
            msg = parse(data)
        except SipParseError:
            rejected += 1
            continue
        parsed += 1
        # what parsed is safe to use: the dispatcher's accessors and a response
        msg.top_via  # noqa: B018
        assert msg.cseq[0] >= 0
        msg.from_tag  # noqa: B018
        msg.to_tag  # noqa: B018
        if msg.is_request:
            parse(response(msg, 400).to_bytes())
        with contextlib.suppress(SipParseError):
            stream_frame(data)
    assert parsed > 100 and rejected > 1000, (parsed, rejected)


def test_fuzz_mutated_session_descriptions() -> None:
    rng = np.random.default_rng(99)
    body = OFFER.encode()
    for _ in range(3000):
        data = bytearray(body)
        for _ in range(int(rng.integers(1, 6))):
            pos = int(rng.integers(0, len(data)))
            if rng.integers(0, 2):
                data[pos] = int(rng.integers(0, 256))
            else:
                del data[pos : pos + int(rng.integers(1, 15))]
        with contextlib.suppress(sdp.SdpError):
            sdp.negotiate(sdp.parse(bytes(data)))


# --- SDP ----------------------------------------------------------------------------------


def test_answer_picks_the_first_offered_g711_and_keeps_telephone_event() -> None:
    neg = sdp.negotiate(sdp.parse(OFFER.encode()))
    assert (neg.codec, neg.payload_type, neg.event_pt) == ("PCMA", 8, 101)
    assert (neg.remote_ip, neg.remote_port, neg.remote_rtcp_port) == ("192.0.2.10", 40000, 40001)
    assert neg.direction == "sendrecv" and not neg.on_hold
    answer = sdp.answer_body(neg, "192.0.2.1", 20000, "42", 1).decode()
    assert "m=audio 20000 RTP/AVP 8 101" in answer
    assert "a=rtpmap:101 telephone-event/8000" in answer
    back = sdp.negotiate(sdp.parse(answer.encode()))
    assert (back.codec, back.remote_port) == ("PCMA", 20000)


def test_pcmu_by_static_payload_type_without_rtpmap() -> None:
    offer = OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 0").replace("a=rtpmap:8 PCMA/8000\r\n", "")
    offer = offer.replace("a=rtpmap:0 PCMU/8000\r\n", "")
    neg = sdp.negotiate(sdp.parse(offer.encode()))
    assert (neg.codec, neg.payload_type, neg.event_pt) == ("PCMU", 0, None)


@pytest.mark.parametrize(
    "offer",
    [
        OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 18 101"),  # G.729 only
        OFFER.replace("RTP/AVP", "RTP/SAVP"),  # SRTP
        OFFER.replace("m=audio 40000", "m=video 40000"),
        OFFER.replace("m=audio 40000", "m=audio 0"),  # stream refused
    ],
)
def test_no_common_codec_is_488(offer: str) -> None:
    with pytest.raises(sdp.SdpError) as info:
        sdp.negotiate(sdp.parse(offer.encode()))
    assert info.value.status == 488


def test_hold_is_sendonly_or_a_zero_address() -> None:
    held = sdp.negotiate(sdp.parse(OFFER.replace("a=sendrecv", "a=sendonly").encode()))
    assert held.direction == "recvonly" and held.on_hold
    old_style = sdp.negotiate(
        sdp.parse(OFFER.replace("IN IP4 192.0.2.10\r\nt", "IN IP4 0.0.0.0\r\nt").encode())
    )
    assert old_style.on_hold
    answer = sdp.answer_body(held, "192.0.2.1", 20000, "42", 2).decode()
    assert "a=recvonly" in answer


def test_bad_sdp_is_400() -> None:
    for body in (
        b"",
        b"hello",
        b"v=0\r\nc=IN IP4 not-an-ip\r\n",
        b"v=0\r\nm=audio x RTP/AVP 0\r\n",
    ):
        with pytest.raises(sdp.SdpError) as info:
            sdp.parse(body)
        assert info.value.status == 400


# --- access control -----------------------------------------------------------------------


def test_networks_then_digest() -> None:
    acl = AccessControl([ipaddress.ip_network("10.0.0.0/8")], {"trunk": "s3cret"}, "rx")
    assert acl.check("10.1.2.3", "INVITE", None)[0] is Verdict.ALLOWED
    assert acl.check("::ffff:10.1.2.3", "INVITE", None)[0] is Verdict.ALLOWED
    assert acl.check("192.0.2.9", "INVITE", None)[0] is Verdict.CHALLENGE
    challenge = acl.challenge()
    nonce = challenge.split('nonce="')[1].split('"')[0]
    uri = "sip:reception@192.0.2.1"

    def auth(password: str, user: str = "trunk", n: str = nonce) -> str:
        r = digest_response(user, "rx", password, "INVITE", uri, n, "auth", "00000001", "abc")
        return (
            f'Digest username="{user}", realm="rx", nonce="{n}", uri="{uri}", '
            f'response="{r}", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"'
        )

    assert acl.check("192.0.2.9", "INVITE", auth("s3cret")) == (Verdict.ALLOWED, "trunk")
    assert acl.check("192.0.2.9", "INVITE", auth("wrong"))[0] is Verdict.FORBIDDEN
    assert acl.check("192.0.2.9", "INVITE", auth("s3cret", "eve"))[0] is Verdict.FORBIDDEN
    assert acl.check("192.0.2.9", "INVITE", auth("s3cret", n="1.forged"))[0] is Verdict.FORBIDDEN
    assert acl.check("192.0.2.9", "INVITE", "Basic dHJ1bms=")[0] is Verdict.FORBIDDEN
    no_users = AccessControl([ipaddress.ip_network("10.0.0.0/8")], {}, "rx")
    assert no_users.check("192.0.2.9", "INVITE", None)[0] is Verdict.FORBIDDEN


# --- RTP ----------------------------------------------------------------------------------


def test_rtp_round_trip_and_rejects() -> None:
    pkt = parse_rtp(build_rtp(0, True, 65535, 2**32 - 1, 0xDEADBEEF, b"\xff" * 160))
    assert (pkt.payload_type, pkt.marker, pkt.seq, pkt.ssrc, len(pkt.payload)) == (
        0,
        True,
        65535,
        0xDEADBEEF,
        160,
    )
    # a CSRC and a header extension are skipped
    raw = (
        struct.pack(">BBHII", 0x91, 8, 1, 2, 3) + b"\0\0\0\1" + b"\xbe\xde\x00\x01abcd" + b"x" * 10
    )
    assert parse_rtp(raw).payload == b"x" * 10
    for bad in (b"", b"\x80\x00", b"\x40" + b"\0" * 20, b"\xa0\x00" + b"\0" * 10 + b"\xff"):
        with pytest.raises(RtpError):
            parse_rtp(bad)
    assert is_rtcp(b"\x81\xc9\x00\x07" + b"\0" * 28)
    assert not is_rtcp(build_rtp(0, False, 1, 1, 1, b"\0"))


def _frame(value: int) -> np.ndarray:
    return np.full(FRAME, value, dtype=np.int16)


def test_jitter_buffer_reorders_conceals_loss_and_fills_gaps() -> None:
    jb = JitterBuffer(min_ms=40)
    t = 0.0
    order = [1, 3, 2, 4, 6, 7, 8]  # 2 late but in time, 5 lost
    for seq in order:
        jb.push(65530 + seq, seq * 160, _frame(seq * 100), t)
        t += 0.02
    out = [int(jb.pop_frame()[0]) for _ in range(10)]
    assert out[:4] == [100, 200, 300, 400]
    assert 0 < out[4] < 400  # 5: the last frame again, quieter
    assert out[5:8] == [600, 700, 800]  # across the sequence number wrap
    assert jb.stats.lost == 1
    assert out[8:] == [int(v) for v in out[8:]] and abs(out[9]) < 800  # the stream stopped
    late = jb.stats.late
    jb.push(65530 + 2, 2 * 160, _frame(1), t)  # far too late now
    assert jb.stats.late == late + 1 or jb.stats.duplicates


def test_jitter_buffer_restarts_on_a_new_stream() -> None:
    jb = JitterBuffer(min_ms=40)
    for seq in range(3):
        jb.push(100 + seq, seq * 160, _frame(5), seq * 0.02)
    jb.push(40000, 0, _frame(9), 0.1)  # a jump: a new stream
    assert jb.stats.resets == 1
    jb.push(40001, 160, _frame(9), 0.12)
    frames = [int(jb.pop_frame()[0]) for _ in range(3)]
    assert 9 in frames


def test_rfc4733_one_key_per_event() -> None:
    rx = DtmfReceiver()
    keys = [
        rx.feed(1, 8000, bytes([1, 10, 0, 160])),
        rx.feed(1, 8000, bytes([1, 10, 1, 64])),
        rx.feed(1, 8000, bytes([1, 0x8A, 3, 32])),  # end, sent three times
        rx.feed(1, 8000, bytes([1, 0x8A, 3, 32])),
        rx.feed(1, 9600, bytes([11, 10, 0, 160])),  # "#"
        rx.feed(1, 11200, bytes([16, 10, 0, 160])),  # flash: not a key
        rx.feed(1, 12800, b"\x01"),  # truncated
    ]
    assert [k for k in keys if k] == ["1", "#"]
