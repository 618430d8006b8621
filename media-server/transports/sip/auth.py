"""Who may call: allowed source networks, else HTTP digest authentication (RFC 3261 22,
RFC 2617 with MD5 and ``qop=auth``) for trunks that register a user name and password.

Nonces are stateless: ``time.hex-hmac``; a nonce older than ``NONCE_TTL_S`` is stale (the
peer is challenged again with ``stale=true``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from enum import Enum

NONCE_TTL_S = 300
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9\-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)\s*,?')

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Verdict(Enum):
    ALLOWED = "allowed"
    CHALLENGE = "challenge"  # 401 with a (new) nonce
    STALE = "stale"  # 401 with stale=true
    FORBIDDEN = "forbidden"  # 403


class AccessControl:
    def __init__(
        self,
        networks: Iterable[IpNetwork],
        users: Mapping[str, str],
        realm: str,
        key: bytes | None = None,
    ) -> None:
        self.networks = tuple(networks)
        self.users = dict(users)
        self.realm = realm
        self._key = key or secrets.token_bytes(32)

    def network_allowed(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == n.version and addr in n for n in self.networks)

    def check(self, ip: str, method: str, authorization: str | None) -> tuple[Verdict, str]:
        """The verdict for a request, and the user name or a reason for the log."""
        if self.network_allowed(ip):
            return Verdict.ALLOWED, "network"
        if not self.users:
            return Verdict.FORBIDDEN, "source network not allowed"
        if authorization is None:
            return Verdict.CHALLENGE, "no credentials"
        creds = parse_authorization(authorization)
        if creds is None:
            return Verdict.FORBIDDEN, "malformed Authorization"
        user = creds.get("username", "")
        password = self.users.get(user)
        if password is None or creds.get("realm") != self.realm:
            return Verdict.FORBIDDEN, "unknown user or realm"
        if creds.get("algorithm", "MD5").upper() != "MD5":
            return Verdict.FORBIDDEN, "unsupported digest algorithm"
        nonce = creds.get("nonce", "")
        fresh = self._nonce_age(nonce)
        if fresh is None:
            return Verdict.FORBIDDEN, "forged nonce"
        expected = digest_response(
            user,
            self.realm,
            password,
            method,
            creds.get("uri", ""),
            nonce,
            creds.get("qop"),
            creds.get("nc"),
            creds.get("cnonce"),
        )
        if not hmac.compare_digest(expected, creds.get("response", "").lower()):
            return Verdict.FORBIDDEN, "wrong password"
        if fresh > NONCE_TTL_S:
            return Verdict.STALE, "stale nonce"
        return Verdict.ALLOWED, user

    def challenge(self, stale: bool = False) -> str:
        nonce = self._new_nonce()
        value = f'Digest realm="{self.realm}", nonce="{nonce}", algorithm=MD5, qop="auth"'
        return value + (", stale=true" if stale else "")

    def _new_nonce(self) -> str:
        stamp = f"{int(time.time()):x}"
        return f"{stamp}.{self._sign(stamp)}"

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def _nonce_age(self, nonce: str) -> float | None:
        stamp, _, mac = nonce.partition(".")
        if not stamp or not hmac.compare_digest(mac, self._sign(stamp)):
            return None
        try:
            return time.time() - int(stamp, 16)
        except ValueError:
            return None


def parse_authorization(value: str) -> dict[str, str] | None:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest" or len(rest) > 4096:
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None:
            return None
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[m.group(1).lower()] = v
        pos = m.end()
    return params


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_response(
    user: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    ha1 = _md5(f"{user}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    if qop:
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")
