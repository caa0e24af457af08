"""Alembic environment: runs migrations on the async engine for any URL (SQLite or PostgreSQL).

On PostgreSQL an advisory lock makes concurrent starts (several workers or
hosts) migrate one at a time.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from lightrelay.db.models import metadata

config = context.config
MIGRATION_LOCK = 7_405_551  # arbitrary advisory lock key


def _run(connection) -> None:  # noqa: ANN001
    if connection.dialect.name == "postgresql":
        # A transaction-level lock, held until the migrations are committed: a concurrent start waits,
        # then finds the new schema. (A session lock released before the commit let a second starter
        # in while the first one's tables were still invisible to it.)
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        connection.commit()


async def _main() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_main())
