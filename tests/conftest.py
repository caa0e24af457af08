"""Shared fixtures: a real relay under uvicorn on loopback, with a fresh SQLite data dir,
and a real mock upstream (``tests/mock_upstream.py``)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn

from lightrelay.http.app import State, create_app
from lightrelay.http.server import GuardedProtocol
from lightrelay.security import KeyBox
from lightrelay.services import accounts, channels
from lightrelay.settings import Settings
from tests.mock_upstream import MockUpstream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RelayHandle:
    url: str
    settings: Settings
    server: uvicorn.Server
    app: Any
    task: asyncio.Task

    async def stop(self) -> None:
        """Stop the relay the way SIGTERM does (graceful shutdown, lifespan end)."""
        self.server.should_exit = True
        await self.task

    @property
    def lr(self) -> State:
        """The running app's parts (engine, router, relay, …)."""
        return self.app.state.lr

    async def user(self, email: str, *, limit: int | None = 10, gpt4: bool = False, admin: bool = False,
                   password: str | None = None) -> str:
        """Create an account; returns its first token."""
        account_id = await accounts.create_account(self.lr.engine, email=email, daily_limit=limit, gpt4=gpt4,
                                                   is_admin=admin, password=password)
        return await accounts.add_token(self.lr.engine, account_id=account_id, name="test")

    async def channel(self, name: str, base_url: str, models: str, **kw: Any) -> None:
        await channels.add_channel(self.lr.engine, KeyBox(self.settings.secret()), name=name, base_url=base_url,
                                   models=channels.parse_models(models), **kw)
        await self.lr.reload_channels()

    async def light(self, session: aiohttp.ClientSession, body: dict[str, Any],
                    headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with session.post(f"{self.url}/api/light/chat/createChatCompletion", json=body,
                                headers=headers) as r:
            return r.status, await r.json(content_type=None)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(data_dir=tmp_path / "data", env="dev", secret_key="test-secret-0123456789abcdef",
                                  local_model="off", usage_flush_seconds=0.05)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def start_relay(tmp_path: Path) -> AsyncIterator[Any]:
    """``await start_relay(**settings_overrides)`` → a running RelayHandle (stopped after the test)."""
    running: list[RelayHandle] = []

    async def start(http: Any = GuardedProtocol, **overrides: Any) -> RelayHandle:
        """``http="httptools"``: uvicorn's own protocol instead of the one ``lightrelay serve`` runs."""
        settings = make_settings(tmp_path, **overrides)
        app = create_app(settings)
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                access_log=False, proxy_headers=False, http=http)  # as `lightrelay serve` runs it
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        handle = RelayHandle(url=f"http://127.0.0.1:{port}", settings=settings, server=server, app=app, task=task)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        if not handle.task.done():
            await handle.stop()


@pytest.fixture
async def relay(start_relay: Any) -> RelayHandle:
    return await start_relay()


@pytest.fixture
async def upstream() -> AsyncIterator[MockUpstream]:
    async with MockUpstream() as up:
        yield up


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
