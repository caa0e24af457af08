"""Secrets: API tokens (sha256, looked up by hash, compared in constant time),
passwords (argon2), upstream API keys (Fernet, keyed by the relay's secret)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

_hasher = PasswordHasher()


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
        key = hashlib.sha256(b"lightrelay/upstream-keys/" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, value: str | None) -> str | None:
        return self._fernet.encrypt(value.encode()).decode() if value else None

    def open(self, sealed: str | None) -> str | None:
        if not sealed:
            return None
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("an upstream API key cannot be decrypted: was LIGHTRELAY_SECRET_KEY changed?") from exc
