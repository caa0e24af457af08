"""Usage search, export, totals and pruning (issue 13).

Totals: ``usage_daily`` (by the relay's day) and ``usage_hourly`` (by UTC hour), per account, model,
channel and door, are updated in the same transaction that writes the usage rows (``totals_of`` +
``UPSERTS``, run by the SQLite writer's thread or by the recorder), so dashboards read a few rows per
day instead of scanning calls, and ``prune`` can delete old calls without losing their totals.

Search: filters by account, token, model, channel, door, status and time range, newest first, one
page at a time with a keyset cursor (``id < before``), so page 10,000 costs what page 1 costs. Export
walks the same pages, so a CSV of millions of rows is streamed, never built in memory.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from lightrelay.db.models import accounts, usage, usage_daily, usage_hourly

_SUMS = ("calls", "charged", "errors", "prompt_tokens", "completion_tokens", "total_ms")


def _upsert(table: str, period: str) -> str:
    """Named parameters: the same text runs on sqlite3 (the writer thread) and through SQLAlchemy."""
    cols = [period, "account_id", "model", "channel", "door", *_SUMS]
    adds = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in _SUMS)
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)}) "
            f"ON CONFLICT ({period}, account_id, model, channel, door) DO UPDATE SET {adds}")


UPSERTS = (_upsert("usage_daily", "day"), _upsert("usage_hourly", "hour"))


def totals_of(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows' sums per (day | UTC hour, account, model, channel, door): parameters for ``UPSERTS``."""
    daily: dict[tuple[Any, ...], dict[str, Any]] = {}
    hourly: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        dims = (row["account_id"] or 0, row["model"], row["channel"] or "", row["door"])
        for out, period, key in ((daily, "day", row["day"]), (hourly, "hour", row["created_at"].strftime("%Y-%m-%d %H"))):
            acc = out.get((key, *dims))
            if acc is None:
                acc = out[(key, *dims)] = {period: key, "account_id": dims[0], "model": dims[1], "channel": dims[2],
                                           "door": dims[3], "calls": 0, "charged": 0, "errors": 0,
                                           "prompt_tokens": 0, "completion_tokens": 0, "total_ms": 0.0}
            acc["calls"] += 1
            acc["charged"] += 1 if row["charged"] else 0
            acc["errors"] += 1 if row["status"] >= 400 else 0
            acc["prompt_tokens"] += row["prompt_tokens"]
            acc["completion_tokens"] += row["completion_tokens"]
            acc["total_ms"] += row["total_ms"]
    return list(daily.values()), list(hourly.values())


@dataclass(frozen=True, slots=True)
class Filters:
    """What the usage pages, the CLI and the export filter on (None: any)."""

    account_id: int | None = None
    token_id: int | None = None
    model: str | None = None
    channel: str | None = None
    door: str | None = None
    status: int | None = None  # an exact status; 400 / 500 with ``status_class``: every 4xx / 5xx
    status_class: bool = False
    since: datetime | None = None  # created_at >= (UTC)
    until: datetime | None = None  # created_at < (UTC)

    def where(self) -> list[Any]:
        c, out = usage.c, []
        for col, value in ((c.account_id, self.account_id), (c.token_id, self.token_id), (c.model, self.model),
                           (c.channel, self.channel), (c.door, self.door)):
            if value is not None:
                out.append(col == value)
        if self.status is not None:
            out += ([c.status >= self.status, c.status < self.status + 100] if self.status_class
                    else [c.status == self.status])
        if self.since is not None:
            out.append(c.created_at >= self.since)
        if self.until is not None:
            out.append(c.created_at < self.until)
        return out


async def search(engine: AsyncEngine, filters: Filters, *, before: int | None = None,
                 limit: int = 50) -> list[dict[str, Any]]:
    """One page of calls, newest first; the next page: ``before=`` the last row's id."""
    stmt = (select(usage, accounts.c.email).join(accounts, accounts.c.id == usage.c.account_id, isouter=True)
            .where(*filters.where()).order_by(usage.c.id.desc()).limit(limit))
    if before is not None:
        stmt = stmt.where(usage.c.id < before)
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(stmt)).mappings()]


CSV_COLUMNS = ["id", "created_at", "day", "email", "account_id", "token_id", "model", "channel", "door", "stream",
               "status", "prompt_tokens", "completion_tokens", "first_byte_ms", "total_ms", "charged", "partial",
               "error"]


async def export_csv(engine: AsyncEngine, filters: Filters, *, page: int = 1000) -> AsyncIterator[str]:
    """The matching calls as CSV text, a page of rows per chunk (header first)."""
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(CSV_COLUMNS)
    before: int | None = None
    while True:
        rows = await search(engine, filters, before=before, limit=page)
        for r in rows:
            out.writerow(["" if r[k] is None else (int(r[k]) if isinstance(r[k], bool) else r[k])
                          for k in CSV_COLUMNS])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
        if len(rows) < page:
            return
        before = rows[-1]["id"]


async def daily_totals(engine: AsyncEngine, *, account_id: int | None = None, days: int = 30) -> list[dict[str, Any]]:
    """Per day, from ``usage_daily``: calls, charged, errors, tokens, mean total time; newest day first."""
    c = usage_daily.c
    stmt = (select(c.day, func.sum(c.calls).label("calls"), func.sum(c.charged).label("charged"),
                   func.sum(c.errors).label("errors"), func.sum(c.prompt_tokens).label("prompt_tokens"),
                   func.sum(c.completion_tokens).label("completion_tokens"),
                   (func.sum(c.total_ms) / func.sum(c.calls)).label("avg_ms"))
            .group_by(c.day).order_by(c.day.desc()).limit(days))
    if account_id is not None:
        stmt = stmt.where(c.account_id == account_id)
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def hourly_totals(engine: AsyncEngine, *, since_hour: str) -> list[dict[str, Any]]:
    """Per UTC hour since ``since_hour`` ("YYYY-MM-DD HH"), from ``usage_hourly``; oldest first."""
    c = usage_hourly.c
    stmt = (select(c.hour, func.sum(c.calls).label("calls"), func.sum(c.errors).label("errors"))
            .where(c.hour >= since_hour).group_by(c.hour).order_by(c.hour))
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def prune(engine: AsyncEngine, *, before_day: str, chunk: int = 10_000) -> int:
    """Delete calls of days before ``before_day`` (YYYY-MM-DD, the relay's day), a chunk per transaction
    (the totals stay). Returns how many were deleted."""
    c, deleted = usage.c, 0
    while True:
        async with engine.begin() as conn:
            ids = [r[0] for r in await conn.execute(select(c.id).where(c.day < before_day).limit(chunk))]
            if not ids:
                return deleted
            await conn.execute(delete(usage).where(c.id.in_(ids)))
        deleted += len(ids)


__all__ = ["CSV_COLUMNS", "Filters", "UPSERTS", "daily_totals", "export_csv", "hourly_totals", "prune",
           "search", "totals_of"]
