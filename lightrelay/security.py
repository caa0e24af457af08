"""Secrets: API tokens (sha256, looked up by hash, compared in constant time),
passwords (argon2), upstream API keys (Fernet, keyed by the relay's secret)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from lightrelay.errors import ConfigError

if TYPE_CHECKING:  # cryptography (~8 MB) loads on the first seal/open: a relay with keyed channels has it
    from cryptography.fernet import Fernet

_hasher = PasswordHasher()
ARGON2_WAITING = 32  # password hashes/checks queued for the argon2 thread; more are refused (HasherBusy)
_T = TypeVar("_T")


class HasherBusy(Exception):
    """Too many password hashes or checks are waiting (a flood): this one is refused at once."""


class _Argon2:
    """One thread for every argon2 hash and check of the process, off the event loop: a flood of
    password attempts costs at most one core and never stalls the calls the loop is serving
    (argon2-cffi releases the GIL while it hashes). Made on first use."""

    pool: ThreadPoolExecutor | None = None
    waiting = 0

    @classmethod
    async def run(cls, fn: Callable[..., _T], *args: Any) -> _T:
        if cls.waiting >= ARGON2_WAITING:
            raise HasherBusy
        if cls.pool is None:
            cls.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")
        cls.waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(cls.pool, fn, *args)
        finally:
            cls.waiting -= 1


def new_token() -> str:
    """A fresh API token of the documented form ``sk-<uuid4>``."""
    return f"sk-{uuid.uuid4()}"


def hash_token(token: str) -> str:
    # Tokens carry 122 random bits, so a fast hash is safe; the lookup stays cheap.
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def mask_token(token: str) -> str:
    return f"{token[:7]}…{token[-6:]}"


def mask_secret(value: str | None) -> str:
    if not value:
        return ""
    return f"{value[:3]}…{value[-4:]}" if len(value) > 10 else "…"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def hash_password_off_loop(password: str) -> str:
    """``hash_password`` in the argon2 thread (HasherBusy when too many wait)."""
    return await _Argon2.run(hash_password, password)


async def check_password(password_hash: str | None, password: str) -> bool:
    """``verify_password`` in the argon2 thread (HasherBusy when too many wait)."""
    if not password_hash:
        return False
    return await _Argon2.run(verify_password, password_hash, password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class KeyBox:
    """Encrypts upstream API keys at rest with a key derived from the relay's secret."""

    def __init__(self, secret: str) -> None:
        self._key = base64.urlsafe_b64encode(hashlib.sha256(b"lightrelay/upstream-keys/" + secret.encode()).digest())

    @cached_property
    def _fernet(self) -> Fernet:
        from cryptography.fernet import Fernet

        return Fernet(self._key)

    def seal(self, value: str | None) -> str | None:
        return self._fernet.encrypt(value.encode()).decode() if value else None

    def open(self, sealed: str | None) -> str | None:
        if not sealed:
            return None
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise ConfigError("an upstream API key cannot be decrypted: was LIGHTRELAY_SECRET_KEY changed? "
                              "Set it back, or enter the channel keys again") from exc
