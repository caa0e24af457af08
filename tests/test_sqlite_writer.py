"""The group-committing SQLite counter: exact with two writers on one file, and a cancelled
reservation does not stay charged."""

from __future__ import annotations

import asyncio

from lightrelay.db.engine import migrate
from lightrelay.services import accounts
from lightrelay.services.sqlite_writer import SqliteWriter
from tests.conftest import make_settings


async def _db(tmp_path):
    from lightrelay.db.engine import make_engine

    settings = make_settings(tmp_path)
    await migrate(settings)
    engine = make_engine(settings)
    await accounts.create_account(engine, email="c@example.com", daily_limit=10)
    await engine.dispose()
    return str(settings.data_dir / "lightrelay.db")


async def test_two_writers_on_one_file_stay_exact(tmp_path):
    path = await _db(tmp_path)
    a, b = SqliteWriter(path), SqliteWriter(path)  # two connections, as two processes would have
    results = await asyncio.gather(*((a if i % 2 else b).incr(1, "2030-01-01", 10) for i in range(200)))
    admitted = sorted(r for r in results if r is not None)
    assert admitted == list(range(1, 11))
    await a.decr(1, "2030-01-01")
    assert await b.get(1, "2030-01-01") == 9
    assert await a.incr(1, "2030-01-02", None) == 1  # a new day starts at 0; None = unlimited
    await a.close()
    await b.close()


async def test_cancelled_reservation_is_undone(tmp_path):
    from lightrelay.services.sqlite_writer import USAGE_CHUNK

    path = await _db(tmp_path)
    counter = SqliteWriter(path)
    busy = asyncio.create_task(counter.insert_usage([_row(i) for i in range(USAGE_CHUNK * 3)]))
    await asyncio.sleep(0)  # the thread has work: the reservation below is queued, not made at once
    task = asyncio.create_task(counter.incr(1, "2030-01-01", 10))
    await asyncio.sleep(0)  # queued, maybe written
    task.cancel()
    await busy
    await asyncio.gather(task, return_exceptions=True)
    for _ in range(100):
        if await counter.get(1, "2030-01-01") == 0:
            break
        await asyncio.sleep(0.01)
    assert await counter.get(1, "2030-01-01") == 0
    await counter.close()


def _row(i: int, **over):
    from lightrelay.clock import utcnow

    row = {"created_at": utcnow(), "day": "2030-01-01", "account_id": 1, "token_id": 1, "model": "m",
           "channel": "c", "door": "light", "stream": False, "status": 200, "prompt_tokens": i,
           "completion_tokens": 1, "first_byte_ms": None, "total_ms": 1.0, "charged": True, "partial": False,
           "error": None}
    row.update(over)
    return row


async def _usage_count(path: str) -> int:
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM usage").fetchone()[0]


async def test_usage_rows_in_chunks_and_reservations_in_between(tmp_path):
    from lightrelay.services.sqlite_writer import USAGE_CHUNK

    path = await _db(tmp_path)
    writer = SqliteWriter(path)
    rows = [_row(i) for i in range(USAGE_CHUNK * 5 + 7)]
    insert = asyncio.create_task(writer.insert_usage(rows))
    await asyncio.sleep(0)  # the chunks are queued
    assert await writer.incr(1, "2030-01-01", 10) == 1  # answered while the usage chunks are written
    await insert
    assert await _usage_count(path) == len(rows)
    await writer.close()
    # read back as the console reads them: SQLAlchemy sees the same values, created_at included
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import create_async_engine

    from lightrelay.db.models import usage

    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.connect() as conn:
        back = [dict(r) for r in (await conn.execute(select(usage).order_by(usage.c.id))).mappings()]
    await engine.dispose()
    for row, got in zip(rows, back, strict=True):
        assert got["created_at"].replace(tzinfo=None) == row["created_at"].replace(tzinfo=None)
        assert {k: got[k] for k in row if k != "created_at"} == {k: v for k, v in row.items() if k != "created_at"}
    await writer.close()


async def test_a_failed_chunk_returns_only_its_rows(tmp_path):
    from lightrelay.services.sqlite_writer import USAGE_CHUNK, UnwrittenRows

    path = await _db(tmp_path)
    writer = SqliteWriter(path)
    rows = [_row(i) for i in range(USAGE_CHUNK * 3)]
    rows[USAGE_CHUNK + 5]["model"] = None  # NOT NULL: the second chunk fails, the others are written
    try:
        await writer.insert_usage(rows)
    except UnwrittenRows as exc:
        assert exc.rows == rows[USAGE_CHUNK:USAGE_CHUNK * 2]
    else:
        raise AssertionError("the bad chunk was written")
    assert await _usage_count(path) == USAGE_CHUNK * 2
    await writer.close()


async def test_reservation_at_once_when_idle_and_queued_while_another_holds_the_lock(tmp_path):
    import sqlite3

    path = await _db(tmp_path)
    writer = SqliteWriter(path)
    assert await writer.incr(1, "2030-01-01", 10) == 1
    assert writer._thread is None  # nothing queued: made on the event loop's own connection
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    task = asyncio.create_task(writer.incr(1, "2030-01-01", 10))
    await asyncio.sleep(0.2)
    assert not task.done()  # it went to the thread, which waits for the lock; the loop did not block
    other.execute("COMMIT")
    other.close()
    assert await task == 2
    assert await writer.get(1, "2030-01-01") == 2
    for _ in range(8):  # the at-once path keeps the limit exact too
        await writer.incr(1, "2030-01-01", 10)
    assert await writer.incr(1, "2030-01-01", 10) is None
    assert await writer.get(1, "2030-01-01") == 10
    await writer.close()
