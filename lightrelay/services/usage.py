"""Usage records: queued on the hot path, written in batches by one background task.

``record`` never waits for the database; ``close`` flushes every queued row, so
a clean shutdown loses nothing (unless the database cannot be written for
``close``'s whole timeout: then the count of rows lost is logged and shutdown goes on).
The flushing task is supervised: if it dies it is started again (``lightrelay.supervise``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay.db.models import accounts, usage
from lightrelay.services import usage_stats
from lightrelay.services.usage_stats import UPSERTS, totals_of
from lightrelay.supervise import Supervised

log = logging.getLogger("lightrelay.usage")


class UsageRecorder:
    def __init__(self, engine: AsyncEngine, *, flush_seconds: float = 0.5, batch_size: int = 500,
                 on_record: Callable[[dict[str, Any]], None] | None = None,
                 on_write: Callable[[int, int], None] | None = None,
                 writer: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None) -> None:
        self._engine = engine
        self._writer = writer  # SQLite: the writer thread's insert_usage; else SQLAlchemy here
        self._on_record = on_record  # metrics: sees every row as it is queued
        self._on_write = on_write  # metrics: (rows written, rows still queued) after each write
        self._flush_seconds = flush_seconds
        self._batch_size = batch_size
        self._rows: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self.task = Supervised("usage-recorder", self._run)
        self._closing = False
        self._writing = asyncio.Lock()  # one writer: a flush returns only when earlier rows are written

    def start(self) -> None:
        self.task.start()

    def record(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if self._on_record is not None:
            self._on_record(row)
        if len(self._rows) >= self._batch_size:
            self._wake.set()

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self._flush_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._writing:
            await self._write_all()

    async def _write_all(self) -> None:
        # Only the rows queued now: rows that arrive during the write wait for the next tick, so under
        # load the database sees one write per tick (or per full batch), not one per write's latency.
        pending = len(self._rows)
        while pending > 0 and self._rows:
            size = min(self._batch_size, pending)
            batch, self._rows = self._rows[:size], self._rows[size:]
            pending -= size
            try:
                if self._writer is not None:
                    await self._writer(batch)
                else:
                    async with self._engine.begin() as conn:
                        await conn.execute(usage.insert(), batch)
                        for sql, params in zip(UPSERTS, totals_of(batch), strict=True):  # daily, hourly totals
                            await conn.execute(text(sql), params)
                if self._on_write is not None:
                    self._on_write(len(batch), len(self._rows))
            except Exception as exc:  # keep the unwritten rows; try again on the next tick
                unwritten = getattr(exc, "rows", batch)  # a writer may have written part of the batch
                log.exception("writing %d usage rows failed; will retry", len(unwritten))
                self._rows[:0] = unwritten
                pending += size
                if not self._closing:
                    return
                await asyncio.sleep(0.2)

    async def close(self, timeout: float = 5.0) -> None:
        """Write every queued row; after ``timeout`` s of failing, log how many are lost and return."""
        self._closing = True
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                await self.task.join()
                while self._rows:
                    await self.flush()
        except TimeoutError:
            log.error("%d usage rows could not be written before shutdown (the database did not accept them "
                      "for %.0f s); they are lost", len(self._rows), timeout)
        await self.task.stop()


async def recent_calls(engine: AsyncEngine, *, account_id: int | None = None, limit: int = 20,
                       offset: int = 0) -> list[dict[str, Any]]:
    """Newest calls first, with the account's email."""
    stmt = (
        select(usage, accounts.c.email)
        .join(accounts, accounts.c.id == usage.c.account_id, isouter=True)
        .order_by(usage.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if account_id is not None:
        stmt = stmt.where(usage.c.account_id == account_id)
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def daily_totals(engine: AsyncEngine, *, account_id: int | None = None, days: int = 30) -> list[dict[str, Any]]:
    """Per day: calls, charged calls, errors, tokens, mean total time; newest day first. Read from the
    daily totals (``usage_stats``), kept as rows are written: no scan of the calls, and pruning keeps them."""
    return await usage_stats.daily_totals(engine, account_id=account_id, days=days)
