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

import asyncio
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
        self._reading: dict[str, asyncio.Future[Principal | None]] = {}  # reads under way, by token hash
        self._generation = 0  # bumped by every invalidation

    def cached(self, token: str | None) -> bool | None:
        """Whether answering ``token`` needs no database read: True (a good one in the cache), False
        (refused without a read: malformed, or unknown in the cache), None (it needs a read)."""
        if not token or not token.strip().startswith("sk-") or len(token.strip()) > 100:
            return False
        hit = self._cache.get(security.hash_token(token.strip()))
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1] is not None

    async def principal(self, token: str | None) -> Principal:
        """The active caller behind ``token``; Unauthorized / Forbidden otherwise."""
        if not token:
            raise Unauthorized("缺少令牌 token", "missing API token", code="missing_api_key")
        token = token.strip()
        if not token.startswith("sk-") or len(token) > 100:
            raise Unauthorized("令牌无效", "invalid API token")
        key = security.hash_token(token)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            found = hit[1]
        else:
            found = await self._look_up(key)
        if found is None:
            raise Unauthorized("令牌无效或已撤销", "invalid or revoked API token")
        if found.disabled:
            raise Forbidden("账号已被禁用", "this account is disabled", code="account_disabled")
        if found.expires_at is not None and found.expires_at <= time.time():
            raise Unauthorized("令牌已过期", "this API token has expired", code="token_expired")
        return found

    async def _look_up(self, key: str) -> Principal | None:
        """One database read per token at a time: when a busy token's entry expires, the calls
        that miss meanwhile wait for the same read instead of each making its own (64 such reads
        queued behind aiosqlite's one thread held every call for ~300 ms, every ``ttl`` seconds)."""
        task = self._reading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._read(key, self._generation))
            self._reading[key] = task
            task.add_done_callback(lambda _: self._reading.pop(key, None) if self._reading.get(key) is task else None)
        return await asyncio.shield(task)  # a caller that leaves does not cancel the others' read

    async def _read(self, key: str, generation: int) -> Principal | None:
        started = time.monotonic()
        found = await find_principal(self._engine, token_hash=key)
        if generation == self._generation:  # not read across an invalidation: safe to keep
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            self._cache[key] = (started + self._ttl, found)
        return found

    def invalidate(self) -> None:
        """Something changed through this process: forget here, and tell the other processes."""
        self._drop()
        if self.on_invalidate is not None:
            self.on_invalidate()

    def forget(self) -> None:
        """Another process changed something: forget cached answers (nothing is published)."""
        self._drop()

    def _drop(self) -> None:
        self._cache.clear()
        self._reading.clear()  # reads already under way finish for their callers, and are not kept
        self._generation += 1
