"""What an OpenAI-compatible upstream adds that callers may want passes through untouched: DeepSeek-style
``reasoning_content`` deltas and ``usage.completion_tokens_details.reasoning_tokens`` (issue 12, item 7)."""

from __future__ import annotations

import asyncio
import socket

import orjson
from aiohttp import web

from tests.faults.conftest import MODEL
from tests.test_provider_anthropic import chat, chat_stream

USAGE = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14,
         "completion_tokens_details": {"reasoning_tokens": 6}, "prompt_tokens_details": {"cached_tokens": 2}}


def chunk(delta: dict, finish: str | None = None, **extra) -> bytes:
    body = {"id": "chatcmpl-r1", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-reasoner",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return b"data: " + orjson.dumps(body) + b"\n\n"


async def reasoner(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        return web.json_response({"id": "chatcmpl-r1", "object": "chat.completion", "created": 1,
                                  "model": "deepseek-reasoner", "usage": USAGE, "choices": [{
                                      "index": 0, "finish_reason": "stop", "message": {
                                          "role": "assistant", "content": "42", "reasoning_content": "think think"}}]})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for piece in (chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
                  chunk({"reasoning_content": "think "}), chunk({"reasoning_content": "think"}),
                  chunk({"content": "42"}), chunk({}, "stop"),
                  b"data: " + orjson.dumps({"id": "chatcmpl-r1", "object": "chat.completion.chunk", "created": 1,
                                            "model": "deepseek-reasoner", "choices": [], "usage": USAGE}) + b"\n\n",
                  b"data: [DONE]\n\n"):
        await resp.write(piece)
    return resp


async def test_reasoning_content_and_reasoning_tokens_pass_through(relay, http):
    app = web.Application()
    app.router.add_post("/v1/chat/completions", reasoner)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        await relay.channel("ds", f"http://127.0.0.1:{sock.getsockname()[1]}/v1", f"{MODEL}=deepseek-reasoner")
        token = await relay.user("r@example.com")
        status, body = await chat(http, relay, token, {"messages": [{"role": "user", "content": "?"}]})
        assert status == 200 and body["choices"][0]["message"]["reasoning_content"] == "think think"
        assert body["usage"] == USAGE
        chunks = await chat_stream(http, relay, token, {"messages": [{"role": "user", "content": "?"}]})
        reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"])
        assert reasoning == "think think"
        assert [c["usage"] for c in chunks if not c["choices"]] == [USAGE]
    finally:
        await runner.cleanup()


async def test_a_kept_alive_connection_the_upstream_dropped_is_retried_on_a_fresh_one(relay, http):
    """An upstream (or a load balancer before it) that resets a kept-alive connection as the relay sends
    the next call on it: the request cannot be written, so the call goes out again on a new connection
    instead of failing (and counting against the channel). Here the upstream answers the first request of
    each connection and, at the second, reads its headers and resets the connection before the body is
    in. (An upstream that takes a whole request and hangs up is not retried on the same channel: the
    failover tests' ``drop``.)"""
    reply = orjson.dumps({"id": "chatcmpl-k", "object": "chat.completion", "created": 1, "model": "m",
                          "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": "ok"}}]})
    connections, dropped = [], []

    async def serve(reader, writer) -> None:
        connections.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply))
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request on this connection: gone before its body
        dropped.append(1)
        writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    big = "x" * (4 * 1024 * 1024)  # a body of several writes: the reset lands while it is being written
    try:
        port = server.sockets[0].getsockname()[1]
        await relay.channel("flaky", f"http://127.0.0.1:{port}/v1", f"{MODEL}=m")
        token = await relay.user("k@example.com")
        for _ in range(3):
            status, body = await chat(http, relay, token, {"messages": [{"role": "user", "content": big}]})
            assert status == 200, body
            assert body["choices"][0]["message"]["content"] == "ok"
        assert dropped, "the upstream never saw a reused connection: the test proves nothing"
        assert len(connections) == 1 + len(dropped)
    finally:
        server.close()
        await server.wait_closed()
