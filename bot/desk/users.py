"""Desk users and login sessions. Passwords are argon2id hashes (argon2-cffi); the session
cookie carries a random token whose sha256 is stored, with its CSRF token and expiry."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.handoff.records import Agent, Presence, UserRole
from bot.handoff.store import agent_of
from bot.store.schema import SessionRow, UserRow, utcnow

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")
MIN_PASSWORD = 10
_hasher = PasswordHasher()
# verified against when the user does not exist, so timing does not reveal usernames
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class UserError(Exception):
    pass


def parse_skills(spec: str) -> dict[str, int]:
    """``"general:2,billing:1"`` → ``{"general": 2, "billing": 1}`` (level defaults to 1)."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, level = part.partition(":")
        if not re.fullmatch(r"[a-z0-9_-]{1,60}", name):
            raise UserError(f"bad skill name {name!r}: use lower-case letters, digits, _ or -")
        try:
            lvl = int(level) if level else 1
        except ValueError as exc:
            raise UserError(f"skill {name!r}: level must be a number 1-5") from exc
        if not 1 <= lvl <= 5:
            raise UserError(f"skill {name!r}: level must be 1-5")
        out[name] = lvl
    return out


@dataclass(frozen=True, slots=True)
class LoginSession:
    token: str
    csrf_token: str
    user: Agent


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def add(
        self,
        username: str,
        password: str,
        *,
        role: UserRole,
        display_name: str,
        skills: dict[str, int],
        max_chats: int = 3,
    ) -> Agent:
        if not USERNAME.match(username):
            raise UserError("username: 2-80 characters, lower-case letters, digits, . _ -")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password: at least {MIN_PASSWORD} characters")
        if not 1 <= max_chats <= 20:
            raise UserError("max chats: 1-20")
        now = utcnow()
        row = UserRow(
            username=username,
            display_name=display_name or username,
            password_hash=_hasher.hash(password),
            role=role.value,
            skills=skills,
            max_chats=max_chats,
            presence=Presence.OFFLINE.value,
            presence_since=now,
            disabled=False,
            created_at=now,
        )
        try:
            async with self._sessions.begin() as s:
                s.add(row)
        except IntegrityError as exc:
            raise UserError(f"user {username!r} already exists") from exc
        return agent_of(row)

    async def set_password(self, username: str, password: str) -> None:
        """A new password; the user's login sessions end."""
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password: at least {MIN_PASSWORD} characters")
        async with self._sessions.begin() as s:
            row = await s.scalar(select(UserRow).where(UserRow.username == username))
            if row is None:
                raise UserError(f"no user {username!r}")
            row.password_hash = _hasher.hash(password)
            await s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))

    async def list(self) -> list[Agent]:
        async with self._sessions() as s:
            rows = (await s.scalars(select(UserRow).order_by(UserRow.id))).all()
        return [agent_of(r) for r in rows]

    async def login(self, username: str, password: str, hours: float) -> LoginSession | None:
        async with self._sessions() as s:
            row = await s.scalar(select(UserRow).where(UserRow.username == username))
        try:
            if row is None or row.disabled:
                _hasher.verify(_DUMMY_HASH, password)
                return None
            _hasher.verify(row.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        async with self._sessions.begin() as s:
            s.add(
                SessionRow(
                    token_hash=_hash_token(token),
                    user_id=row.id,
                    csrf_token=csrf,
                    created_at=now,
                    expires_at=now + timedelta(hours=hours),
                )
            )
            if _hasher.check_needs_rehash(row.password_hash):
                fresh = await s.get(UserRow, row.id)
                if fresh is not None:
                    fresh.password_hash = _hasher.hash(password)
        return LoginSession(token, csrf, agent_of(row))

    async def session(self, token: str) -> LoginSession | None:
        async with self._sessions() as s:
            sess = await s.get(SessionRow, _hash_token(token))
            if sess is None or sess.expires_at <= utcnow():
                return None
            row = await s.get(UserRow, sess.user_id)
            if row is None or row.disabled:
                return None
            return LoginSession(token, sess.csrf_token, agent_of(row))

    async def logout(self, token: str) -> None:
        async with self._sessions.begin() as s:
            await s.execute(delete(SessionRow).where(SessionRow.token_hash == _hash_token(token)))
