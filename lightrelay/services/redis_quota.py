"""Daily counts in Redis, for several processes and hosts (docs/ARCHITECTURE.md, "Quota").

Redis is the authority for admission: one Lua script adds a call only if the
count is below the limit, atomically for every process and host sharing that
Redis, in one round trip (no database write on the hot path). The key
``<prefix>count:<day>:<account>`` expires a day after its day ends.

Batching: the takes that the calls of one event-loop turn ask for go to Redis
together, as one call of the ``TAKE_MANY`` script (each take's check-and-add
in turn, in arrival order): one round trip and one script call for 16 or 64
concurrent calls instead of one each. Each take inside it is the same atomic
check-and-add, so the count stays exact across processes; a caller that left
while its take was on the way gets it given back.

Durability: a charge is kept the moment Redis answers, so a relay process
killed with ``kill -9`` loses nothing. Each process also mirrors the counts it
touched into the ``daily_counts`` table (at most one batched write per
``flush_seconds``), which the CLI and console read, and from which a key is
seeded again if Redis lost it (a Redis restart without persistence) — so even
that loses at most the last flush interval's charges.

If Redis cannot be reached, ``incr`` fails closed with a 503 (``Unavailable``)
unless ``fail_open`` is set, in which case calls are admitted uncounted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from redis.exceptions import NoScriptError, RedisError
from sqlalchemy import text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay.clock import Clock
from lightrelay.db.models import accounts, daily_counts
from lightrelay.db.redis_link import RedisLink
from lightrelay.errors import Unavailable
from lightrelay.perturn import PerTurn
from lightrelay.services.quota import Charge, SqlCounter, Take

log = logging.getLogger("lightrelay.quota")
MAX_BATCH = 256  # takes per TAKE_MANY call (a bigger burst is sent as several, at once)
MIRROR_LOCK = 7_405_552  # PostgreSQL advisory lock: one mirror flush at a time, so writes keep Redis's order

# KEYS[1] count key; ARGV[1] limit (-1: none); ARGV[2] expire-at (unix s); ARGV[3] seed ('' = do not seed)
# returns the new count, -1 when the limit is reached, -2 when the key is missing and no seed was given
RESERVE = b"""
local v = redis.call('GET', KEYS[1])
if not v then
  if ARGV[3] == '' then return -2 end
  redis.call('SET', KEYS[1], ARGV[3])
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
  v = ARGV[3]
end
local limit = tonumber(ARGV[1])
if limit >= 0 and tonumber(v) >= limit then return -1 end
return redis.call('INCR', KEYS[1])
"""
# n takes in arrival order, atomically as a whole. Per take i: KEYS[3i+1] its count key, KEYS[3i+2] its token's
# count key, KEYS[3i+3] its gate (a rate-limit count); ARGV[6i+1..6i+6]: limit (-1: none), expire-at (unix s),
# seed ('' = do not seed), weight, the token's limit (-1: none), the gate's limit (-1: no gate). Answers,
# flattened into 2n numbers: count, status per take. status 0 charged, -1 the limit is reached (the token's
# units stay taken: the caller pays from the extra balance or gives them back), -2 the key is missing and no
# seed was given, -3 the token's own limit is reached (nothing taken), -4 the gate's count is at its limit
# (nothing taken; count is the gate's time to live in ms)
TAKE_MANY = b"""
local out = {}
for i = 0, #KEYS / 3 - 1 do
  local k1, k2, k3, a = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3], 6 * i
  local count, status
  local gl = tonumber(ARGV[a + 6])
  if gl >= 0 and tonumber(redis.call('GET', k3) or '0') >= gl then
    count, status = redis.call('PTTL', k3), -4
  end
  local v
  if not status then
    v = redis.call('GET', k1)
    if not v and ARGV[a + 3] ~= '' then
      redis.call('SET', k1, ARGV[a + 3])
      redis.call('EXPIREAT', k1, ARGV[a + 2])
      v = ARGV[a + 3]
    end
  end
  if status then
  elseif not v then
    count, status = 0, -2
  else
    local w = tonumber(ARGV[a + 4])
    local tl = tonumber(ARGV[a + 5])
    local limit = tonumber(ARGV[a + 1])
    if tl >= 0 then
      local t = tonumber(redis.call('GET', k2) or '0')
      if t + w > tl then count, status = t, -3 else
        redis.call('INCRBY', k2, w)
        redis.call('EXPIREAT', k2, ARGV[a + 2])
      end
    end
    if not status then
      if limit >= 0 and tonumber(v) + w > limit then count, status = tonumber(v), -1
      else count, status = redis.call('INCRBY', k1, w), 0 end
    end
  end
  out[2 * i + 1] = count
  out[2 * i + 2] = status
end
return out
"""
# KEYS[1] a count key; ARGV[1] how many to give back (never below 0)
GIVE = b"""
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local n = tonumber(v) - tonumber(ARGV[1])
if n < 0 then n = 0 end
redis.call('SET', KEYS[1], n, 'KEEPTTL')
return n
"""
REFUND = b"""
local v = redis.call('GET', KEYS[1])
if v and tonumber(v) > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class RedisCounter:
    """Same methods as ``SqlCounter`` (``incr`` / ``decr`` / ``get``), counted in Redis."""

    def __init__(self, link: RedisLink, engine: AsyncEngine, clock: Clock, *, fail_open: bool = False,
                 flush_seconds: float = 0.5) -> None:
        self._link = link
        self._redis = link.client
        self._engine = engine
        self._sql = SqlCounter(engine)  # reads the mirrored count
        self._clock = clock
        self._fail_open = fail_open
        self._flush_seconds = flush_seconds
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._dirty: set[tuple[int, str]] = set()
        self._shas: dict[bytes, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._seeding: dict[tuple[int, str], asyncio.Future[int]] = {}
        self._no_gate = f"{link.prefix}nogate"  # a key never read (a take without a gate gives the limit -1)
        self._takes = PerTurn(self._send_takes, max_batch=MAX_BATCH, on_orphan=self._orphan_take)
        self._expiry: tuple[str, int] = ("", 0)  # (day, when its keys expire)
        self.mirror_writes = 0

    def _key(self, account_id: int, day: str) -> str:
        return f"{self._link.prefix}count:{day}:{account_id}"

    def _expire_at(self) -> int:
        return int((self._clock.next_midnight() + timedelta(days=1)).timestamp())

    def _expire_for(self, day: str) -> int:
        if self._expiry[0] != day:
            self._expiry = (day, self._expire_at())
        return self._expiry[1]

    async def _script(self, script: bytes, key: str, *args: object) -> int:
        return int(await self._eval(script, 1, key, *args))

    async def _eval(self, script: bytes, nkeys: int, *keys_and_args: object) -> Any:
        sha = self._shas.get(script)
        if sha is None:
            sha = self._shas[script] = await self._redis.script_load(script)
        try:
            return await self._redis.evalsha(sha, nkeys, *keys_and_args)
        except NoScriptError:  # Redis restarted and forgot its scripts
            self._shas[script] = await self._redis.script_load(script)
            return await self._redis.evalsha(self._shas[script], nkeys, *keys_and_args)

    def _token_key(self, token_id: int | None, day: str) -> str:
        return f"{self._link.prefix}tcount:{day}:{token_id}"

    gates = True  # take() checks a rate-limit count in the same script (see quota.Quota.reserve)

    async def take(self, account_id: int, day: str, limit: int | None, weight: int = 1,
                   token_id: int | None = None, token_limit: int | None = None, extra: bool = True,
                   gate: tuple[str, int] | None = None) -> Take:
        """Today's count in Redis (with the token's own count and the gate, in the same script); when it
        is full, the call is paid from the extra balance, which the database keeps (one conditional
        UPDATE, only for calls past the daily count). See ``quota.Take``."""
        if not self._link.up:
            return ("daily", await self._unavailable(account_id, day, None), None)
        gate_key, gate_limit = gate or (self._no_gate, -1)
        keys = (self._key(account_id, day), self._token_key(token_id, day), gate_key)
        lim, exp, tl = -1 if limit is None else limit, self._expire_for(day), -1 if token_limit is None else token_limit
        try:
            count, status = await self._takes((keys, (lim, exp, "", weight, tl, gate_limit)))
            if status == -2:  # first call of the day here, or Redis lost the key: seed from the mirror
                seed = await self._seed(account_id, day)
                count, status = await self._takes((keys, (lim, exp, seed, weight, tl, gate_limit)))
        except (RedisError, OSError) as exc:
            return ("daily", await self._unavailable(account_id, day, exc), None)
        if status == -4:
            return ("blocked", max(1, -(-count // 1000)), None)  # PTTL ms up to whole seconds; -1/-2: 1
        if status == -3:
            return ("token_full", token_limit or 0, None)
        if status == 0:
            self._dirty.add((account_id, day))
            return ("daily", count, None)
        left = await self._spend_extra(account_id, weight) if extra else None
        if left is not None:
            return ("extra", count, left)
        if token_limit is not None:
            await self._give_back(keys[1], weight)
        return ("full", count, None)

    async def _seed(self, account_id: int, day: str) -> int:
        """The mirrored count to seed a missing key with: one database read for all the calls that found
        it missing at once (the first burst of the day), so their retries go out together too."""
        key = (account_id, day)
        reading = self._seeding.get(key)
        if reading is None:
            reading = self._seeding[key] = asyncio.ensure_future(self._stored(account_id, day))
            reading.add_done_callback(lambda _: self._seeding.pop(key, None))
        return await asyncio.shield(reading)

    # -- one TAKE_MANY per turn of the event loop ------------------------------------
    async def _send_takes(self, takes: list[tuple[tuple[str, ...], tuple[object, ...]]]) -> list[tuple[int, int]]:
        flat = await self._eval(TAKE_MANY, 3 * len(takes), *[k for keys, _ in takes for k in keys],
                                *[a for _, args in takes for a in args])
        return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def _orphan_take(self, take: tuple[tuple[str, ...], tuple[object, ...]], answer: tuple[int, int]) -> None:
        """Its caller left while the take was on its way: give back what it took."""
        (key, token_key, _), args = take
        weight, token_limit, status = args[3], int(args[4]), answer[1]  # type: ignore[call-overload]
        if status == 0:
            await self._give_back(key, weight)
        if status in (0, -1) and token_limit >= 0:
            await self._give_back(token_key, weight)

    async def _spend_extra(self, account_id: int, weight: int) -> int | None:
        col = accounts.c
        async with self._engine.begin() as conn:
            row = (await conn.execute(update(accounts).where(col.id == account_id, col.extra_calls >= weight)
                                      .values(extra_calls=col.extra_calls - weight)
                                      .returning(col.extra_calls))).first()
        return None if row is None else row[0]

    async def _give_back(self, key: str, weight: int) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._eval(GIVE, 1, key, weight)

    async def give(self, charge: Charge) -> None:
        """Undo a take (a failed call): the extra balance in the database, the counts in Redis."""
        if charge.source == "extra":
            col = accounts.c
            async with self._engine.begin() as conn:
                await conn.execute(update(accounts).where(col.id == charge.account_id)
                                   .values(extra_calls=col.extra_calls + charge.weight))
        elif self._link.up:
            await self._give_back(self._key(charge.account_id, charge.day), charge.weight)
            self._dirty.add((charge.account_id, charge.day))
        if charge.token_id is not None and self._link.up:
            await self._give_back(self._token_key(charge.token_id, charge.day), charge.weight)

    def _down(self) -> Unavailable:
        return Unavailable("调用计数服务（Redis）暂时不可用，请稍后再试",
                           "the call counter (Redis) is unavailable; please retry shortly",
                           code="counter_unavailable", retry_after=5)

    async def incr(self, account_id: int, day: str, limit: int | None) -> int | None:
        """Add one call unless that would pass ``limit``; the new count, or None if refused."""
        if not self._link.up:
            return await self._unavailable(account_id, day, None)
        key, lim = self._key(account_id, day), -1 if limit is None else limit
        try:
            n = await self._script(RESERVE, key, lim, self._expire_at(), "")
            if n == -2:  # first call of the day here, or Redis lost the key: seed from the mirror
                n = await self._script(RESERVE, key, lim, self._expire_at(), await self._stored(account_id, day))
        except (RedisError, OSError) as exc:
            return await self._unavailable(account_id, day, exc)
        if n == -1:
            return None
        self._dirty.add((account_id, day))
        return n

    async def _unavailable(self, account_id: int, day: str, exc: BaseException | None) -> int:
        # A failed command fails this call only (no log per request); the link's own ping decides
        # whether Redis is down, so a slow answer or a busy pool is not taken for an outage.
        if exc is not None:
            log.debug("Redis command failed: %r", exc)
        if not self._fail_open:
            raise self._down()
        return await self._stored(account_id, day) + 1  # admitted uncounted (LIGHTRELAY_REDIS_FAIL_OPEN)

    async def decr(self, account_id: int, day: str) -> None:
        if not self._link.up:
            return  # the charge stays: refunds are lost while Redis is down, never calls over the limit
        try:
            await self._script(REFUND, self._key(account_id, day))
        except (RedisError, OSError):
            return
        self._dirty.add((account_id, day))

    async def get(self, account_id: int, day: str) -> int:
        if self._link.up:
            with contextlib.suppress(RedisError, OSError):
                value = await self._redis.get(self._key(account_id, day))
                if value is not None:
                    return int(value)
        return await self._stored(account_id, day)

    async def _stored(self, account_id: int, day: str) -> int:
        return await self._sql.get(account_id, day)

    # -- the mirror in the database ------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._mirror_forever(), name="count-mirror")

    async def _mirror_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            await self.flush()

    async def flush(self) -> None:
        """Copy the counts touched since the last flush from Redis into ``daily_counts`` (one transaction)."""
        if not self._dirty or not self._link.up:
            return
        dirty, self._dirty = sorted(self._dirty), set()
        try:
            async with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":  # read Redis and write in one order across processes
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIRROR_LOCK})
                values = await self._redis.mget([self._key(a, d) for a, d in dirty])
                rows = [{"account_id": a, "day": d, "count": int(v)} for (a, d), v in zip(dirty, values, strict=True)
                        if v is not None]
                if rows:
                    stmt = self._insert(daily_counts)
                    await conn.execute(stmt.on_conflict_do_update(index_elements=["account_id", "day"],
                                                                  set_={"count": stmt.excluded["count"]}), rows)
            self.mirror_writes += 1
        except (RedisError, OSError):
            self._dirty.update(dirty)
        except Exception:
            log.exception("mirroring daily counts to the database failed; will retry")
            self._dirty.update(dirty)

    async def close(self) -> None:
        await self._takes.drain()  # takes on their way: their answers (and any give-backs) land first
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

