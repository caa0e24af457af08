"""Token guessing: too many unknown API tokens from one client address → 429 for a while.

``Strikes`` is the seam: ``blocked(key)`` gives the seconds to wait (None: go on),
``strike(key)`` counts one miss. ``MemoryStrikes`` keeps a sliding window per key
in this process; a Redis-backed class with the same two methods can replace it
when several processes serve the API.

While an address is blocked every call from it is refused before any token is
looked up, so guessing learns nothing; the block ends when its oldest miss leaves
the window.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

from starlette.requests import Request

from lightrelay.errors import TooManyRequests, Unauthorized
from lightrelay.relay import ChatRequest, Relay, Ticket
from lightrelay.services.accounts import Principal

MAX_KEYS = 100_000


class Strikes(Protocol):
    def blocked(self, key: str) -> int | None: ...

    def strike(self, key: str) -> None: ...


class MemoryStrikes:
    """At most ``limit`` strikes per ``window`` seconds for each key, in this process."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._hits: dict[str, deque[float]] = {}

    @classmethod
    def from_spec(cls, spec: str) -> MemoryStrikes:
        """``"20/60"`` → 20 strikes per 60 seconds."""
        count, _, seconds = spec.partition("/")
        return cls(int(count), float(seconds or 60))

    def _live(self, key: str, now: float) -> deque[float] | None:
        hits = self._hits.get(key)
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def blocked(self, key: str) -> int | None:
        now = time.monotonic()
        hits = self._live(key, now)
        if hits is None or len(hits) < self.limit:
            return None
        return max(1, int(hits[0] + self.window - now) + 1)

    def strike(self, key: str) -> None:
        now = time.monotonic()
        hits = self._live(key, now)
        if hits is None:
            if len(self._hits) >= MAX_KEYS:
                self._hits = {k: h for k, h in self._hits.items() if h and h[-1] > now - self.window}
            hits = self._hits[key] = deque()
        hits.append(now)


class TokenGuard:
    """Wraps token lookups: refuses blocked addresses, counts unknown tokens per address."""

    def __init__(self, strikes: Strikes) -> None:
        self.strikes = strikes

    @staticmethod
    def _key(request: Request) -> str:
        return request.client.host if request.client else "-"

    def _check(self, key: str) -> None:
        wait = self.strikes.blocked(key)
        if wait is not None:
            raise TooManyRequests("无效令牌尝试过多，请稍后再试", "too many invalid API tokens from this address; "
                                  f"try again in {wait} s", code="too_many_invalid_tokens", retry_after=wait)

    def _miss(self, key: str, exc: Unauthorized) -> None:
        if exc.code == "invalid_api_key":  # a token was given and is unknown or revoked
            self.strikes.strike(key)

    async def admit(self, request: Request, relay: Relay, req: ChatRequest) -> Ticket:
        key = self._key(request)
        self._check(key)
        try:
            return await relay.admit(req)
        except Unauthorized as exc:
            self._miss(key, exc)
            raise

    async def principal(self, request: Request, relay: Relay, token: str | None) -> Principal:
        key = self._key(request)
        self._check(key)
        try:
            return await relay.auth.principal(token)
        except Unauthorized as exc:
            self._miss(key, exc)
            raise


def guard_of(request: Request) -> TokenGuard:
    return request.app.state.token_guard
