"""Fixtures for the console tests: an HTTP client that keeps cookies and reads CSRF tokens,
a real SMTP server (aiosmtpd) on loopback, and a real headless Chromium (playwright)."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller

from tests.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
CODE = re.compile(r"\b(\d{6})\b")


class Page:
    """A console visitor over plain HTTP: keeps cookies, finds the CSRF token of the last page."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session
        self.csrf = ""
        self.status = 0
        self.text = ""

    async def get(self, path: str, **kw: Any) -> str:
        async with self.session.get(self.base + path, allow_redirects=kw.pop("allow_redirects", True), **kw) as r:
            return await self._read(r)

    async def post(self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True, **kw: Any) -> str:
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf", self.csrf)
        async with self.session.post(self.base + path, data=data, allow_redirects=kw.pop("allow_redirects", True),
                                     **kw) as r:
            return await self._read(r)

    async def _read(self, r: aiohttp.ClientResponse) -> str:
        """Keep the response's status, text and headers, and the page's CSRF token if it has one."""
        self.status, self.text = r.status, await r.text()
        self.headers = r.headers
        found = re.search(r'<meta name="csrf-token" content="([^"]*)"', self.text)
        if found:
            self.csrf = found.group(1)
        return self.text

    async def login(self, email_: str, password: str) -> None:
        await self.get("/login")
        await self.post("/login", {"email": email_, "password": password})
        assert self.status == 200, self.text


@pytest.fixture
async def visitor() -> AsyncIterator[Any]:
    """``await visitor(relay)`` → a fresh Page (own cookie jar)."""
    sessions: list[aiohttp.ClientSession] = []

    async def make(relay: Any) -> Page:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        sessions.append(session)
        return Page(relay.url, session)

    yield make
    for s in sessions:
        await s.close()


def outbox_codes(outbox: Path) -> list[str]:
    """The codes in the outbox's mails, oldest first."""
    codes = []
    for path in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        codes.append(CODE.search(str(msg["Subject"])).group(1))
    return codes


class Inbox:
    """Mails received by the loopback SMTP server."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802, ANN201
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def codes(self) -> list[str]:
        return [CODE.search(str(m["Subject"])).group(1) for m in self.messages]


@pytest.fixture
def smtp() -> Any:
    """A real SMTP server on 127.0.0.1; ``smtp.url`` for LIGHTRELAY_SMTP_URL, ``smtp.inbox`` for the mails."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    controller.url = f"smtp://127.0.0.1:{port}"
    controller.inbox = inbox
    yield controller
    controller.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """A real headless Chromium (Debian's), shared by the browser tests."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} missing: run scripts/install-browser (scripts/test does)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()
