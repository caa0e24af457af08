"""Token → caller, cached in memory so the hot path does not read the database.

A cached answer is trusted for ``ttl`` seconds, so a token revoked (or an
account disabled, a limit changed) by another process or the CLI stops working
everywhere within that time; changes made through this process call
``invalidate()`` and take effect at once. With Redis configured, ``invalidate()``
also calls ``on_invalidate`` (the app publishes on Redis) and every other
process drops its cache when the message arrives (``forget()``), so the TTL is
only the fallback for when Redis is away.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay import security
from lightrelay.errors import Forbidden, Unauthorized
from lightrelay.services.accounts import Principal, find_principal

MAX_ENTRIES = 100_000


class Authenticator:
    def __init__(self, engine: AsyncEngine, *, ttl: float, on_invalidate: Callable[[], None] | None = None) -> None:
        self._engine = engine
        self._ttl = ttl
        self.on_invalidate = on_invalidate
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def principal(self, token: str | None) -> Principal:
        """The active caller behind ``token``; Unauthorized / Forbidden otherwise."""
        if not token:
            raise Unauthorized("缺少令牌 token", "missing API token", code="missing_api_key")
        token = token.strip()
        if not token.startswith("sk-") or len(token) > 100:
            raise Unauthorized("令牌无效", "invalid API token")
        key = security.hash_token(token)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            found = hit[1]
        else:
            found = await find_principal(self._engine, token_hash=key)
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            self._cache[key] = (now + self._ttl, found)
        if found is None:
            raise Unauthorized("令牌无效或已撤销", "invalid or revoked API token")
        if found.disabled:
            raise Forbidden("账号已被禁用", "this account is disabled", code="account_disabled")
        return found

    def invalidate(self) -> None:
        """Something changed through this process: forget here, and tell the other processes."""
        self._cache.clear()
        if self.on_invalidate is not None:
            self.on_invalidate()

    def forget(self) -> None:
        """Another process changed something: forget cached answers (nothing is published)."""
        self._cache.clear()
