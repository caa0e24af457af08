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
    path = await _db(tmp_path)
    counter = SqliteWriter(path)
    task = asyncio.create_task(counter.incr(1, "2030-01-01", 10))
    await asyncio.sleep(0)  # queued, maybe written
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for _ in range(100):
        if await counter.get(1, "2030-01-01") == 0:
            break
        await asyncio.sleep(0.01)
    assert await counter.get(1, "2030-01-01") == 0
    await counter.close()
