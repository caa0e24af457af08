"""Issue 15, finding 1 and the server's own limits, with real ``python -m lightrelay serve`` processes run
under ``prlimit``: a flood of idle sockets never starves the relay of file descriptors (the cap closes the
longest-idle ones to make room, and calls keep being served); if descriptors do run out, the SQLite
writer thread that dies is restarted, calls fail fast with 503 meanwhile and ``/readyz`` says why; the
soft open-file limit is raised to the hard one; sockets that never send their headers are closed; and
SIGTERM ends the process within the grace period plus a few seconds, whatever is stuck."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import time
from pathlib import Path

import aiohttp

from tests.conftest import free_port
from tests.faults.conftest import acli, body_for, relay_env, start_serve
from tests.mock_upstream import MockUpstream

GRACE = 2.0
EXIT_MARGIN = 5.0  # lightrelay.http.server.EXIT_MARGIN_SECONDS


def _own_fd_room(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


async def serve_limited(env: dict[str, str], log: Path, nofile: str) -> asyncio.subprocess.Process:
    """``prlimit --nofile=NOFILE python -m lightrelay serve``, waited on until /healthz answers."""
    return await start_serve(env, log, prefix=("prlimit", f"--nofile={nofile}"))


async def setup(tmp_path: Path, up: MockUpstream, **extra: str) -> tuple[dict, str, str]:
    env = relay_env(tmp_path / "data", free_port(), LIGHTRELAY_SECRET_KEY="hostile-load-secret-0123456789",
                    LIGHTRELAY_SHUTDOWN_GRACE_SECONDS=str(GRACE), **extra)
    token = (await acli(env, "user", "add", "h@example.com", "--daily-limit", "unlimited")).strip().splitlines()[-1]
    await acli(env, "channel", "add", "up", "--base-url", up.base_url, "--models", "gpt-3.5-turbo-1106")
    return env, token, f"http://127.0.0.1:{env['LIGHTRELAY_PORT']}"


def open_idle(port: int, n: int) -> list[socket.socket]:
    """``n`` TCP connections to the relay that never send a byte."""
    out = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        out.append(s)
    return out


def still_open(sockets: list[socket.socket]) -> int:
    """How many of ``sockets`` the relay has not closed (a closed one reads EOF or an error)."""
    alive = 0
    for s in sockets:
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                continue
            alive += 1  # it sent something (a 503): counted as not silently open
        except BlockingIOError:
            alive += 1
        except OSError:
            continue
    return alive


async def until(check, seconds: float) -> None:
    """Poll ``check()`` every 0.1 s until it is true or ``seconds`` passed (the caller asserts after)."""
    for _ in range(int(seconds * 10)):
        if check():
            return
        await asyncio.sleep(0.1)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def nofile_of(pid: int) -> list[str]:
    limits = Path(f"/proc/{pid}/limits").read_text()
    return next(x for x in limits.splitlines() if x.startswith("Max open files")).split()[3:5]


async def chat(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, dict]:
    path, json, headers = body_for("openai", token, "hello", stream=False)
    async with http.post(url + path, json=json, headers=headers, timeout=aiohttp.ClientTimeout(total=15)) as r:
        return r.status, await r.json(content_type=None)


async def sigterm_and_time(proc: asyncio.subprocess.Process) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), GRACE + EXIT_MARGIN + 10)
    return time.monotonic() - started


async def test_idle_socket_flood_under_1024_files_keeps_serving(tmp_path):
    _own_fd_room(4096)
    log = tmp_path / "serve.log"
    async with MockUpstream() as up:
        env, token, url = await setup(tmp_path, up)
        proc = await serve_limited(env, log, "1024:1024")
        port = int(env["LIGHTRELAY_PORT"])
        idle = open_idle(port, 1100)
        try:
            await asyncio.sleep(2)  # the relay accepts them all
            async with aiohttp.ClientSession() as http:
                during = [await chat(http, url, token) for _ in range(20)]
                async with http.get(url + "/readyz") as r:
                    ready_during = r.status, await r.json()
            fds = fd_count(proc.pid)
            await asyncio.sleep(3)  # 5 s of flood in all, as in the report
        finally:
            for s in idle:
                s.close()
        async with aiohttp.ClientSession() as http:
            after = [await chat(http, url, token) for _ in range(5)]
            async with http.get(url + "/readyz") as r:
                ready_after = r.status, await r.json()
        took = await sigterm_and_time(proc)
    text = log.read_text()
    assert [s for s, _ in during] == [200] * 20, during[:3]
    assert ready_during[0] == 200, ready_during
    assert [s for s, _ in after] == [200] * 5
    assert ready_after == (200, {"status": "ready", "checks": ready_after[1]["checks"]})
    assert ready_after[1]["checks"]["sqlite_writer"] == "ok"
    assert fds < 1024 - 64  # room left under the limit for the database and the upstreams
    assert "open connections reached the cap (448" in text
    assert "unable to open database file" not in text and "Too many open files" not in text
    assert took < GRACE + EXIT_MARGIN


async def test_sockets_that_send_no_headers_are_closed(tmp_path):
    _own_fd_room(4096)
    async with MockUpstream() as up:
        env, token, url = await setup(tmp_path, up, LIGHTRELAY_HEADER_TIMEOUT_SECONDS="1")
        proc = await serve_limited(env, tmp_path / "serve.log", "1024:4096")
        try:
            port = int(env["LIGHTRELAY_PORT"])
            silent = open_idle(port, 50)
            slow = open_idle(port, 50)
            await asyncio.sleep(0.3)
            for s in slow:  # slowloris: a request line, then nothing more
                s.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            await until(lambda: not still_open(silent + slow), 10)
            left = still_open(silent + slow)
            nofile = nofile_of(proc.pid)
            async with aiohttp.ClientSession() as http:
                status, _ = await chat(http, url, token)
        finally:
            took = await sigterm_and_time(proc)
    assert left == 0  # every socket that sent no complete headers was closed
    assert status == 200
    assert nofile == ["4096", "4096"]  # soft limit raised to the hard one at start
    assert "open-file limit 4096 (raised from 1024)" in (tmp_path / "serve.log").read_text()
    assert took < GRACE + EXIT_MARGIN


async def test_out_of_descriptors_the_writer_restarts_and_calls_fail_fast(tmp_path):
    """The cap set above the open-file limit, so descriptors really run out: the SQLite writer thread
    cannot open the database and dies; calls get 503 at once and /readyz says so; once the sockets are
    gone the writer is started again and calls succeed; SIGTERM still ends the process in time."""
    _own_fd_room(4096)
    log = tmp_path / "serve.log"
    async with MockUpstream() as up:
        env, token, url = await setup(tmp_path, up, LIGHTRELAY_MAX_CONNECTIONS="100000",
                                      LIGHTRELAY_HEADER_TIMEOUT_SECONDS="60",
                                      LIGHTRELAY_KEEPALIVE_TIMEOUT_SECONDS="120")
        proc = await serve_limited(env, log, "256:256")
        port = int(env["LIGHTRELAY_PORT"])
        kept = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, keepalive_timeout=300))
        try:
            async with kept.get(url + "/readyz") as r:  # a connection (and a database connection) made before
                assert r.status == 200
                await r.read()  # read whole, so the connection is kept for the calls below
            idle = open_idle(port, 400)
            await until(lambda: fd_count(proc.pid) >= 250, 20)
            exhausted = fd_count(proc.pid)
            started = time.monotonic()
            status, body = await chat(kept, url, token)
            answered_in = time.monotonic() - started
            async with kept.get(url + "/readyz") as r:
                ready_down = r.status, await r.json()
        finally:
            for s in idle:
                s.close()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                async with kept.get(url + "/readyz") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.3)
            async with aiohttp.ClientSession() as http:
                after = [await chat(http, url, token) for _ in range(5)]
                async with http.get(url + "/readyz") as r:
                    ready_after = r.status, await r.json()
        finally:
            await kept.close()
            took = await sigterm_and_time(proc)
    text = log.read_text()
    assert exhausted >= 250, exhausted  # the relay really ran out of descriptors (256)
    assert status == 503 and body["error"]["code"] == "database_unavailable", body
    assert answered_in < 5  # fails fast, no hang
    assert ready_down[0] == 503 and ready_down[1]["checks"]["sqlite_writer"].startswith("down: "), ready_down
    assert "SQLite writer thread died" in text and "SQLite writer is back" in text
    assert [s for s, _ in after] == [200] * 5
    assert ready_after[0] == 200 and ready_after[1]["checks"]["sqlite_writer"] == "ok"
    assert took < GRACE + EXIT_MARGIN
