"""Forwarded headers, with real ``python -m lightrelay serve`` processes: ``X-Forwarded-For`` and
``X-Forwarded-Proto`` are believed only from the proxies LIGHTRELAY_TRUSTED_PROXIES names. Before,
uvicorn's own proxy-header handling believed them from 127.0.0.1 whatever the setting said, so anyone
on the relay's host could pick the address a token's ``--ips``, the login limiter and the bad-token
guard saw."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.conftest import free_port
from tests.faults.conftest import acli, body_for, relay_env, start_serve
from tests.mock_upstream import MockUpstream
from tests.web.conftest import Page

EMAIL, PASSWORD = "f@example.com", "the-right-password-1"


async def setup(tmp_path: Path, up: MockUpstream, **extra: str) -> tuple[dict, dict[str, str], str]:
    env = relay_env(tmp_path / "data", free_port(), LIGHTRELAY_SECRET_KEY="forwarded-secret-0123456789abc",
                    LIGHTRELAY_RATE_LOGIN="3/300", **extra)
    await acli(env, "user", "add", EMAIL, "--password", PASSWORD, "--daily-limit", "unlimited")
    await acli(env, "channel", "add", "up", "--base-url", up.base_url, "--models", "gpt-3.5-turbo-1106")
    tokens = {}
    for name, ips in (("here", "127.0.0.1/32"), ("far", "203.0.113.9/32")):
        out = await acli(env, "token", "add", EMAIL, "--name", name, "--ips", ips)
        tokens[name] = out.strip().splitlines()[-1]
    return env, tokens, f"http://127.0.0.1:{env['LIGHTRELAY_PORT']}"


async def chat_as(url: str, token: str, forwarded_for: str) -> tuple[int, str]:
    path, json, headers = body_for("openai", token, stream=False)
    async with aiohttp.ClientSession() as http, http.post(
            url + path, json=json, headers={**headers, "X-Forwarded-For": forwarded_for}) as r:
        body = await r.json(content_type=None)
        return r.status, (body.get("error") or {}).get("code", "")


def visitor(url: str, **headers: str) -> Page:
    return Page(url, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers))


async def spray_logins(url: str, n: int) -> list[int]:
    """``n`` wrong passwords from 127.0.0.1, each claiming another address in X-Forwarded-For."""
    statuses = []
    for i in range(n):
        page = visitor(url, **{"X-Forwarded-For": f"198.51.100.{i + 1}"})
        try:
            await page.get("/login")
            await page.post("/login", {"email": EMAIL, "password": "a-wrong-guess"})
            statuses.append(page.status)
        finally:
            await page.session.close()
    return statuses


async def api_page(url: str, **headers: str) -> str:
    page = visitor(url, **headers)
    try:
        await page.login(EMAIL, PASSWORD)
        return await page.get("/me/api")
    finally:
        await page.session.close()


async def test_no_trusted_proxy_means_forwarded_headers_are_ignored(tmp_path):
    async with MockUpstream() as up:
        env, tokens, url = await setup(tmp_path, up)
        proc = await start_serve(env, tmp_path / "serve.log")
        try:
            here = await chat_as(url, tokens["here"], "203.0.113.9")
            far = await chat_as(url, tokens["far"], "203.0.113.9")
            page = await api_page(url, **{"X-Forwarded-Proto": "https"})
            sprayed = await spray_logins(url, 5)
        finally:
            proc.terminate()
            await proc.wait()
    assert here == (200, "")  # the relay saw the peer, 127.0.0.1, not the claimed address
    assert far == (403, "ip_not_allowed")
    assert f"<code>{url}/v1</code>" in page  # the scheme is the connection's own
    assert sprayed[:3] == [400, 400, 400] and sprayed[3:] == [429, 429]  # one address, however it dresses


async def test_a_trusted_proxy_says_who_called_and_how(tmp_path):
    async with MockUpstream() as up:
        env, tokens, url = await setup(tmp_path, up, LIGHTRELAY_TRUSTED_PROXIES="127.0.0.1/32")
        proc = await start_serve(env, tmp_path / "serve.log")
        try:
            here = await chat_as(url, tokens["here"], "203.0.113.9")
            far = await chat_as(url, tokens["far"], "203.0.113.9")
            page = await api_page(url, **{"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.1"})
            sprayed = await spray_logins(url, 5)
        finally:
            proc.terminate()
            await proc.wait()
    assert here == (403, "ip_not_allowed")
    assert far == (200, "")
    port = env["LIGHTRELAY_PORT"]
    assert f"<code>https://127.0.0.1:{port}/v1</code>" in page
    assert sprayed == [400] * 5  # five callers behind the proxy, one wrong password each: none is limited
