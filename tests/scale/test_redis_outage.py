"""Redis goes away and comes back (a redis-server of the test's own): the relay says so in /readyz,
the log (once) and /metrics, refuses calls with a clear 503 (fail closed, the default), and recovers by
itself — seeding the day's count from the database mirror, since this Redis restarts empty."""

from __future__ import annotations

import asyncio
import logging
import time

from tests.scale.conftest import Database, OwnRedis, light_call

MODEL = "gpt-3.5-turbo-1106"


async def _wait(fn, timeout: float = 5.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while not await fn():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def _get(http, url: str) -> tuple[int, str]:  # noqa: ANN001
    async with http.get(url) as r:
        return r.status, await r.text()


async def test_redis_down_fails_closed_then_recovers(pg: Database, own_redis: OwnRedis, start_relay, mock_upstream,
                                                     http, caplog):
    caplog.set_level(logging.WARNING, logger="lightrelay.redis")
    relay = await start_relay(database_url=pg.url, redis_url=own_redis.url, redis_prefix="lr:", usage_flush_seconds=0.1)
    await relay.channel("mock", mock_upstream.base_url, MODEL)
    token = await pg.user("outage@example.com", limit=3)
    assert [await light_call(http, relay.url, token) for _ in range(2)] == [200, 200]
    await asyncio.sleep(0.3)  # the count mirror has copied 2 into daily_counts

    await asyncio.to_thread(own_redis.stop)
    await _wait(lambda: _down(http, relay.url))
    status, body = await _get(http, relay.url + "/readyz")
    assert status == 503 and '"redis":"down: ' in body and "refused with 503" in body
    assert (await _get(http, relay.url + "/healthz"))[0] == 200  # the process is alive
    async with http.post(relay.url + "/v1/chat/completions", headers={"authorization": f"Bearer {token}"},
                         json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status == 503
        error = (await r.json())["error"]
    assert error["code"] == "counter_unavailable" and "Redis" in error["message"]
    assert [await light_call(http, relay.url, token) for _ in range(20)] == [503] * 20
    metrics = (await _get(http, relay.url + "/metrics"))[1]
    assert 'lightrelay_counter_backend_up{backend="redis"} 0.0' in metrics
    down_logs = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(down_logs) == 1  # once, not per request

    await asyncio.to_thread(own_redis.start)  # empty: no persistence
    await _wait(lambda: _ready(http, relay.url))
    assert 'lightrelay_counter_backend_up{backend="redis"} 1.0' in (await _get(http, relay.url + "/metrics"))[1]
    assert [r.getMessage() for r in caplog.records if "Redis is back" in r.getMessage()]
    # the count went on from the mirror (2), not from zero: one more call, then the limit
    assert [await light_call(http, relay.url, token) for _ in range(3)] == [200, 429, 429]


async def _down(http, url: str) -> bool:  # noqa: ANN001
    return (await _get(http, url + "/readyz"))[0] == 503


async def _ready(http, url: str) -> bool:  # noqa: ANN001
    return (await _get(http, url + "/readyz"))[0] == 200


async def test_fail_open_admits_calls_uncounted(pg: Database, own_redis: OwnRedis, start_relay, mock_upstream, http):
    relay = await start_relay(database_url=pg.url, redis_url=own_redis.url, redis_fail_open=True)
    await relay.channel("mock", mock_upstream.base_url, MODEL)
    token = await pg.user("open@example.com", limit=1)
    await asyncio.to_thread(own_redis.stop)
    await _wait(lambda: _redis_reported_down(http, relay.url))
    assert (await _get(http, relay.url + "/readyz"))[0] == 200  # still serving, by choice
    assert [await light_call(http, relay.url, token) for _ in range(3)] == [200, 200, 200]


async def _redis_reported_down(http, url: str) -> bool:  # noqa: ANN001
    return '"redis":"down' in (await _get(http, url + "/readyz"))[1]
