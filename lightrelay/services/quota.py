"""The daily call count: one atomic, durable reservation per call, refunded if the call fails.

``reserve`` is a single conditional UPDATE (``count = count + w WHERE count + w <=
limit``), committed before the upstream is called, so the count is exact under
any concurrency, across processes sharing the database, and survives a crash.

Extra calls (redemption codes, invites): once a call no longer fits in today's
count, it is paid whole from the account's ``extra_calls`` balance with the same
kind of conditional UPDATE (``extra_calls = extra_calls - w WHERE extra_calls >=
w``). A model's weight ``w`` (``model set MODEL --weight N``) is what one call
costs, in both. A token with its own daily limit also counts its calls in
``token_counts`` (inside the account's count), in the same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay.clock import Clock
from lightrelay.db.models import accounts, daily_counts, image_counts, token_counts
from lightrelay.errors import CallsInFlight, QuotaExceeded, TooManyGuesses

# What a take answered: (source, count, extra_left). source: "daily" (paid from today's count),
# "extra" (paid from the balance; extra_left is what is left), "full" (neither has room; count is
# today's), "token_full" (the token's own daily limit; count is the token's count today), "blocked" (the
# gate's count is at its limit; count is the seconds until it resets; nothing taken).
Take = tuple[str, int, int | None]


@dataclass(frozen=True, slots=True)
class Charge:
    """A reserved call: whose, which day, and the count including it."""

    account_id: int
    day: str
    count: int
    limit: int | None
    weight: int = 1
    source: str = "daily"  # "daily" | "extra"
    token_id: int | None = None  # set when the token's own daily count was charged too
    extra_left: int | None = None  # the balance after this call, when it was paid from it


class SqlCounter:
    """Daily counts kept in the ``daily_counts`` table, through SQLAlchemy (PostgreSQL without Redis;
    on SQLite the app uses ``sqlite_writer.SqliteWriter`` instead, and this class only reads)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        name = engine.dialect.name
        self._insert = postgresql.insert if name == "postgresql" else sqlite.insert

    async def incr(self, account_id: int, day: str, limit: int | None) -> int | None:
        """Add one call unless that would pass ``limit``; the new count, or None if refused."""
        col = daily_counts.c
        async with self._engine.begin() as conn:
            await conn.execute(
                self._insert(daily_counts).values(account_id=account_id, day=day, count=0).on_conflict_do_nothing()
            )
            stmt = (
                update(daily_counts)
                .where(col.account_id == account_id, col.day == day)
                .values(count=col.count + 1)
                .returning(col.count)
            )
            if limit is not None:
                stmt = stmt.where(col.count < limit)
            row = (await conn.execute(stmt)).first()
        return row[0] if row else None

    async def take(self, account_id: int, day: str, limit: int | None, weight: int = 1,
                   token_id: int | None = None, token_limit: int | None = None, extra: bool = True) -> Take:
        """Charge ``weight`` to today's count, else (``extra``) to the extra balance; the token's own
        count too when it has a limit. One transaction: a refusal leaves nothing changed."""
        col, tcol, acol = daily_counts.c, token_counts.c, accounts.c
        async with self._engine.begin() as conn:
            if token_limit is not None:
                await conn.execute(self._insert(token_counts).values(token_id=token_id, day=day, count=0)
                                   .on_conflict_do_nothing())
                row = (await conn.execute(
                    update(token_counts).where(tcol.token_id == token_id, tcol.day == day,
                                               tcol.count + weight <= token_limit)
                    .values(count=tcol.count + weight).returning(tcol.count))).first()
                if row is None:
                    await conn.rollback()
                    return ("token_full", token_limit, None)
            await conn.execute(
                self._insert(daily_counts).values(account_id=account_id, day=day, count=0).on_conflict_do_nothing()
            )
            stmt = (update(daily_counts).where(col.account_id == account_id, col.day == day)
                    .values(count=col.count + weight).returning(col.count))
            if limit is not None:
                stmt = stmt.where(col.count + weight <= limit)
            row = (await conn.execute(stmt)).first()
            if row is not None:
                return ("daily", row[0], None)
            count = (await conn.execute(select(col.count).where(col.account_id == account_id,
                                                                col.day == day))).scalar_one()
            if extra:
                row = (await conn.execute(
                    update(accounts).where(acol.id == account_id, acol.extra_calls >= weight)
                    .values(extra_calls=acol.extra_calls - weight).returning(acol.extra_calls))).first()
                if row is not None:
                    return ("extra", count, row[0])
            await conn.rollback()  # undoes the token's count
            return ("full", count, None)

    async def give(self, charge: Charge) -> None:
        """Undo a take (a failed call)."""
        col, tcol, acol = daily_counts.c, token_counts.c, accounts.c
        w = charge.weight
        async with self._engine.begin() as conn:
            if charge.source == "extra":
                await conn.execute(update(accounts).where(acol.id == charge.account_id)
                                   .values(extra_calls=acol.extra_calls + w))
            else:
                await conn.execute(update(daily_counts).where(col.account_id == charge.account_id,
                                                              col.day == charge.day, col.count >= w)
                                   .values(count=col.count - w))
            if charge.token_id is not None:
                await conn.execute(update(token_counts).where(tcol.token_id == charge.token_id,
                                                              tcol.day == charge.day, tcol.count >= w)
                                   .values(count=tcol.count - w))

    async def decr(self, account_id: int, day: str) -> None:
        col = daily_counts.c
        async with self._engine.begin() as conn:
            await conn.execute(
                update(daily_counts)
                .where(col.account_id == account_id, col.day == day, col.count > 0)
                .values(count=col.count - 1)
            )

    async def get(self, account_id: int, day: str) -> int:
        col = daily_counts.c
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                select(col.count).where(col.account_id == account_id, col.day == day)
            )).first()
        return row[0] if row else 0


IN_FLIGHT_RETRY_SECONDS = 2  # Retry-After for a call refused because of calls still in progress


class Quota:
    """Reserve / refund a call against an account's daily limit."""

    def __init__(self, counter: SqlCounter, clock: Clock) -> None:
        self.counter = counter
        self.clock = clock
        # (account, day) → reservations of this process's calls still running: a refusal while some
        # are is "retry in a moment" (they may be refunded), not "come back tomorrow"
        self._inflight: dict[tuple[int, str], int] = {}

    @property
    def gates(self) -> bool:
        """Whether ``reserve`` takes a ``gate`` (the counter checks it in the same step as the take)."""
        return getattr(self.counter, "gates", False)

    async def reserve(self, *, account_id: int, limit: int | None, weight: int = 1, token_id: int | None = None,
                      token_limit: int | None = None, extra: bool = True,
                      gate: tuple[str, int] | None = None) -> Charge:
        """Charge one call of ``weight`` units: today's count first, then the extra balance.
        ``token_limit``: the token's own daily limit (counted inside the account's). ``gate`` (a rate-limit
        key and its limit, only where ``gates``): refuse with TooManyGuesses, taking nothing, while that
        count is at its limit."""
        day = self.clock.today()
        gated = {} if gate is None else {"gate": gate}  # only a counter that ``gates`` is ever given one
        source, count, extra_left = await self.counter.take(account_id, day, limit, weight, token_id, token_limit,
                                                            extra, **gated)
        if source == "blocked":
            raise TooManyGuesses(count)
        if source in ("full", "token_full") and self._inflight.get((account_id, day)):
            raise self._busy(self._inflight[(account_id, day)])
        if source == "token_full":
            reset = self.clock.next_midnight().strftime("%Y-%m-%d %H:%M %Z")
            raise QuotaExceeded(
                f"此令牌今日调用次数已用完（上限 {token_limit}），将于 {reset} 重置",
                f"this token's calls for today are used up (limit {token_limit}); the count resets at {reset}",
                code="token_daily_limit_reached", retry_after=self.clock.seconds_to_midnight(),
            )
        if source == "full":
            reset = self.clock.next_midnight().strftime("%Y-%m-%d %H:%M %Z")
            cost = f"（本模型每次计 {weight} 次）" if weight != 1 else ""
            cost_en = f" (a call of this model counts {weight})" if weight != 1 else ""
            raise QuotaExceeded(
                f"今日调用次数已用完（{count}/{limit}），额外次数也已用完{cost}，将于 {reset} 重置",
                f"today's calls are used up ({count}/{limit}) and no extra calls are left{cost_en}; "
                f"the count resets at {reset}",
                retry_after=self.clock.seconds_to_midnight(),
            )
        self._inflight[(account_id, day)] = self._inflight.get((account_id, day), 0) + 1
        return Charge(account_id=account_id, day=day, count=count, limit=limit, weight=weight, source=source,
                      token_id=token_id if token_limit is not None else None, extra_left=extra_left)

    async def refund(self, charge: Charge) -> None:
        try:
            await self.counter.give(charge)
        finally:  # only once the refund is written: until then a refused caller is told to retry
            self.settled(charge)

    def settled(self, charge: Charge) -> None:
        """The call of ``charge`` ended (charged or refunded): it no longer holds the count."""
        key = (charge.account_id, charge.day)
        left = self._inflight.get(key, 0) - 1
        if left > 0:
            self._inflight[key] = left
        else:
            self._inflight.pop(key, None)

    @staticmethod
    def _busy(running: int) -> CallsInFlight:
        return CallsInFlight(
            f"今日剩余次数正被 {running} 个进行中的调用占用，请几秒后重试（失败的调用不计次数）",
            f"the rest of today's calls are held by {running} call(s) still in progress; retry in a few "
            "seconds (a call that fails is not counted)",
            retry_after=IN_FLIGHT_RETRY_SECONDS,
        )

    async def used_today(self, account_id: int) -> int:
        return await self.counter.get(account_id, self.clock.today())


# -- images: their own daily count ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ImageCharge:
    """Reserved images: whose, which day, how many, and the count including them."""

    account_id: int
    day: str
    n: int
    count: int
    extra: bool = False  # paid from the extra image balance (redemption codes' --image-calls)


class SqlImageCounter:
    """Today's images in ``image_counts``, through SQLAlchemy: the same conditional UPDATE as the call
    count (``count + n <= limit``), so it is exact across processes sharing the database (on PostgreSQL
    also with Redis: images are few and slow, the row lock is cheap next to them)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def images_take(self, account_id: int, day: str, limit: int | None, n: int) -> int | None:
        col = image_counts.c
        async with self._engine.begin() as conn:
            await conn.execute(
                self._insert(image_counts).values(account_id=account_id, day=day, count=0).on_conflict_do_nothing()
            )
            stmt = (update(image_counts).where(col.account_id == account_id, col.day == day)
                    .values(count=col.count + n).returning(col.count))
            if limit is not None:
                stmt = stmt.where(col.count + n <= limit)
            row = (await conn.execute(stmt)).first()
        return row[0] if row else None

    async def images_extra_take(self, account_id: int, n: int) -> int | None:
        """Spend ``n`` of the account's extra image balance; what is left, or None if it is short."""
        col = accounts.c
        async with self._engine.begin() as conn:
            row = (await conn.execute(update(accounts).where(col.id == account_id, col.extra_image_calls >= n)
                                      .values(extra_image_calls=col.extra_image_calls - n)
                                      .returning(col.extra_image_calls))).first()
        return None if row is None else row[0]

    async def images_extra_give(self, account_id: int, n: int) -> None:
        col = accounts.c
        async with self._engine.begin() as conn:
            await conn.execute(update(accounts).where(col.id == account_id)
                               .values(extra_image_calls=col.extra_image_calls + n))

    async def images_give(self, account_id: int, day: str, n: int) -> None:
        col = image_counts.c
        async with self._engine.begin() as conn:
            await conn.execute(update(image_counts).where(col.account_id == account_id, col.day == day,
                                                          col.count >= n).values(count=col.count - n))

    async def images_get(self, account_id: int, day: str) -> int:
        col = image_counts.c
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                select(col.count).where(col.account_id == account_id, col.day == day))).first()
        return row[0] if row else 0


IMAGE_COUNT_TTL = 5.0  # seconds this process trusts the image count it last saw (for the light info block)


class ImageQuota:
    """Reserve / refund images against an account's daily image limit: the account's ``image_limit``
    (-1 = unlimited), else ``default_limit`` (LIGHTRELAY_DEFAULT_IMAGE_LIMIT; None = unlimited).
    ``counter`` is the SQLite writer (group commits) or a ``SqlImageCounter``."""

    def __init__(self, counter: Any, clock: Clock, *, default_limit: int | None,
                 available: Callable[[], bool] = lambda: True) -> None:
        self.counter = counter
        self.clock = clock
        self.default_limit = default_limit
        self.available = available  # is any channel able to make images?
        self._seen: dict[tuple[int, str], tuple[float, int]] = {}  # (account, day) -> (when, count)
        self._available, self._available_at = False, -1e9

    def limit_of(self, account_limit: int | None) -> int | None:
        if account_limit is None:
            return self.default_limit
        return None if account_limit < 0 else account_limit

    def _note(self, account_id: int, day: str, count: int) -> None:
        if len(self._seen) > 100_000:
            self._seen.clear()
        self._seen[(account_id, day)] = (time.monotonic(), count)

    async def reserve(self, *, account_id: int, account_limit: int | None, n: int) -> ImageCharge:
        day = self.clock.today()
        limit = self.limit_of(account_limit)
        count = await self.counter.images_take(account_id, day, limit, n)
        if count is None and await self.counter.images_extra_take(account_id, n) is not None:
            # today's images are used up: paid from the extra image balance (never expires)
            return ImageCharge(account_id=account_id, day=day, n=n, count=await self.used_today(account_id),
                               extra=True)
        if count is None:
            reset = self.clock.next_midnight().strftime("%Y-%m-%d %H:%M %Z")
            raise QuotaExceeded(
                f"今日图片额度不足（上限 {limit} 张，本次 {n} 张），将于 {reset} 重置",
                f"today's image limit ({limit}) leaves no room for {n} more; the count resets at {reset}",
                code="image_limit_reached", retry_after=self.clock.seconds_to_midnight(),
            )
        self._note(account_id, day, count)
        return ImageCharge(account_id=account_id, day=day, n=n, count=count)

    async def refund(self, charge: ImageCharge) -> None:
        if charge.extra:
            await self.counter.images_extra_give(charge.account_id, charge.n)
            return
        await self.counter.images_give(charge.account_id, charge.day, charge.n)
        hit = self._seen.get((charge.account_id, charge.day))
        if hit is not None:
            self._note(charge.account_id, charge.day, max(0, hit[1] - charge.n))

    async def used_today(self, account_id: int, day: str | None = None) -> int:
        """Images made today (read at most every IMAGE_COUNT_TTL seconds per account in this process)."""
        day = day or self.clock.today()
        hit = self._seen.get((account_id, day))
        if hit is not None and time.monotonic() - hit[0] < IMAGE_COUNT_TTL:
            return hit[1]
        count = await self.counter.images_get(account_id, day)
        self._note(account_id, day, count)
        return count

    def info_now(self, account_id: int, account_limit: int | None, day: str) -> dict[str, Any] | None:
        """``info`` without awaiting, while this process's count is fresh; else None (then ``info``)."""
        hit = self._seen.get((account_id, day))
        if hit is None or time.monotonic() - hit[0] >= IMAGE_COUNT_TTL:
            return None
        limit = self.limit_of(account_limit)
        return {"sdLimitCount": -1 if limit is None else limit, "sdTextToImg": hit[1],
                "isSdHide": "2" if limit != 0 and self._can_make_images() else "1"}

    def _can_make_images(self) -> bool:
        """``available()``, asked at most once a second (it looks at every channel)."""
        now = time.monotonic()
        if now - self._available_at > 1.0:
            self._available, self._available_at = self.available(), now
        return self._available

    async def info(self, account_id: int, account_limit: int | None, day: str | None = None) -> dict[str, Any]:
        """The light protocol's image fields (the seed's types): ``sdLimitCount`` today's limit (-1:
        unlimited), ``sdTextToImg`` images made today, ``isSdHide`` "2" available / "1" not. On every
        light call: dictionary lookups while this process's count is fresh (``day``: the call's)."""
        limit = self.limit_of(account_limit)
        on = limit != 0 and self._can_make_images()
        day = day or self.clock.today()
        try:
            used = await self.used_today(account_id, day)
        except Exception:  # the info block never fails a call: the count last seen (or 0)
            used = self._seen.get((account_id, day), (0.0, 0))[1]
        return {"sdLimitCount": -1 if limit is None else limit, "sdTextToImg": used, "isSdHide": "2" if on else "1"}
