"""Real HTTP mocks of Anthropic, Gemini and Azure OpenAI upstreams, speaking their documented wire formats.

Each is an aiohttp server on 127.0.0.1 (a free port)::

    async with MockAnthropic() as up:        # POST /v1/messages, GET /v1/models
        ... channel --type anthropic --base-url up.base_url ...
        rec = up.requests[-1]               # rec.path, rec.query, rec.headers, rec.body (what the relay sent)

    MockGemini()   POST /v1beta/models/{model}:generateContent | :streamGenerateContent?alt=sse, GET /v1beta/models
    MockAzure()    POST /openai/deployments/{deployment}/chat/completions?api-version=…  (``tests.mock_upstream``'s
                   OpenAI replies; ``up.azure`` records path, query and the api-key header of each call)

Keys: ``up.keys`` (a set; empty = any key is accepted) are the valid ones; ``up.revoked`` answer as a
revoked key does (Anthropic 401 ``authentication_error``; Gemini 400 ``API_KEY_INVALID``);
``up.exhausted`` answer "out of credit" (Anthropic 400 "credit balance is too low"; Gemini 429
"exceeded your current quota").

Modes (``up.mode``, or the request's model when it is a mode name, or ``up.queued_modes`` first):
  ok         the reply: "echo: <last user text>" (choice/candidate i>0: "echo#i: …"); with tools offered and
             the last turn a user's, one tool call (``tools[0]`` or the forced one) with input {"q": <text>};
             after a tool result: "echo tool: <result>". max tokens (one token per started 4 characters)
             cut it with max_tokens / MAX_TOKENS; Anthropic also honours ``stop_sequences``.
  thinking   (Anthropic) a thinking block "hmm…" before the text.
  fail-500 / fail-429 / overloaded (Anthropic 529) / fail-400     the provider's error bodies.
  cut        a stream that stops after two text pieces (the connection dropped); non-stream: half a body.
  error-mid  (Anthropic) a stream that sends an ``error`` event (overloaded_error) after the first text piece.
  blocked-prompt / blocked-reply   (Gemini) promptFeedback.blockReason SAFETY / a candidate stopped by SAFETY.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, NamedTuple

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.mock_upstream import MockUpstream, serve_on_loopback


def fake_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class Call(NamedTuple):
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: Any


class _Server:
    MODES: tuple[str, ...] = ()

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.queued_modes: list[str] = []
        self.keys: set[str] = set()
        self.revoked: set[str] = set()
        self.exhausted: set[str] = set()
        self.chunk_size = 4
        self.requests: list[Call] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> _Server:
        app = web.Application()
        self.routes(app)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(Call(request.path, dict(request.query), CIMultiDict(request.headers), body))
        return body

    def _pick_mode(self, model: Any) -> str:
        if model in self.MODES:
            return model
        if self.queued_modes:
            return self.queued_modes.pop(0)
        return self.mode

    @staticmethod
    async def _sse(request: web.Request, events: list[bytes], *, cut_at: int | None = None) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for n, event in enumerate(events):
            if cut_at is not None and n == cut_at:
                await asyncio.sleep(0.05)  # let the pieces before it reach the relay first
                request.transport.close()
                return resp
            await resp.write(event)
        await resp.write_eof()
        return resp


# -- Anthropic --------------------------------------------------------------------------------------

def _a_error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)


def _a_event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


class MockAnthropic(_Server):
    MODES = ("ok", "thinking", "fail-500", "fail-429", "overloaded", "fail-400", "cut", "error-mid")

    def __init__(self, mode: str = "ok") -> None:
        super().__init__(mode)
        self.cache_read = 0  # cache_read_input_tokens reported in usage

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)

    def _key_refusal(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-api-key", "")
        if key in self.revoked or (self.keys and key not in self.keys and key not in self.exhausted):
            return _a_error(401, "authentication_error", "invalid x-api-key")
        if key in self.exhausted:
            return _a_error(400, "invalid_request_error", "Your credit balance is too low to access the Anthropic "
                                                          "API. Please go to Plans & Billing to upgrade or purchase "
                                                          "credits.")
        if not request.headers.get("anthropic-version"):
            return _a_error(400, "invalid_request_error", "anthropic-version: header is required")
        return None

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        refusal = self._key_refusal(request)
        if refusal is not None:
            return refusal
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in ("claude-sonnet-4-5", "claude-haiku-4-5")]
        return web.json_response({"data": data, "has_more": False, "first_id": data[0]["id"],
                                  "last_id": data[-1]["id"]})

    @staticmethod
    def _problem(body: Any) -> str | None:
        if not isinstance(body, dict):
            return "body must be a JSON object"
        if not isinstance(body.get("model"), str):
            return "model: Field required"
        if not isinstance(body.get("max_tokens"), int):
            return "max_tokens: Field required"
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return "messages: at least one message is required"
        for i, m in enumerate(msgs):
            if m.get("role") != ("user" if i % 2 == 0 else "assistant"):
                return f"messages.{i}: roles must alternate between user and assistant, starting with user"
            for block in m["content"] if isinstance(m.get("content"), list) else ():
                if block.get("type") == "text" and not block.get("text"):
                    return f"messages.{i}: text content blocks must be non-empty"
        if "temperature" in body and not 0 <= body["temperature"] <= 1:
            return "temperature: must be at most 1"
        return None

    @staticmethod
    def _texts(content: Any) -> str:
        if isinstance(content, str):
            return content
        return "".join(b.get("text", "") for b in content or () if b.get("type") == "text")

    def _reply(self, body: dict) -> tuple[list[dict], str, str | None]:
        """(content blocks, stop_reason, stop_sequence)."""
        last = body["messages"][-1]
        content = last.get("content")
        results = [b for b in content if b.get("type") == "tool_result"] if isinstance(content, list) else []
        if results:
            said = " | ".join(r["content"] if isinstance(r.get("content"), str) else self._texts(r.get("content"))
                              for r in results)
            return [{"type": "text", "text": "echo tool: " + said}], "end_turn", None
        text = self._texts(content)
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {"type": "auto"}
        if tools and last["role"] == "user" and choice.get("type") != "none":
            name = choice["name"] if choice.get("type") == "tool" else tools[0]["name"]
            return ([{"type": "text", "text": "Let me check."},
                     {"type": "tool_use", "id": "toolu_mock_0", "name": name, "input": {"q": text}}], "tool_use", None)
        reply, stop, seq = f"echo: {text}", "end_turn", None
        for s in body.get("stop_sequences") or ():
            if s in reply:
                reply, stop, seq = reply[:reply.index(s)], "stop_sequence", s
        if fake_tokens(reply) > body["max_tokens"]:
            reply, stop, seq = reply[:4 * body["max_tokens"]], "max_tokens", None
        return [{"type": "text", "text": reply}], stop, seq

    def _usage(self, body: dict, blocks: list[dict]) -> dict[str, int]:
        system = body.get("system") or ""
        prompt = fake_tokens(system if isinstance(system, str) else self._texts(system))
        prompt += sum(fake_tokens(self._texts(m.get("content"))) for m in body["messages"])
        out = sum(fake_tokens(b.get("text") or orjson.dumps(b.get("input", "")).decode()) for b in blocks)
        return {"input_tokens": prompt, "cache_creation_input_tokens": 0, "cache_read_input_tokens": self.cache_read,
                "output_tokens": out}

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        refusal = self._key_refusal(request)
        if refusal is not None:
            return refusal
        problem = self._problem(body)
        if problem:
            return _a_error(400, "invalid_request_error", problem)
        mode = self._pick_mode(body["model"])
        if mode == "fail-500":
            return _a_error(500, "api_error", "Internal server error")
        if mode == "fail-429":
            return _a_error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit")
        if mode == "overloaded":
            return _a_error(529, "overloaded_error", "Overloaded")
        if mode == "fail-400":
            return _a_error(400, "invalid_request_error", "prompt is too long: 300000 tokens > 200000 maximum")
        blocks, stop, seq = self._reply(body)
        if mode == "thinking":
            blocks.insert(0, {"type": "thinking", "thinking": "hmm, an echo", "signature": "sig-mock"})
        usage = self._usage(body, blocks)
        if body.get("stream"):
            return await self._stream(request, body, mode, blocks, stop, seq, usage)
        msg = {"id": "msg_mock01", "type": "message", "role": "assistant", "model": body["model"], "content": blocks,
               "stop_reason": stop, "stop_sequence": seq, "usage": usage}
        data = orjson.dumps(msg)
        if mode == "cut":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.content_length = len(data)
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            request.transport.close()
            return resp
        return web.Response(body=data, content_type="application/json")

    async def _stream(self, request: web.Request, body: dict, mode: str, blocks: list[dict], stop: str,
                      seq: str | None, usage: dict[str, int]) -> web.StreamResponse:
        start_usage = {**usage, "output_tokens": 1}
        events = [_a_event("message_start", {"type": "message_start", "message": {
            "id": "msg_mock01", "type": "message", "role": "assistant", "model": body["model"], "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}})]
        pieces: list[int] = []  # where the text pieces are in events
        size = self.chunk_size
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                events.append(_a_event("content_block_start", {"type": "content_block_start", "index": i,
                                                               "content_block": {"type": "text", "text": ""}}))
                if i == 0:
                    events.append(_a_event("ping", {"type": "ping"}))
                for at in range(0, len(block["text"]), size):
                    pieces.append(len(events))
                    events.append(_a_event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                        "type": "text_delta", "text": block["text"][at:at + size]}}))
            elif block["type"] == "thinking":
                events.append(_a_event("content_block_start", {"type": "content_block_start", "index": i,
                                                               "content_block": {"type": "thinking", "thinking": ""}}))
                events.append(_a_event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                    "type": "thinking_delta", "thinking": block["thinking"]}}))
                events.append(_a_event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                    "type": "signature_delta", "signature": block["signature"]}}))
            else:
                events.append(_a_event("content_block_start", {"type": "content_block_start", "index": i,
                                                               "content_block": {**block, "input": {}}}))
                args = orjson.dumps(block["input"]).decode()
                cut = len(args) // 2
                for part in ("", args[:cut], args[cut:]):
                    events.append(_a_event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                        "type": "input_json_delta", "partial_json": part}}))
            events.append(_a_event("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(_a_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop,
                                                                                     "stop_sequence": seq},
                                                 "usage": {"output_tokens": usage["output_tokens"]}}))
        events.append(_a_event("message_stop", {"type": "message_stop"}))
        if mode == "error-mid":
            events.insert(pieces[0] + 1, _a_event("error", {"type": "error", "error": {
                "type": "overloaded_error", "message": "Overloaded"}}))
            del events[pieces[0] + 2:]
        return await self._sse(request, events, cut_at=pieces[2] if mode == "cut" else None)


# -- Gemini -----------------------------------------------------------------------------------------

def _g_error(status: int, state: str, message: str, reason: str | None = None) -> web.Response:
    err: dict[str, Any] = {"code": status, "message": message, "status": state}
    if reason:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                           "domain": "googleapis.com"}]
    return web.json_response({"error": err}, status=status)


class MockGemini(_Server):
    MODES = ("ok", "fail-500", "fail-429", "fail-400", "cut", "blocked-prompt", "blocked-reply")

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{call}", self._generate)
        app.router.add_get("/v1beta/models", self._models)

    def _key_refusal(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key", "")
        if key in self.revoked or (self.keys and key not in self.keys and key not in self.exhausted) or not key:
            return _g_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                            "API_KEY_INVALID")
        if key in self.exhausted:
            return _g_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and "
                                                       "billing details.")
        return None

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        refusal = self._key_refusal(request)
        if refusal is not None:
            return refusal
        return web.json_response({"models": [
            {"name": "models/gemini-2.5-flash", "supportedGenerationMethods": ["generateContent", "countTokens"]},
            {"name": "models/text-embedding-004", "supportedGenerationMethods": ["embedContent"]},
            {"name": "models/gemini-2.5-pro", "supportedGenerationMethods": ["generateContent"]}]})

    @staticmethod
    def _text(parts: list[dict]) -> str:
        return "".join(p.get("text", "") for p in parts)

    def _candidates(self, body: dict) -> list[tuple[list[dict], str]]:
        last = body["contents"][-1]
        responses = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
        if responses:
            said = " | ".join(orjson.dumps(r["response"]).decode() for r in responses)
            return [([{"text": "echo tool: " + said}], "STOP")]
        text = self._text(last["parts"])
        decls = [d for t in body.get("tools") or () for d in t.get("functionDeclarations") or ()]
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode", "AUTO")
        if decls and last["role"] == "user" and mode != "NONE":
            allowed = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("allowedFunctionNames")
            name = allowed[0] if allowed else decls[0]["name"]
            return [([{"functionCall": {"name": name, "args": {"q": text}}}], "STOP")]
        config = body.get("generationConfig") or {}
        out = []
        for i in range(config.get("candidateCount", 1)):
            reply, reason = (f"echo: {text}" if i == 0 else f"echo#{i}: {text}"), "STOP"
            limit = config.get("maxOutputTokens")
            if limit and fake_tokens(reply) > limit:
                reply, reason = reply[:4 * limit], "MAX_TOKENS"
            out.append(([{"text": reply}], reason))
        return out

    def _usage(self, body: dict, cands: list[tuple[list[dict], str]]) -> dict[str, int]:
        prompt = sum(fake_tokens(self._text(c["parts"])) for c in body["contents"])
        prompt += fake_tokens(self._text((body.get("systemInstruction") or {}).get("parts") or []))
        out = sum(fake_tokens(self._text(parts) or orjson.dumps(parts).decode()) for parts, _ in cands)
        return {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out}

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        model, _, method = request.match_info["call"].partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return _g_error(404, "NOT_FOUND", f"method {method} not found")
        refusal = self._key_refusal(request)
        if refusal is not None:
            return refusal
        if not isinstance(body, dict) or not body.get("contents") or any(
                c.get("role") not in ("user", "model") or not c.get("parts") for c in body["contents"]):
            return _g_error(400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified")
        mode = self._pick_mode(model)
        if mode == "fail-500":
            return _g_error(500, "INTERNAL", "An internal error has occurred.")
        if mode == "fail-429":
            return _g_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
        if mode == "fail-400":
            return _g_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
        stream = method == "streamGenerateContent"
        if mode == "blocked-prompt":
            reply = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                     "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}
            return await self._answer(request, stream, [reply])
        if mode == "blocked-reply":
            reply = {"candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]}]}
            return await self._answer(request, stream, [reply])
        cands = self._candidates(body)
        usage = self._usage(body, cands)
        if not stream:
            return web.json_response({"candidates": [
                {"content": {"parts": parts, "role": "model"}, "finishReason": reason, "index": i}
                for i, (parts, reason) in enumerate(cands)], "usageMetadata": usage,
                "modelVersion": model, "responseId": "mock-response-1"})
        events = []
        size = self.chunk_size
        for i, (parts, reason) in enumerate(cands):
            text = self._text(parts)
            pieces = [[{"text": text[at:at + size]}] for at in range(0, len(text), size)] if text else [parts]
            for n, piece in enumerate(pieces):
                cand: dict[str, Any] = {"content": {"parts": piece, "role": "model"}, "index": i}
                if n == len(pieces) - 1:
                    cand["finishReason"] = reason
                events.append({"candidates": [cand], "usageMetadata": {"promptTokenCount": usage["promptTokenCount"]},
                               "modelVersion": model, "responseId": "mock-response-1"})
        events[-1]["usageMetadata"] = usage
        return await self._answer(request, True, events, cut_at=2 if mode == "cut" else None)

    async def _answer(self, request: web.Request, stream: bool, replies: list[dict],
                      cut_at: int | None = None) -> web.StreamResponse:
        if not stream:
            return web.json_response(replies[0])
        events = [b"data: " + orjson.dumps(r) + b"\r\n\r\n" for r in replies]
        return await self._sse(request, events, cut_at=cut_at)


# -- Azure OpenAI ------------------------------------------------------------------------------------

class AzureCall(NamedTuple):
    deployment: str
    api_version: str | None
    api_key: str | None


class MockAzure(MockUpstream):
    """``tests.mock_upstream.MockUpstream`` (its modes, its OpenAI replies) behind Azure's URLs and headers."""

    def __init__(self, mode: str = "ok", *, azure_key: str | None = None) -> None:
        super().__init__(mode)
        self.azure_key = azure_key
        self.azure: list[AzureCall] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._deployment)
        app.router.add_get("/openai/models", self._azure_models)

    def _azure_refusal(self, request: web.Request) -> web.Response | None:
        if not request.query.get("api-version"):
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        if self.azure_key is not None and request.headers.get("api-key") != self.azure_key:
            return web.json_response({"error": {"code": "401", "message": "Access denied due to invalid subscription "
                                                "key or wrong API endpoint."}}, status=401)
        return None

    async def _azure_models(self, request: web.Request) -> web.Response:
        refusal = self._azure_refusal(request)
        if refusal is not None:
            return refusal
        return web.json_response({"object": "list", "data": [{"id": "gpt-4o", "object": "model"},
                                                             {"id": "gpt-4o-mini", "object": "model"}]})

    async def _deployment(self, request: web.Request) -> web.StreamResponse:
        self.azure.append(AzureCall(request.match_info["deployment"], request.query.get("api-version"),
                                    request.headers.get("api-key")))
        refusal = self._azure_refusal(request)
        if refusal is not None:
            return refusal
        return await self._chat(request)
