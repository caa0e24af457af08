"""Issue 15, finding 4: an upstream that answers an error with a text body repeating its API key (whole,
cut, or in part; near byte 300, where the message is cut) never gets any of the key to the caller, the
log or ``usage.error`` — a real relay on loopback against a real HTTP upstream."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web

from tests.faults.conftest import last_row

MODEL = "gpt-3.5-turbo-1106"
KEYS = {
    "openai": "sk-proj-" + "Q7vN2xLm9PzR4tW8yB1cK5fH3jD6gS0aU" * 2,
    "google": "AIzaSyD-" + "9tQw3ErTy7UiOp2AsDfGhJkL",
    "other": "relay-secret-" + "0123456789abcdefghijKLMNOPQRST",
}


class TextUpstream:
    """Answers every chat call 500 with a plain-text body built by ``body(key)``."""

    def __init__(self, key: str, body) -> None:  # noqa: ANN001
        self.key, self.body = key, body
        self.runner: web.AppRunner | None = None

    async def __aenter__(self) -> str:
        async def chat(request: web.Request) -> web.Response:
            return web.Response(status=500, text=self.body(self.key), content_type="text/plain")

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"  # type: ignore[union-attr]

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


BODIES = {
    "repeated near byte 300": lambda k: "x" * 285 + f" invalid key {k} (key {k})",
    "cut by the upstream itself": lambda k: "y" * 120 + f" key={k[:len(k) // 2]}… and {k[len(k) // 2:]}",
    "a middle piece only": lambda k: "z" * 250 + f" fragment {k[5:25]} end",
}


@pytest.mark.parametrize("kind", sorted(KEYS))
@pytest.mark.parametrize("shape", sorted(BODIES))
async def test_no_piece_of_the_key_reaches_caller_log_or_usage(start_relay, caplog, kind, shape):
    key = KEYS[kind]
    relay = await start_relay(channel_failures_to_cool=1000)
    token = await relay.user("k@example.com", limit=None)
    async with TextUpstream(key, BODIES[shape]) as base_url:
        await relay.channel("up", base_url, MODEL, api_key=key)
        caplog.set_level(logging.INFO)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{relay.url}/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                                 json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}) as r:
                status, text = r.status, await r.text()
        row = await last_row(relay)
    pieces = {key[i:i + 8] for i in range(len(key) - 7)}
    assert status == 502
    for where, seen in (("reply", text), ("log", caplog.text), ("usage.error", row["error"] or "")):
        leaked = sorted(p for p in pieces if p in seen)
        assert not leaked, f"{where} holds pieces of the key: {leaked[:3]}"
