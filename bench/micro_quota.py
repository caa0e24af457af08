"""How much one quota reservation costs, in isolation: lightrelay's own ``SqlCounter.incr``
(SQLAlchemy async + aiosqlite, one durable transaction per call) against a plain synchronous
sqlite3 UPDATE on the same schema. Evidence for docs/PERFORMANCE.md; not part of the table.

    .venv/bin/python bench/micro_quota.py [N]
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time

from lightrelay.db.engine import make_engine, migrate
from lightrelay.services.accounts import create_account
from lightrelay.services.quota import SqlCounter
from lightrelay.settings import load_settings


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=tmp, env="dev")
        await migrate(settings)
        engine = make_engine(settings)
        counter = SqlCounter(engine)
        acc = await create_account(engine, email="bench@example.com", password=None, daily_limit=None,
                                   gpt4=False, is_admin=False)
        await counter.incr(acc, "2000-01-01", None)  # warm the pool and the statement cache
        t0 = time.perf_counter()
        for _ in range(n):
            await counter.incr(acc, "2000-01-02", None)
        seq = (time.perf_counter() - t0) / n * 1e6
        t0 = time.perf_counter()
        for _ in range(n // 64):
            await asyncio.gather(*(counter.incr(acc, "2000-01-03", None) for _ in range(64)))
        conc = (time.perf_counter() - t0) / (n // 64 * 64) * 1e6
        await engine.dispose()
        db = sqlite3.connect(f"{tmp}/lightrelay.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("INSERT OR IGNORE INTO daily_counts (account_id, day, count) VALUES (?, '2000-01-04', 0)", (acc,))
        t0 = time.perf_counter()
        for _ in range(n):
            db.execute("UPDATE daily_counts SET count = count + 1 WHERE account_id = ? AND day = '2000-01-04' "
                       "RETURNING count", (acc,)).fetchone()
        raw = (time.perf_counter() - t0) / n * 1e6
        db.close()
    print(f"SqlCounter.incr, one at a time:      {seq:7.0f} µs/call")
    print(f"SqlCounter.incr, 64 at once (gather): {conc:7.0f} µs/call")
    print(f"plain sqlite3 UPDATE … RETURNING (autocommit, same thread): {raw:7.1f} µs/call")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
