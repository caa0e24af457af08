"""Alembic migrations run on SQLite and on PostgreSQL: up from nothing, again (a no-op), down and up,
and from several starters at once (the advisory lock in env.py makes them take turns)."""

from __future__ import annotations

import asyncio
import os
import sys

from alembic import command
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from lightrelay.db.engine import _alembic_config, migrate
from lightrelay.db.models import metadata
from lightrelay.settings import Settings
from tests.scale.conftest import SECRET, Database

TABLES = {t.name for t in metadata.sorted_tables}


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names())) - {"alembic_version"}
    finally:
        await engine.dispose()


def _updown(url: str) -> None:
    cfg = _alembic_config(url)
    command.downgrade(cfg, "base")
    command.upgrade(cfg, "heads")


async def _check(db_url: str, tmp_path) -> None:
    settings = Settings(database_url=db_url, data_dir=tmp_path, secret_key=SECRET)
    await migrate(settings)
    await migrate(settings)  # again: a no-op
    assert await _tables(db_url) == TABLES
    await asyncio.to_thread(_updown, db_url)
    assert await _tables(db_url) == TABLES


async def test_migrations_on_sqlite(tmp_path):
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", tmp_path)


async def test_migrations_on_postgresql(pg: Database, tmp_path):
    await _check(pg.url, tmp_path)


async def test_concurrent_starts_migrate_once_on_postgresql(tmp_path):
    """Several workers or hosts starting together on an empty database: the schema is made once."""
    import uuid

    import asyncpg

    from tests.scale.conftest import PG_ADMIN

    name = f"lr_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
        code = ("from lightrelay.db.engine import migrate_sync; from lightrelay.settings import load_settings; "
                "migrate_sync(load_settings())")
        env = {**os.environ, "LIGHTRELAY_DATABASE_URL": url, "LIGHTRELAY_SECRET_KEY": SECRET}
        procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", code, env=env,
                                                      stderr=asyncio.subprocess.PIPE) for _ in range(4)]
        for proc in procs:  # separate processes, as workers and hosts are (Alembic's context is per process)
            _, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
        assert await _tables(url) == TABLES
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def test_package_heads_match_alembic():
    """The heads read from the version files without Alembic are Alembic's own."""
    from alembic.script import ScriptDirectory

    from lightrelay.db.engine import package_heads

    url = "sqlite+aiosqlite:///unused.db"
    assert package_heads() == set(ScriptDirectory.from_config(_alembic_config(url)).get_heads())
    assert len(package_heads()) == 1  # one head: a new migration has one parent (0007 joined the branches)


def test_serve_migrates_in_a_child_and_never_imports_alembic(tmp_path):
    """serve's path: a fresh data dir is migrated by a child process; an up-to-date database is only
    checked. Either way the serving process (and ``migrate()`` on a current database) never loads Alembic."""
    import subprocess

    code = ("import asyncio, sys; from lightrelay.db.engine import migrate, migrate_in_child; "
            "from lightrelay.settings import load_settings; s = load_settings(); "
            "print(migrate_in_child(s)); asyncio.run(migrate(s)); print('alembic' in sys.modules)")
    env = {**os.environ, "LIGHTRELAY_DATA_DIR": str(tmp_path), "LIGHTRELAY_SECRET_KEY": SECRET}
    env.pop("LIGHTRELAY_DATABASE_URL", None)
    for ran in ("True", "False"):  # a fresh data dir: migrated; then already current: only checked
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [ran, "False"]
    assert asyncio.run(_tables(f"sqlite+aiosqlite:///{tmp_path / 'lightrelay.db'}")) == TABLES
