"""The token an agent's browser shows the media server to take a live phone call's audio.

The bot issues it (in the desk's ticket detail, to the agent who owns a voice ticket); the
media server verifies it. Both read the same secret, ``settings.secret("media-agent")``,
generated once into the shared data directory. The token is the webchat identity format
(:mod:`bot.webchat.identity`): HMAC-SHA256 over ``{"cid", "agent", "exp", "use"}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.config import Settings
from bot.webchat.identity import TokenError, sign, verify

SECRET_NAME = "media-agent"
TOKEN_TTL_S = 600
_USE = "agent-audio"

__all__ = ["AgentGrant", "TokenError", "agent_audio_url", "check", "issue"]


@dataclass(frozen=True)
class AgentGrant:
    conversation_id: str
    agent_id: int
    expires_at: float


def issue(
    settings: Settings, conversation_id: str, agent_id: int, *, ttl_s: float = TOKEN_TTL_S
) -> str:
    payload = {
        "cid": conversation_id,
        "agent": agent_id,
        "exp": int(time.time() + ttl_s),
        "use": _USE,
    }
    return sign(payload, settings.secret(SECRET_NAME))


def check(secret: str, token: str) -> AgentGrant:
    """The grant of a valid token; :class:`TokenError` (bad, forged, expired) otherwise."""
    payload = verify(token, secret)
    cid, agent, exp = payload.get("cid"), payload.get("agent"), payload.get("exp")
    if payload.get("use") != _USE or not isinstance(cid, str) or not isinstance(agent, int):
        raise TokenError("not an agent audio token")
    if not isinstance(exp, int | float):
        raise TokenError("token without expiry")
    return AgentGrant(cid, agent, float(exp))


def agent_audio_url(settings: Settings) -> str:
    """The media server's WebSocket for agent audio, as a browser reaches it."""
    base = settings.media.url()
    scheme, sep, rest = base.partition("://")
    ws = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    return f"{ws}{sep}{rest}/media/agent"
