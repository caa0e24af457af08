"""Migration 0005 and the multi-key channel storage on PostgreSQL: an existing channel's key becomes its key #1;
keys are stored sealed, retired with a reason, put back."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import asyncpg
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from lightrelay.db.engine import _alembic_config
from lightrelay.security import KeyBox
from lightrelay.services import accounts, channels
from tests.mock_providers import MockAnthropic
from tests.scale.conftest import PG_ADMIN, REDIS_URL, SECRET, light_call


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


async def test_a_key_retired_by_one_process_is_skipped_by_the_others(pg, redis_prefix, relays):
    """PostgreSQL + Redis, two relay processes: the key one of them retires is stored and broadcast; the other
    never sends it again, and no call is lost on either."""
    keys = ["sk-ant-scale-key-0001", "sk-ant-scale-key-0002"]
    async with MockAnthropic() as up:
        up.revoked = {keys[0]}
        await channels.add_channel(pg.engine, KeyBox(SECRET), name="claude", type="anthropic", base_url=up.base_url,
                                   api_keys=keys, models={"gpt-3.5-turbo-1106": "claude-sonnet-4-5"})
        settings = {"database_url": pg.url, "redis_url": REDIS_URL, "redis_prefix": redis_prefix}
        a, b = await asyncio.gather(relays.start(**settings), relays.start(**settings))
        token = await pg.user("keys@example.com", limit=100)
        async with aiohttp.ClientSession() as http:
            statuses = [await light_call(http, a.url, token) for _ in range(2)]  # one of them meets the revoked key
            assert statuses == [200, 200]
            for _ in range(100):
                reason = await pg.scalar("SELECT retired_reason FROM channel_keys WHERE position = 0")
                if reason:
                    break
                await asyncio.sleep(0.05)
            assert reason and reason.startswith("rejected by the upstream (401)")
            admin_id = await accounts.create_account(pg.engine, email="root@example.com", daily_limit=None,
                                                     is_admin=True)
            admin = await accounts.add_token(pg.engine, account_id=admin_id, name="admin")
            for _ in range(200):  # the other process learns it (the broadcast reloads its channels)
                async with http.get(b.url + "/api/admin/channels/state",
                                    headers={"Authorization": f"Bearer {admin}"}) as r:
                    view = {c["name"]: c for c in (await r.json())["data"]}["claude"]
                if view["retired_keys"]:
                    break
                await asyncio.sleep(0.05)
            assert [k["n"] for k in view["retired_keys"]] == [1] and "x-api-key" in view["retired_keys"][0]["reason"]
            sent_before = len(up.requests)
            statuses = [await light_call(http, b.url, token) for _ in range(4)]
            assert statuses == [200] * 4
            assert [r.headers["x-api-key"] for r in up.requests[sent_before:]] == [keys[1]] * 4
