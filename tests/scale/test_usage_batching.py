"""Usage rows are written in batches off the hot path: PostgreSQL sees a bounded number of write
transactions per second whatever the call rate, and a clean stop (SIGTERM) loses no row."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.scale.conftest import REDIS_URL, Database, Relays, light_call

MODEL = "gpt-3.5-turbo-1106"


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.parametrize("counter", ["sql", "redis"])
async def test_usage_writes_per_second_are_bounded_on_postgresql(counter, pg: Database, redis_prefix, start_relay,
                                                                 mock_upstream, http):
    flush = 0.25
    extra = {"redis_url": REDIS_URL, "redis_prefix": redis_prefix} if counter == "redis" else {}
    relay = await start_relay(database_url=pg.url, usage_flush_seconds=flush, usage_batch_size=5000, **extra)
    await relay.channel("mock", mock_upstream.base_url, MODEL)
    token = await pg.user("load@example.com", limit=None)
    calls, started = 0, time.monotonic()
    while time.monotonic() - started < 2.0:  # as many calls as the machine allows for two seconds
        statuses = await asyncio.gather(*(light_call(http, relay.url, token) for _ in range(50)))
        assert set(statuses) == {200}
        calls += len(statuses)
    elapsed = time.monotonic() - started
    await relay.lr.recorder.flush()
    async with http.get(relay.url + "/metrics") as r:
        text = await r.text()
    writes, rows = _metric(text, "lightrelay_usage_writes_total"), _metric(text, "lightrelay_usage_rows_written_total")
    assert rows == calls == await pg.scalar("SELECT count(*) FROM usage")
    assert writes <= elapsed / flush + 3, (writes, elapsed)  # one write per flush interval, not one per call
    print(f"\n{counter} counter: {calls} calls in {elapsed:.1f}s ({calls / elapsed:.0f}/s): {writes:.0f} usage write transactions "
          f"({writes / elapsed:.1f}/s)")


async def test_sigterm_loses_no_usage_row(pg: Database, redis_prefix, relays: Relays, mock_upstream):
    await pg.channel("mock", mock_upstream.base_url, MODEL)
    # a flush interval far longer than the test: every row is still queued when SIGTERM arrives
    relay = await relays.start(workers=2, database_url=pg.url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
                               usage_flush_seconds=60)  # `serve --workers 2`: the supervisor passes SIGTERM on
    token = await pg.user("term@example.com", limit=150)
    async with aiohttp.ClientSession() as http:
        statuses = await asyncio.gather(*(light_call(http, relay.url, token) for _ in range(200)))
    assert statuses.count(200) == 150
    assert await pg.scalar("SELECT count(*) FROM usage") == 0  # nothing written yet
    # uvicorn shuts down gracefully, then re-raises the signal: exit status -15 after a clean stop
    assert await asyncio.to_thread(relay.terminate) in (0, -15)
    assert await pg.scalar("SELECT count(*) FROM usage") == 200
    assert await pg.scalar("SELECT count(*) FROM usage WHERE charged") == 150
    assert await pg.scalar("SELECT count FROM daily_counts") == 150  # the count mirror is flushed too
