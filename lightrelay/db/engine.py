"""The database engine, and migrations run on demand.

The first command that needs the database creates and migrates it, so every
CLI command and ``serve`` work on a fresh data dir.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from lightrelay.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def private_data_dir(settings: Settings) -> None:
    """The data dir holds the database, the secret and mailed codes: the folders 0700, the files 0600
    (also those an older version left readable). SQLite gives its -wal and -shm files the database
    file's mode, so the database is created 0600 before SQLite opens it."""
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    folders = [data, settings.outbox_dir]
    files = [data / "secret.key", *settings.outbox_dir.glob("*.eml")]
    if settings.is_sqlite:
        db = Path(settings.db_url.split(":///", 1)[1])
        db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
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
    command.upgrade(_alembic_config(settings.db_url), "heads")  # parallel branches (see versions/) all apply


async def migrate(settings: Settings) -> None:
    await asyncio.to_thread(migrate_sync, settings)
