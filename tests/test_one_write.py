"""``serve``'s responses: the head goes out with the first piece of body, in one write."""

from __future__ import annotations

import asyncio

import aiohttp
import uvicorn

from lightrelay.http.server import GuardedProtocol, OneWrite
from tests.conftest import free_port


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"extra:{name}"


async def test_the_head_waits_for_the_body_but_never_past_the_turn():
    loop = asyncio.get_running_loop()
    t = Recorder()
    whole = OneWrite(t, loop)
    whole.write(b"HEAD")
    whole.write(b"BODY")
    assert t.writes == [b"HEADBODY"]
    assert whole.get_extra_info("peername") == "extra:peername"  # the rest is the transport's

    t = Recorder()
    stream = OneWrite(t, loop)
    stream.write(b"HEAD")
    assert t.writes == []
    await asyncio.sleep(0)  # the turn ends: the head goes out alone
    assert t.writes == [b"HEAD"]
    stream.write(b"one")
    stream.write(b"two")
    assert t.writes == [b"HEAD", b"one", b"two"]

    t = Recorder()
    cut = OneWrite(t, loop)
    cut.write(b"HEAD")
    cut.close()
    assert t.writes == [b"HEAD"] and t.closed


async def test_serve_protocol_answers_and_streams_through_it():
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await receive()
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            for piece in (b"a", b"b", b"c"):
                await asyncio.sleep(0.01)
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        body = b'{"ok":true}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=GuardedProtocol, lifespan="off",
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(3):  # kept alive: each response on the same connection
                async with http.get(f"http://127.0.0.1:{port}/") as r:
                    assert r.status == 200 and await r.json() == {"ok": True}
            async with http.get(f"http://127.0.0.1:{port}/stream") as r:
                got = [piece async for piece in r.content.iter_any()]
                assert b"".join(got) == b"abc" and len(got) >= 2  # the pieces came as they were sent
    finally:
        server.should_exit = True
        await task
