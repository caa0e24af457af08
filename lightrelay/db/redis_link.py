"""The relay's link to Redis: one client, its health, and the invalidation broadcast.

Health: a background ping every second, on a connection of its own, keeps
``up`` / ``reason`` current (a failed command on the hot path fails only that
call: one slow answer or a busy pool is not an outage). Changes of state
are logged once each ("Redis unavailable: …", "Redis is back"), never per
request, and shown on the ``lightrelay_counter_backend_up`` gauge and ``/readyz``.
While the link is down, callers fail fast instead of waiting on timeouts; the
ping brings it back up by itself within a second of Redis returning.

Broadcast: ``publish(topic)`` sends ``auth`` or ``channels`` on
``<prefix>invalidate``; every relay process subscribed there calls its handler
(drop the token cache, reload channels). After a (re)subscription the handler is
called with ``"resync"``, since messages sent while disconnected were missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from lightrelay.supervise import Supervised

log = logging.getLogger("lightrelay.redis")
PING_SECONDS = 1.0
TOPICS = ("auth", "channels")


def _client(url: str, timeout: float, *, pool_size: int = 1) -> aioredis.Redis:
    """A client whose pool holds at most ``pool_size`` connections; a caller beyond that waits up to
    ``timeout`` for one (a burst queues briefly instead of failing or opening thousands of sockets)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=pool_size, timeout=timeout, socket_connect_timeout=timeout, socket_timeout=timeout,
        retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError],  # once: a connection gone stale
    )
    return aioredis.Redis(connection_pool=pool)


async def publish_once(url: str, prefix: str, topic: str, *, timeout: float = 2.0) -> bool:
    """Send one invalidation from a short-lived process (the CLI); False if Redis could not be reached."""
    client = _client(url, timeout)
    try:
        await client.publish(f"{prefix}invalidate", topic)
        return True
    except (RedisError, OSError) as exc:
        log.warning("could not tell running relays about the change (%s); they notice within the cache TTL", exc)
        return False
    finally:
        await client.aclose()


class RedisLink:
    """``client`` serves the hot path (a pool of ``pool_size``); the health ping and the subscription
    have connections of their own, so a busy pool is never mistaken for Redis being down."""

    def __init__(self, url: str, *, prefix: str, timeout: float, pool_size: int = 64,
                 on_state: Callable[[bool], None] | None = None) -> None:
        self.client = _client(url, timeout, pool_size=pool_size)
        self._control = _client(url, timeout, pool_size=2)  # ping + pubsub
        self.prefix = prefix
        self.channel = f"{prefix}invalidate"
        self.up = True
        self.reason: str | None = None
        self._on_state = on_state
        self._handler: Callable[[str], Awaitable[None]] | None = None
        self._tasks: list[Supervised] = []  # the ping and the listener, started again if they die
        self._pending: set[asyncio.Task[None]] = set()

    # -- health -----------------------------------------------------------------
    def mark_down(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.up:
            log.error("Redis unavailable (%s); daily counts fail until it is back", reason)
            self.up = False
            if self._on_state:
                self._on_state(False)
        self.reason = reason

    def mark_up(self) -> None:
        if not self.up:
            log.warning("Redis is back; counting again")
            self.up = True
            self.reason = None
            if self._on_state:
                self._on_state(True)

    async def check(self) -> None:
        try:
            await self._control.ping()
        except (RedisError, OSError) as exc:
            self.mark_down(exc)
        else:
            self.mark_up()

    async def _ping_forever(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(PING_SECONDS)

    # -- broadcast --------------------------------------------------------------
    def publish_soon(self, topic: str) -> None:
        """Publish without waiting (for synchronous callers such as ``Authenticator.invalidate``)."""
        task = asyncio.get_running_loop().create_task(self.publish(topic))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def publish(self, topic: str) -> None:
        try:
            await self.client.publish(self.channel, topic)
        except (RedisError, OSError) as exc:
            log.warning("could not broadcast a %s change (%s); other processes notice within the cache TTL",
                        topic, exc)

    async def _listen_forever(self) -> None:
        assert self._handler is not None
        while True:
            pubsub = self._control.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                await self._handler("resync")
                while True:
                    msg = await pubsub.get_message(timeout=PING_SECONDS)
                    if msg and msg.get("type") == "message":
                        topic = msg["data"].decode() if isinstance(msg["data"], bytes) else str(msg["data"])
                        if topic in TOPICS:
                            await self._handler(topic)
            except (RedisError, OSError) as exc:
                self.mark_down(exc)
            except Exception:
                log.exception("invalidation listener failed; restarting it")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(PING_SECONDS)

    # -- life -------------------------------------------------------------------
    async def start(self, handler: Callable[[str], Awaitable[None]]) -> None:
        self._handler = handler
        await self.check()
        self._tasks = [Supervised("redis-ping", self._ping_forever),
                       Supervised("redis-invalidate", self._listen_forever)]
        for task in self._tasks:
            task.start()

    @property
    def watching(self) -> str | None:
        """None while the ping and the listener run; else which is down and why."""
        down = [f"{t.name}: {t.reason or 'not running'}" for t in self._tasks if not t.up]
        return "; ".join(down) or None

    async def close(self) -> None:
        for task in self._tasks:
            await task.stop()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.client.aclose()
        await self._control.aclose()
