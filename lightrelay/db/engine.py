"""The database engine, and migrations run on demand.

The first command that needs the database creates and migrates it, so every
CLI command and ``serve`` work on a fresh data dir. Alembic loads only when the
database is behind the package's heads (read from the version files, without
Alembic): a serving process on an up-to-date database never imports it.
"""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import event, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from lightrelay.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def private_data_dir(settings: Settings) -> None:
    """The data dir holds the database, the secret and mailed codes: the folders 0700, the files 0600
    (also those an older version left readable). SQLite gives its -wal and -shm files the database
    file's mode, so the database is created 0600 before SQLite opens it.

    An existing database file is never opened here: closing any descriptor of it would drop every
    POSIX lock this process's SQLite connections hold on it (sqlite.org/howtocorrupt.html §2.2), and
    another process could then, say, switch the journal mode under them."""
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    folders = [data, settings.outbox_dir]
    files = [data / "secret.key", *settings.outbox_dir.glob("*.eml")]
    if settings.is_sqlite:
        db = Path(settings.db_url.split(":///", 1)[1])
        db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        files += [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}-journal")]
    for path, mode in [(p, 0o700) for p in folders] + [(p, 0o600) for p in files]:
        try:
            if path.stat().st_mode & 0o777 != mode:
                path.chmod(mode)
        except FileNotFoundError:
            pass


def make_engine(settings: Settings) -> AsyncEngine:
    url = settings.db_url
    if url.startswith("sqlite"):
        private_data_dir(settings)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate_sync(settings: Settings) -> None:
    """Bring the database to the newest schema (safe to call every start)."""
    from alembic import command

    if settings.is_sqlite:
        private_data_dir(settings)
    command.upgrade(_alembic_config(settings.db_url), "heads")  # one head since 0007; "heads" stays safe


def package_heads() -> frozenset[str]:
    """The revisions no other revision follows: what ``upgrade heads`` brings a database to. Read from
    the version files' ``revision`` / ``down_revision`` without importing Alembic (a test compares it
    with Alembic's own ``ScriptDirectory.get_heads()``)."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                if node.targets[0].id in ("revision", "down_revision"):
                    found[node.targets[0].id] = ast.literal_eval(node.value)
        if "revision" not in found:
            continue  # __init__.py
        revisions.add(str(found["revision"]))
        down = found.get("down_revision")
        followed.update([down] if isinstance(down, str) else (down or ()))  # type: ignore[arg-type]
    return frozenset(revisions - followed)


async def database_heads(settings: Settings) -> frozenset[str]:
    """The revisions the database's ``alembic_version`` table holds (empty for a new database)."""
    engine = make_engine(settings)
    try:
        async with engine.connect() as conn:
            if not await conn.run_sync(lambda c: inspect(c).has_table("alembic_version")):
                return frozenset()
            rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return frozenset(row[0] for row in rows)
    finally:
        await engine.dispose()


async def up_to_date(settings: Settings) -> bool:
    return await database_heads(settings) == package_heads()


async def migrate(settings: Settings) -> None:
    """``migrate_sync`` in a thread, unless the database is already at the package's heads."""
    if not await up_to_date(settings):
        await asyncio.to_thread(migrate_sync, settings)


def migrate_in_child(settings: Settings) -> bool:
    """``serve``: bring the database up to date in a child process (``python -m lightrelay.db.upgrade``),
    so Alembic (~11 MB) never loads in the serving process; nothing runs when it is already current.
    True if the child ran. The child reads the same settings (environment, working directory)."""
    if asyncio.run(up_to_date(settings)):
        return False
    done = subprocess.run([sys.executable, "-m", "lightrelay.db.upgrade"], check=False)
    if done.returncode != 0:
        raise RuntimeError(f"migrating the database failed (exit code {done.returncode}; its error is above)")
    return True
