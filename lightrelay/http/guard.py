"""Token guessing: too many unknown API tokens from one client address → 429 for a while.

The count is a ``services.ratelimit.Window`` (``LIGHTRELAY_RATE_BAD_TOKEN``): in this
process's memory, or in Redis when the relay has one, so every process shares it.
While an address is at the limit every call from it is refused before any token is
looked up, so guessing learns nothing.

Database reads of tokens the cache does not know are bounded per address: at most
``limit - strikes`` run at once (the others wait for one to finish), so a burst of 2,000
unknown tokens at once gets exactly the limit's worth of reads, while a burst of many good
tokens (a proxy serving many users from one address) only waits its turn. Concurrent calls
with the same token share its one read. A token the cache knows (good or unknown) reads
nothing; an unknown one is counted as a miss.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any, TypeVar

from starlette.requests import Request

from lightrelay.errors import RelayError, TooManyGuesses, TooManyRequests, Unauthorized
from lightrelay.relay import ChatRequest, Relay, Ticket
from lightrelay.services.accounts import Principal
from lightrelay.services.ratelimit import Window

_T = TypeVar("_T")


class TokenGuard:
    """Wraps token lookups: refuses blocked addresses, counts unknown tokens per address."""

    def __init__(self, strikes: Window, trusted: tuple[IPv4Network | IPv6Network, ...] = ()) -> None:
        self.strikes = strikes
        self.trusted = trusted  # LIGHTRELAY_TRUSTED_PROXIES
        self._counted: set[str] = set()  # tokens whose database read is counted by a call under way
        self._reading: dict[str, int] = {}  # address -> counted reads under way
        self._room = asyncio.Condition()  # notified when a counted read ends

    def address(self, request: Request) -> str:
        """The caller's address as the relay sees it (LIGHTRELAY_TRUSTED_PROXIES)."""
        return client_address(request, self.trusted)

    _key = address

    async def _check(self, key: str) -> None:
        wait = await self.strikes.wait(key)
        if wait is not None:
            raise self._blocked(wait)

    async def _guarded(self, key: str, relay: Relay, token: str | None, look_up: Coroutine[Any, Any, _T]) -> _T:
        cached = relay.auth.cached(token)
        if cached is not None or token in self._counted:  # no database read of its own
            try:
                await self._check(key)
            except TooManyRequests:
                look_up.close()
                raise
            try:
                return await look_up
            except Unauthorized as exc:
                await self._strike(key, exc)
                raise
        assert token is not None
        self._counted.add(token)  # before any await: the same token's other calls join this count
        try:
            return await self._counted_read(key, look_up)
        finally:
            self._counted.discard(token)

    async def _counted_read(self, key: str, look_up: Coroutine[Any, Any, _T]) -> _T:
        limit = self.strikes.limit
        try:
            while True:
                used = await self.strikes.used(key)
                if used >= limit:
                    await self._check(key)
                    raise self._blocked(1)  # at the limit, though the window's wait says otherwise
                if used + self._reading.get(key, 0) < limit:  # checked and taken without an await between
                    self._reading[key] = self._reading.get(key, 0) + 1
                    break
                async with self._room:  # every slot left is taken by a read under way: wait for one
                    await self._room.wait()
        except BaseException:
            look_up.close()
            raise
        try:
            try:
                return await look_up
            except Unauthorized as exc:
                await self._strike(key, exc)  # before the slot is freed
                raise
        finally:
            left = self._reading[key] - 1
            if left:
                self._reading[key] = left
            else:
                del self._reading[key]
            async with self._room:
                self._room.notify_all()

    async def _strike(self, key: str, exc: RelayError) -> None:
        """A token was given and is unknown or revoked: one strike for the address."""
        if isinstance(exc, Unauthorized) and exc.code == "invalid_api_key":
            await self.strikes.add(key)

    @staticmethod
    def _blocked(wait: int) -> TooManyRequests:
        return TooManyGuesses(wait)

    async def admit(self, request: Request, relay: Relay, req: ChatRequest) -> Ticket:
        key = req.client_ip = self._key(request)
        gate = self.strikes.gate(key) if relay.quota.gates and relay.auth.cached(req.token) else None
        if gate is None:
            return await self._guarded(key, relay, req.token, relay.admit(req))
        # A good token the cache knows, strikes counted in Redis: the address's check rides in the call's
        # own take (one Redis round trip, not two); a call refused before its take (model, address, rpm…)
        # checks the address then, so a blocked address still learns nothing from the answer.
        req.gate = gate
        try:
            return await relay.admit(req)
        except TooManyGuesses:
            raise
        except RelayError as exc:
            await self._strike(key, exc)  # revoked meanwhile
            await self._check(key)
            raise

    async def principal(self, request: Request, relay: Relay, token: str | None) -> Principal:
        return await self._guarded(self._key(request), relay, token, relay.auth.principal(token))


def client_address(request: Request, trusted: tuple[IPv4Network | IPv6Network, ...]) -> str:
    """The caller's address: the peer's, unless the peer is a trusted proxy; then the last address in
    ``X-Forwarded-For`` that is not a trusted proxy (the ones before it could be made up by the caller)."""
    peer = request.client.host if request.client else "-"
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop if _valid(hop) else peer
    return hops[0] if hops and _valid(hops[0]) else peer


def public_base(request: Request, trusted: tuple[IPv4Network | IPv6Network, ...]) -> str:
    """The relay's address as its callers reach it (the 我的 → API page shows it): the request's own, with
    the scheme from ``X-Forwarded-Proto`` when the peer is a trusted proxy (TLS often ends there)."""
    base = str(request.base_url).rstrip("/")
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if proto in ("http", "https") and trusted and request.client and _trusted(request.client.host, trusted):
        base = proto + base[base.index(":"):]
    return base


def _valid(address: str) -> bool:
    try:
        ip_address(address)
    except ValueError:
        return False
    return True


def _trusted(address: str, trusted: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def guard_of(request: Request) -> TokenGuard:
    return request.app.state.token_guard
