"""A real HTTP mock of an OpenAI-compatible upstream, for the test suite.

An aiohttp server on 127.0.0.1 (a free port) serving ``POST /v1/chat/completions``,
``POST /v1/embeddings``, ``POST /v1/images/generations`` and ``GET /v1/models``. Use it from async tests::

    async with MockUpstream() as up:
        up.mode = "fail-500"             # every following request
        ... point a channel at up.base_url ...   # "http://127.0.0.1:PORT/v1"
        headers, body = up.requests[-1]  # what the relay sent (headers are case-insensitive)

or, for tests that drive synchronous clients, in a background thread::

    up = MockUpstream().start_in_thread()
    ...
    up.stop()

Which mode answers a request, first match wins:
  1. the request's ``model`` if it is a mode name (e.g. a channel mapping ``gpt-4=fail-500``);
  2. ``up.queued_modes.pop(0)`` while that list is not empty (e.g. fail once, then answer);
  3. ``up.mode`` (default ``"ok"``).

Modes:
  ok        answers; choice 0 is ``"echo: <last user message>"``, choice i>0 is
            ``"echo#i: ..."``; honours ``n``, ``max_tokens`` (finish_reason "length"),
            ``stream`` (SSE, ``up.chunk_size`` characters per chunk, ``up.chunk_delay``
            seconds between chunks) and ``stream_options.include_usage``.
            Token counts: one token per started 4 characters of content (``fake_tokens``).
  no-usage  like ok, but never sends usage (no usage chunk, no usage block).
  fail-429  HTTP 429 with ``Retry-After: 1`` and an OpenAI error body.
  fail-500  HTTP 500, OpenAI error body.      fail-503  HTTP 503, OpenAI error body.
  stall     sleeps ``up.stall_seconds`` (default 60) before the first byte.
  malformed HTTP 200 whose JSON (or first SSE event) is not valid JSON.
  cut       streams the role chunk and two content chunks (non-stream: half the
            body), then drops the connection without ``[DONE]``.
  trickle   the normal reply, written one byte at a time every ``up.trickle_delay`` s.
  drop      accepts the request, then closes the connection without any reply.
  malformed-mid  streams the role chunk and one content chunk, then an event that is not JSON.
  echo-auth HTTP 500 whose error message repeats the ``Authorization`` header it got (a leaky upstream).

Tools (chat, any mode that answers): with ``tools`` in the request (and ``tool_choice`` not
``"none"``) and a user message last, the reply calls the first tool (or the one ``tool_choice``
names; the first two when the user text contains "both" and ``parallel_tool_calls`` is not
false) with arguments ``{"q": "<last user text>"}``, finish_reason ``tool_calls``; streamed
as OpenAI does (id and name first, then the arguments in ``chunk_size`` pieces). With tool
messages last, the reply is ``"echo tool: <their contents joined by ' | '>"``.

Embeddings: one vector per input (``dimensions`` long, default 8), deterministic from the
input's text; ``encoding_format: "base64"`` gives little-endian float32 bytes in base64.
More than ``MAX_DIMENSIONS`` (3072, OpenAI's largest) is a 400, as OpenAI answers.
Images: ``n`` items, ``{"url": "http://img.mock/<i>.png"}`` or ``{"b64_json": ...}``
(``response_format: "b64_json"``), ``revised_prompt`` repeating the prompt.

``up.ends[i]`` says how request ``i`` ended: ``("done", t)`` when the handler finished,
``("gone", t)`` when the relay closed the connection first (the handler was cancelled);
``t`` is ``time.monotonic()``. ``await up.wait_end(i)`` waits for it.

For "connection refused", use ``refused_base_url()``: a URL where nothing listens.
``up.api_key`` (optional) makes requests without ``Authorization: Bearer <key>`` get 401.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import socket
import struct
import threading
import time
from typing import Any, NamedTuple

import orjson
from aiohttp import web
from multidict import CIMultiDict

MAX_DIMENSIONS = 3072  # text-embedding-3-large's; a fuzzer's 10**9 would otherwise take the mock's memory
MODES = ("ok", "no-usage", "fail-429", "fail-500", "fail-503", "stall", "malformed", "cut", "trickle", "drop",
         "malformed-mid", "echo-auth")


class Recorded(NamedTuple):
    """One chat request as received: its headers (case-insensitive) and JSON body (None if invalid)."""

    headers: CIMultiDict[str]
    body: Any


def fake_tokens(text: str) -> int:
    """The mock's deterministic token count: one per started 4 characters."""
    return math.ceil(len(text) / 4)


def refused_base_url() -> str:
    """A ``/v1`` base URL on a local port where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _error(status: int, message: str, type_: str, **headers: str) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": None}}
    return web.json_response(body, status=status, headers=headers)


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on a free port of 127.0.0.1: (its runner, to clean up; the port)."""
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return runner, sock.getsockname()[1]


class MockUpstream:
    """The mock server; see the module docstring for modes and usage."""

    def __init__(self, mode: str = "ok", *, api_key: str | None = None) -> None:
        self.mode = mode
        self.queued_modes: list[str] = []
        self.api_key = api_key
        self.chunk_size = 4
        self.chunk_delay = 0.0
        self.trickle_delay = 0.01
        self.stall_seconds = 60.0
        self.set_cookie: str | None = None  # a Set-Cookie header on every reply (as some CDNs add)
        self.requests: list[Recorded] = []
        self.ends: dict[int, tuple[str, float]] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ---- lifecycle -------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/images/generations", self._images)

    async def start(self) -> MockUpstream:
        app = web.Application()
        self.routes(app)
        self._closing = asyncio.Event()
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            self._closing.set()  # wakes stalled handlers
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MockUpstream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start_in_thread(self) -> MockUpstream:
        """Run the server on its own event loop in a daemon thread; returns once it listens."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.close())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="mock-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("mock upstream did not start")
        return self

    def stop(self) -> None:
        """Stop a server started with ``start_in_thread``."""
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    # ---- handlers ----------------------------------------------------------------------------
    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "mock"} for m in ("mock-model", *MODES)]
        return web.json_response({"object": "list", "data": data})

    def _pick_mode(self, body: Any) -> str:
        model = body.get("model") if isinstance(body, dict) else None
        if model in MODES:
            return model
        if self.queued_modes:
            return self.queued_modes.pop(0)
        return self.mode

    async def wait_end(self, index: int, timeout: float = 5.0) -> tuple[str, float]:
        """How request ``index`` ended (see ``ends``), waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while index not in self.ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"request {index} has not ended")
            await asyncio.sleep(0.01)
        return self.ends[index]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        index = len(self.requests)
        self.requests.append(Recorded(CIMultiDict(request.headers), None))
        outcome = "gone"
        try:
            resp = await self._chat_inner(request, index)
            outcome = "done"
            return resp
        finally:
            self.ends[index] = (outcome, time.monotonic())

    async def _chat_inner(self, request: web.Request, index: int) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.requests[index] = Recorded(self.requests[index].headers, body)
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "body must be JSON with messages", "invalid_request_error")
        mode = self._pick_mode(body)
        if mode == "fail-429":
            return _error(429, "Rate limit reached", "rate_limit_error", **{"Retry-After": "1"})
        if mode == "echo-auth":
            return _error(500, f"bad key {request.headers.get('Authorization')!r} for {body.get('user')}",
                          "server_error")
        if mode in ("fail-500", "fail-503"):
            return _error(int(mode[5:]), f"mock upstream {mode}", "server_error")
        if mode == "drop":
            request.transport.close()
            return web.Response()  # never reaches the client
        if mode == "stall":
            try:
                await asyncio.wait_for(self._closing.wait(), self.stall_seconds)
            except TimeoutError:
                pass
        if body.get("stream"):
            return await self._stream(request, body, mode)
        return await self._complete(request, body, mode)

    @staticmethod
    def _user_text(body: dict) -> str:
        users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        return _content_text(users[-1].get("content")) if users else ""

    def _tool_calls(self, body: dict) -> list[dict] | None:
        """The tool calls the reply makes (see the module docstring), or None."""
        tools = [t for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
        last = body["messages"][-1] if body["messages"] else {}
        if not tools or body.get("tool_choice") == "none" or not isinstance(last, dict) or last.get("role") != "user":
            return None
        names = [t["function"]["name"] for t in tools]
        choice = body.get("tool_choice")
        text = self._user_text(body)
        if isinstance(choice, dict):
            names = [choice["function"]["name"]]
        elif "both" in text and len(names) >= 2 and body.get("parallel_tool_calls") is not False:
            names = names[:2]
        else:
            names = names[:1]
        args = orjson.dumps({"q": text}).decode()
        return [{"id": f"call_mock_{i}", "type": "function", "function": {"name": name, "arguments": args}}
                for i, name in enumerate(names)]

    def _replies(self, body: dict) -> tuple[str, list[tuple[str, str]]]:
        """The reply text and finish reason of each choice, and the model name to report."""
        text = self._user_text(body)
        tail = []
        for m in reversed(body["messages"]):
            if not isinstance(m, dict) or m.get("role") != "tool":
                break
            tail.insert(0, _content_text(m.get("content")))
        if tail:
            return str(body.get("model", "mock-model")), [("echo tool: " + " | ".join(tail), "stop")]
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        choices = []
        for i in range(int(body.get("n") or 1)):
            reply = f"echo: {text}" if i == 0 else f"echo#{i}: {text}"
            if max_tokens and fake_tokens(reply) > max_tokens:
                choices.append((reply[: 4 * max_tokens], "length"))
            else:
                choices.append((reply, "stop"))
        return str(body.get("model", "mock-model")), choices

    def _usage(self, body: dict, choices: list[tuple[str, str]], calls: list[dict] | None = None) -> dict:
        prompt = sum(fake_tokens(_content_text(m.get("content"))) for m in body["messages"] if isinstance(m, dict))
        if calls:
            completion = sum(fake_tokens(c["function"]["arguments"]) for c in calls)
        else:
            completion = sum(fake_tokens(reply) for reply, _ in choices)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def _complete(self, request: web.Request, body: dict, mode: str) -> web.StreamResponse:
        model, choices = self._replies(body)
        calls = self._tool_calls(body)
        reply = {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": fin}
                for i, (text, fin) in enumerate(choices)
            ],
            "system_fingerprint": "fp_mock",
        }
        if calls:
            reply["choices"] = [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": calls},
                                 "finish_reason": "tool_calls"}]
        if mode != "no-usage":
            reply["usage"] = self._usage(body, choices, calls)
        data = orjson.dumps(reply)
        if mode == "malformed":
            data = data[: len(data) // 2] + b"<html>oops"
        resp = web.StreamResponse(headers={"Content-Type": "application/json", **self._cookie()})
        resp.content_length = len(data)
        await resp.prepare(request)
        if mode == "cut":
            await resp.write(data[: len(data) // 2])
            request.transport.close()
        elif mode == "trickle":
            await self._trickle(resp, data)
        else:
            await resp.write(data)
        return resp

    def _cookie(self) -> dict[str, str]:
        return {"Set-Cookie": self.set_cookie} if self.set_cookie else {}

    async def _stream(self, request: web.Request, body: dict, mode: str) -> web.StreamResponse:
        model, choices = self._replies(body)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           **self._cookie()})
        await resp.prepare(request)
        created = int(time.time())

        def chunk(choice_list: list[dict], **extra: Any) -> bytes:
            obj = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created,
                   "model": model, "system_fingerprint": "fp_mock", "choices": choice_list, **extra}
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        calls = self._tool_calls(body)
        size = self.chunk_size
        if calls:
            events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}])]
            for k, call in enumerate(calls):
                head = {"index": k, "id": call["id"], "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""}}
                events.append(chunk([{"index": 0, "delta": {"tool_calls": [head]}, "finish_reason": None}]))
                args = call["function"]["arguments"]
                events += [chunk([{"index": 0, "delta": {"tool_calls": [
                    {"index": k, "function": {"arguments": args[start:start + size]}}]}, "finish_reason": None}])
                    for start in range(0, len(args), size)]
            events.append(chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]))
        else:
            events = [chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                             for i in range(len(choices))])]
            for start in range(0, max(len(text) for text, _ in choices), size):
                events += [chunk([{"index": i, "delta": {"content": text[start:start + size]},
                                   "finish_reason": None}])
                           for i, (text, _) in enumerate(choices) if text[start:start + size]]
            events += [chunk([{"index": i, "delta": {}, "finish_reason": fin}])
                       for i, (_, fin) in enumerate(choices)]
        if (body.get("stream_options") or {}).get("include_usage") and mode != "no-usage":
            events.append(chunk([], usage=self._usage(body, choices, calls)))
        events.append(b"data: [DONE]\n\n")

        if mode == "malformed":
            events[0] = b'data: {"id": "chatcmpl-mock", "choices": [\n\n'
        if mode == "malformed-mid":
            events[2] = b'data: {"id": "chatcmpl-mock", "choices": [<html>\n\n'
        for n, event in enumerate(events):
            if mode == "cut" and n == 3:
                request.transport.close()
                return resp
            if mode == "trickle":
                await self._trickle(resp, event)
            else:
                await resp.write(event)
                if self.chunk_delay and n < len(events) - 1:
                    await asyncio.sleep(self.chunk_delay)
        await resp.write_eof()
        return resp

    async def _other(self, request: web.Request) -> tuple[int, Any, str | None]:
        """Record a non-chat request; its index, JSON body and the mode that answers it."""
        index = len(self.requests)
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(Recorded(CIMultiDict(request.headers), body))
        self.ends[index] = ("done", time.monotonic())
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return index, body, "unauthorized"
        return index, body, self._pick_mode(body) if isinstance(body, dict) else "bad"

    def _refusal(self, mode: str | None) -> web.Response | None:
        if mode == "unauthorized":
            return _error(401, "Incorrect API key provided", "invalid_request_error")
        if mode == "bad":
            return _error(400, "body must be a JSON object", "invalid_request_error")
        if mode in ("fail-500", "fail-503"):
            return _error(int(mode[5:]), f"mock upstream {mode}", "server_error")
        if mode == "fail-429":
            return _error(429, "Rate limit reached", "rate_limit_error", **{"Retry-After": "1"})
        return None

    async def _embeddings(self, request: web.Request) -> web.Response:
        _, body, mode = await self._other(request)
        refused = self._refusal(mode)
        if refused is not None:
            return refused
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return _error(400, "input is required", "invalid_request_error")
        dims = int(body.get("dimensions") or 8)
        if dims > MAX_DIMENSIONS:
            return _error(400, f"dimensions must be at most {MAX_DIMENSIONS}", "invalid_request_error")
        data, prompt = [], 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(str(t) for t in item)
            prompt += fake_tokens(text) if isinstance(item, str) else len(item)
            seed = hashlib.sha256(text.encode()).digest()
            vector = [round((seed[k % 32] - 128) / 128, 6) for k in range(dims)]
            if body.get("encoding_format") == "base64":
                embedding: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        return web.json_response({"object": "list", "data": data, "model": body.get("model"),
                                  "usage": {"prompt_tokens": prompt, "total_tokens": prompt}})

    async def _images(self, request: web.Request) -> web.Response:
        _, body, mode = await self._other(request)
        refused = self._refusal(mode)
        if refused is not None:
            return refused
        if not isinstance(body.get("prompt"), str):
            return _error(400, "prompt is required", "invalid_request_error")
        items = []
        for i in range(int(body.get("n") or 1)):
            if body.get("response_format") == "b64_json":
                item = {"b64_json": base64.b64encode(f"png#{i}:{body['prompt']}".encode()).decode()}
            else:
                item = {"url": f"http://img.mock/{i}.png"}
            items.append({**item, "revised_prompt": body["prompt"]})
        return web.json_response({"created": int(time.time()), "data": items})

    async def _trickle(self, resp: web.StreamResponse, data: bytes) -> None:
        for i in range(len(data)):
            await resp.write(data[i:i + 1])
            await asyncio.sleep(self.trickle_delay)
