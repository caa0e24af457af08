"""The SQLite writer: one thread, one plain ``sqlite3`` connection, group commits.

Daily counts: the same conditional UPDATE as ``SqlCounter`` (``count = count + 1
WHERE count < limit``), so it stays exact, also across processes sharing the file;
but instead of one SQLAlchemy/aiosqlite transaction per call (about a millisecond of
thread hops), reservations made in the same event-loop iteration are written in one
``BEGIN IMMEDIATE … COMMIT``. A reservation is answered only after its transaction
committed, so a crash never loses a charge. (WAL with synchronous=NORMAL: durable
when the process dies; an OS crash may lose the last commits.)

When the thread has nothing to do (no usage rows being written), a loop iteration's
batch is committed on the event loop's own connection instead: the same statements in
one transaction (tens of µs), without the two thread hand-offs that cost far more on
an idle machine. It never waits for the database lock: if another connection holds
it, the batch goes to the thread like the others.

Usage rows: the recorder's batches are inserted here too, in their own transaction,
one multi-row INSERT per chunk, so the event loop never spends time binding thousands
of parameters.

One writer serves one event loop (the app's).

Supervised: if the thread dies (it cannot open the database, e.g. the process ran out
of file descriptors), every job it held fails at once with 503 ``database_unavailable``,
``up`` turns False with the reason (``/readyz`` shows it), and jobs handed over while it
is down fail at once too instead of waiting for a thread that is gone. ``watch()`` (the
app runs it) starts a new thread every ``RESTART_SECONDS`` until one opens the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import queue
import sqlite3
import threading
import time
from collections import deque
from typing import Any

from lightrelay.db.models import usage
from lightrelay.errors import Unavailable
from lightrelay.services.usage_stats import UPSERTS, totals_of

log = logging.getLogger("lightrelay.quota")

MAX_BATCH = 512
QUIET_SECONDS = 0.001  # a job after this long without one is committed at once (see _ask)
USAGE_CHUNK = 100
RESTART_SECONDS = 1.0  # a dead writer thread is started again this often until it opens the database


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
# today's images (quota.ImageQuota): the same conditional UPDATE on image_counts, n at a time
_IMAGES_INSERT = "INSERT INTO image_counts (account_id, day, count) VALUES (?, ?, 0) ON CONFLICT DO NOTHING"
_IMAGES_TAKE = ("UPDATE image_counts SET count = count + ? WHERE account_id = ? AND day = ? "
                "AND (? IS NULL OR count + ? <= ?) RETURNING count")
_IMAGES_GIVE = "UPDATE image_counts SET count = count - ? WHERE account_id = ? AND day = ? AND count >= ?"
_IMAGES_GET = "SELECT count FROM image_counts WHERE account_id = ? AND day = ?"
_IMAGES_EXTRA_TAKE = ("UPDATE accounts SET extra_image_calls = extra_image_calls - ? WHERE id = ? "
                      "AND extra_image_calls >= ? RETURNING extra_image_calls")
_IMAGES_EXTRA_GIVE = "UPDATE accounts SET extra_image_calls = extra_image_calls + ? WHERE id = ?"
# weighted takes (model weights, extra balance, per-token daily limits): see quota.py
_TAKE = ("UPDATE daily_counts SET count = count + ? WHERE account_id = ? AND day = ? "
         "AND (? IS NULL OR count + ? <= ?) RETURNING count")
_GIVE = "UPDATE daily_counts SET count = count - ? WHERE account_id = ? AND day = ? AND count >= ?"
_EXTRA_TAKE = ("UPDATE accounts SET extra_calls = extra_calls - ? WHERE id = ? AND extra_calls >= ? "
               "RETURNING extra_calls")
_EXTRA_GIVE = "UPDATE accounts SET extra_calls = extra_calls + ? WHERE id = ?"
# one statement: the day's first call inserts the row, later ones add to it while under the limit
_TOKEN_TAKE = ("INSERT INTO token_counts (token_id, day, count) VALUES (?, ?, ?) ON CONFLICT (token_id, day) "
               "DO UPDATE SET count = count + excluded.count WHERE count + excluded.count <= ? RETURNING count")
_TOKEN_GIVE = "UPDATE token_counts SET count = count - ? WHERE token_id = ? AND day = ? AND count >= ?"
_USAGE_COLUMNS = [c.name for c in usage.columns if c.name != "id"]
_CREATED_AT = _USAGE_COLUMNS.index("created_at")
_usage_fields = operator.itemgetter(*_USAGE_COLUMNS)


def _usage_insert(rows: int) -> str:
    """One INSERT for ``rows`` rows: SQLite runs it in one step, so the thread takes the GIL
    once per chunk to bind its parameters instead of once per row."""
    one = f"({', '.join('?' for _ in _USAGE_COLUMNS)})"
    return f"INSERT INTO usage ({', '.join(_USAGE_COLUMNS)}) VALUES {', '.join([one] * rows)}"


def _usage_values(rows: list[dict[str, Any]]) -> list[Any]:
    """The chunk's parameters, row after row. ``created_at`` is written as SQLAlchemy writes a
    DateTime on SQLite ("YYYY-MM-DD HH:MM:SS.ffffff", the UTC wall time)."""
    values: list[Any] = []
    for row in rows:
        fields = list(_usage_fields(row))
        fields[_CREATED_AT] = fields[_CREATED_AT].isoformat(" ", "microseconds")[:26]
        values += fields
    return values


def database_unavailable(exc: BaseException) -> Unavailable:
    """What a caller gets when the database cannot be written (503, retry shortly)."""
    error = Unavailable("数据库暂时不可用，请稍后重试", f"the database is unavailable ({exc}); please retry shortly",
                        code="database_unavailable", retry_after=2)
    error.__cause__ = exc
    return error


def _connect(path: str, *, busy_ms: int) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_ms / 1000)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA busy_timeout={busy_ms}")
    return db


class _Busy(Exception):
    """Another connection holds the write lock."""


class SqliteWriter:
    def __init__(self, path: str) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[list[tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._pending: list[tuple[Any, ...]] = []
        self._queued = 0  # jobs handed to the thread and not settled yet
        self._last_ask = 0.0
        self._thread: threading.Thread | None = None
        self._here: sqlite3.Connection | None = None  # the event loop's own, for batches made at once
        self.up = True  # False while the thread is dead; ``reason`` says why
        self.reason: str | None = None
        self.restarts = 0
        self._died_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop that started the thread

    # -- the async side (event loop thread) -------------------------------------
    async def _ask(self, *job: Any) -> Any:
        loop = asyncio.get_running_loop()
        if job[0] != "usage" and self._quiet() and not self._pending and not self._queued:
            # Nothing to batch it with, and on a quiet machine every loop turn is expensive:
            # commit it right here instead of one turn later.
            with contextlib.suppress(_Busy):
                return self._commit_here([(loop, None, *job)])[0]
        future = loop.create_future()
        self._pending.append((loop, future, *job))
        if len(self._pending) == 1:  # one batch per loop iteration, not one job per call
            loop.call_soon(self._hand_off)
        return await future

    def _quiet(self) -> bool:
        """No count job in the last QUIET_SECONDS (so none is likely to join this one)."""
        now = time.monotonic()
        quiet, self._last_ask = now - self._last_ask > QUIET_SECONDS, now
        return quiet

    def _hand_off(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        if not self._queued and all(job[2] != "usage" for job in batch):
            try:
                results = self._commit_here(batch)
            except _Busy:
                pass  # another connection is writing: the thread waits for it instead of the loop
            except Exception as exc:
                for _loop, future, *_ in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            else:
                self._settle_all(list(zip(batch, results, strict=True)), queued=False)
                return
        if not self._alive():
            if not self.up and time.monotonic() - self._died_at < RESTART_SECONDS:
                # the thread died a moment ago: fail fast, watch() tries again soon
                error = database_unavailable(sqlite3.OperationalError(self.reason))
                for _loop, future, *_ in batch:
                    if not future.done():
                        future.set_exception(error)
                return
            self._start_thread()
        self._queued += len(batch)
        self._jobs.put(batch)

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start_thread(self) -> None:
        if self._thread is not None:
            self.restarts += 1
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="quota-writer", daemon=True)
        self._thread.start()

    async def watch(self) -> None:
        """Start the thread again while it is dead (runs until cancelled)."""
        while True:
            await asyncio.sleep(RESTART_SECONDS)
            if not self.up and not self._alive():
                log.warning("restarting the SQLite writer thread")
                self._start_thread()

    def _went_down(self, reason: str) -> None:
        """(event loop) The thread died: say so, and fail what it held. Jobs it never took stay queued
        for the next thread."""
        if self.up:
            log.error("SQLite writer is down (%s); database writes fail with 503 until it is back", reason)
        self.up, self.reason, self._died_at = False, reason, time.monotonic()

    def _came_up(self) -> None:
        if not self.up:
            log.warning("SQLite writer is back")
        self.up, self.reason = True, None

    def _commit_here(self, batch: list[tuple[Any, ...]]) -> list[Any]:
        """The batch's count jobs in one transaction on the event loop's own connection; _Busy
        (nothing written) if another connection holds the lock. It never waits for the lock and
        never checkpoints (the thread's connection does)."""
        if self._here is None:
            try:
                here = _connect(self._path, busy_ms=0)
                here.execute("PRAGMA wal_autocheckpoint=0")
            except sqlite3.Error as exc:  # e.g. out of file descriptors: the thread may still manage
                log.warning("SQLite: cannot open the event loop's connection (%s)", exc)
                raise _Busy from None
            self._here = here
        try:
            return _transaction(self._here, batch)
        except Exception as exc:
            if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode in (
                    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise _Busy from None  # BEGIN IMMEDIATE found the lock taken
            log.exception("SQLite write failed (%s)", batch[0][2])
            if isinstance(exc, sqlite3.Error):
                raise database_unavailable(exc) from exc
            raise

    async def incr(self, account_id: int, day: str, limit: int | None) -> int | None:
        """Add one call unless that would pass ``limit``; the new count, or None if refused."""
        return await self._ask("incr", account_id, day, limit)

    async def decr(self, account_id: int, day: str) -> None:
        await self._ask("decr", account_id, day)

    async def take(self, account_id: int, day: str, limit: int | None, weight: int = 1,
                   token_id: int | None = None, token_limit: int | None = None, extra: bool = True) -> Any:
        """Today's count, else the extra balance, and the token's own count (see ``quota.Take``)."""
        return await self._ask("take", account_id, day, limit, weight, token_id, token_limit, extra)

    async def give(self, charge: Any) -> None:
        """Undo a take (a failed call)."""
        await self._ask("give", charge.account_id, charge.day, charge.weight, charge.source, charge.token_id)

    async def get(self, account_id: int, day: str) -> int:
        return await self._ask("get", account_id, day)

    async def images_take(self, account_id: int, day: str, limit: int | None, n: int) -> int | None:
        """Add ``n`` images unless that would pass ``limit``; the new count, or None if refused."""
        return await self._ask("images_take", account_id, day, limit, n)

    async def images_give(self, account_id: int, day: str, n: int) -> None:
        await self._ask("images_give", account_id, day, n)

    async def images_extra_take(self, account_id: int, n: int) -> int | None:
        """Spend ``n`` of the extra image balance; what is left, or None if it is short."""
        return await self._ask("images_extra_take", account_id, None, n)

    async def images_extra_give(self, account_id: int, n: int) -> None:
        await self._ask("images_extra_give", account_id, None, n)

    async def images_get(self, account_id: int, day: str) -> int:
        return await self._ask("images_get", account_id, day)

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
        if self._here is not None:
            self._here.close()
            self._here = None

    def _settle_all(self, results: list[tuple[tuple[Any, ...], Any]], *, queued: bool = True) -> None:
        if queued:
            self._queued -= len(results)
        for (loop, future, op, account_id, day, *rest), result in results:
            if not future.done():
                future.set_result(result)
            elif op == "images_extra_take" and result is not None:
                self._undo(loop, "images_extra_give", account_id, None, rest[0])
            elif op == "images_take" and result is not None:  # the caller was cancelled meanwhile: undo
                self._pending.append((loop, loop.create_future(), "images_give", account_id, day, rest[1]))
                if len(self._pending) == 1:
                    loop.call_soon(self._hand_off)
            elif op == "incr" and result is not None:  # the caller was cancelled meanwhile: undo its charge
                self._undo(loop, "decr", account_id, day)
            elif op == "take" and result[0] in ("daily", "extra"):
                weight, token_id, token_limit = rest[1], rest[2], rest[3]
                self._undo(loop, "give", account_id, day, weight, result[0],
                           token_id if token_limit is not None else None)

    def _undo(self, loop: Any, *job: Any) -> None:
        self._pending.append((loop, loop.create_future(), *job))
        if len(self._pending) == 1:
            loop.call_soon(self._hand_off)

    # -- the writer thread ---------------------------------------------------
    def _run(self) -> None:
        usage_backlog: deque[tuple[Any, ...]] = deque()
        try:
            db = _connect(self._path, busy_ms=30000)
        except BaseException as exc:
            self._die(exc, [])
            return
        self._post(None, self._came_up)
        try:
            self._serve(db, usage_backlog)
        except BaseException as exc:
            self._die(exc, list(usage_backlog))
            raise
        finally:
            db.close()

    def _post(self, loop: Any, callback: Any, *args: Any) -> bool:
        """Run ``callback`` on ``loop`` (None: the loop that started the thread); False if it is closed."""
        loop = loop or self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # that loop is closed: nobody waits any more
            return False
        return True

    def _die(self, exc: BaseException, held: list[tuple[Any, ...]]) -> None:
        """(thread) This thread ends: fail the jobs it held and every job still queued, then report."""
        reason = f"{type(exc).__name__}: {exc}"
        log.error("SQLite writer thread died: %s", reason)
        while True:
            try:
                more = self._jobs.get_nowait()
            except queue.Empty:
                break
            if more is None:
                self._jobs.put(None)  # close() is waiting for it: keep it for the next thread
                break
            held += more
        error = database_unavailable(exc if isinstance(exc, Exception) else sqlite3.OperationalError(reason))
        for loop, future, *_ in held:
            self._post(loop, self._fail, future, error)
        self._post(None, self._went_down, reason)

    def _serve(self, db: sqlite3.Connection, usage_backlog: deque[tuple[Any, ...]]) -> None:
        stopping = False
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

    def _commit(self, db: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
        try:
            results = _transaction(db, batch)
        except Exception as exc:  # nothing of this batch was written
            log.exception("SQLite write failed (%s)", batch[0][2])
            if isinstance(exc, sqlite3.Error):
                exc = database_unavailable(exc)
            for loop, future, *_ in batch:
                try:
                    loop.call_soon_threadsafe(self._fail, future, exc)
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

    def _fail(self, future: asyncio.Future, exc: BaseException) -> None:
        self._queued -= 1
        if not future.done():
            future.set_exception(exc)


def _transaction(db: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> list[Any]:
    """The batch's jobs in one ``BEGIN IMMEDIATE … COMMIT``: their results, or the error with
    nothing written."""
    try:
        db.execute("BEGIN IMMEDIATE")
        results = [_apply(db, op, account_id, day, rest) for _loop, _future, op, account_id, day, *rest in batch]
        db.execute("COMMIT")
    except Exception:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return results


def _apply(db: sqlite3.Connection, op: str, account_id: int | None, day: str | None, rest: Any) -> Any:
    """One job's statements, inside the caller's transaction."""
    if op == "incr":
        limit = rest[0]
        db.execute(_INSERT, (account_id, day))
        row = db.execute(_INCR, (account_id, day, limit, limit)).fetchone()
        return row[0] if row else None
    if op == "decr":
        db.execute(_DECR, (account_id, day))
        return None
    if op == "take":
        return _take(db, account_id, day, *rest)
    if op == "give":
        weight, source, token_id = rest
        if source == "extra":
            db.execute(_EXTRA_GIVE, (weight, account_id))
        else:
            db.execute(_GIVE, (weight, account_id, day, weight))
        if token_id is not None:
            db.execute(_TOKEN_GIVE, (weight, token_id, day, weight))
        return None
    if op == "images_take":
        limit, n = rest
        db.execute(_IMAGES_INSERT, (account_id, day))
        row = db.execute(_IMAGES_TAKE, (n, account_id, day, limit, n, limit)).fetchone()
        return row[0] if row else None
    if op == "images_extra_take":
        row = db.execute(_IMAGES_EXTRA_TAKE, (rest[0], account_id, rest[0])).fetchone()
        return row[0] if row else None
    if op == "images_extra_give":
        db.execute(_IMAGES_EXTRA_GIVE, (rest[0], account_id))
        return None
    if op == "images_give":
        db.execute(_IMAGES_GIVE, (rest[0], account_id, day, rest[0]))
        return None
    if op == "images_get":
        row = db.execute(_IMAGES_GET, (account_id, day)).fetchone()
        return row[0] if row else 0
    if op == "usage":
        rows = rest[0]
        db.execute(_usage_insert(len(rows)), _usage_values(rows))
        for sql, params in zip(UPSERTS, totals_of(rows), strict=True):  # the daily and hourly totals
            db.executemany(sql, params)
        return None
    row = db.execute(_GET, (account_id, day)).fetchone()
    return row[0] if row else 0



def _take(db: sqlite3.Connection, account_id: Any, day: Any, limit: int | None, weight: int,
          token_id: int | None, token_limit: int | None, extra: bool) -> tuple[str, int, int | None]:
    """One call's charge inside the batch's transaction (see ``quota.Take``); a refusal leaves nothing
    changed (the token's count is put back by hand: the transaction is shared with other calls)."""
    if token_limit is not None:
        if weight > token_limit or db.execute(_TOKEN_TAKE, (token_id, day, weight, token_limit)).fetchone() is None:
            return ("token_full", token_limit, None)
    db.execute(_INSERT, (account_id, day))
    row = db.execute(_TAKE, (weight, account_id, day, limit, weight, limit)).fetchone()
    if row is not None:
        return ("daily", row[0], None)
    count = db.execute(_GET, (account_id, day)).fetchone()[0]
    if extra:
        row = db.execute(_EXTRA_TAKE, (weight, account_id, weight)).fetchone()
        if row is not None:
            return ("extra", count, row[0])
    if token_limit is not None:
        db.execute(_TOKEN_GIVE, (weight, token_id, day, weight))
    return ("full", count, None)
