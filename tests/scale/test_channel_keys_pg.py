"""Migration 0005 and the multi-key channel storage on PostgreSQL: an existing channel's key becomes its key #1;
keys are stored sealed, retired with a reason, put back."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from lightrelay.db.engine import _alembic_config
from lightrelay.security import KeyBox
from lightrelay.services import channels
from tests.scale.conftest import PG_ADMIN, SECRET


async def test_migration_0005_keeps_existing_keys_on_postgresql(pg):
    name = f"lr_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    box = KeyBox(SECRET)
    try:
        await asyncio.to_thread(command.upgrade, _alembic_config(url), "0003")  # a database from before issue 12
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            await conn.execute("INSERT INTO channels (name, type, base_url, api_key_enc, models, priority, weight, "
                               "enabled, created_at) VALUES ('old', 'openai', 'http://x/v1', $1, '{\"m\": \"m\"}', "
                               "0, 1, true, now())", box.seal("sk-old-key-0123456789"))
        finally:
            await conn.close()
        await asyncio.to_thread(command.upgrade, _alembic_config(url), "heads")
        engine = create_async_engine(url)
        try:
            row = await channels.get_channel(engine, name="old")
            assert [box.open(k["key_enc"]) for k in row["keys"]] == ["sk-old-key-0123456789"]
            assert row["api_version"] is None
        finally:
            await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_keys_retire_and_come_back_on_postgresql(pg):
    box = KeyBox(SECRET)
    await channels.add_channel(pg.engine, box, name="multi", type="anthropic", base_url="",
                               api_keys=["sk-a-0123456789", "sk-b-0123456789"], models={"m": "m"})
    row = await channels.get_channel(pg.engine, name="multi")
    assert row["base_url"] == "https://api.anthropic.com"
    await channels.retire_key(pg.engine, channel_id=row["id"], position=1, reason="rejected by the upstream (401)")
    view = channels.public_view(await channels.get_channel(pg.engine, name="multi"), box)
    assert [(k["n"], k["retired"]) for k in view["keys"]] == [(1, None), (2, "rejected by the upstream (401)")]
    assert "sk-b-0123456789" not in str(view)
    assert await channels.enable_key(pg.engine, box, name="multi", which="all") == [2]
    await channels.update_channel(pg.engine, box, name="multi", api_keys=["sk-c-0123456789"])
    row = await channels.get_channel(pg.engine, name="multi")
    assert [box.open(k["key_enc"]) for k in row["keys"]] == ["sk-c-0123456789"]
    await channels.delete_channel(pg.engine, name="multi")
    assert await pg.scalar("SELECT count(*) FROM channel_keys") == 0
