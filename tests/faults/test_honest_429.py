"""Issue 15, finding 3, with a real ``python -m lightrelay serve`` process: a caller refused only because
calls still in flight hold the rest of today's count is told so (429 ``calls_in_flight``, a short
``Retry-After``, ``x-should-retry: true``), never "today's calls are used up"; a count that is really used
up still says so."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp

from tests.conftest import free_port
from tests.faults.conftest import acli, body_for, relay_env, start_serve
from tests.mock_upstream import MockUpstream


async def setup(tmp_path: Path, up: MockUpstream, limit: int) -> tuple[dict, str, str]:
    env = relay_env(tmp_path / "data", free_port(), LIGHTRELAY_SECRET_KEY="honest-429-secret-0123456789",
                    LIGHTRELAY_CHANNEL_FAILURES_TO_COOL="100000")  # the breaker stays out of it
    out = await acli(env, "user", "add", "q@example.com", "--daily-limit", str(limit))
    await acli(env, "channel", "add", "up", "--base-url", up.base_url, "--models", "gpt-3.5-turbo-1106")
    return env, out.strip().splitlines()[-1], f"http://127.0.0.1:{env['LIGHTRELAY_PORT']}"


async def call(http: aiohttp.ClientSession, url: str, door: str, token: str) -> tuple[int, dict, dict]:
    path, json, headers = body_for(door, token, stream=False)
    async with http.post(url + path, json=json, headers={**headers, "Accept-Language": "en"},
                         timeout=aiohttp.ClientTimeout(total=20)) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.json(content_type=None)


def count_today(data_dir: Path) -> list[tuple]:
    with sqlite3.connect(data_dir / "lightrelay.db") as db:
        return db.execute("SELECT count FROM daily_counts").fetchall()


async def test_calls_refused_because_of_calls_in_flight_are_told_to_retry_soon(tmp_path):
    async with MockUpstream("fail-500") as up:
        env, token, url = await setup(tmp_path, up, limit=5)
        proc = await start_serve(env, tmp_path / "serve.log")
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                burst = await asyncio.gather(*(call(http, url, "openai" if i % 2 else "light", token)
                                               for i in range(50)))
                after = await call(http, url, "openai", token)
        finally:
            proc.terminate()
            await proc.wait()
    refused = [(h, b) for s, h, b in burst if s == 429]
    assert sorted({s for s, _, _ in burst}) in ([429, 502], [502])
    assert refused, "no call was refused: the burst did not overlap (the test proves nothing)"
    for headers, body in refused:
        assert headers["x-should-retry"] == "true" and 1 <= int(headers["retry-after"]) <= 5, headers
        message = body["error"]["message"] if "error" in body else body["message"]
        assert "in progress" in message and "used up" not in message, body
        if "error" in body:
            assert body["error"]["code"] == "calls_in_flight"
    assert count_today(Path(env["LIGHTRELAY_DATA_DIR"])) == [(0,)]  # every failed call refunded
    assert after[0] == 502  # the day is not used up: the next call reaches the upstream


async def test_a_count_really_used_up_still_says_come_back_tomorrow(tmp_path):
    async with MockUpstream() as up:
        env, token, url = await setup(tmp_path, up, limit=2)
        proc = await start_serve(env, tmp_path / "serve.log")
        try:
            async with aiohttp.ClientSession() as http:
                results = [await call(http, url, "openai", token) for _ in range(3)]
        finally:
            proc.terminate()
            await proc.wait()
    assert [s for s, _, _ in results] == [200, 200, 429]
    _, headers, body = results[2]
    assert body["error"]["code"] == "daily_limit_reached" and headers["x-should-retry"] == "false"
    assert int(headers["retry-after"]) > 5
