"""The daily call count: one atomic, durable reservation per call, refunded if the call fails.

``reserve`` is a single conditional UPDATE (``count = count + 1 WHERE count <
limit``), committed before the upstream is called, so the count is exact under
any concurrency, across processes sharing the database, and survives a crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay.clock import Clock
from lightrelay.db.models import daily_counts
from lightrelay.errors import QuotaExceeded


@dataclass(frozen=True, slots=True)
class Charge:
    """A reserved call: whose, which day, and the count including it."""

    account_id: int
    day: str
    count: int
    limit: int | None


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


class Quota:
    """Reserve / refund a call against an account's daily limit."""

    def __init__(self, counter: SqlCounter, clock: Clock) -> None:
        self.counter = counter
        self.clock = clock

    async def reserve(self, *, account_id: int, limit: int | None) -> Charge:
        day = self.clock.today()
        count = await self.counter.incr(account_id, day, limit)
        if count is None:
            reset = self.clock.next_midnight().strftime("%Y-%m-%d %H:%M %Z")
            raise QuotaExceeded(
                f"今日调用次数已用完（{limit}/{limit}），将于 {reset} 重置",
                f"today's calls are used up ({limit}/{limit}); the count resets at {reset}",
                retry_after=self.clock.seconds_to_midnight(),
            )
        return Charge(account_id=account_id, day=day, count=count, limit=limit)

    async def refund(self, charge: Charge) -> None:
        await self.counter.decr(charge.account_id, charge.day)

    async def used_today(self, account_id: int) -> int:
        return await self.counter.get(account_id, self.clock.today())
