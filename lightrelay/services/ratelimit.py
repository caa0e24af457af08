"""Rate limits: at most ``limit`` events per ``window`` seconds for each key.

One class serves every limit (console logins, sign-ups, codes mailed; unknown API
tokens per address). In one process it counts in memory (a sliding window). Once
``bind(link)`` gives it the relay's Redis link, it counts in Redis (a fixed window:
``INCR`` + expiry), so every process and host sharing that Redis sees the same
count. Limits protect; they do not bill: if Redis fails, the count falls back to
this process's memory (logged once) rather than refusing everyone.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING

from lightrelay.perturn import PerTurn

if TYPE_CHECKING:
    from redis.exceptions import RedisError

    from lightrelay.db.redis_link import RedisLink

log = logging.getLogger("lightrelay.ratelimit")
MAX_KEYS = 100_000


def parse_rate(spec: str) -> tuple[int, float]:
    """``"10/300"`` → (10 events, 300 seconds)."""
    count, _, seconds = spec.partition("/")
    return int(count), float(seconds or 60)


class Window:
    def __init__(self, name: str, limit: int, window: float) -> None:
        self.name, self.limit, self.window = name, limit, window
        self._hits: dict[str, deque[float]] = {}
        self._link: RedisLink | None = None
        self._errors: tuple[type[Exception], ...] = ()  # (RedisError,) once bound: redis-py loads only then
        self._warned = False

    @classmethod
    def from_spec(cls, name: str, spec: str) -> Window:
        return cls(name, *parse_rate(spec))

    def bind(self, link: RedisLink | None) -> None:
        """Count in this Redis from now on (None: in memory)."""
        self._link = link
        if link is not None:
            from redis.exceptions import RedisError

            self._errors = (RedisError,)
            self._reads = PerTurn(self._read_many)

    # -- the API -----------------------------------------------------------------
    async def wait(self, key: str) -> int | None:
        """Seconds to wait while ``key`` is at the limit; None when it may go on. Records nothing.
        With Redis, the reads of one event-loop turn go in one pipeline, one read per distinct key
        (every call checks its address: under load, one round trip serves them all)."""
        if self._link is not None:
            try:
                count, ttl_ms = await self._reads(key)
                return self._over(count, ttl_ms)
            except self._errors as exc:
                self._fallback(exc)
        return self._memory_wait(key, time.monotonic())

    async def _read_many(self, keys: list[str]) -> list[tuple[int, int]]:
        distinct = list(dict.fromkeys(keys))
        async with self._link.client.pipeline(transaction=False) as pipe:  # type: ignore[union-attr]
            for key in distinct:
                pipe.get(self._rkey(key)).pttl(self._rkey(key))
            flat = await pipe.execute()
        got = {key: (int(flat[2 * i] or 0), int(flat[2 * i + 1])) for i, key in enumerate(distinct)}
        return [got[key] for key in keys]

    def gate(self, key: str) -> tuple[str, int] | None:
        """With Redis: (the Redis key of ``key``'s count, the limit), for a script that refuses while the
        count is at the limit (``RedisCounter``'s take); None when counting in memory."""
        return None if self._link is None else (self._rkey(key), self.limit)

    async def add(self, key: str) -> None:
        """Count one event for ``key``."""
        if self._link is not None:
            try:
                await self._incr(key)
                return
            except self._errors as exc:
                self._fallback(exc)
        self._memory_add(key, time.monotonic())

    async def hit(self, key: str) -> int | None:
        """Count one attempt if ``key`` is under the limit; else the seconds to wait."""
        if self._link is not None:
            try:
                count, ttl_ms = await self._incr(key)
                return self._over(count - 1, ttl_ms)  # over when the attempts before this one filled it
            except self._errors as exc:
                self._fallback(exc)
        now = time.monotonic()
        wait = self._memory_wait(key, now)
        if wait is None:
            self._memory_add(key, now)
        return wait

    async def used(self, key: str) -> int:
        """How many events ``key`` has in its window now."""
        if self._link is not None:
            try:
                return int(await self._link.client.get(self._rkey(key)) or 0)
            except self._errors as exc:
                self._fallback(exc)
        return len(self._live(key, time.monotonic()) or ())

    async def give_back(self, key: str) -> None:
        """Un-count the last attempt ``hit`` counted for ``key`` (it turned out to be a good one, e.g. a
        right password): so counting stays atomic, yet only failures fill the window."""
        if self._link is not None:
            try:
                await self._link.client.decr(self._rkey(key))
                return
            except self._errors as exc:
                self._fallback(exc)
        hits = self._hits.get(key)
        if hits:
            hits.pop()

    async def reset(self, key: str) -> None:
        self._hits.pop(key, None)
        if self._link is not None:
            try:
                await self._link.client.delete(self._rkey(key))
            except self._errors as exc:
                self._fallback(exc)

    # -- Redis (fixed window) ----------------------------------------------------
    def _rkey(self, key: str) -> str:
        return f"{self._link.prefix}rl:{self.name}:{key}"  # type: ignore[union-attr]

    async def _incr(self, key: str) -> tuple[int, int]:
        rkey = self._rkey(key)
        async with self._link.client.pipeline(transaction=True) as pipe:  # type: ignore[union-attr]
            count, _, ttl_ms = await (pipe.incr(rkey).expire(rkey, math.ceil(self.window), nx=True)
                                      .pttl(rkey).execute())
        return int(count), int(ttl_ms)

    def _over(self, count: int, ttl_ms: int) -> int | None:
        if count < self.limit:
            return None
        return max(1, math.ceil(ttl_ms / 1000)) if ttl_ms and ttl_ms > 0 else 1

    def _fallback(self, exc: RedisError) -> None:
        if not self._warned:
            log.warning("rate limit %s: Redis failed (%s); counting in this process meanwhile",
                        self.name, type(exc).__name__)
            self._warned = True

    # -- memory (sliding window) -------------------------------------------------
    def _live(self, key: str, now: float) -> deque[float] | None:
        hits = self._hits.get(key)
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def _memory_wait(self, key: str, now: float) -> int | None:
        hits = self._live(key, now)
        if hits is None or len(hits) < self.limit:
            return None
        return max(1, int(hits[0] + self.window - now) + 1)

    def _memory_add(self, key: str, now: float) -> None:
        hits = self._live(key, now)
        if hits is None:
            if len(self._hits) >= MAX_KEYS:
                self._hits = {k: h for k, h in self._hits.items() if h and h[-1] > now - self.window}
            hits = self._hits[key] = deque()
        hits.append(now)


class PerMinute:
    """Requests per minute with a limit per key (a token's ``--rpm``): one ``Window`` per distinct limit,
    all counting under the same name, so the count of a key is shared by every process once bound to
    Redis (the fixed window's ``INCR`` is atomic: exact across processes)."""

    def __init__(self, name: str, window: float = 60.0) -> None:
        self.name, self.window = name, window
        self._windows: dict[int, Window] = {}
        self._link: RedisLink | None = None

    def bind(self, link: RedisLink | None) -> None:
        self._link = link
        for w in self._windows.values():
            w.bind(link)

    async def hit(self, key: str, limit: int) -> int | None:
        """Count one request for ``key`` if under ``limit``; else the seconds to wait."""
        window = self._windows.get(limit)
        if window is None:
            window = self._windows[limit] = Window(self.name, limit, self.window)
            window.bind(self._link)
        return await window.hit(key)
