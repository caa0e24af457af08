"""Fixtures for the scale-out tests: the machine's PostgreSQL and Redis (``scripts/ensure-services``),
a fresh PostgreSQL database per test, a Redis key prefix per test, a Redis of the test's own, and
real relay processes (``python -m lightrelay serve``) as subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from lightrelay.security import KeyBox
from lightrelay.services import accounts, channels
from tests.conftest import free_port
from tests.mock_upstream import MockUpstream

PG_ADMIN = os.environ.get("LIGHTRELAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LIGHTRELAY_TEST_REDIS", "redis://127.0.0.1:6379/0")
SECRET = "scale-test-secret-0123456789"
ROOT = Path(__file__).resolve().parents[2]
MSG = [{"role": "user", "content": "hello"}]
SERVICES_HINT = "run scripts/ensure-services (starts the machine's PostgreSQL and Redis)"


@dataclass
class Database:
    """A fresh PostgreSQL database for one test, dropped after it."""

    name: str
    url: str  # postgresql+asyncpg://…
    engine: AsyncEngine

    async def user(self, email: str, *, limit: int | None = 10) -> str:
        account_id = await accounts.create_account(self.engine, email=email, daily_limit=limit)
        return await accounts.add_token(self.engine, account_id=account_id, name="test")

    async def channel(self, name: str, base_url: str, models: str) -> None:
        await channels.add_channel(self.engine, KeyBox(SECRET), name=name, base_url=base_url,
                                   models=channels.parse_models(models))

    async def scalar(self, sql: str, *args: Any) -> Any:
        conn = await asyncpg.connect(self.url.replace("+asyncpg", ""))
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()


@pytest.fixture
async def pg() -> AsyncIterator[Database]:
    name = f"lr_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN} is not reachable ({exc}): {SERVICES_HINT}")
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    from lightrelay.db.engine import migrate
    from lightrelay.settings import Settings

    await migrate(Settings(database_url=url, secret_key=SECRET))
    engine = create_async_engine(url)
    try:
        yield Database(name=name, url=url, engine=engine)
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own on the machine's Redis (keys removed after)."""
    prefix = f"lrtest:{uuid.uuid4().hex[:10]}:"
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as exc:
        await client.aclose()
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}): {SERVICES_HINT}")
    try:
        yield prefix
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
def mock_upstream() -> Iterator[MockUpstream]:
    """The mock upstream on its own loop in a thread, so the relays' load does not share the test's loop."""
    up = MockUpstream().start_in_thread()
    yield up
    up.stop()


class OwnRedis:
    """A redis-server of the test's own on a free port, to stop and start at will."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._tmp = tmp
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail(f"redis-server is not installed: {SERVICES_HINT}")
        self._proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self._tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("own redis-server did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(5)
            self._proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    r = OwnRedis(tmp_path)
    r.start()
    yield r
    r.stop()


@dataclass
class RelayProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(repr=False)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM (a clean stop, as systemd or docker does) and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise


class Relays:
    """Starts ``python -m lightrelay serve`` subprocesses sharing one database (and Redis)."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self.running: list[RelayProcess] = []

    def env(self, **settings: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LIGHTRELAY_", "PROMETHEUS_"))}
        env.update({"LIGHTRELAY_SECRET_KEY": SECRET, "LIGHTRELAY_LOCAL_MODEL": "off",
                    "LIGHTRELAY_DATA_DIR": str(self._tmp / "data"), "LIGHTRELAY_LOG_LEVEL": "WARNING",
                    "PYTHONPATH": str(ROOT)})
        env.update({f"LIGHTRELAY_{k.upper()}": str(v) for k, v in settings.items()})
        return env

    async def start(self, *, workers: int = 1, **settings: Any) -> RelayProcess:
        relay = self.spawn(workers=workers, **settings)
        await wait_ready(relay)
        return relay

    def spawn(self, *, workers: int = 1, **settings: Any) -> RelayProcess:
        port = free_port()
        log = self._tmp / f"relay-{port}.log"
        env = self.env(**settings)
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "lightrelay", "serve", "--port", str(port),
                                     "--workers", str(workers)], env=env, cwd=self._tmp, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        relay = RelayProcess(url=f"http://127.0.0.1:{port}", proc=proc, log=log, env=env)
        self.running.append(relay)
        return relay

    def cli(self, *args: str, **settings: Any) -> str:
        """Run a ``lightrelay`` CLI command against the same database; its stdout."""
        done = subprocess.run([sys.executable, "-m", "lightrelay", *args], env=self.env(**settings), cwd=self._tmp,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop_all(self) -> None:
        """Stop every relay and its workers (a process group each: killing only the uvicorn supervisor
        would leave its workers running, holding database connections)."""
        for relay in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(relay.proc.pid, signal.SIGTERM)
        for relay in self.running:
            try:
                relay.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(relay.proc.pid, signal.SIGKILL)
            relay.proc.wait(5)


async def wait_ready(relay: RelayProcess, *, timeout: float = 30) -> None:
    """Until /readyz answers 200 (with several workers, the first ready one answers; the others queue)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if relay.proc.poll() is not None:
                raise RuntimeError(f"relay exited with {relay.proc.returncode}:\n{relay.output()}")
            try:
                async with http.get(relay.url + "/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"relay did not become ready:\n{relay.output()}")


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[Relays]:
    r = Relays(tmp_path)
    yield r
    r.stop_all()


async def light_call(http: aiohttp.ClientSession, url: str, token: str, **params: Any) -> int:
    body = {"token": token, "messages": MSG}
    if params:
        body["params"] = params
    async with http.post(url + "/api/light/chat/createChatCompletion", json=body) as r:
        await r.read()
        return r.status
