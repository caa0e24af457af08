"""Issue 15, finding 6: the smaller ones, each against a real relay on loopback (uvicorn, real SQLite,
real sockets): the unknown-token limiter holds under a burst; console pages answer 4xx, not 500, to a
channel key in a template, a bad URL, a header-injecting e-mail and an id past 64 bits; a client hanging
up mid-body is an INFO line; the playground stops its upstream call when the browser leaves."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import aiohttp
import pytest
from sqlalchemy import select

from lightrelay.db.models import accounts as accounts_table
from lightrelay.services import channels
from tests.faults.conftest import MODEL, body_for
from tests.mock_upstream import MockUpstream
from tests.web.conftest import Page

PASSWORD = "a-good-password-1"


async def console_page(relay, email: str, *, admin: bool = False) -> Page:  # noqa: ANN001
    await relay.user(email, password=PASSWORD, admin=admin)
    page = Page(relay.url, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)))
    await page.login(email, PASSWORD)
    return page


async def test_a_burst_of_unknown_tokens_reaches_the_database_at_most_the_limit(start_relay):
    relay = await start_relay(rate_bad_token="20/60")
    path, json, _ = body_for("openai", "unused")

    async def guess(i: int) -> int:
        headers = {"Authorization": f"Bearer sk-00000000-0000-4000-8000-{i:012d}"}
        async with http.post(relay.url + path, json=json, headers=headers) as r:
            await r.read()
            return r.status

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        statuses = await asyncio.gather(*(guess(i) for i in range(500)))
    assert statuses.count(401) == 20 and statuses.count(429) == 480  # exactly the limit's worth looked up


async def test_a_good_token_is_not_counted_as_a_guess(start_relay, upstream):
    relay = await start_relay(rate_bad_token="3/60")
    await relay.channel("up", upstream.base_url, MODEL)
    token = await relay.user("g@example.com", limit=None)
    path, json, headers = body_for("openai", token, stream=False)
    async with aiohttp.ClientSession() as http:
        for _ in range(10):  # good calls, read from the database or the cache, never fill the window
            relay.lr.relay.auth.forget()
            async with http.post(relay.url + path, json=json, headers=headers) as r:
                assert r.status == 200
        for _ in range(3):
            async with http.post(relay.url + path, json=json, headers={"Authorization": "Bearer sk-nope-0000"}) as r:
                assert r.status == 401
        async with http.post(relay.url + path, json=json, headers=headers) as r:
            assert r.status == 429  # the address is blocked now: not even a good token is looked up


async def test_a_burst_with_one_good_token_not_yet_cached_is_not_taken_for_guessing(start_relay, upstream):
    relay = await start_relay(rate_bad_token="3/60")
    await relay.channel("up", upstream.base_url, MODEL)
    token = await relay.user("c@example.com", limit=None)
    path, json, headers = body_for("openai", token, stream=False)
    relay.lr.relay.auth.forget()

    async def call() -> int:
        async with http.post(relay.url + path, json=json, headers=headers) as r:
            await r.read()
            return r.status

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        statuses = await asyncio.gather(*(call() for _ in range(100)))
    assert statuses == [200] * 100  # one database read, counted once and given back


async def test_a_burst_of_many_good_tokens_from_one_address_waits_its_turn(start_relay, upstream):
    """(a proxy serving many users from one address, right after the token cache expired)"""
    relay = await start_relay(rate_bad_token="5/60")
    await relay.channel("up", upstream.base_url, MODEL)
    tokens = [await relay.user(f"u{i}@example.com", limit=None) for i in range(40)]
    path, json, _ = body_for("openai", "unused", stream=False)
    relay.lr.relay.auth.forget()

    async def call(token: str) -> int:
        async with http.post(relay.url + path, json=json, headers={"Authorization": f"Bearer {token}"}) as r:
            await r.read()
            return r.status

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        statuses = await asyncio.gather(*(call(t) for t in tokens))
    assert statuses == [200] * 40


async def test_channel_edit_with_a_key_and_bad_urls_answer_without_500(start_relay, upstream):
    relay = await start_relay()
    await relay.channel("up", upstream.base_url, MODEL, api_key="sk-abcdefghijklmnopqrstuvwxyz")
    [row] = await channels.load_channels(relay.lr.engine)
    page = await console_page(relay, "admin@example.com", admin=True)
    try:
        await page.get(f"/admin/channels/{row['id']}/edit")
        assert page.status == 200 and "wxyz" in page.text  # the masked key is shown, the page renders
        for bad in ("http://[::1", "http://", "http://example.com:99999/v1", "http://exa mple.com/v1",
                    "http://example.com/v1\r\nX: y", "ftp://example.com"):
            await page.post(f"/admin/channels/{row['id']}/edit", {"type": "openai", "base_url": bad,
                                                                   "models": MODEL})
            assert page.status == 400, (bad, page.status)
        [after] = await channels.load_channels(relay.lr.engine)
        assert after["base_url"] == row["base_url"]  # nothing was stored
        await page.get("/admin/channels/99999999999999999999999/edit")
        assert page.status == 404
    finally:
        await page.session.close()


async def test_header_injecting_email_is_refused_before_anything_is_written(start_relay):
    relay = await start_relay()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        page = Page(relay.url, session)
        await page.get("/register")
        for bad in ("evil@x.com\r\nBcc:victim@y.com", "evil@x.com\nbcc: v@y.com", "a@b@c.com", "a b@c.com",
                    "<a@b.com>", "a@b..com"):
            await page.post("/register", {"email": bad, "password": PASSWORD})
            assert page.status == 400, bad
    async with relay.lr.engine.connect() as conn:
        assert (await conn.execute(select(accounts_table.c.email))).all() == []


@pytest.mark.parametrize("token_id", ["99999999999999999999999", "9223372036854775808", "0"])
async def test_revoking_an_impossible_token_id_is_404(start_relay, token_id):
    relay = await start_relay()
    page = await console_page(relay, "r@example.com")
    try:
        await page.get("/me/api")
        await page.post(f"/me/api/tokens/{token_id}/revoke")
        assert page.status == 404
    finally:
        await page.session.close()


async def test_client_hanging_up_mid_body_is_an_info_line(start_relay, caplog):
    relay = await start_relay()
    token = await relay.user("b@example.com")
    caplog.set_level(logging.INFO)
    port = int(relay.url.rsplit(":", 1)[1])
    for path in ("/v1/chat/completions", "/api/light/chat/createChatCompletion"):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\": ".encode())
            await asyncio.sleep(0.2)
    for _ in range(50):  # the relay notices the hang-up
        if caplog.text.count("hung up while sending its request body") >= 2:
            break
        await asyncio.sleep(0.05)
    assert caplog.text.count("hung up while sending its request body") == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text


async def test_playground_stops_the_upstream_call_when_the_browser_leaves(start_relay):
    relay = await start_relay()
    async with MockUpstream("stall") as up:
        await relay.channel("up", up.base_url, MODEL)
        page = await console_page(relay, "pg@example.com")
        try:
            await page.get("/playground")
            with pytest.raises(asyncio.TimeoutError):
                await page.session.post(relay.url + "/console/api/chat", headers={"x-csrf-token": page.csrf},
                                        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
                                        timeout=aiohttp.ClientTimeout(total=0.5))
            left = time.monotonic()
            how, when = await up.wait_end(0, timeout=5)
        finally:
            await page.session.close()
    assert how == "gone" and when - left < 1.0  # not after the 60 s first-byte timeout
