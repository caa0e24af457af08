"""The ``anthropic`` provider: Anthropic's Messages API (``POST {base}/v1/messages``, ``x-api-key`` and
``anthropic-version`` headers), translated to and from chat by ``lightrelay.translate.anthropic``.

Errors: 429, 5xx and 529 (``overloaded_error``) fail over to the next channel; 400 is the caller's;
401/403 and an exhausted credit balance retire the key (``providers/keys.py``). An ``error`` event
in a stream is an upstream failure like a broken connection.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from lightrelay.errors import BadRequest, UpstreamError, UpstreamFailure
from lightrelay.providers.base import ChatCall
from lightrelay.providers.http import HttpProvider, Timeouts, event_object, scrub, status_error
from lightrelay.providers.keys import KeyRing
from lightrelay.translate.anthropic import (
    ChatChunks,
    StreamError,
    completion_from_message,
    to_anthropic_request,
)

API_VERSION = "2023-06-01"


class AnthropicProvider(HttpProvider):
    kind = "anthropic"

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, keys: KeyRing, timeouts: Timeouts,
                 default_max_tokens: int, api_version: str | None = None) -> None:
        super().__init__(session, keys=keys, timeouts=timeouts)
        base = base_url.rstrip("/")
        self._base = base if base.endswith("/v1") else base + "/v1"  # both https://api.anthropic.com and …/v1
        self._url = self._base + "/messages"
        self.default_max_tokens = default_max_tokens
        self._version = api_version or API_VERSION
        self._by_key: dict[str | None, dict[str, str]] = {}

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = self._by_key.get(key)
        if headers is None:
            headers = {"Content-Type": "application/json", "Accept": "application/json",
                       "anthropic-version": self._version}
            if key:
                headers["x-api-key"] = key
            self._by_key[key] = headers
        return headers

    def _error(self, status: int, body: bytes, secret: str | None) -> UpstreamFailure | BadRequest:
        if status == 413:
            return status_error(400, body, secret)
        return status_error(status, body, secret)

    def _request(self, call: ChatCall, stream: bool) -> bytes:
        if call.params.get("n", 1) != 1:
            raise BadRequest("此渠道（Anthropic）不支持 n > 1", "n > 1 is not supported by Anthropic channels",
                             param="n")
        return orjson.dumps(to_anthropic_request(call.messages, call.params, model=call.model,
                                                 default_max_tokens=self.default_max_tokens, stream=stream))

    async def complete(self, call: ChatCall) -> dict[str, Any]:
        resp, _ = await self._send("POST", self._url, call, self._request(call, False))
        data = await self._json(resp)
        if not isinstance(data, dict) or data.get("type") != "message":
            raise UpstreamError("上游返回了无法解析的内容", "the upstream sent a reply that is not a message")
        return completion_from_message(data, model=call.public_model, created=int(time.time()))

    async def stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        resp, secret = await self._send("POST", self._url, call, self._request(call, True))
        events = ChatChunks(model=call.public_model, created=int(time.time()))
        try:
            async for payload in self._events(resp):
                event = event_object(payload)
                try:
                    chunk = events.feed(event)
                except StreamError as exc:
                    detail = scrub(f"{exc.kind}: {exc.message}", secret)[:300]
                    raise UpstreamError(f"上游出错: {detail}", f"the upstream failed: {detail}") from None
                if chunk is not None:
                    yield chunk
                if events.done:
                    return
            raise UpstreamError("上游流意外结束", "the upstream stream ended before message_stop")
        finally:
            self._finish(resp, events.done)

    async def list_models(self) -> list[str]:
        """``GET /v1/models`` (paged with ``after_id``)."""
        names: list[str] = []
        url = self._base + "/models?limit=1000"
        for _ in range(20):
            resp, _ = await self._send("GET", url, None)
            data = await self._json(resp)
            names += [str(m["id"]) for m in (data or {}).get("data") or () if isinstance(m, dict) and m.get("id")]
            if not (data or {}).get("has_more") or not data.get("last_id"):
                break
            url = f"{self._base}/models?limit=1000&after_id={data['last_id']}"
        return sorted(names)
