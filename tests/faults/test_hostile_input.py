"""Guarantee 5: hostile input gets a documented 4xx with a clear message in the door's own shape, and
the process is unharmed (a normal call succeeds afterwards)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from tests.faults.conftest import CHAT, LIGHT, MODEL, call_text

DEEP = b"[" * 100_000 + b"]" * 100_000


def deep_content(depth: int) -> bytes:
    """A valid message whose content part nests ``depth`` levels (parseable, but past orjson's write limit)."""
    inner = b"{\"a\":" * depth + b"1" + b"}" * depth
    return b'{"role": "user", "content": [{"type": "text", "text": "x", "deep": ' + inner + b"}]}"


CASES = {  # name: (raw body, expected status, words the English message must contain)
    "not-json": (b"{nope", 400, "not valid JSON"),
    "nested-100k": (DEEP, 400, "nested too deeply"),
    "nested-in-message": (b'{"model": "' + MODEL.encode() + b'", "token": "t", "messages": ['
                          + deep_content(600) + b"]}", 400, "nested too deeply"),
    "invalid-utf8": (b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
                     400, "not valid JSON"),
    "lone-surrogate": (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', 400, "not valid JSON"),
    "array-body": (b"[1, 2]", 400, "invalid"),
    "wrong-type-messages": (b'{"model": "' + MODEL.encode() + b'", "messages": "hi"}', 400, "messages"),
    "wrong-type-role": (b'{"model": "m", "messages": [{"role": 5, "content": "hi"}]}', 400, "role"),
    "wrong-type-param": (orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                                       "temperature": "hot", "params": {"temperature": "hot"}}), 400, "temperature"),
    "content-part-text-not-str": (orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": 5}]}]}), 400, "text"),
    "huge-message-count": (orjson.dumps({"model": MODEL, "messages": [{"role": "user"}] * 200_000}), 400,
                           "too many messages"),
    "model-with-crlf": (orjson.dumps({"model": MODEL + "\r\nX-Injected: yes", "messages": [
        {"role": "user", "content": "x"}]}), 400, "model"),
}


def message_of(door: str, body: dict) -> str:
    return body["message"] if door == "light" else body["error"]["message"]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("door", ["light", "openai"])
async def test_hostile_body(relay, http, door, case):
    token = await relay.user("h@example.com")
    raw, status, words = CASES[case]
    if door == "light" and case in ("nested-in-message", "huge-message-count", "model-with-crlf"):
        raw = raw.replace(b'"model"', b'"token": "' + token.encode() + b'", "model"', 1)
    path = LIGHT if door == "light" else CHAT
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept-Language": "en"}
    started = time.monotonic()
    async with http.post(relay.url + path, data=raw, headers=headers) as r:
        body = await r.json()
        assert "x-injected" not in r.headers
    assert time.monotonic() - started < 3
    assert r.status == status, body
    if door == "light":
        assert body["code"] == status and body["data"] is None
    else:
        assert body["error"]["type"] == "invalid_request_error"
    assert words.lower() in message_of(door, body).lower()
    status, _ = await call_text(http, relay.url, door, token, stream=False)
    assert status in (200, 404)  # unharmed (404: no channel is set up in this test; the model is unknown)


async def test_unknown_fields(relay, http):
    """OpenAI door: unknown parameters are refused (as OpenAI does); light door: unknown top-level keys are
    ignored (old clients send extras), unknown ``params`` refused."""
    token = await relay.user("h@example.com")
    msgs = [{"role": "user", "content": "x"}]
    async with http.post(relay.url + CHAT, json={"model": MODEL, "messages": msgs, "temprature": 1},
                         headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 400 and (await r.json())["error"]["param"] == "temprature"
    status, body = await relay.light(http, {"token": token, "messages": msgs, "params": {"temprature": 1}})
    assert status == 400 and "temprature" in body["message"]
    status, body = await relay.light(http, {"token": token, "messages": msgs, "whatever": 1})
    assert status == 404  # got past validation; no channel serves the model here


async def test_token_with_crlf_is_a_clean_401(relay, http):
    status, body = await relay.light(http, {"token": "sk-abc\r\nX-Injected: yes", "messages": [
        {"role": "user", "content": "x"}]})
    assert (status, body["code"]) == (401, 401)


@pytest.mark.parametrize("door", ["light", "openai"])
async def test_declared_huge_body_is_413_at_once(relay, http, door):
    reader, writer = await asyncio.open_connection("127.0.0.1", int(relay.url.rsplit(":", 1)[1]))
    path = LIGHT if door == "light" else CHAT
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {10 ** 12}\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert head.startswith(b"HTTP/1.1 413")
    writer.close()


@pytest.mark.parametrize("door", ["light", "openai"])
async def test_endless_chunked_body_is_413_without_reading_it_all(start_relay, http, door):
    relay = await start_relay(max_body_bytes=256 * 1024)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(relay.url.rsplit(":", 1)[1]))
    path = LIGHT if door == "light" else CHAT
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode())
    piece = b"[" * 16384
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent, answer = 0, None
    read = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
    while sent < 64 * 1024 * 1024:  # a body that never ends: stop once the relay answered
        done, _ = await asyncio.wait({read}, timeout=0)
        if done:
            answer = read.result()
            break
        try:
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), 2)
        except (ConnectionError, TimeoutError):
            answer = await asyncio.wait_for(read, 3)
            break
        sent += len(chunk)
    writer.close()
    assert answer is not None and answer.startswith(b"HTTP/1.1 413")
    assert sent < 16 * 1024 * 1024  # it answered after reading about the limit, not the whole stream
    token = await relay.user("h@example.com")
    assert (await call_text(http, relay.url, door, token, stream=False))[0] == 404
