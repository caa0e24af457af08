"""Guarantee 7, with real ``python -m lightrelay serve`` processes: on SIGTERM the relay stops taking new
calls, lets running streams finish within the grace period (and ends the ones past it with an error frame,
refunded), and flushes every usage row; a ``kill -9`` loses no daily-count charge, because the
reservation is committed before the upstream is called."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port
from tests.faults.conftest import MODEL, acli, body_for, relay_env, start_serve
from tests.mock_upstream import MockUpstream


def db_rows(data_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(data_dir / "lightrelay.db") as db:
        return db.execute(sql).fetchall()


async def setup(tmp_path: Path, up: MockUpstream, **extra: str) -> tuple[dict, str]:
    env = relay_env(tmp_path / "data", free_port(), LIGHTRELAY_SECRET_KEY="durability-secret-0123456789",
                    LIGHTRELAY_USAGE_FLUSH_SECONDS="60", **extra)  # rows are written only when flushed
    token = (await acli(env, "user", "add", "d@example.com", "--daily-limit", "unlimited")).strip().splitlines()[-1]
    await acli(env, "channel", "add", "up", "--base-url", up.base_url, "--models", MODEL)
    return env, token


async def open_stream(http: aiohttp.ClientSession, url: str, door: str, token: str, text: str):
    path, json, headers = body_for(door, token, text)
    resp = await http.post(url + path, json=json, headers=headers)
    assert resp.status == 200
    first = await asyncio.wait_for(resp.content.readany(), 5)
    return resp, first


async def read_rest(resp: aiohttp.ClientResponse) -> bytes:
    out = b""
    while True:
        try:
            piece = await asyncio.wait_for(resp.content.readany(), 10)
        except aiohttp.ClientPayloadError:
            break
        if not piece:
            break
        out += piece
    return out


async def test_sigterm_drains_streams_and_flushes_usage(tmp_path):
    door = "light"  # the error frame of the other door is seen in the grace-period test below
    async with MockUpstream() as up:
        up.chunk_delay = 0.03  # ~1.5 s of stream
        env, token = await setup(tmp_path, up, LIGHTRELAY_SHUTDOWN_GRACE_SECONDS="10")
        proc = await start_serve(env, tmp_path / "serve.log")
        url = f"http://127.0.0.1:{env['LIGHTRELAY_PORT']}"
        async with aiohttp.ClientSession() as http:
            for _ in range(5):
                path, json, headers = body_for(door, token, stream=False)
                async with http.post(url + path, json=json, headers=headers) as r:
                    assert r.status == 200
            resp, first = await open_stream(http, url, door, token, "y" * 200)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            with pytest.raises(aiohttp.ClientConnectionError):  # no new calls
                async with aiohttp.ClientSession() as fresh:
                    await fresh.post(url + path, json=json, headers=headers)
            rest = await read_rest(resp)
        code = await asyncio.wait_for(proc.wait(), 15)
    whole = first + rest
    assert whole.endswith(b"data: [DONE]\n\n" if door == "openai" else b"y" * 20)  # finished, not cut
    assert b'"error"' not in whole
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down cleanly
    assert "Application shutdown complete" in (tmp_path / "serve.log").read_text()
    rows = db_rows(env_dir(env), "SELECT status, stream, charged FROM usage ORDER BY id")
    assert rows == [(200, 0, 1)] * 5 + [(200, 1, 1)]  # every row flushed, none lost
    assert db_rows(env_dir(env), "SELECT count FROM daily_counts") == [(6,)]


async def test_stream_past_the_grace_period_ends_with_an_error_frame_and_is_refunded(tmp_path):
    async with MockUpstream() as up:
        up.chunk_delay = 0.2  # ~10 s of stream, grace 1 s
        env, token = await setup(tmp_path, up, LIGHTRELAY_SHUTDOWN_GRACE_SECONDS="1")
        proc = await start_serve(env, tmp_path / "serve.log")
        url = f"http://127.0.0.1:{env['LIGHTRELAY_PORT']}"
        async with aiohttp.ClientSession() as http:
            resp, first = await open_stream(http, url, "openai", token, "z" * 200)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rest = await read_rest(resp)
        code = await asyncio.wait_for(proc.wait(), 15)
        assert time.monotonic() - started < 5
        how, _ = await up.wait_end(0)
    assert how == "gone"  # the upstream call was cancelled too
    events = [e for e in (first + rest).split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]" and b"service_unavailable" in events[-2]
    assert code in (0, -signal.SIGTERM)
    assert db_rows(env_dir(env), "SELECT status, partial, charged FROM usage") == [(503, 1, 0)]
    assert db_rows(env_dir(env), "SELECT count FROM daily_counts") == [(0,)]


async def test_kill_9_loses_no_charge(tmp_path):
    async with MockUpstream() as up:
        up.chunk_delay = 0.5
        env, token = await setup(tmp_path, up)
        proc = await start_serve(env, tmp_path / "serve.log")
        url = f"http://127.0.0.1:{env['LIGHTRELAY_PORT']}"
        async with aiohttp.ClientSession() as http:
            resp, _ = await open_stream(http, url, "light", token, "slow " * 40)
            proc.kill()  # SIGKILL: no shutdown code runs
            await proc.wait()
            resp.close()
        proc = await start_serve(env, tmp_path / "serve2.log")  # restarts on the same data
        try:
            out = await acli(env, "user", "list")
        finally:
            proc.terminate()
            await proc.wait()
    line = next(x for x in out.splitlines() if x.startswith("d@example.com"))
    assert line.split()[1] == "1"  # today's count kept the call that was running when the process died


def env_dir(env: dict[str, str]) -> Path:
    return Path(env["LIGHTRELAY_DATA_DIR"])
