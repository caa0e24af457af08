"""Issue 15, finding 2 (and the login limiter of finding 6), with a real ``python -m lightrelay serve``
process and real argon2: password checks run in their own thread, after the rate limit, so a flood of
wrong passwords neither stalls the chat calls the event loop serves nor lets a stolen session go on
guessing; and wrong passwords sprayed at an e-mail from one address do not lock its owner out."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from tests.conftest import free_port
from tests.faults.conftest import acli, body_for, relay_env, start_serve
from tests.mock_upstream import MockUpstream
from tests.web.conftest import Page

EMAIL, PASSWORD, NEW = "p@example.com", "the-right-password-1", "a-brand-new-password-2"


async def setup(tmp_path: Path, up: MockUpstream) -> tuple[dict, str, str]:
    env = relay_env(tmp_path / "data", free_port(), LIGHTRELAY_SECRET_KEY="password-flood-secret-0123456789",
                    LIGHTRELAY_RATE_LOGIN="5/300")
    out = await acli(env, "user", "add", EMAIL, "--password", PASSWORD, "--daily-limit", "unlimited")
    await acli(env, "channel", "add", "up", "--base-url", up.base_url, "--models", "gpt-3.5-turbo-1106")
    return env, out.strip().splitlines()[-1], f"http://127.0.0.1:{env['LIGHTRELAY_PORT']}"


def visitor(url: str, source: str = "127.0.0.1") -> Page:
    """A console visitor connecting from ``source`` (any 127.x address is this machine)."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                    connector=aiohttp.TCPConnector(local_addr=(source, 0)))
    return Page(url, session)


async def chat_until(url: str, token: str, done: asyncio.Event, concurrency: int = 8) -> tuple[list[int], float]:
    """Statuses of the chat calls ``concurrency`` clients complete until ``done``, and calls per second."""
    path, json, headers = body_for("openai", token, stream=False)
    statuses: list[int] = []
    started = time.monotonic()

    async def client(http: aiohttp.ClientSession) -> None:
        while not done.is_set():
            async with http.post(url + path, json=json, headers=headers) as r:
                await r.read()
                statuses.append(r.status)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return statuses, len(statuses) / (time.monotonic() - started)


async def chat_for(url: str, token: str, seconds: float) -> tuple[list[int], float]:
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, done.set)
    return await chat_until(url, token, done)


async def test_password_flood_neither_stalls_calls_nor_keeps_guessing(tmp_path):
    async with MockUpstream() as up:
        env, token, url = await setup(tmp_path, up)
        proc = await start_serve(env, tmp_path / "serve.log")
        page = visitor(url)
        try:
            await page.login(EMAIL, PASSWORD)
            await page.get("/me/password")
            csrf = page.csrf
            baseline, alone = await chat_for(url, token, 3)
            flood: list[int] = []
            done = asyncio.Event()

            async def guesser() -> None:  # until the flood has had 200 answers (or 30 s)
                while not done.is_set():
                    async with page.session.post(url + "/me/password", data={
                            "csrf": csrf, "current": "a wrong guess", "password": NEW}) as r:
                        await r.read()
                        flood.append(r.status)
                    if len(flood) >= 200:
                        done.set()

            asyncio.get_running_loop().call_later(30, done.set)
            (during, flooded), *_ = await asyncio.gather(chat_until(url, token, done), *(guesser() for _ in range(4)))
            # the stolen session now tries the right current password: refused, nothing changes
            await page.post("/me/password", {"current": PASSWORD, "password": NEW})
            right_after_limit = page.status
        finally:
            await page.session.close()
        owner = visitor(url, "127.0.0.2")
        try:
            await owner.get("/login")
            await owner.post("/login", {"email": EMAIL, "password": PASSWORD})
            old_password_works = owner.status
        finally:
            await owner.session.close()
        proc.terminate()
        await proc.wait()
    print(f"chat calls/s: {alone:.0f} alone, {flooded:.0f} during the flood; flood answers "
          f"{flood.count(400)} x 400, {flood.count(429)} x 429")
    assert set(baseline) == {200} and set(during) == {200}
    assert flood.count(400) <= 5 and flood.count(429) >= 190  # at most the limit's worth of argon2 checks
    assert flooded >= alone / 4  # (was ~1/24 with argon2 on the event loop)
    assert right_after_limit == 429
    assert old_password_works == 200  # the password was not changed


async def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out(tmp_path):
    async with MockUpstream() as up:
        env, _, url = await setup(tmp_path, up)
        proc = await start_serve(env, tmp_path / "serve.log")
        attacker, owner = visitor(url, "127.0.0.1"), visitor(url, "127.0.0.3")
        try:
            await attacker.get("/login")
            sprayed = []
            for _ in range(8):
                await attacker.post("/login", {"email": EMAIL, "password": "guess"})
                sprayed.append(attacker.status)
            await attacker.post("/login", {"email": EMAIL, "password": PASSWORD})
            attacker_right = attacker.status
            await owner.get("/login")
            for _ in range(7):  # the owner's own good logins are not counted against them
                await owner.post("/login", {"email": EMAIL, "password": PASSWORD})
                assert owner.status == 200, owner.text
                await owner.post("/logout", {})
                await owner.get("/login")
        finally:
            await attacker.session.close()
            await owner.session.close()
            proc.terminate()
            await proc.wait()
    assert sprayed == [400] * 5 + [429] * 3
    assert attacker_right == 429  # the guessing address stays blocked, even with the right password
