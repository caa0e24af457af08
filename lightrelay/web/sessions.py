"""Console sessions and CSRF tokens.

A session is a random id in an HttpOnly, SameSite=Lax cookie, signed with the
relay's secret; the database keeps only its sha256, with the account and expiry,
so logging out (or changing the password) ends it on every process at once.

CSRF: every state-changing request carries a synchronizer token (form field
``csrf`` or header ``X-CSRF-Token``) equal to HMAC(secret, session id) — or,
before login, HMAC(secret, a random ``lr_pre`` cookie id). The token is never
stored; an attacker's page can neither read the cookie nor compute the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay.clock import utcnow
from lightrelay.db.models import console_sessions

SESSION_COOKIE = "lr_session"
PRE_COOKIE = "lr_pre"
ONCE_COOKIE = "lr_once"  # a new API token, sealed, carried across one redirect to be shown once


class Signer:
    """Signs and checks cookie values, derives CSRF tokens, and seals one-shot values, with the relay's secret."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"lightrelay/console/" + secret.encode()).digest()
        sealing = hashlib.sha256(b"lightrelay/console/once/" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(sealing))

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def open(self, sealed: str | None, *, max_age: int) -> str | None:
        if not sealed:
            return None
        try:
            return self._fernet.decrypt(sealed.encode(), ttl=max_age).decode()
        except InvalidToken:
            return None

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()[:43]

    def sign(self, value: str) -> str:
        return f"{value}.{self._mac('cookie', value)}"

    def unsign(self, signed: str | None) -> str | None:
        if not signed or "." not in signed:
            return None
        value, _, mac = signed.rpartition(".")
        return value if hmac.compare_digest(mac, self._mac("cookie", value)) else None

    def csrf(self, binding: str) -> str:
        return self._mac("csrf", binding)

    def csrf_ok(self, binding: str | None, token: str | None) -> bool:
        return bool(binding and token) and hmac.compare_digest(self.csrf(binding or ""), token or "")


def new_id() -> str:
    return secrets.token_urlsafe(32)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def create_session(engine: AsyncEngine, *, account_id: int, days: int) -> str:
    """Start a session for an account; returns its id (for the cookie)."""
    session_id, now = new_id(), utcnow()
    async with engine.begin() as conn:
        await conn.execute(console_sessions.insert().values(
            id_hash=_hash(session_id), account_id=account_id, created_at=now, expires_at=now + timedelta(days=days)))
    return session_id


async def session_account(engine: AsyncEngine, *, session_id: str) -> int | None:
    """The account of a live session, or None."""
    c = console_sessions.c
    async with engine.connect() as conn:
        row = (await conn.execute(select(c.account_id, c.expires_at).where(c.id_hash == _hash(session_id)))).first()
    if row is None:
        return None
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=utcnow().tzinfo)
    return row.account_id if expires > utcnow() else None


async def end_session(engine: AsyncEngine, *, session_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(console_sessions).where(console_sessions.c.id_hash == _hash(session_id)))


async def end_other_sessions(engine: AsyncEngine, *, account_id: int, keep: str | None = None) -> None:
    """End every session of an account (but ``keep``), e.g. after a password change or reset."""
    stmt: Any = delete(console_sessions).where(console_sessions.c.account_id == account_id)
    if keep:
        stmt = stmt.where(console_sessions.c.id_hash != _hash(keep))
    async with engine.begin() as conn:
        await conn.execute(stmt)
