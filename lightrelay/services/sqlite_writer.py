"""The SQLite writer: one thread, one plain ``sqlite3`` connection, group commits.

Daily counts: the same conditional UPDATE as ``SqlCounter`` (``count = count + 1
WHERE count < limit``), so it stays exact, also across processes sharing the file;
but instead of one SQLAlchemy/aiosqlite transaction per call (about a millisecond of
thread hops), reservations made in the same event-loop iteration are written in one
``BEGIN IMMEDIATE … COMMIT``. A reservation is answered only after its transaction
committed, so a crash never loses a charge. (WAL with synchronous=NORMAL: durable
when the process dies; an OS crash may lose the last commits.)

Usage rows: the recorder's batches are inserted here too, in their own transaction,
so the event loop never spends time binding thousands of parameters.

One writer serves one event loop (the app's).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections import deque
from typing import Any

from lightrelay.db.models import usage

log = logging.getLogger("lightrelay.quota")

MAX_BATCH = 512
USAGE_CHUNK = 100


class UnwrittenRows(Exception):
    """Some usage rows could not be written; ``rows`` are those (the others were)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(rows)} usage rows could not be written")
        self.rows = rows
_INSERT = "INSERT INTO daily_counts (account_id, day, count) VALUES (?, ?, 0) ON CONFLICT DO NOTHING"
_INCR = ("UPDATE daily_counts SET count = count + 1 WHERE account_id = ? AND day = ? "
         "AND (? IS NULL OR count < ?) RETURNING count")
_DECR = "UPDATE daily_counts SET count = count - 1 WHERE account_id = ? AND day = ? AND count > 0"
_GET = "SELECT count FROM daily_counts WHERE account_id = ? AND day = ?"
_USAGE_COLUMNS = [c.name for c in usage.columns if c.name != "id"]
_USAGE_INSERT = (f"INSERT INTO usage ({', '.join(_USAGE_COLUMNS)}) "
                 f"VALUES ({', '.join('?' for _ in _USAGE_COLUMNS)})")
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime on SQLite (UTC here)


def _usage_values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c].strftime(SQLITE_DATETIME) if c == "created_at" else row.get(c) for c in _USAGE_COLUMNS)


class SqliteWriter:
    def __init__(self, path: str) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[list[tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._pending: list[tuple[Any, ...]] = []
        self._thread: threading.Thread | None = None

    # -- the async side (event loop thread) -------------------------------------
    async def _ask(self, *job: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((loop, future, *job))
        if len(self._pending) == 1:  # hand the thread one batch per loop iteration, not one job per call
            loop.call_soon(self._hand_off)
        return await future

    def _hand_off(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="quota-writer", daemon=True)
            self._thread.start()
        self._jobs.put(batch)

    async def incr(self, account_id: int, day: str, limit: int | None) -> int | None:
        """Add one call unless that would pass ``limit``; the new count, or None if refused."""
        return await self._ask("incr", account_id, day, limit)

    async def decr(self, account_id: int, day: str) -> None:
        await self._ask("decr", account_id, day)

    async def get(self, account_id: int, day: str) -> int:
        return await self._ask("get", account_id, day)

    async def insert_usage(self, rows: list[dict[str, Any]]) -> None:
        """Write usage rows (the recorder's batch), in transactions of at most USAGE_CHUNK rows.

        If some chunks fail, ``UnwrittenRows`` carries only their rows, so a retry writes no row twice.
        """
        chunks = [rows[i:i + USAGE_CHUNK] for i in range(0, len(rows), USAGE_CHUNK)]
        results = await asyncio.gather(*(self._ask("usage", None, None, chunk) for chunk in chunks),
                                       return_exceptions=True)
        failed = [row for chunk, result in zip(chunks, results, strict=True) if isinstance(result, BaseException)
                  for row in chunk]
        if failed:
            raise UnwrittenRows(failed) from next(r for r in results if isinstance(r, BaseException))

    async def close(self) -> None:
        self._hand_off()
        if self._thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def _settle_all(self, results: list[tuple[tuple[Any, ...], Any]]) -> None:
        for (loop, future, op, account_id, day, *_), result in results:
            if not future.done():
                future.set_result(result)
            elif op == "incr" and result is not None:  # the caller was cancelled meanwhile: undo its charge
                self._pending.append((loop, loop.create_future(), "decr", account_id, day))
                if len(self._pending) == 1:
                    loop.call_soon(self._hand_off)

    # -- the writer thread ---------------------------------------------------
    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=30000")
        usage_backlog: deque[tuple[Any, ...]] = deque()
        stopping = False
        try:
            while not (stopping and not usage_backlog):
                batch: list[tuple[Any, ...]] = []
                block = not usage_backlog and not stopping
                while len(batch) < MAX_BATCH:
                    try:
                        more = self._jobs.get() if block and not batch else self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    batch += more
                counts = [job for job in batch if job[2] != "usage"]
                usage_backlog.extend(job for job in batch if job[2] == "usage")
                if counts:
                    self._commit(db, counts)
                # One usage chunk per turn: reservations that arrive meanwhile wait for one chunk's
                # transaction (about USAGE_CHUNK rows), not for a whole flush.
                if usage_backlog:
                    self._commit(db, [usage_backlog.popleft()])
        finally:
            db.close()

    def _commit(self, db: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
        results: list[Any] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for _loop, _future, op, account_id, day, *rest in batch:
                if op == "incr":
                    limit = rest[0]
                    db.execute(_INSERT, (account_id, day))
                    row = db.execute(_INCR, (account_id, day, limit, limit)).fetchone()
                    results.append(row[0] if row else None)
                elif op == "decr":
                    db.execute(_DECR, (account_id, day))
                    results.append(None)
                elif op == "usage":
                    db.executemany(_USAGE_INSERT, [_usage_values(r) for r in rest[0]])
                    results.append(None)
                else:
                    row = db.execute(_GET, (account_id, day)).fetchone()
                    results.append(row[0] if row else 0)
            db.execute("COMMIT")
        except Exception as exc:  # nothing of this batch was written
            log.exception("SQLite write failed (%s)", batch[0][2])
            if db.in_transaction:
                db.execute("ROLLBACK")
            for loop, future, *_ in batch:
                try:
                    loop.call_soon_threadsafe(_settle, future, None, exc)
                except RuntimeError:  # that loop is closed
                    pass
            return
        by_loop: dict[Any, list[tuple[tuple[Any, ...], Any]]] = {}
        for job, result in zip(batch, results, strict=True):
            by_loop.setdefault(job[0], []).append((job, result))
        for loop, pairs in by_loop.items():  # one wake-up of each event loop per batch
            try:
                loop.call_soon_threadsafe(self._settle_all, pairs)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if not future.done():
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

