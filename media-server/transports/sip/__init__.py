"""SIP trunks and PBXs call the receptionist directly: a SIP user agent server (UDP and
TCP) with G.711 RTP, RFC 4733 key presses, access control and digest authentication.

- :mod:`.message`: the SIP message parser and serializer (strict limits)
- :mod:`.sdp`: SDP offer/answer for one audio stream
- :mod:`.auth`: allowed networks and digest authentication
- :mod:`.rtp`: RTP/RTCP, jitter buffer, loss concealment, telephone events
- :mod:`.dialog`: one call, its state machine and its voice session
- :mod:`.uas`: the server: transports, transactions, dispatch
"""

from media_server.transports.sip.uas import SipServer

__all__ = ["SipServer"]
