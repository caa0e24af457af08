"""Rate limits for the console (login, sign-up, codes mailed).

``Limiter`` is the seam: ``hit(key)`` counts one attempt and returns None when it
is allowed, or the seconds to wait. ``MemoryLimiter`` keeps a sliding window per
key in this process; a Redis-backed class with the same two methods can replace
it when several processes serve the console.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

MAX_KEYS = 100_000


class Limiter(Protocol):
    def hit(self, key: str) -> int | None: ...

    def reset(self, key: str) -> None: ...


def parse_rate(spec: str) -> tuple[int, float]:
    """``"10/300"`` → (10 attempts, 300 seconds)."""
    count, _, seconds = spec.partition("/")
    return int(count), float(seconds or 60)


class MemoryLimiter:
    """At most ``limit`` hits per ``window`` seconds for each key (sliding window)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}

    @classmethod
    def from_spec(cls, spec: str) -> MemoryLimiter:
        return cls(*parse_rate(spec))

    def hit(self, key: str) -> int | None:
        now = time.monotonic()
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= MAX_KEYS:
                self._prune(now)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(1, int(hits[0] + self.window - now) + 1)
        hits.append(now)
        return None

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window]:
            del self._hits[key]
        if len(self._hits) >= MAX_KEYS:
            self._hits.clear()
