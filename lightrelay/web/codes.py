"""Six-digit codes mailed for sign-up and password reset.

One live code per (email, purpose): a new one replaces the old. A code is
valid ``ttl`` seconds, for ``max_tries`` wrong guesses; it is stored as an HMAC,
and a new one may be sent only ``cooldown`` seconds after the last.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay.clock import utcnow
from lightrelay.db.models import email_codes

REGISTER, RESET = "register", "reset"


class CodeError(Exception):
    """Why a code was refused: ``reason`` is expired | wrong | used_up | none."""

    def __init__(self, reason: str, tries_left: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tries_left = tries_left


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=utcnow().tzinfo)


class Codes:
    def __init__(self, engine: AsyncEngine, *, secret: str, ttl: int, max_tries: int, cooldown: int) -> None:
        self._engine = engine
        self._key = hashlib.sha256(b"lightrelay/codes/" + secret.encode()).digest()
        self.ttl, self.max_tries, self.cooldown = ttl, max_tries, cooldown

    def _hash(self, email: str, purpose: str, code: str) -> str:
        return hmac.new(self._key, f"{purpose}|{email}|{code}".encode(), hashlib.sha256).hexdigest()

    async def wait_before_resend(self, *, email: str, purpose: str) -> int:
        """Seconds until a new code may be sent (0: now)."""
        c = email_codes.c
        async with self._engine.connect() as conn:
            last = (await conn.execute(select(c.created_at).where(c.email == email, c.purpose == purpose)
                                       .order_by(c.id.desc()).limit(1))).scalar()
        if last is None:
            return 0
        left = (_aware(last) + timedelta(seconds=self.cooldown) - utcnow()).total_seconds()
        return max(0, int(left) + 1) if left > 0 else 0

    async def issue(self, *, email: str, purpose: str) -> str:
        """A fresh code (replacing any earlier one for this email and purpose)."""
        code = f"{secrets.randbelow(1_000_000):06d}"
        now = utcnow()
        async with self._engine.begin() as conn:
            await conn.execute(delete(email_codes).where(email_codes.c.email == email,
                                                         email_codes.c.purpose == purpose))
            await conn.execute(email_codes.insert().values(
                email=email, purpose=purpose, code_hash=self._hash(email, purpose, code), created_at=now,
                expires_at=now + timedelta(seconds=self.ttl), tries=0, used=False))
        return code

    async def check(self, *, email: str, purpose: str, code: str) -> None:
        """Accept (and use up) the code, or raise CodeError (a wrong guess is counted)."""
        c = email_codes.c
        error: CodeError | None = None
        async with self._engine.begin() as conn:
            row = (await conn.execute(select(email_codes).where(c.email == email, c.purpose == purpose)
                                      .order_by(c.id.desc()).limit(1))).mappings().first()
            if row is None or row["used"]:
                error = CodeError("none")
            elif _aware(row["expires_at"]) <= utcnow():
                error = CodeError("expired")
            elif row["tries"] >= self.max_tries:
                error = CodeError("used_up")
            elif not hmac.compare_digest(row["code_hash"], self._hash(email, purpose, code.strip())):
                tries = row["tries"] + 1
                await conn.execute(update(email_codes).where(c.id == row["id"]).values(tries=tries))
                error = CodeError("wrong" if tries < self.max_tries else "used_up", self.max_tries - tries)
            else:
                await conn.execute(update(email_codes).where(c.id == row["id"]).values(used=True))
        if error is not None:
            raise error
