"""Signed tokens: the host site's visitor identity, and the widget's resume token.

Format: ``base64url(json payload) "." base64url(HMAC-SHA256(secret, payload part))``.
An identity payload is ``{"name"?, "email"?, "phone"?, "exp": unix seconds}``; the host site
signs it on its server with the shared ``webchat.identity_secret``. Tampered, malformed or
expired tokens are rejected with a reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any


class TokenError(Exception):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(payload: dict[str, Any], secret: str) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify(token: str, secret: str, now: float | None = None) -> dict[str, Any]:
    """The payload of a valid token; :class:`TokenError` saying why otherwise."""
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 4096:
        raise TokenError("malformed token")
    body, mac = token.split(".")
    want = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    try:
        got = _unb64(mac)
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenError("malformed token") from exc
    if not hmac.compare_digest(want, got):
        raise TokenError("bad signature")
    if not isinstance(payload, dict):
        raise TokenError("malformed token")
    exp = payload.get("exp")
    if exp is not None:
        if not isinstance(exp, int | float):
            raise TokenError("malformed expiry")
        if (time.time() if now is None else now) >= exp:
            raise TokenError("expired")
    return payload
